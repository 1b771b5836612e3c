"""Stage `charts`: chart images + ground-truth tables (synthetic or Chart-to-text)."""

from __future__ import annotations

import logging
import shutil
from collections import Counter

from chartdistill.config import load_paths, load_section
from chartdistill.data.chart2text import import_chart2text
from chartdistill.data.records import save_records
from chartdistill.data.synthetic import ChartsParams, generate_synthetic
from chartdistill.io import write_json
from stages.common import run, setup

log = logging.getLogger("stages.charts")


def main() -> None:
    setup()
    paths = load_paths()
    params = load_section("charts", ChartsParams)
    out = paths.charts
    shutil.rmtree(out / "images", ignore_errors=True)
    if params.source == "synthetic":
        charts, rejects = generate_synthetic(params, out)
    else:
        charts, rejects = import_chart2text(params.chart2text, out)
    save_records(out / "charts.jsonl", charts)
    save_records(out / "rejects.jsonl", rejects)
    write_json(
        paths.metrics / "charts.json",
        {
            "charts": len(charts),
            "rejected": len(rejects),
            "per_type": dict(sorted(Counter(c.chart_type for c in charts).items())),
            "rejects_by_reason": dict(sorted(Counter(r.reason for r in rejects).items())),
        },
    )
    if not charts:
        raise SystemExit(
            f"charts: no usable chart from source '{params.source}' "
            f"({len(rejects)} rejected, reasons in {out / 'rejects.jsonl'})"
        )
    log.info("%d charts written to %s, %d rejected", len(charts), out, len(rejects))


if __name__ == "__main__":
    run(main)
