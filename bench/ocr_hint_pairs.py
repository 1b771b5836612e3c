"""Whether the student's OCR hint puts each printed value beside its own label:
`python -m bench.ocr_hint_pairs [PROJECT_DIR]`.

Reads the charts and the ocr stage's output of a project (default: this one, after `dvc repro
ocr`) and, for each hint layout, counts per chart type the values the hint shows as
`Label: value, ...` items: beside the label of the row that holds the value (right), beside
another row's label (wrong), or beside a label OCR misread so that it names no row (misread).
Values the hint does not pair with a label are not counted; `reading_order` pairs none.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from chartdistill.config import PARAMS_FILE, load_paths, load_section
from chartdistill.data.records import ChartRecord, load_charts
from chartdistill.ocr import OcrParams, load_ocr, words
from chartdistill.ocr_hint import number_of, ocr_hint

LAYOUTS = ("reading_order", "paired")
OUTCOMES = ("right", "wrong", "misread")


def paired_values(hint: str) -> list[tuple[str, float]]:
    """(label, value) for every value the hint shows in a `Label: v1, v2` item."""
    found = []
    for item in hint.split(" | "):
        label, sep, values = item.partition(": ")
        if not sep or label == "axis":
            continue
        numbers = [number_of(value) for value in values.split(", ")]
        if all(number is not None for number in numbers):  # not a title's "X: breakdown by Y"
            found += [(label, number) for number in numbers if number is not None]
    return found


def outcome(rows: dict[tuple[str, ...], list[float | None]], label: str, value: float) -> str:
    """right / wrong / misread for one value beside `label`, by the chart's rows (label words)."""
    cells = rows.get(tuple(words(label)))
    if cells is None:
        return "misread"
    close = any(v is not None and abs(v - value) <= 0.01 * max(1.0, abs(v)) for v in cells)
    return "right" if close else "wrong"


def label_rows(chart: ChartRecord) -> dict[tuple[str, ...], list[float | None]]:
    return {tuple(words(str(row[0]))): list(row[1:]) for row in chart.rows}


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    paths = load_paths(root / PARAMS_FILE.name)
    max_chars = load_section("ocr", OcrParams, root / PARAMS_FILE.name).hint_max_chars
    charts = load_charts(root / paths.charts / "charts.jsonl")
    records = load_ocr(root / paths.ocr / "ocr.jsonl")
    print(f"{len(charts)} charts of {root}, hints of at most {max_chars} characters")
    print("| layout | chart type | charts | " + " | ".join(OUTCOMES) + " |")
    print("|---|---|---|" + "---|" * len(OUTCOMES))
    for layout in LAYOUTS:
        counts: Counter[tuple[str, str]] = Counter()
        per_type = Counter(chart.chart_type for chart in charts)
        for chart in charts:
            hint = ocr_hint(records.get(chart.id), max_chars, layout)
            rows = label_rows(chart)
            for label, value in paired_values(hint):
                counts[(chart.chart_type, outcome(rows, label, value))] += 1
        for chart_type in sorted(per_type):
            cells = " | ".join(str(counts[(chart_type, o)]) for o in OUTCOMES)
            print(f"| {layout} | {chart_type} | {per_type[chart_type]} | {cells} |")


if __name__ == "__main__":
    main()
