"""Numbers in essay text: extraction, and grounding against a chart's data table.

A mention keeps both readings of a scaled figure ("3.2 million" is 3.2 and 3,200,000), so it
matches a table that holds 3.2 in a column "in millions" as well as one that holds 3200000.
A written figure matches a table value within a relative tolerance, or when it is that value
rounded to the precision it is written with (12.46 written as "12.5" or "12"; 1,234 written as
"1,200"; 1.23 million written as "1.2 million").

Pass essay *body* text (no section marker lines): "Key features, paragraph 1:" holds a 1.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import combinations

from chartdistill.data.records import ChartRecord

_CURRENCIES = "$£€¥"
_MINUS = "-−"
_YEAR_RANGE = (1800, 2100)

# Digits with optional thousands separators and decimals; never glued to a letter or digit
# before it ("Q3", "CO2", "H1" are names, not quantities).
_CORE = re.compile(r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")
_PERCENT = re.compile(r"\s?%|\s+per\s?cent\b|\s+percentage\s+points?\b", re.IGNORECASE)
_SCALE_WORD = re.compile(r"\s*(thousand|million|billion|trillion)s?\b", re.IGNORECASE)
_SCALE_ABBR = re.compile(r"(k|m|mn|bn|tn)\b", re.IGNORECASE)
_ORDINAL = re.compile(r"(?:st|nd|rd|th)\b", re.IGNORECASE)
_DECADE = re.compile(r"['’]?s\b")
_RANGE_GAP = re.compile(r"\s*[-–—]\s*|\s+to\s+", re.IGNORECASE)
_GLUED_WORD = re.compile(r"[A-Za-z][-‑]$")

_SCALES: dict[str, float] = {
    "k": 1e3,
    "thousand": 1e3,
    "m": 1e6,
    "mn": 1e6,
    "million": 1e6,
    "bn": 1e9,
    "billion": 1e9,
    "tn": 1e12,
    "trillion": 1e12,
}
# Words in a title, axis label, unit or column name that say the table values are scaled.
_TABLE_SCALE = re.compile(r"\b(thousand|million|billion|trillion)s?\b|\b(bn|mn)\b", re.IGNORECASE)
_TABLE_PERCENT = re.compile(r"%|\bper\s?cent|\bpercentage", re.IGNORECASE)


@dataclass(frozen=True)
class Mention:
    """One number written in a text.

    `value` is the quantity meant (scale applied: "3.2 million" -> 3200000.0); `literal` is the
    number as written (3.2); `precision` is the step of its last written digit in literal
    units (0.1 for "3.2", 100 for "1,200", 1 for "2,000" or "7").
    """

    value: float
    text: str
    is_percent: bool
    span: tuple[int, int]
    literal: float
    scale: float = 1.0
    precision: float = 1.0
    currency: str = ""
    is_year: bool = False

    def readings(self) -> tuple[tuple[float, float], ...]:
        """(number, rounding step) pairs this mention may stand for: literal, and scaled."""
        if self.scale == 1.0:
            return ((self.literal, self.precision),)
        return ((self.literal, self.precision), (self.value, self.precision * self.scale))


@dataclass
class Grounding:
    """How many of a text's value mentions the chart's table supports."""

    mentioned: int
    grounded: int
    fraction: float | None
    ungrounded: list[str]
    labels: list[str] = field(default_factory=list)  # mentions read as labels or dates


def extract_numbers(text: str) -> list[Mention]:
    """Every number written in `text`, in order (ordinals, "Q3"-style names and "'20" skipped).

    Ranges ("10-15%", "from 2 to 3 million") give two mentions; the first takes the second's
    percent sign or scale when it has none of its own.
    """
    mentions = [m for m in (_read(text, match) for match in _CORE.finditer(text)) if m]
    return _share_range_units(text, mentions)


def _read(text: str, match: re.Match[str]) -> Mention | None:
    digits = match.group()
    start, end = match.span()
    before = text[:start]
    if before.endswith(("'", "’")) or _GLUED_WORD.search(before):
        return None
    currency, start = _currency_before(text, start)
    negative = _minus_before(text, start)
    if negative:
        start -= 1
        if not currency:
            currency, start = _currency_before(text, start)
    rest = text[end:]
    if _ORDINAL.match(rest):
        return None
    literal = float(digits.replace(",", ""))
    if negative:
        literal = -literal
    plain_year = "," not in digits and "." not in digits and len(digits) == 4
    is_year_number = plain_year and _YEAR_RANGE[0] <= literal <= _YEAR_RANGE[1]
    decade = _DECADE.match(rest)
    if decade:
        if not (is_year_number and not currency):
            return None  # "their 20s": an age band, not a quantity
        end += decade.end()
        return Mention(literal, text[start:end], False, (start, end), literal, is_year=True)
    is_percent, scale = False, 1.0
    if pct := _PERCENT.match(rest):
        is_percent = True
        end += pct.end()
    elif word := _SCALE_WORD.match(rest):
        scale = _SCALES[word.group(1).lower()]
        end += word.end()
    elif abbr := _SCALE_ABBR.match(rest):
        scale = _SCALES[abbr.group(1).lower()]
        end += abbr.end()
    is_year = is_year_number and not (is_percent or currency or scale != 1.0)
    return Mention(
        value=literal * scale,
        text=text[start:end],
        is_percent=is_percent,
        span=(start, end),
        literal=literal,
        scale=scale,
        precision=_precision(digits),
        currency=currency,
        is_year=is_year,
    )


def _currency_before(text: str, start: int) -> tuple[str, int]:
    if start > 0 and text[start - 1] in _CURRENCIES:
        return text[start - 1], start - 1
    return "", start


def _minus_before(text: str, start: int) -> bool:
    """A minus sign glued to the number, not the dash of a range such as "10-15" or "10 -15"."""
    if start == 0 or text[start - 1] not in _MINUS:
        return False
    if start >= 2 and not (text[start - 2].isspace() or text[start - 2] in "([" + _CURRENCIES):
        return False
    previous = text[: start - 1].rstrip()
    return not previous or previous[-1] not in "0123456789%"


def _precision(digits: str) -> float:
    """Step of the last written digit: "12.5" -> 0.1; "1,200" -> 100; "2,000" and "7" -> 1.

    Trailing zeros count as rounding only when two or more significant digits precede them,
    so "100" or "2,000" stay exact while "1,200" may stand for 1,234.
    """
    if "." in digits:
        return 10.0 ** -len(digits.split(".", 1)[1])
    plain = digits.replace(",", "").lstrip("0") or "0"
    zeros = len(plain) - len(plain.rstrip("0"))
    significant = len(plain) - zeros
    return 10.0**zeros if zeros and significant >= 2 else 1.0


def _share_range_units(text: str, mentions: list[Mention]) -> list[Mention]:
    out = list(mentions)
    for i in range(len(out) - 2, -1, -1):
        first, second = out[i], out[i + 1]
        gap = text[first.span[1] : second.span[0]]
        if not _RANGE_GAP.fullmatch(gap) or first.is_year:
            continue
        if first.is_percent or first.scale != 1.0 or first.currency:
            continue
        out[i] = replace(
            first,
            is_percent=second.is_percent,
            scale=second.scale,
            value=first.literal * second.scale,
            currency=second.currency,
        )
    return out


def close_to(written: float, step: float, target: float, tolerance: float) -> bool:
    """True when `written` is `target` within relative `tolerance`, or `target` rounded to `step`.

    Signs are ignored: "a loss of 5" may describe -5 in the table.
    """
    a, b = abs(written), abs(target)
    return abs(a - b) <= max(tolerance * b, step / 2) + 1e-9 * max(1.0, b)


def _window(written: float, step: float, tolerance: float) -> tuple[float, float]:
    """Bounds on |target| outside which close_to() is certainly False."""
    a = abs(written)
    low = min(a - step / 2, a / (1 + tolerance))
    high = a + step / 2 if tolerance >= 1 else max(a + step / 2, a / (1 - tolerance))
    slack = 1e-9 * max(1.0, high)
    return low - slack, high + slack


def _any_close(sorted_abs: list[float], written: float, step: float, tolerance: float) -> bool:
    low, high = _window(written, step, tolerance)
    i = bisect.bisect_left(sorted_abs, low)
    while i < len(sorted_abs) and sorted_abs[i] <= high:
        if close_to(written, step, sorted_abs[i], tolerance):
            return True
        i += 1
    return False


def _sorted_abs(values: Iterable[float]) -> list[float]:
    return sorted({round(abs(v), 9) for v in values})


@dataclass(frozen=True)
class ChartNumbers:
    """A chart's table prepared for grounding: values, simple derived values, label numbers."""

    values: list[float]
    scale: float
    percent_table: bool
    fraction_table: bool
    label_numbers: frozenset[float]
    label_patterns: tuple[re.Pattern[str], ...]
    direct: list[float]
    derived: list[float]
    shares: list[float]
    as_percent: list[float]

    @classmethod
    def from_chart(cls, chart: ChartRecord) -> ChartNumbers:
        descriptors = [chart.title, chart.x_label, chart.y_label, chart.unit, *chart.columns]
        described = " ".join(descriptors)
        scale = _table_scale(described)
        values = chart.values()
        percent_table = bool(_TABLE_PERCENT.search(described))
        fraction_table = not percent_table and all(0 <= v <= 1 for v in values)
        names = [*chart.columns, *(str(row[0]) for row in chart.rows)]
        labels = [*descriptors, *names]
        label_numbers = frozenset(m.literal for text in labels for m in extract_numbers(text))
        numbered = sorted({n.strip() for n in names if any(ch.isdigit() for ch in n)}, key=len)
        diffs = list(_differences(chart))
        return cls(
            values=values,
            scale=scale,
            percent_table=percent_table,
            fraction_table=fraction_table,
            label_numbers=label_numbers,
            label_patterns=tuple(_label_pattern(name) for name in reversed(numbered)),
            direct=_sorted_abs(_scaled(values, scale)),
            derived=_sorted_abs(_scaled(diffs, scale)),
            shares=[] if percent_table else _sorted_abs(_shares(chart)),
            as_percent=_sorted_abs(v * 100 for v in values) if fraction_table else [],
        )

    def split(self, text: str, tolerance: float) -> tuple[list[Mention], list[Mention]]:
        """(value mentions, label mentions) in `text`.

        A label is a number inside a row or column name written out ("18-24", "Q3 2020",
        "2010"), or a bare number found in a name, title or axis label that is not itself a
        table value ("the top 5", "in 2020"): "fell to 24 hours" stays a value when 24 is one.
        """
        spans = [m.span() for p in self.label_patterns for m in p.finditer(text)]
        values: list[Mention] = []
        labels: list[Mention] = []
        for mention in extract_numbers(text):
            start, end = mention.span
            inside = any(a <= start and end <= b for a, b in spans)
            plain = not (mention.is_percent or mention.currency or mention.scale != 1.0)
            named = plain and mention.literal in self.label_numbers
            if inside or (named and not self.is_value(mention, tolerance)):
                labels.append(mention)
            else:
                values.append(mention)
        return values, labels

    def is_value(self, mention: Mention, tolerance: float) -> bool:
        """The mention matches a table value itself (no derived values)."""
        return any(_any_close(self.direct, w, s, tolerance) for w, s in mention.readings())

    def grounds(self, mention: Mention, tolerance: float) -> bool:
        """The mention matches a table value, a difference of two values, or a share (for %)."""
        pools = [self.direct, self.derived]
        if mention.is_percent:
            pools += [self.as_percent, self.shares]
        return any(
            _any_close(pool, written, step, tolerance)
            for written, step in mention.readings()
            for pool in pools
        )

    def mentions_value(self, mention: Mention, value: float, tolerance: float) -> bool:
        """The mention states this one table value (scaled or, for %, as a percentage)."""
        targets = [value]
        if self.scale != 1.0:
            targets.append(value * self.scale)
        if mention.is_percent and self.fraction_table:
            targets.append(value * 100)
        return any(
            close_to(written, step, target, tolerance)
            for written, step in mention.readings()
            for target in targets
        )


