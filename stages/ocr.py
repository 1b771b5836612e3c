"""Stage `ocr`: the text in every chart image (cached per image), and the image/table check."""

from __future__ import annotations

import logging

from chartdistill.config import load_paths, load_section
from chartdistill.data.records import load_charts, save_records
from chartdistill.io import write_json
from chartdistill.ocr import OcrParams, run_ocr
from stages.common import run, setup

log = logging.getLogger("stages.ocr")


def main() -> None:
    setup()
    paths = load_paths()
    params = load_section("ocr", OcrParams)
    charts = load_charts(paths.charts / "charts.jsonl")
    records, rejects, metrics = run_ocr(charts, paths.charts, paths.ocr_cache, params)
    save_records(paths.ocr / "ocr.jsonl", records)
    save_records(paths.ocr / "rejects.jsonl", rejects)
    write_json(paths.metrics / "ocr.json", metrics)
    log.info(
        "ocr: %d charts (%d read fresh, %.2f s each), %d rejected by the image/table check",
        metrics["charts"],
        metrics["fresh"],
        metrics["seconds_per_fresh_chart"] or 0.0,
        metrics["rejected"],
    )


if __name__ == "__main__":
    run(main)
