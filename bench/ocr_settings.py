"""OCR speed and accuracy per detection setting: `python -m bench.ocr_settings [N_PER_TYPE]`.

Renders N synthetic charts per type (value labels on the share params.yaml sets), reads each
with every setting below and reports seconds per chart and the recall of the chart's own text:
title words, category labels, and printed values (bar/line charts with value labels, pie
percentages, table cells). Settings that keep recall and cut seconds are candidates for
params.yaml `ocr.*`. Timings move with machine load: compare rows of one run only.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")

import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from chartdistill.data.records import ChartRecord  # noqa: E402
from chartdistill.data.synthetic import ChartsParams, generate_synthetic  # noqa: E402
from chartdistill.ocr import (  # noqa: E402
    OcrLine,
    OcrParams,
    label_recall,
    make_engine,
    read_lines,
    title_recall,
    words,
)

SETTINGS = {
    "min-736 (rapidocr default)": OcrParams(limit_type="min", limit_side_len=736),
    "min-736 + direction cls": OcrParams(limit_type="min", limit_side_len=736, use_cls=True),
    "max-640": OcrParams(limit_type="max", limit_side_len=640),
    "max-448 (no upscale)": OcrParams(limit_type="max", limit_side_len=448),
}


def value_recall(chart: ChartRecord, lines: list[OcrLine]) -> float | None:
    printed = chart.provenance.get("value_labels") or chart.chart_type in ("pie", "table")
    if not printed:
        return None
    seen = [w for line in lines for w in words(line.text)]
    values = []
    for row in chart.rows:
        for v in row[1:]:
            if v is not None:
                values.append(str(int(v)) if float(v).is_integer() else str(v))
    found = 0
    for value in values:
        if value in seen:
            seen.remove(value)
            found += 1
    return found / len(values)


def main() -> None:
    per_type = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    with tempfile.TemporaryDirectory() as tmp:
        counts = {t: per_type for t in ("bar", "line", "pie", "table")}
        charts, _ = generate_synthetic(
            ChartsParams(seed=1234, counts=counts, test_counts={}), Path(tmp)
        )
        print(f"{len(charts)} charts, 448x336; threads 2; load {os.getloadavg()[0]:.1f}")
        print("| setting | s/chart (median) | title recall | label recall | value recall |")
        print("|---|---|---|---|---|")
        for name, params in SETTINGS.items():
            engine = make_engine(params)
            read_lines(engine, Path(tmp) / charts[0].image)  # warm-up
            secs, titles, labels, values = [], [], [], []
            for chart in charts:
                start = time.perf_counter()
                lines = read_lines(engine, Path(tmp) / chart.image)
                secs.append(time.perf_counter() - start)
                titles.append(title_recall(chart, lines))
                labels.append(label_recall(chart, lines))
                v = value_recall(chart, lines)
                if v is not None:
                    values.append(v)
            print(
                f"| {name} | {statistics.median(secs):.2f} | {statistics.mean(titles):.3f} | "
                f"{statistics.mean(labels):.3f} | {statistics.mean(values):.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