def _table_scale(described: str) -> float:
    match = _TABLE_SCALE.search(described)
    if not match:
        return 1.0
    return _SCALES[(match.group(1) or match.group(2)).lower()]


def _scaled(values: list[float], scale: float) -> list[float]:
    return values if scale == 1.0 else [*values, *(v * scale for v in values)]


def _differences(chart: ChartRecord) -> Iterator[float]:
    """Differences between two values of one series, or of two series in one row."""
    width = len(chart.columns)
    columns = [[row[c] for row in chart.rows if row[c] is not None] for c in range(1, width)]
    rows = [[v for v in row[1:] if v is not None] for row in chart.rows]
    for group in (*columns, *rows):
        for a, b in combinations(group, 2):
            if a != b:
                yield float(a) - float(b)


def _shares(chart: ChartRecord) -> Iterator[float]:
    """Each value as a percentage of its series total (pie slices given as raw counts)."""
    for c in range(1, len(chart.columns)):
        series = [float(row[c]) for row in chart.rows if row[c] is not None]
        total = sum(series)
        if total > 0 and all(v >= 0 for v in series):
            yield from (100 * v / total for v in series)


def _label_pattern(name: str) -> re.Pattern[str]:
    words = r"\s+".join(re.escape(part) for part in name.split())
    return re.compile(rf"(?<![\w.]){words}(?!\w)", re.IGNORECASE)


def value_mentions(text: str, chart: ChartRecord, tolerance: float = 0.0) -> list[Mention]:
    """The mentions in `text` that are not row, column or chart labels."""
    return ChartNumbers.from_chart(chart).split(text, tolerance)[0]


def ground_numbers(text: str, chart: ChartRecord, tolerance: float) -> Grounding:
    """Count the value mentions in `text` and those the chart's table supports.

    Label numbers (a year that is a row label, "18-24" as an age band, "10" in the title)
    are not values (see ChartNumbers.split). A year-like number (1800-2100, no unit) that is
    neither a label nor a table value is read as a date and left out too.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    table = ChartNumbers.from_chart(chart)
    values, label_mentions = table.split(text, tolerance)
    grounded, ungrounded, labels = 0, [], [m.text for m in label_mentions]
    for mention in values:
        ok = table.grounds(mention, tolerance)
        if ok:
            grounded += 1
        elif mention.is_year:
            labels.append(mention.text)
        else:
            ungrounded.append(mention.text)
    mentioned = grounded + len(ungrounded)
    fraction = grounded / mentioned if mentioned else None
    return Grounding(mentioned, grounded, fraction, ungrounded, labels)
