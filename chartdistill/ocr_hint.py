"""The student's OCR hint: the text read in a chart image, as one line of at most N characters.

Two layouts (param `ocr.hint_layout`):
- `reading_order`: the lines top to bottom, left to right within a row. A bar chart's printed
  values then come sorted by height, mixed with the axis ticks, apart from their labels.
- `paired`: the same lines, with each printed value placed beside the label it belongs to, by
  the boxes' geometry alone (nothing from the chart's table):
  * a chart with a value axis (a column of at least two right-aligned numbers stepping down
    evenly) and a row of category labels under its plot: the ticks become one `axis: low to
    high` item, and each other number inside the plot and within the axis range goes to the
    category label nearest in x (`Cooking: 195, 290`, left to right: the legend's order for
    grouped bars);
  * a table (most numbers sit in a reading row that starts with a text label): each such row
    as one item, `Japan: 11.5, 81.4`;
  * otherwise (a pie): each percentage goes to the nearest free text label (`Science: 12%`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chartdistill.ocr import HintLayout, OcrLine, OcrRecord

_NUMBER = re.compile(r"[-+\u2212]?[$\u00a3\u20ac]?\d[\d,]*(?:\.\d+)?%?")
_ALIGN_PX = 5.0  # right edges of one tick column differ by OCR jitter only
_MIN_TICKS = 2
_MIN_CATEGORIES = 2


@dataclass(frozen=True)
class _Box:
    text: str
    left: float
    top: float
    right: float
    bottom: float
    number: float | None  # the text's value when it is one number (number_of)

    @classmethod
    def of(cls, line: OcrLine) -> _Box:
        xs = [x for x, _ in line.box]
        ys = [y for _, y in line.box]
        text = " ".join(line.text.split())
        return cls(text, min(xs), min(ys), max(xs), max(ys), number_of(text))

    @property
    def x(self) -> float:
        return (self.left + self.right) / 2

    @property
    def y(self) -> float:
        return (self.top + self.bottom) / 2


def number_of(text: str) -> float | None:
    """The value of a text that is one number ("1,200", "$5", "-3.5", "61%"), else None."""
    if not _NUMBER.fullmatch(text.replace(" ", "")):
        return None
    return float(re.sub(r"[^\d.\-]", "", text.replace("\u2212", "-")))


def _reading_rows(boxes: list[_Box]) -> list[list[_Box]]:
    """Rows top to bottom (a box joins the row whose first box it overlaps by half its height),
    each left to right."""
    rows: list[list[_Box]] = []
    for box in sorted(boxes, key=lambda b: b.top):
        first = rows[-1][0] if rows else None
        if first is not None and box.top < first.bottom - 0.5 * max(1.0, first.bottom - first.top):
            rows[-1].append(box)
        else:
            rows.append([box])
    return [sorted(row, key=lambda b: b.left) for row in rows]


def reading_order(lines: list[OcrLine]) -> list[str]:
    """Line texts top to bottom, then left to right within a row (rows: overlapping heights)."""
    return [box.text for row in _reading_rows([_Box.of(line) for line in lines]) for box in row]


def paired_order(lines: list[OcrLine]) -> list[str]:
    """The hint items of the `paired` layout (module docstring), in reading order."""
    boxes = [box for box in (_Box.of(line) for line in lines) if box.text]
    rows = _reading_rows(boxes)
    ticks = _tick_column(boxes)
    categories = _category_row(boxes, ticks) if ticks else []
    if categories:
        values = _axis_values(boxes, ticks, categories)
    elif _is_table(rows):
        values = {id(row[0]): row[1:] for row in rows if _label_then_numbers(row)}
    else:
        values = _nearest_free_labels(boxes, rows)
    return _items(rows, values, ticks if categories else [])


def _tick_column(boxes: list[_Box]) -> list[_Box]:
    """The leftmost column of >= 2 right-aligned numbers stepping down evenly, top to bottom."""
    numbers = sorted((b for b in boxes if b.number is not None), key=lambda b: b.left)
    for anchor in numbers:
        column = sorted(
            (b for b in numbers if abs(b.right - anchor.right) <= _ALIGN_PX), key=lambda b: b.top
        )
        if len(column) >= _MIN_TICKS and _tick_step(_numbers(column)) is not None:
            return column
    return []


def _numbers(boxes: list[_Box]) -> list[float]:
    return [b.number for b in boxes if b.number is not None]


def _tick_step(values: list[float]) -> float | None:
    """The smallest step of values that fall strictly, each step a whole multiple of it (an
    unread tick is allowed); None when they do not step down evenly."""
    steps = [a - b for a, b in zip(values, values[1:], strict=False)]
    if not steps or min(steps) <= 0:
        return None
    unit = min(steps)
    even = all(abs(step / unit - round(step / unit)) < 0.01 for step in steps)
    return unit if even else None


def _category_row(boxes: list[_Box], ticks: list[_Box]) -> list[_Box]:
    """The fullest reading row of >= 2 boxes below the lowest tick's top and right of the ticks."""
    lowest = ticks[-1]
    below = [b for b in boxes if b.top > lowest.top and b.left > lowest.right]
    rows = [row for row in _reading_rows(below) if len(row) >= _MIN_CATEGORIES]
    return max(rows, key=len, default=[])


