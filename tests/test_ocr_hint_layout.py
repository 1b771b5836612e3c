"""The student's OCR hint: reading order, and each printed value beside its label (paired)."""

from __future__ import annotations

from chartdistill.ocr import OcrLine, OcrRecord
from chartdistill.ocr_hint import ocr_hint, paired_order, reading_order


def line(text: str, x: float, y: float, w: float = 30, h: float = 14) -> OcrLine:
    return OcrLine(text=text, score=0.99, box=[[x, y], [x + w, y], [x + w, y + h], [x, y + h]])


def ticks(values: list[str], top: float = 40, gap: float = 50) -> list[OcrLine]:
    """A value axis: right-aligned numbers at x 26-50, top to bottom."""
    return [line(v, 50 - 8 * len(v), top + i * gap, w=8 * len(v)) for i, v in enumerate(values)]


def test_reading_order_rows_then_columns() -> None:
    lines = [
        line("2010", 100, 300),
        line("Title of the chart", 50, 10, w=300),
        line("2000", 20, 301),
        line("Legend", 300, 40),
        line("25", 5, 42),
    ]
    assert reading_order(lines) == ["Title of the chart", "25", "Legend", "2000", "2010"]


def test_grouped_bars_values_go_to_the_label_below_them_left_to_right() -> None:
    lines = [
        line("Water use in Canada, 2010", 80, 10, w=320),
        *ticks(["400", "300", "200", "100"]),  # "0" unread: the steps still divide evenly
        line("Summer", 380, 36, w=40),
        line("Winter", 380, 50, w=40),
        line("2015", 330, 36),  # a legend entry outside the axis range: not a value
        line("385", 150, 44),  # Laundry, left bar
        line("290", 104, 100),  # Cooking, right bar
        line("196", 175, 150),  # Laundry, right bar
        line("195", 76, 152),  # Cooking, left bar
        line("Cooking", 78, 281, w=44),
        line("Laundry", 150, 281, w=43),
        line("Use", 231, 310),  # the axis title, under the category row
    ]
    assert paired_order(lines) == [
        "Water use in Canada, 2010",
        "axis: 100 to 400",
        "2015",
        "Summer",
        "Winter",
        "Cooking: 195, 290",
        "Laundry: 385, 196",
        "Use",
    ]


def test_line_chart_without_printed_values_keeps_its_years_in_order() -> None:
    lines = [
        line("Paper recycled, 1986-1990", 100, 10, w=280),
        *ticks(["10.5", "10.0", "9.5"]),
        line("1986", 60, 293),
        line("1988", 104, 293),
        line("1990", 146, 293),
        line("Year", 230, 310),
    ]
    assert paired_order(lines) == [
        "Paper recycled, 1986-1990",
        "axis: 9.5 to 10.5",
        "1986",
        "1988",
        "1990",
        "Year",
    ]


def test_pie_shares_go_to_the_nearest_free_label_and_the_title_keeps_its_year() -> None:
    lines = [
        line("Books borrowed: breakdown by genre in Germany,", 0, 10, w=440),
        line("2006", 200, 26),  # the title's second line: no % sign, stays as it is
        line("Children's", 300, 63, w=48),
        line("20%", 255, 113, w=25),
        line("12%", 286, 178, w=25),
        line("Science", 356, 183, w=40),
        line("61%", 140, 200, w=26),
        line("Fiction", 66, 222, w=32),
    ]
    assert paired_order(lines) == [
        "Books borrowed: breakdown by genre in Germany,",
        "2006",
        "Children's: 20%",
        "Science: 12%",
        "Fiction: 61%",
    ]


def test_table_rows_pair_their_label_with_their_numbers() -> None:
    lines = [
        line("International students (thousand), 2008", 20, 10, w=400),
        line("Undergraduate", 150, 50, w=90),
        line("Postgraduate", 280, 50, w=90),
        *(
            item
            for i, (label, a, b) in enumerate([("Japan", "11.5", "81.4"), ("Kenya", "57", "27.5")])
            for item in (
                line(label, 20, 80 + 30 * i),
                line(a, 180, 80 + 30 * i),
                line(b, 310, 80 + 30 * i),
            )
        ),
    ]
    assert paired_order(lines) == [
        "International students (thousand), 2008",
        "Undergraduate",
        "Postgraduate",
        "Japan: 11.5, 81.4",
        "Kenya: 57, 27.5",
    ]


def test_hint_layouts_and_the_cut_at_an_item() -> None:
    record = OcrRecord(
        id="p1",
        image_sha256="x",
        lines=[line("Title here", 0, 0, w=200), line("Fiction", 10, 60), line("61%", 12, 90)],
    )
    assert ocr_hint(record, 600) == "Title here | Fiction: 61%"
    assert ocr_hint(record, 600, "reading_order") == "Title here | Fiction | 61%"
    assert ocr_hint(record, 15) == "Title here"
    assert ocr_hint(None, 600) == ""
    failed = record.model_copy(update={"error": "unreadable"})
    assert ocr_hint(failed, 600) == ""
