"""Stage `export@<variant>`: the variant's LoRA merged into the base, saved and checked."""

from __future__ import annotations

import sys

from chartdistill.config import load_paths, load_section
from chartdistill.data.records import load_charts
from chartdistill.essay.sections import VARIANTS
from chartdistill.essay.text import EssayBounds
from chartdistill.evaluation.metrics import essay_metrics
from chartdistill.io import write_json
from chartdistill.prompts.student import StudentPrompt
from chartdistill.student.export import ExportMismatch, ExportParams, export_variant
from chartdistill.student.model import StudentParams
from chartdistill.student.predict import load_test_split
from stages.common import run, setup


def main() -> None:
    setup()
    variant = sys.argv[1] if len(sys.argv) > 1 else ""
    if variant not in VARIANTS:
        raise SystemExit(f"export: unknown variant '{variant}' (expected {', '.join(VARIANTS)})")
    paths = load_paths()
    params = load_section("export", ExportParams)
    rows = load_test_split(paths.datasets / variant / "test.parquet", params.check_charts)
    charts = {c.id: c for c in load_charts(paths.charts / "charts.jsonl")}
    # Only agreement counts here: the bounds change no figure, and both sides get the same.
    bounds = EssayBounds()
    try:
        metrics = export_variant(
            paths.base_model,
            paths.models / variant,
            paths.exports / variant,
            rows,
            StudentPrompt(paths.prompts, load_section("student", StudentParams).ocr_hint),
            params,
            lambda text, row: essay_metrics(text, charts[row["id"]], None, bounds),
        )
    except ExportMismatch as exc:
        raise SystemExit(f"export: {exc}") from None
    write_json(paths.metrics / f"export_{variant}.json", {"variant": variant, **metrics})


if __name__ == "__main__":
    run(main)