def _axis_values(
    boxes: list[_Box], ticks: list[_Box], categories: list[_Box]
) -> dict[int, list[_Box]]:
    """Each number printed inside the plot (above the category row, right of the ticks, within
    two tick steps of the axis range), under the category label nearest in x."""
    scale = _numbers(ticks)
    step = _tick_step(scale) or 0.0  # never None: _tick_column checked it
    low, high = scale[-1] - 2 * step, scale[0] + 2 * step
    plot_bottom = min(b.top for b in categories)
    taken = {id(b) for b in (*ticks, *categories)}
    values: dict[int, list[_Box]] = {id(c): [] for c in categories}
    for box in boxes:
        number = box.number
        if (
            number is None
            or id(box) in taken
            or box.left <= ticks[0].right
            or box.bottom > plot_bottom
            or not low <= number <= high
        ):
            continue
        nearest = min(categories, key=lambda c: abs(c.x - box.x))
        values[id(nearest)].append(box)
    return {key: sorted(found, key=lambda b: (b.x, b.y)) for key, found in values.items()}


def _label_then_numbers(row: list[_Box]) -> bool:
    return len(row) > 1 and row[0].number is None and all(b.number is not None for b in row[1:])


def _is_table(rows: list[list[_Box]]) -> bool:
    """Most numbers sit in a reading row of one text label followed by numbers."""
    numbers = sum(1 for row in rows for b in row if b.number is not None)
    in_rows = sum(len(row) - 1 for row in rows if _label_then_numbers(row))
    return numbers > 0 and in_rows >= 0.5 * numbers


def _nearest_free_labels(boxes: list[_Box], rows: list[list[_Box]]) -> dict[int, list[_Box]]:
    """Shares printed apart from their labels (a pie): each number with a % sign beside the
    nearest text label not yet taken, the closest pairs first; the title row takes none."""
    title = {id(b) for b in rows[0]} if rows else set()
    labels = [b for b in boxes if b.number is None and id(b) not in title]
    shares = [b for b in boxes if b.number is not None and b.text.endswith("%")]
    pairs = sorted(
        ((s.x - t.x) ** 2 + (s.y - t.y) ** 2, i, j)
        for i, t in enumerate(labels)
        for j, s in enumerate(shares)
    )
    values: dict[int, list[_Box]] = {}
    placed: set[int] = set()
    for _, i, j in pairs:
        if j not in placed and id(labels[i]) not in values:
            values[id(labels[i])] = [shares[j]]
            placed.add(j)
    return values


def _items(rows: list[list[_Box]], values: dict[int, list[_Box]], ticks: list[_Box]) -> list[str]:
    """Reading order, with each label followed by its values, the values not repeated alone,
    and the ticks as one `axis: low to high` item where the top tick stands."""
    top_tick = ticks[0] if ticks else None
    skipped = {id(v) for found in values.values() for v in found} | {id(t) for t in ticks[1:]}
    items: list[str] = []
    for box in (b for row in rows for b in row):
        if id(box) in skipped:
            continue
        if box is top_tick:
            items.append(f"axis: {ticks[-1].text} to {ticks[0].text}")
        elif values.get(id(box)):
            items.append(f"{box.text}: {', '.join(v.text for v in values[id(box)])}")
        else:
            items.append(box.text)
    return items


def ocr_hint(record: OcrRecord | None, max_chars: int, layout: HintLayout = "paired") -> str:
    """The recognised text as one ` | `-joined line in `layout`, cut at an item boundary."""
    if record is None or record.error is not None:
        return ""
    items = paired_order(record.lines) if layout == "paired" else reading_order(record.lines)
    out: list[str] = []
    size = 0
    for text in items:
        if not text:
            continue
        if size + len(text) + 3 > max_chars:
            break
        out.append(text)
        size += len(text) + 3
    return " | ".join(out)


def ocr_texts(records: dict[str, OcrRecord], max_chars: int, layout: HintLayout) -> dict[str, str]:
    """Each chart's OCR hint (at most max_chars, in `layout`), by chart id."""
    return {chart_id: ocr_hint(record, max_chars, layout) for chart_id, record in records.items()}
