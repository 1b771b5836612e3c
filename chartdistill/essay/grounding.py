"""Numbers in essay text: extraction, and grounding against a chart's data table.

A mention keeps both readings of a scaled figure ("3.2 million" is 3.2 and 3,200,000), so it
matches a table that holds 3.2 in a column "in millions" as well as one that holds 3200000.
A written figure matches a table value within a relative tolerance, or when it is that value
rounded to the precision it is written with (12.46 written as "12.5" or "12"; 1,234 written as
"1,200"; 1.23 million written as "1.2 million").

Two levels of grounding (ground_numbers):
- value level: a figure matches some table value, or a derived figure (difference, ratio, total,
  share) that its sentence states as one ("rose by 12", "three times", "in total", "accounted
  for"); a bare difference of two table values no longer grounds an arbitrary number;
- attribution level: the figure matches the value of a row or series that the same sentence
  names ("Heating 25%" is wrong when Heating is 40% and Cooling 25%), or a derived figure of the
  named rows/series. A figure hedged with "about", "nearly", "over" ... may be off by
  `approx_tolerance`.
`names_subject` checks that an introduction names this chart's subject.

Pass essay *body* text (no section marker lines): "Key features, paragraph 1:" holds a 1.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
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
    """How many of a text's value mentions the chart's table supports, at two levels.

    `grounded`/`fraction`: value level; `attributed`/`attributed_fraction`: attribution level
    (a subset of the value-grounded mentions); `misattributed`: grounded but not attributed.
    """

    mentioned: int
    grounded: int
    fraction: float | None
    ungrounded: list[str]
    labels: list[str] = field(default_factory=list)  # mentions read as labels or dates
    attributed: int = 0
    attributed_fraction: float | None = None
    misattributed: list[str] = field(default_factory=list)


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


# --- sentences, names and cues ---------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_NAME_WORD = re.compile(r"[^\W_]+(?:['’.,\-][^\W_]+)*")
_NAME_STOP = frozenset(
    {
        "a",
        "an",
        "and",
        "the",
        "of",
        "in",
        "on",
        "at",
        "for",
        "to",
        "by",
        "with",
        "from",
        "per",
        "or",
        "vs",
        "versus",
        "total",
        "all",
        "number",
        "amount",
        "share",
        "percentage",
        "proportion",
        "value",
        "values",
    }
)
# Title words that say what kind of figure, not what subject ("Number of ...", "... by year").
_GENERIC = frozenset(
    {
        "chart",
        "graph",
        "table",
        "data",
        "figure",
        "level",
        "rate",
        "average",
        "year",
        "month",
        "week",
        "day",
        "period",
        "selected",
        "different",
        "various",
        "main",
        "between",
        "each",
        "during",
        "compared",
        "comparison",
        "change",
        "trend",
    }
)
_HEDGE = re.compile(
    r"(?:about|around|approximately|approx\.?|roughly|nearly|almost|some|close\s+to|circa|"
    r"just\s+(?:over|under|below|above)|over|under|more\s+than|less\s+than|fewer\s+than|above|"
    r"below|up\s+to|at\s+least|at\s+most|well\s+over|~)\s*[$£€¥]?$",
    re.IGNORECASE,
)
_DIFFERENCE_BEFORE = re.compile(
    r"(?:\bby|\b(?:difference|gap|increase|decrease|rise|fall|drop|decline|growth|gain|loss|"
    r"jump|margin|reduction|surge|lead)\s+of)\s+(?:(?:about|around|approximately|roughly|nearly|"
    r"almost|some|just|over|under|only|a\s+further|another|a\s+mere|exactly)\s+)*[$£€¥]?$",
    re.IGNORECASE,
)
_DIFFERENCE_AFTER = re.compile(
    r"^\s*(?:[a-z]+\s+){0,2}?(?:(?:more|less|fewer|higher|lower|greater|smaller|larger|bigger)"
    r"(?:\s+[a-z]+){0,2}?\s+than\b|ahead\s+of\b|behind\b)",
    re.IGNORECASE,
)
# "an increase of 14.9 million, or 166%": the percentage restates the change as a relative one.
_RELATIVE_BEFORE = re.compile(
    r"\b(?:increase|decrease|rise|fall|drop|decline|growth|gain|loss|reduction|jump)\s+of\s+"
    r"[^,;]{1,40},\s*or\s+(?:about\s+|roughly\s+|nearly\s+|almost\s+|around\s+)?$",
    re.IGNORECASE,
)
_RATIO_AFTER = re.compile(r"^\s*(?:times|-?fold)\b", re.IGNORECASE)
_TOTAL_CUE = re.compile(
    r"\b(?:totals?|total(?:led|ed|ling)|combined|together|altogether|in\s+all|sum|aggregate)\b",
    re.IGNORECASE,
)
_SHARE_CUE = re.compile(
    r"\b(?:share|proportion|percentage|accounted|accounting|accounts?|made\s+up|makes?\s+up|"
    r"comprised?|constitut\w*|of\s+(?:the\s+)?(?:total|all|whole))\b",
    re.IGNORECASE,
)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence: split after . ! ? followed by space, and at newlines."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if text[start : match.start()].strip():
            spans.append((start, match.start()))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def _norm(word: str) -> str:
    word = word.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word


def _word_matches(word: str, term: str) -> bool:
    """A text word names a label term: equal, or both alphabetic and sharing a stem
    ("Japanese" names "Japan", "Italian" names "Italy", "cars" names "car")."""
    if word == term:
        return True
    if not (term.isalpha() and word.isalpha()) or len(term) < 4:
        return False
    stem = max(4, len(term) - 2)
    return len(word) >= stem and word[:stem] == term[:stem]


def name_terms(name: str) -> tuple[str, ...]:
    """The words of a row, series or title that must appear for a text to name it."""
    return tuple(
        _norm(w) for w in _NAME_WORD.findall(name.split("(")[0]) if w.lower() not in _NAME_STOP
    )


def _names(terms: tuple[str, ...], text_words: list[str]) -> bool:
    return bool(terms) and all(any(_word_matches(w, t) for w in text_words) for t in terms)


_WRITTEN_RANGE = re.compile(r"(\d)\s*(?:to|–|—|-)\s*(\d)")
_WRITTEN_RANGE_WORD = re.compile(r"(?<![\w.])(\d+)\s*(?:to|–|—|-)\s*(\d+)(?![\w.])")


@dataclass(frozen=True)
class NameSpan:
    """A row or series name written in a text: characters start..end."""

    start: int
    end: int
    axis: str  # "row" | "series"
    index: int


def _located_words(text: str) -> list[tuple[str, int, int]]:
    """(normalised word, start, end) of the words that can be part of a name, stop words left
    out; a written range "25 to 34" is also the one word "25-34"."""
    found = [
        (_norm(m.group()), m.start(), m.end())
        for m in _NAME_WORD.finditer(text)
        if m.group().lower() not in _NAME_STOP
    ]
    found += [
        (f"{m.group(1)}-{m.group(2)}", m.start(), m.end())
        for m in _WRITTEN_RANGE_WORD.finditer(text)
    ]
    return sorted(found, key=lambda w: (w[1], -w[2]))


def _occurrences(
    terms: tuple[str, ...], words: list[tuple[str, int, int]]
) -> list[tuple[int, int]]:
    """Spans where the terms are written one after another (stop words may sit between)."""
    if not terms:
        return []
    spans = []
    for i, (word, start, end) in enumerate(words):
        if not _word_matches(word, terms[0]):
            continue
        last, j = end, i + 1
        for term in terms[1:]:
            while j < len(words) and words[j][1] < last:
                j += 1
            if j == len(words) or not _word_matches(words[j][0], term):
                break
            last, j = words[j][2], j + 1
        else:
            spans.append((start, last))
    return spans


def _inside(a: NameSpan, b: NameSpan) -> bool:
    """a lies within b and b is longer."""
    return b.start <= a.start and a.end <= b.end and (b.end - b.start) > (a.end - a.start)


def _text_words(text: str) -> list[str]:
    """Normalised words; "aged 25 to 34" also gives "25-34", the way a row label writes it
    (and "in 1986 to 8.7" still gives "1986")."""
    joined = _WRITTEN_RANGE.sub(r"\1-\2", text)
    found = _NAME_WORD.findall(text)
    if joined != text:
        found += _NAME_WORD.findall(joined)
    return [_norm(w) for w in found]


# --- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartNumbers:
    """A chart's table prepared for grounding: the grid of values, row and series names, and
    the label numbers that are not values."""

    values: list[float]
    scale: float
    percent_table: bool
    fraction_table: bool
    label_numbers: frozenset[float]
    label_patterns: tuple[re.Pattern[str], ...]
    direct: list[float]
    as_percent: list[float]
    pie: bool  # every percentage on a pie chart is a share
    grid: tuple[tuple[float | None, ...], ...]  # rows x series
    row_terms: tuple[tuple[str, ...], ...]
    series_terms: tuple[tuple[str, ...], ...]

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
        grid = tuple(tuple(None if v is None else float(v) for v in row[1:]) for row in chart.rows)
        return cls(
            values=values,
            scale=scale,
            percent_table=percent_table,
            fraction_table=fraction_table,
            label_numbers=label_numbers,
            label_patterns=tuple(_label_pattern(name) for name in reversed(numbered)),
            direct=_sorted_abs(_scaled(values, scale)),
            as_percent=_sorted_abs(v * 100 for v in values) if fraction_table else [],
            pie=chart.chart_type == "pie",
            grid=grid,
            row_terms=tuple(name_terms(str(row[0])) for row in chart.rows),
            series_terms=tuple(name_terms(str(c)) for c in chart.columns[1:]),
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
        pools = [self.direct, self.as_percent] if mention.is_percent else [self.direct]
        return any(
            _any_close(pool, w, s, tolerance) for w, s in mention.readings() for pool in pools
        )

    def mentions_value(self, mention: Mention, value: float, tolerance: float) -> bool:
        """The mention states this one table value (scaled or, for %, as a percentage)."""
        return self._states(mention, [value], tolerance)

    def _states(self, mention: Mention, values: Iterable[float], tolerance: float) -> bool:
        """The mention states one of these table-unit values (scaled, or as a percentage)."""
        targets = []
        for value in values:
            targets.append(value)
            if self.scale != 1.0:
                targets.append(value * self.scale)
            if mention.is_percent and self.fraction_table:
                targets.append(value * 100)
        return _states_any(mention, targets, tolerance)

    # -- attribution --------------------------------------------------------------------------

    def name_spans(self, text: str) -> list[NameSpan]:
        """Where the text names a row or a series (series only on multi-series tables), as
        character spans; a name inside a longer one ("History" in "Natural history") is not
        a mention of its own."""
        words = _located_words(text)
        found = [
            NameSpan(start, end, axis, index)
            for axis, labels in self._labels()
            for index, terms in enumerate(labels)
            for start, end in _occurrences(terms, words)
        ]
        return sorted(
            (a for a in found if not any(_inside(a, b) for b in found)),
            key=lambda n: (n.start, n.end),
        )

    def _labels(self) -> list[tuple[str, tuple[tuple[str, ...], ...]]]:
        labels = [("row", self.row_terms)]
        if len(self.series_terms) > 1:
            labels.append(("series", self.series_terms))
        return labels

    def named(self, sentence: str) -> tuple[set[int], set[int]]:
        """(rows, series) the sentence names: in place (name_spans), or with the words of a
        name apart ("pupils aged 11 to 12") unless they are part of a longer name."""
        spans = self.name_spans(sentence)
        placed = {(n.axis, n.index) for n in spans}
        placed_terms = [
            set(terms)
            for axis, labels in self._labels()
            for i, terms in enumerate(labels)
            if (axis, i) in placed
        ]
        text_words = _text_words(sentence)
        out: dict[str, set[int]] = {"row": set(), "series": set()}
        for axis, labels in self._labels():
            for index, terms in enumerate(labels):
                if (
                    (axis, index) in placed
                    or _names(terms, text_words)
                    and not any(set(terms) < other for other in placed_terms)
                ):
                    out[axis].add(index)
        return out["row"], out["series"]

    def named_cells(self, sentence: str) -> list[tuple[int, int]]:
        """Cells (row, series) in a row or a series this sentence names (series names count
        on multi-series tables only: a single series is the chart's measure, not a name)."""
        rows, series = self.named(sentence)
        return [
            (r, c)
            for r, row in enumerate(self.grid)
            for c, value in enumerate(row)
            if value is not None and (r in rows or c in series)
        ]

    def _cell(self, cell: tuple[int, int]) -> float:
        value = self.grid[cell[0]][cell[1]]
        assert value is not None
        return value

    def _totals(self, cells: list[tuple[int, int]]) -> tuple[list[float], list[float]]:
        """(totals, shares in %) over these cells: their sum, the totals of their rows and
        series, and each cell as a share of its series and its row."""
        series_total = {c: _sum(row[c] for row in self.grid) for _, c in cells}
        row_total = {r: _sum(self.grid[r]) for r, _ in cells}
        totals = [*series_total.values(), *row_total.values()]
        if len(cells) > 1:
            totals.append(sum(self._cell(cell) for cell in cells))
        shares = []
        for r, c in cells:
            value = self._cell((r, c))
            for total in (series_total[c], row_total[r]):
                if total > 0 and value >= 0:
                    shares.append(100 * value / total)
        return totals, shares

    def _derived(
        self, mention: Mention, cue: str, cells: list[tuple[int, int]], tolerance: float
    ) -> bool:
        """The mention is the derived figure its cue announces, computed from these cells."""
        if cue == "total":
            totals, shares = self._totals(cells)
            if self._states(mention, totals, tolerance):
                return True
            return (
                mention.is_percent
                and not self.percent_table
                and _states_any(mention, shares, tolerance)
            )
        if cue == "share":
            _, shares = self._totals(cells)
            return not self.percent_table and _states_any(mention, shares, tolerance)
        values = [self._cell(cell) for cell in cells]
        pairs = [(a, b) for a, b in combinations(values, 2) if a != b]
        if cue == "difference":
            if self._states(mention, [abs(a - b) for a, b in pairs], tolerance):
                return True
            changes = [100 * (b - a) / a for x, y in pairs for a, b in ((x, y), (y, x)) if a]
            return mention.is_percent and _states_any(mention, changes, tolerance)
        if cue == "ratio":
            ratios = [max(a, b) / min(a, b) for a, b in pairs if min(a, b) > 0]
            return _states_any(mention, ratios, tolerance)
        return False

    def _series_cells(self, cells: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Every cell of the series and rows these cells lie in (for derived figures)."""
        rows = {r for r, _ in cells}
        series = {c for _, c in cells}
        width = len(self.series_terms)
        out = {(r, c) for r in rows for c in range(width)} | {
            (r, c) for c in series for r in range(len(self.grid))
        }
        return sorted(cell for cell in out if self.grid[cell[0]][cell[1]] is not None)

    def all_cells(self) -> list[tuple[int, int]]:
        return [
            (r, c) for r, row in enumerate(self.grid) for c, v in enumerate(row) if v is not None
        ]


def _sum(values: Iterable[float | None]) -> float:
    return sum(v for v in values if v is not None)


def _states_any(mention: Mention, targets: Iterable[float], tolerance: float) -> bool:
    return any(
        close_to(written, step, target, tolerance)
        for written, step in mention.readings()
        for target in targets
    )


def _cues(sentence: str, mention: Mention, offset: int, pie: bool) -> list[str]:
    """The derived figures the sentence states this mention as: "difference" ("by 12", "12
    more than"), "ratio" ("3 times"), "total" ("in total", "combined"), "share" (a percentage
    with "accounted for", "share", "of the total")."""
    before = sentence[: mention.span[0] - offset]
    after = sentence[mention.span[1] - offset :]
    cues = []
    relative = mention.is_percent and _RELATIVE_BEFORE.search(before)
    if _DIFFERENCE_BEFORE.search(before) or _DIFFERENCE_AFTER.match(after) or relative:
        cues.append("difference")
    if _RATIO_AFTER.match(after):
        cues.append("ratio")
    if _TOTAL_CUE.search(sentence):
        cues.append("total")
    if mention.is_percent and (pie or _SHARE_CUE.search(sentence)):
        cues.append("share")
    return cues


def _hedged(sentence: str, mention: Mention, offset: int) -> bool:
    return bool(_HEDGE.search(sentence[: mention.span[0] - offset].rstrip()))


def _table_scale(described: str) -> float:
    match = _TABLE_SCALE.search(described)
    if not match:
        return 1.0
    return _SCALES[(match.group(1) or match.group(2)).lower()]


def _scaled(values: list[float], scale: float) -> list[float]:
    return values if scale == 1.0 else [*values, *(v * scale for v in values)]


def _label_pattern(name: str) -> re.Pattern[str]:
    """The name as written in a text; a numeric range "25-34" also as "25 to 34"."""
    words = r"\s+".join(re.escape(part) for part in name.split())
    words = re.sub(r"(?<=\d)\\-(?=\d)", r"\\s*(?:-|–|—|to)\\s*", words)
    return re.compile(rf"(?<![\w.]){words}(?!\w)", re.IGNORECASE)


def value_mentions(text: str, chart: ChartRecord, tolerance: float = 0.0) -> list[Mention]:
    """The mentions in `text` that are not row, column or chart labels."""
    return ChartNumbers.from_chart(chart).split(text, tolerance)[0]


def ground_numbers(
    text: str,
    chart: ChartRecord,
    tolerance: float,
    approx_tolerance: float = 0.05,
    numbers: ChartNumbers | None = None,
) -> Grounding:
    """Count the value mentions in `text`, those the chart's table supports (value level) and
    those attributed to a row or series their sentence names (attribution level).

    Label numbers (a year that is a row label, "18-24" as an age band, "10" in the title)
    are not values (see ChartNumbers.split). A year-like number (1800-2100, no unit) that is
    neither a label nor a table value is read as a date and left out too. A figure hedged with
    "about", "nearly", "over" ... may differ by `approx_tolerance` (relative).
    """
    if tolerance < 0 or approx_tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance} / {approx_tolerance}")
    table = numbers or ChartNumbers.from_chart(chart)
    values, label_mentions = table.split(text, tolerance)
    labels = [m.text for m in label_mentions]
    everything = table.all_cells()
    grounded, attributed = 0, 0
    ungrounded: list[str] = []
    misattributed: list[str] = []
    spans = sentence_spans(text)
    for mention in values:
        start, end = next(((a, b) for a, b in spans if a <= mention.span[0] < b), (0, len(text)))
        sentence = text[start:end]
        tol = max(tolerance, approx_tolerance) if _hedged(sentence, mention, start) else tolerance
        cues = _cues(sentence, mention, start, table.pie)
        cells = table.named_cells(sentence)
        value_ok = table.is_value(mention, tol) or any(
            table._derived(mention, cue, pool, tol)
            for cue in cues
            for pool in ((cells, everything) if cells else (everything,))
        )
        if not value_ok:
            if mention.is_year:
                labels.append(mention.text)
            else:
                ungrounded.append(mention.text)
            continue
        grounded += 1
        related = table._series_cells(cells) if cells else []
        if cells and (
            table._states(mention, [table._cell(c) for c in cells], tol)
            or any(
                table._derived(
                    mention, cue, related if cue in ("difference", "ratio") else cells, tol
                )
                for cue in cues
            )
        ):
            attributed += 1
        elif not cells and "total" in cues and table._derived(mention, "total", everything, tol):
            attributed += 1  # "in total, 500": the whole table's total needs no name
        else:
            misattributed.append(mention.text)
    mentioned = grounded + len(ungrounded)
    return Grounding(
        mentioned=mentioned,
        grounded=grounded,
        fraction=grounded / mentioned if mentioned else None,
        ungrounded=ungrounded,
        labels=labels,
        attributed=attributed,
        attributed_fraction=attributed / mentioned if mentioned else None,
        misattributed=misattributed,
    )


def names_subject(text: str, chart: ChartRecord) -> bool:
    """The text names this chart's subject and not another chart's: at least half of the
    title's key terms, or two of its row or series names; and no year outside the years the
    chart covers (an introduction carrying another chart's title and period fails)."""
    if _foreign_years(text, chart):
        return False
    text_words = _text_words(text)
    key_terms = {t for t in name_terms(chart.title) if t.isalpha() and t not in _GENERIC}
    found = sum(1 for t in key_terms if any(_word_matches(w, t) for w in text_words))
    if key_terms and 2 * found >= len(key_terms):
        return True
    names = [name_terms(str(row[0])) for row in chart.rows] + [
        name_terms(c) for c in chart.columns[1:]
    ]
    named = {terms for terms in names if terms and any(t.isalpha() for t in terms)}
    return sum(1 for terms in named if _names(terms, text_words)) >= 2


def _years(texts: Iterable[str]) -> list[float]:
    return [
        m.literal
        for text in texts
        for m in extract_numbers(text)
        if m.is_year
        or (
            m.literal.is_integer()
            and _YEAR_RANGE[0] <= m.literal <= _YEAR_RANGE[1]
            and "." not in m.text
            and "," not in m.text
            and not m.is_percent
        )
    ]


def _foreign_years(text: str, chart: ChartRecord) -> list[float]:
    """Years in the text outside the span of years the chart's title and labels name."""
    described = [
        chart.title,
        chart.x_label,
        chart.unit,
        *chart.columns,
        *(str(r[0]) for r in chart.rows),
    ]
    span = _years(described)
    if not span:
        return []
    low, high = min(span), max(span)
    return [y for y in _years([text]) if not low <= y <= high]
