"""Stage `predict_baseline` / `predict@<variant>`: student essays for the test charts."""

from __future__ import annotations

import logging
import sys

from chartdistill.config import load_paths, load_section
from chartdistill.io import write_jsonl
from chartdistill.prompts.student import StudentPrompt
from chartdistill.student.model import StudentParams
from chartdistill.student.predict import PredictParams, check_model_name, load_test_split, predict
from stages.common import run, setup

log = logging.getLogger("stages.predict")


def main() -> None:
    setup()
    name = check_model_name(sys.argv[1] if len(sys.argv) > 1 else "")
    paths = load_paths()
    params = load_section("predict", PredictParams)
    # Both variants share the split, so the baseline reads the structured test charts.
    variant = "structured" if name == "baseline" else name
    rows = load_test_split(paths.datasets / variant / "test.parquet", params.limit)
    if not rows:
        raise SystemExit(
            f"predict: the {variant} test split is empty; add charts or change the split"
        )
    adapter = None if name == "baseline" else paths.models / name
    prompt = StudentPrompt(paths.prompts, load_section("student", StudentParams).ocr_hint)
    predictions = predict(rows, paths.base_model, adapter, prompt, params, name)
    write_jsonl(paths.predictions / f"{name}.jsonl", predictions)
    log.info("%s: %d essays written", name, len(predictions))


if __name__ == "__main__":
    run(main)
