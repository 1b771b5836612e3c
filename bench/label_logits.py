"""LoRA training steps with logits at every position against logits only where a token is
learned (the collator's `logits_to_keep` mask and `shift_labels`, what training ships).

    .venv/bin/python -m bench.label_logits [VARIANT]

Run it in a project where `dvc repro datasets base_student` has run (default structured): it
reads models/base, the variant's train split and params.yaml, as the train stage does. One step
(forward and backward, batch train.per_device_train_batch_size) on each batch of the train split,
both ways per batch in one process, in alternating order, so a drifting machine slows both
alike; once in fp32 and once under bf16 autocast. Prints the seconds of each, their ratio and
the largest difference between the two losses of a batch.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from bench.student_step import table
from bench.suite import machine

KEPT_ONLY = ("logits_to_keep", "shift_labels")


def step_seconds(model: Any, batch: dict[str, Any], bf16: bool) -> tuple[float, float]:
    """(seconds, loss) of one forward and backward pass."""
    import torch

    began = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    loss.backward()
    model.zero_grad()
    return time.perf_counter() - began, loss.item()


def compare(model: Any, batches: list[dict[str, Any]], bf16: bool) -> dict[str, Any]:
    every = [{k: v for k, v in batch.items() if k not in KEPT_ONLY} for batch in batches]
    step_seconds(model, batches[0], bf16)  # warm-up
    seconds = {"every": 0.0, "kept": 0.0}
    largest = 0.0
    for i, (kept, full) in enumerate(zip(batches, every, strict=True)):
        cases = [("every", full), ("kept", kept)]
        losses = {}
        for name, batch in cases if i % 2 == 0 else cases[::-1]:
            spent, losses[name] = step_seconds(model, batch, bf16)
            seconds[name] += spent
        largest = max(largest, abs(losses["every"] - losses["kept"]))
    return {
        "autocast": "bf16" if bf16 else "fp32",
        "batches": len(batches),
        "every position s": round(seconds["every"], 1),
        "label positions s": round(seconds["kept"], 1),
        "ratio": round(seconds["kept"] / seconds["every"], 3),
        "largest loss difference": f"{largest:.1e}",
    }


def main() -> None:
    from chartdistill.config import load_paths, load_section
    from chartdistill.prompts.student import StudentPrompt
    from chartdistill.student.model import StudentParams
    from chartdistill.student.training import (
        TrainParams,
        load_splits,
        load_trainable,
        make_collator,
    )

    logging.basicConfig(level=logging.WARNING)
    variant = sys.argv[1] if len(sys.argv) > 1 else "structured"
    paths = load_paths()
    params = load_section("train", TrainParams)
    prompt = StudentPrompt(paths.prompts, load_section("student", StudentParams).ocr_hint)
    model, processor = load_trainable(paths.base_model, params)
    model.train()
    rows = list(load_splits(paths.datasets / variant)["train"])
    size = params.per_device_train_batch_size
    collate = make_collator(processor, prompt, params.max_length)
    batches = [collate(rows[i : i + size]) for i in range(0, len(rows), size)]
    print(machine())
    print(table([compare(model, batches, bf16) for bf16 in (False, True)]))


if __name__ == "__main__":
    main()
