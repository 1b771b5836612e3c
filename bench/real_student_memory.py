"""Peak RAM of one LoRA training step of SmolVLM-256M at its real shape, on CPU.

The model is built from its exact config with random weights (chartdistill.student.shapes),
written as a hub-laid folder, materialised by build_base_student at the default image budget
(student.longest_edge auto: 2 x 512 px, 5 tiles for a 448x336 chart), then trained one step with
the default LoRA (text attention, r=16) on 448x336 charts with 250-word essays. Each
configuration runs in its own process, so ru_maxrss is that configuration's peak.

    .venv/bin/python -m bench.real_student_memory            # batch 1, batch 2, batch 1 + ckpt
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.suite import machine

ESSAY_WORDS = 250
CONFIGS = ((1, False), (2, False), (1, True))
SENTENCE = (
    "In 2015 the share of households with broadband rose from 42.5% to 67.3%, while "
    "spending on mobile data reached $1,250 per year in the North region."
)


def essay(words: int) -> str:
    sentence = SENTENCE.split()
    return " ".join(sentence[i % len(sentence)] for i in range(words))


def prepare(root: Path) -> Path:
    """Hub-laid random 256M -> base student at the default budget; returns the base dir."""
    from chartdistill.student.model import StudentParams, build_base_student
    from chartdistill.student.shapes import build_256m, processor_256m, write_hub_folder

    hub = write_hub_folder(build_256m(), processor_256m(), root / "hub")
    return build_base_student(StudentParams(base=str(hub)), root / "base")


def step(base: Path, batch: int, checkpointing: bool) -> dict[str, float]:
    import torch
    from PIL import Image

    from chartdistill.student.training import (
        TrainParams,
        load_trainable,
        make_collator,
        peak_rss_mib,
    )

    torch.manual_seed(0)
    params = TrainParams(gradient_checkpointing=checkpointing, bf16=False)
    model, processor = load_trainable(base, params)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    loaded = peak_rss_mib()
    rows = [
        {"id": f"c{i}", "image": Image.new("RGB", (448, 336), "white"), "text": essay(ESSAY_WORDS)}
        for i in range(batch)
    ]
    inputs = make_collator(processor, "Write an IELTS Academic Task 1 essay about this chart.")(
        rows
    )
    began = time.perf_counter()
    loss = model(**inputs).loss
    loss.backward()
    seconds = time.perf_counter() - began
    return {
        "batch": batch,
        "gradient_checkpointing": checkpointing,
        "tokens_per_sample": int(inputs["input_ids"].shape[1]),
        "tiles_per_sample": int(inputs["pixel_values"].shape[1]),
        "rss_after_load_mib": loaded,
        "peak_rss_mib": peak_rss_mib(),
        "step_s": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=3, metavar=("BASE", "BATCH", "CKPT"))
    args = parser.parse_args()
    if args.child:
        base, batch, ckpt = args.child
        print(json.dumps(step(Path(base), int(batch), ckpt == "1")))
        return
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        base = prepare(Path(tmp))
        results = []
        for batch, ckpt in CONFIGS:
            cmd = [sys.executable, "-m", "bench.real_student_memory", "--child", str(base)]
            out = subprocess.run(
                [*cmd, str(batch), "1" if ckpt else "0"], capture_output=True, text=True, check=True
            ).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    by = {(r["batch"], r["gradient_checkpointing"]): r for r in results}
    per_sample = by[(2, False)]["peak_rss_mib"] - by[(1, False)]["peak_rss_mib"]
    info = machine()
    print(
        f"CPU: {info['cpu']} (flags {info['flags']}), {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; "
        f"fp32; peak RSS per extra sample (batch 2 - batch 1): {per_sample:.0f} MiB"
    )


if __name__ == "__main__":
    main()
