"""Benchmark the embedded student: LoRA step time + peak RAM (fp32 vs bf16 autocast), training
samples/s, and batched vs batch-1 generation tokens/s.

Run: ``.venv/bin/python -m bench.student_step`` (builds the embedded student into a temp folder
unless ``models/base`` already holds one). Each measurement runs in a fresh process so that its
peak RSS is its own. The student's instruction is ``prompts/student.md`` when present, else the
chart title.
"""

from __future__ import annotations

import io
import logging
import random
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from chartdistill.config import PathsParams, load_paths

log = logging.getLogger(__name__)

REGIONS = ["North", "South", "East", "West", "Central"]
STEPS = 3
GEN_ITEMS = 8  # one batch at the default predict.generation.batch_size
GEN_TOKENS = 64


def chart(seed: int) -> tuple[Any, str, str]:
    """A 448x336 matplotlib bar chart, its title and a ~170-word essay built from its data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    rng = random.Random(seed)
    values = [rng.randint(10, 90) for _ in REGIONS]
    title = f"Sales by region in {2010 + seed} (thousand units)"
    fig, ax = plt.subplots(figsize=(4.48, 3.36), dpi=100)
    ax.bar(REGIONS, values, color="steelblue")
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("thousand units")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    ranked = sorted(zip(values, REGIONS, strict=True), reverse=True)
    sentences = [f"The bar chart shows sales in five regions in {2010 + seed}."]
    sentences += [
        f"{region} recorded {value} thousand units, which placed it number {i + 1} of five."
        for i, (value, region) in enumerate(ranked)
    ]
    sentences += [
        f"The gap between {ranked[0][1]} and {ranked[-1][1]} was {ranked[0][0] - ranked[-1][0]} "
        "thousand units, a wide difference across the regions that were compared in the chart."
    ] * 3
    sentences.append(f"Overall, {ranked[0][1]} led while {ranked[-1][1]} sold the least.")
    return image, title, " ".join(sentences)


def instruction(title: str) -> str:
    path = Path("prompts/student.md")
    return path.read_text(encoding="utf-8").strip() if path.exists() else title


def base_dir(tmp: Path) -> Path:
    try:
        paths: PathsParams | None = load_paths()
    except ValueError:
        paths = None
    if paths is not None and (paths.base_model / "config.json").exists():
        return paths.base_model
    from chartdistill.student.model import StudentParams, build_base_student

    return build_base_student(StudentParams(), tmp / "base")


def step_case(base: str, bf16: bool) -> dict[str, Any]:
    """Mean LoRA step (forward + backward + AdamW) after a warm-up step, in a fresh process."""
    import torch

    from chartdistill.student.training import (
        TrainParams,
        load_trainable,
        make_collator,
        peak_rss_mib,
    )

    params = TrainParams(report_to=["none"])
    model, processor = load_trainable(Path(base), params)
    model.train()
    image, title, essay = chart(0)
    rows = [{"id": "b0", "image": image, "text": essay}]
    batch = make_collator(processor, instruction(title), params.max_length)(rows)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for _ in range(STEPS + 1):
        began = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - began)
    trainable, total = model.get_nb_trainable_parameters()
    return {
        "case": f"LoRA step {'bf16 autocast' if bf16 else 'fp32'}",
        "seq_len": int(batch["input_ids"].shape[1]),
        "step_s": round(statistics.mean(times[1:]), 2),
        "peak_rss_mib": peak_rss_mib(),
        "trainable": trainable,
        "total": total,
    }


def train_case(base: str, tmp: str) -> dict[str, Any]:
    """train_variant for 4 steps of batch 2 (bf16 auto) on 12 charts; samples/s from the Trainer."""
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    from chartdistill.student.training import TrainParams, train_variant

    data = Path(tmp) / "dataset"
    data.mkdir(parents=True, exist_ok=True)
    features = Features(
        {
            "id": Value("string"),
            "chart_type": Value("string"),
            "title": Value("string"),
            "image": ImageFeature(),
            "text": Value("string"),
        }
    )
    charts = [chart(seed) for seed in range(12)]
    for split, part in (("train", charts[:8]), ("validation", charts[8:10]), ("test", charts[10:])):
        rows = {
            "id": [f"b{i}" for i in range(len(part))],
            "chart_type": ["bar"] * len(part),
            "title": [title for _, title, _ in part],
            "image": [image for image, _, _ in part],
            "text": [essay for _, _, essay in part],
        }
        Dataset.from_dict(rows, features=features).to_parquet(str(data / f"{split}.parquet"))
    params = TrainParams(
        max_steps=4,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        eval_steps=4,
        save_steps=4,
        logging_steps=1,
        report_to=["none"],
    )
    metrics = train_variant(
        "bench",
        data,
        Path(base),
        Path(tmp) / "adapter",
        Path(tmp) / "ckpt",
        params,
        instruction(charts[0][1]),
    )
    return {
        "case": "train_variant 4 steps x 2 samples",
        "samples_per_s": round(metrics["train_samples_per_second"], 3),
        "peak_rss_mib": metrics["peak_rss_mib"],
        "eval_loss": round(metrics["eval_loss"], 3),
    }


def generate_case(base: str, batch_size: int) -> dict[str, Any]:
    """Greedy generation (dtype auto: what this machine runs natively) of GEN_TOKENS new tokens
    for each of GEN_ITEMS charts at a batch size."""
    from chartdistill.device import resolve_dtype_name
    from chartdistill.student.generation import (
        GenerationParams,
        generate_essays,
        load_for_inference,
    )
    from chartdistill.student.training import peak_rss_mib

    dtype = resolve_dtype_name("auto")
    model, processor = load_for_inference(Path(base), None, dtype)
    # The untrained student may end its turn at once (0 tokens): time a fixed length instead.
    model.generation_config.min_new_tokens = GEN_TOKENS
    charts = [chart(seed) for seed in range(GEN_ITEMS)]
    params = GenerationParams(
        max_new_tokens=GEN_TOKENS, batch_size=batch_size, repetition_penalty=1.1
    )
    images = [image for image, _, _ in charts]
    prompts = [instruction(title) for _, title, _ in charts]
    generate_essays(model, processor, images[:1], prompts[:1], params)  # warm-up
    began = time.perf_counter()
    results = generate_essays(model, processor, images, prompts, params)
    seconds = time.perf_counter() - began
    tokens = GEN_TOKENS * len(results)
    return {
        "case": f"generate {dtype} batch {batch_size}",
        "tokens": tokens,
        "seconds": round(seconds, 1),
        "tokens_per_s": round(tokens / seconds, 1),
        "peak_rss_mib": peak_rss_mib(),
    }


def run_isolated(fn: Any, *args: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def table(rows: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    widths = {k: max(len(k), *(len(str(row.get(k, ""))) for row in rows)) for k in keys}
    lines = [" | ".join(k.ljust(widths[k]) for k in keys)]
    lines.append("-+-".join("-" * widths[k] for k in keys))
    lines += [" | ".join(str(row.get(k, "")).ljust(widths[k]) for k in keys) for row in rows]
    return "\n".join(lines)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="student_bench_") as tmp:
        base = str(base_dir(Path(tmp)))
        cases = [
            (step_case, base, False),
            (step_case, base, True),
            (train_case, base, tmp),
            (generate_case, base, 1),
            (generate_case, base, GEN_ITEMS),
        ]
        rows = []
        for fn, *args in cases:
            rows.append(run_isolated(fn, *args))
            log.info("%s", rows[-1])
    print(table(rows))  # noqa: T201 - a benchmark's report is its stdout


if __name__ == "__main__":
    main()
