"""Stage `train@<variant>`: LoRA fine-tuning of the base student on one dataset variant."""

from __future__ import annotations

import os
import sys

from chartdistill.config import load_paths, load_section
from chartdistill.essay.sections import VARIANTS
from chartdistill.io import write_csv, write_json
from chartdistill.prompts.student import StudentPrompt
from chartdistill.student.model import StudentParams
from chartdistill.student.training import TrainParams, train_variant
from stages.common import run, setup


def main() -> None:
    setup()
    variant = sys.argv[1] if len(sys.argv) > 1 else ""
    if variant not in VARIANTS:
        raise SystemExit(f"train: unknown variant '{variant}' (expected {', '.join(VARIANTS)})")
    paths = load_paths()
    params = load_section("train", TrainParams)
    metrics = train_variant(
        variant,
        dataset_dir=paths.datasets / variant,
        base_dir=paths.base_model,
        out_dir=paths.models / variant,
        checkpoint_dir=paths.checkpoints / variant,
        params=params,
        prompt=StudentPrompt(paths.prompts, load_section("student", StudentParams).ocr_hint),
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under `accelerate launch` only the main process writes the outputs
    history = metrics.pop("history")
    write_json(paths.metrics / f"train_{variant}.json", metrics)
    fields = ("step", "loss", "eval_loss")
    rows = ({k: row.get(k) for k in fields} for row in history)
    write_csv(paths.plots / f"train_{variant}.csv", rows, fields)


if __name__ == "__main__":
    run(main)
