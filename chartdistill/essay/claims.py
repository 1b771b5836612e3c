"""What a sentence claims about a chart's figures, checked against its table.

Grounding (chartdistill.essay.grounding) asks whether a figure belongs to the row or series its
sentence names; this module asks whether what the sentence says about it is true:
- superlative: "Car accounted for the largest share", "X peaked in 2015", "Y the lowest";
- rank: "the second highest", "ranked third"; order: "from highest to lowest: A, B and C";
- trend: "rose from 4.2 million to 1.3 million" (direction of two stated figures), "X fell
  between 2010 and 2020", "rising in Italy but declining in Japan" (first vs last point);
- comparison: "A was higher than B", "A exceeded B", "higher in 2020 than in 2010";
- overtaking: "A overtook B between 2008 and 2010";
- fraction: "a third", "¾", "more than half of the total" (a share of the total);
- ratio: "almost double that of B", "three times", "roughly half the figure for B";
- period: "from 2014 to 2014" (a period must run forwards).

A claim is false only when no reasonable reading of it is true: a superlative or comparison
with no year on a chart of several years is true when it holds in every year (or for the
totals), false when it holds in none, and not counted when it holds in some. A sentence the
rules cannot read is not checked, and not counted.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from chartdistill.data.records import ChartRecord
from chartdistill.essay.grounding import (
    ChartNumbers,
    Grounding,
    Mention,
    NameSpan,
    ground_numbers,
    sentence_spans,
)

CLAIM_KINDS: tuple[str, ...] = (
    "superlative",
    "rank",
    "order",
    "trend",
    "comparison",
    "overtaking",
    "fraction",
    "ratio",
    "period",
)


@dataclass(frozen=True)
class Claim:
    """One checked claim: its kind, the sentence it is in, whether it holds, and why not."""

    kind: str
    sentence: str
    ok: bool
    detail: str = ""


# --- vocabulary ---------------------------------------------------------------------------

_TOP = (
    r"highest|largest|biggest|greatest|most\s+(?:popular|common|frequent|widely\s+used)|"
    r"top(?:ped)?|maximum|dominant|dominated"
)
_BOTTOM = r"lowest|smallest|least(?:\s+(?:popular|common|frequent))?|fewest|bottom|minimum"
_PEAK = r"peak(?:ed|ing|s)?|high\s+point|trough|low\s+point|bottomed\s+out"
_ORDINALS = {"second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6}
_SUPERLATIVE = re.compile(
    rf"\b(?P<count>two|three|four)?\s*"
    rf"(?:(?P<rank>second|third|fourth|fifth|sixth)[\s-]+(?:most\s+|least\s+)?)?"
    rf"(?<!\bat\s)(?P<word>(?P<top>{_TOP})|(?P<bottom>{_BOTTOM})|(?P<peak>{_PEAK}))\b",
    re.IGNORECASE,
)
_RANKED = re.compile(
    r"\b(?:ranked|came|placed|in)\s+(?P<rank>second|third|fourth|fifth|sixth)(?:\s+place)?\b",
    re.IGNORECASE,
)
# "the largest rise", "the sharpest fall": a superlative of a change, not of a value.
_OF_A_CHANGE = re.compile(
    r"^\s*(?:[a-z]+\s+)?(?:rise|rises|increase|increases|growth|fall|falls|decrease|decreases|"
    r"decline|drop|gap|difference|change|jump|gain|loss|variation|fluctuation)\b",
    re.IGNORECASE,
)
_ORDER = re.compile(
    r"\bfrom\s+(?:the\s+)?(?P<first>highest|largest|biggest|most|lowest|smallest|least)\s+to\s+"
    r"(?:the\s+)?(?:highest|largest|biggest|most|lowest|smallest|least)\b"
    r"|\bin\s+(?P<dir>descending|ascending)\s+order\b",
    re.IGNORECASE,
)
_RISE = (
    r"rose|risen|rising|rises|increased|increasing|increases|grew|grown|growing|grows|climbed|"
    r"climbing|climbs|went\s+up|gone\s+up|jumped|surged|soared|doubled|tripled|trebled|"
    r"quadrupled|picked\s+up|recovered"
)
_FALL = (
    r"fell|fallen|falling|falls|decreased|decreasing|decreases|declined|declining|declines|"
    r"dropped|dropping|drops|dipped|went\s+down|gone\s+down|plummeted|plunged|shrank|shrunk|"
    r"halved|slumped|sank|slid"
)
_STABLE = (
    r"(?:remained|stayed|was|were|held|kept)\s+(?:broadly\s+|fairly\s+|relatively\s+|almost\s+)?"
    r"(?:stable|steady|unchanged|constant|flat|level|the\s+same)|levell?ed\s+off|"
    r"did\s+not\s+change|barely\s+changed|changed\s+little"
)
_TREND = re.compile(
    rf"\b(?:(?P<rise>{_RISE})|(?P<fall>{_FALL})|(?P<stable>{_STABLE}))\b", re.IGNORECASE
)
_FROM = re.compile(r"\bfrom\b", re.IGNORECASE)
_TO = re.compile(r"\bto\b", re.IGNORECASE)
_COMPARATIVE = re.compile(
    r"\b(?:(?P<up>higher|larger|greater|bigger|more)|(?P<down>lower|smaller|less|fewer))\b"
    r"(?P<mid>[^.;]{0,40}?)\bthan\b"
    r"|\b(?P<verb>exceed(?:ed|s|ing)?|surpass(?:ed|es|ing)?|outnumber(?:ed|s|ing)?|"
    r"outstripp?(?:ed|s|ing)?|outpac(?:ed|es|ing)?)\b",
    re.IGNORECASE,
)
_OVERTOOK = re.compile(r"\b(?:overt(?:ook|aken|akes|aking)|overtake)\b", re.IGNORECASE)
_NEGATION = re.compile(r"\b(?:not|never|no\s+longer|hardly)\s+(?:\w+\s+){0,2}$|n['’]t\s+$", re.I)
_CLAUSE_BREAK = re.compile(
    r";|,\s*(?:and|but|while|whereas|although|though)\s+|\s+(?:but|while|whereas)\s+",
    re.IGNORECASE,
)
_TOGETHER = re.compile(
    r"\b(?:together|combined|between\s+them|jointly|in\s+total|altogether|collectively)\b",
    re.IGNORECASE,
)

_HEDGES = (
    r"about|around|roughly|approximately|some|nearly|almost|just\s+over|just\s+under|"
    r"more\s+than|less\s+than|over|under|above|below|well\s+over|exactly|precisely|"
    r"just\s+(?:above|below)|close\s+to"
)
_UNICODE_FRACTIONS = {
    "½": 1 / 2,
    "⅓": 1 / 3,
    "⅔": 2 / 3,
    "¼": 1 / 4,
    "¾": 3 / 4,
    "⅕": 1 / 5,
    "⅖": 2 / 5,
    "⅗": 3 / 5,
    "⅘": 4 / 5,
    "⅙": 1 / 6,
    "⅚": 5 / 6,
    "⅛": 1 / 8,
    "⅜": 3 / 8,
    "⅝": 5 / 8,
    "⅞": 7 / 8,
}
_WORD_FRACTIONS = {
    "half": 1 / 2,
    "third": 1 / 3,
    "thirds": 1 / 3,
    "quarter": 1 / 4,
    "quarters": 1 / 4,
    "fifth": 1 / 5,
    "fifths": 1 / 5,
    "tenth": 1 / 10,
    "tenths": 1 / 10,
}
_COUNT_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "nine": 9}
_IN_N = {"two": 2, "three": 3, "four": 4, "five": 5, "ten": 10}
_FRACTION = re.compile(
    rf"(?:\b(?P<hedge>{_HEDGES})\s+)?(?:"
    r"(?P<count>\b(?:a|an|one|two|three|four|nine)\b)?[\s-]*"
    r"(?P<part>\bhalf\b|\bthirds?\b|\bquarters?\b|\bfifths?\b|\btenths?\b)"
    r"|\bone\s+in\s+(?P<in>two|three|four|five|ten)\b"
    rf"|(?P<glyph>[{''.join(_UNICODE_FRACTIONS)}])"
    r")",
    re.IGNORECASE,
)
_TIMES_WORDS = {
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
_MULTIPLE = re.compile(
    rf"(?:\b(?P<hedge>{_HEDGES})\s+)?\b(?:"
    r"(?P<double>double|twice)|(?P<triple>triple|treble)"
    r"|(?P<half>one\s+and\s+a\s+half)\s+times"
    r"|(?P<twohalf>two\s+and\s+a\s+half)\s+times"
    r"|(?P<n>two|three|four|five|six|seven|eight|nine|ten|\d+(?:\.\d+)?)\s+times"
    r")\b(?!\s+(?:over|as\s+many\s+times))",
    re.IGNORECASE,
)
_NOT_A_SHARE = re.compile(
    r"\b(?:first|second|latter|former|other)\s+$|^\s*of\s+(?:the\s+)?(?:period|decade|century|"
    r"year|years|time|way)\b|^\s*(?:an?\s+)?(?:hour|day|week|month|year|decade|century|"
    r"point|percentage)s?\b|^-?(?:hour|day|week|month|year)\b|^\s*times\b",
    re.IGNORECASE,
)


# --- the table seen along its two axes ----------------------------------------------------

_YEARLIKE = re.compile(r"^\s*(?:1[89]|20)\d\d\s*$")


class _Table:
    """The chart's grid with names located in text, and which axis (if any) is time."""

    def __init__(self, chart: ChartRecord, numbers: ChartNumbers) -> None:
        self.numbers = numbers
        self.grid = numbers.grid
        self.n_rows = len(self.grid)
        self.n_series = len(numbers.series_terms)
        self.pie = chart.chart_type == "pie"
        if chart.chart_type == "line":
            self.time: str | None = "row"
        elif self.n_series > 1 and all(_YEARLIKE.match(s) for s in chart.series):
            self.time = "series"
        else:
            self.time = None

    def size(self, axis: str) -> int:
        return self.n_rows if axis == "row" else self.n_series

    def value(self, axis: str, index: int, context: int) -> float | None:
        """The cell of entity (axis, index) at position `context` on the other axis."""
        return self.grid[index][context] if axis == "row" else self.grid[context][index]

    def line(self, axis: str, context: int) -> list[tuple[int, float]]:
        """(index, value) along `axis` at position `context` of the other axis."""
        out = []
        for index in range(self.size(axis)):
            value = self.value(axis, index, context)
            if value is not None:
                out.append((index, value))
        return out

    def totals(self, axis: str) -> list[tuple[int, float]]:
        """(index, sum over the other axis) along `axis`."""
        other = _other(axis)
        out = []
        for index in range(self.size(axis)):
            cells = [self.value(axis, index, k) for k in range(self.size(other))]
            known = [v for v in cells if v is not None]
            if known:
                out.append((index, sum(known)))
        return out


def _other(axis: str) -> str:
    return "series" if axis == "row" else "row"


@dataclass(frozen=True)
class _Sentence:
    """A sentence with its names and value figures located (offsets within the sentence)."""

    text: str
    names: list[NameSpan]
    values: list[Mention]
    clauses: list[tuple[int, int]]

    def clause_of(self, pos: int) -> tuple[int, int]:
        return next(((a, b) for a, b in self.clauses if a <= pos < b), (0, len(self.text)))

    def names_in(self, start: int, end: int, axis: str | None = None) -> list[NameSpan]:
        return [
            n
            for n in self.names
            if start <= n.start and n.end <= end and (axis is None or n.axis == axis)
        ]

    def before(self, pos: int) -> NameSpan | None:
        start, _ = self.clause_of(pos)
        found = [n for n in self.names_in(start, pos)]
        return found[-1] if found else None

    def after(self, pos: int, end: int | None = None) -> NameSpan | None:
        _, clause_end = self.clause_of(pos)
        found = self.names_in(pos, clause_end if end is None else end)
        return found[0] if found else None

    def contexts(self, subject: NameSpan, exclude: tuple[NameSpan, ...] = ()) -> list[int]:
        """Named positions on the other axis: in the subject's clause, else in the sentence."""
        other = _other(subject.axis)
        start, end = self.clause_of(subject.start)
        for names in (self.names_in(start, end, other), self.names_in(0, len(self.text), other)):
            found = [n.index for n in names if n not in exclude]
            if found:
                return list(dict.fromkeys(found))
        return []


def _clauses(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for match in _CLAUSE_BREAK.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return spans


def _negated(text: str, pos: int) -> bool:
    return bool(_NEGATION.search(text[max(0, pos - 30) : pos]))


# --- evaluation over readings -------------------------------------------------------------


def _verdict(results: list[bool]) -> bool | None:
    """True if every reading holds, False if none does, None (not counted) if some do."""
    if not results:
        return None
    if all(results):
        return True
    if not any(results):
        return False
    return None


def _over_contexts(
    table: _Table, sentence: _Sentence, subject: NameSpan, test, exclude=()
) -> bool | None:
    """Run test(points) at the named context positions (any may hold), or at every position
    of the other axis and for the totals when none is named (see _verdict)."""
    named = sentence.contexts(subject, exclude)
    other = _other(subject.axis)
    if named:
        return any(test(table.line(subject.axis, k)) for k in named)
    if table.size(other) == 1:
        return test(table.line(subject.axis, 0))
    if test(table.totals(subject.axis)):
        return True
    return _verdict([test(table.line(subject.axis, k)) for k in range(table.size(other))])


def _rank_ok(points: list[tuple[int, float]], index: int, rank: int, top: bool) -> bool:
    value = next((v for i, v in points if i == index), None)
    if value is None:
        return False
    eps = 1e-9 * max(1.0, abs(value))
    if top:
        ahead = sum(1 for _, v in points if v > value + eps)
        level = sum(1 for _, v in points if v >= value - eps)
    else:
        ahead = sum(1 for _, v in points if v < value - eps)
        level = sum(1 for _, v in points if v <= value + eps)
    return ahead + 1 <= rank <= level


def _superlatives(table: _Table, s: _Sentence) -> Iterator[Claim]:
    ordered = [m.span() for m in _ORDER.finditer(s.text)]
    for match in _SUPERLATIVE.finditer(s.text):
        if any(a <= match.start() < b for a, b in ordered) or _negated(s.text, match.start()):
            continue
        if _OF_A_CHANGE.match(s.text[match.end() :]):
            continue
        rank = _ORDINALS.get((match.group("rank") or "").lower(), 1)
        kind = "rank" if rank > 1 else "superlative"
        if match.group("count"):
            ok = _extreme_set(table, s, match)
        elif match.group("peak"):
            ok = _peak(table, s, match)
        else:
            ok = _extreme(table, s, match, rank, top=bool(match.group("top")))
        if ok is not None:
            yield Claim(kind, s.text, ok, "" if ok else f"'{match.group()}' does not hold")
    for match in _RANKED.finditer(s.text):
        subject = s.before(match.start())
        if subject is None:
            continue
        rank = _ORDINALS[match.group("rank").lower()]
        ok = _over_contexts(
            table, s, subject, lambda p, i=subject.index, n=rank: _rank_ok(p, i, n, True)
        )
        if ok is not None:
            yield Claim("rank", s.text, ok, "" if ok else f"'{match.group()}' does not hold")


def _extreme(table: _Table, s: _Sentence, match: re.Match[str], rank: int, top: bool):
    subject = s.before(match.start()) or s.after(match.end())
    if subject is None:
        return None
    readings = [_over_contexts(table, s, subject, lambda p: _rank_ok(p, subject.index, rank, top))]
    # "X was lowest at 4 in 2010": the year is X's extreme over time.
    for k in s.contexts(subject):
        along = table.line(_other(subject.axis), subject.index)
        readings.append(_rank_ok(along, k, rank, top))
    if any(r is True for r in readings):
        return True
    if all(r is False for r in readings):
        return False
    return None


def _extreme_set(table: _Table, s: _Sentence, match: re.Match[str]) -> bool | None:
    """ "The two smallest slices, A and B": A and B are the two lowest (ties allowed)."""
    n = _NUMBER_WORDS[match.group("count").lower()]
    names = s.names_in(match.end(), len(s.text))[:n]
    if len(names) < n or len({x.axis for x in names}) != 1 or match.group("peak"):
        return None
    top = bool(match.group("top"))

    def holds(points: list[tuple[int, float]]) -> bool:
        return all(any(_rank_ok(points, x.index, r, top) for r in range(1, n + 1)) for x in names)

    return _over_contexts(table, s, names[0], holds, exclude=tuple(names))


def _peak(table: _Table, s: _Sentence, match: re.Match[str]) -> bool | None:
    """ "X peaked at 50 in 2015": 2015 is X's highest point over time (trough: lowest)."""
    if table.time is None:
        return None
    top = not re.match(r"trough|low|bottom", match.group("word"), re.IGNORECASE)
    subject = s.before(match.start())
    if subject is not None and subject.axis == table.time:
        subject = None
    series = subject.index if subject is not None else None
    if series is None:
        if table.size(_other(table.time)) != 1:
            return None
        series = 0
    start, end = s.clause_of(match.start())
    when = [n for n in s.names_in(match.end(), end, table.time)]
    if not when:
        return None
    along = table.line(table.time, series)
    return _rank_ok(along, when[0].index, 1, top)


def _orders(table: _Table, s: _Sentence) -> Iterator[Claim]:
    for match in _ORDER.finditer(s.text):
        names = s.names_in(match.end(), len(s.text))
        if len(names) < 2 or len({n.axis for n in names}) != 1:
            continue
        descending = (match.group("first") or "").lower() in ("highest", "largest", "biggest")
        descending = descending or (match.group("dir") or "").lower() == "descending"

        def in_order(points: list[tuple[int, float]], names=names, down=descending) -> bool:
            values = dict(points)
            seq = [values.get(n.index) for n in names]
            if any(v is None for v in seq):
                return False
            pairs = zip(seq, seq[1:], strict=False)
            return all((a >= b) if down else (a <= b) for a, b in pairs)

        ok = _over_contexts(table, s, names[0], in_order, exclude=tuple(names))
        if ok is not None:
            yield Claim("order", s.text, ok, "" if ok else "the order does not hold")


def _trends(table: _Table, s: _Sentence) -> Iterator[Claim]:
    for match in _TREND.finditer(s.text):
        if _negated(s.text, match.start()):
            continue
        direction = next(g for g in ("rise", "fall", "stable") if match.group(g))
        stated = _stated_change(s, match.end())
        if stated is not None:
            ok = _direction_ok(direction, *stated)
            yield Claim("trend", s.text, ok, "" if ok else f"'{match.group()}' from/to wrong")
            continue
        for first, last in _trend_points(table, s, match):
            ok = _direction_ok(direction, first, last)
            yield Claim("trend", s.text, ok, "" if ok else f"'{match.group()}' does not hold")


def _stated_change(s: _Sentence, pos: int) -> tuple[float, float] | None:
    """The two figures of "from 4.2 million (in 2010) to 1.3 million" after a trend verb."""
    start, end = s.clause_of(pos)
    head = s.text[pos:end]
    found = _FROM.search(head[:40])
    if not found:
        return None
    begin = pos + found.end()
    first = next((m for m in s.values if begin <= m.span[0] < end), None)
    if first is None or s.text[begin : first.span[0]].strip(" $£€¥"):
        return None
    to = _TO.search(s.text, first.span[1], end)
    if not to or to.start() - first.span[1] > 25:
        return None
    second = next((m for m in s.values if to.end() <= m.span[0] < end), None)
    if second is None or s.text[to.end() : second.span[0]].strip(" $£€¥"):
        return None
    if first.is_percent != second.is_percent:
        return None
    return first.value, second.value


def _trend_points(
    table: _Table, s: _Sentence, match: re.Match[str]
) -> Iterator[tuple[float, float]]:
    """(first value, last value) for each subject of a trend verb without figures."""
    if table.time is None:
        return
    thing = _other(table.time)
    start, end = s.clause_of(match.start())
    subjects = s.names_in(start, match.start(), thing)
    if not subjects:
        subjects = s.names_in(match.end(), end, thing)
    if not subjects and table.size(thing) == 1:
        subjects = [NameSpan(0, 0, thing, 0)]
    times = s.names_in(start, end, table.time) or s.names_in(0, len(s.text), table.time)
    if len(times) == 1:
        return
    for subject in subjects:
        along = table.line(table.time, subject.index)
        if len(along) < 2:
            continue
        values = dict(along)
        if times:
            first, last = values.get(times[0].index), values.get(times[1].index)
            if first is None or last is None or times[0].index == times[1].index:
                continue
            if times[0].index > times[1].index:
                first, last = last, first
        else:
            first, last = along[0][1], along[-1][1]
        yield first, last


def _direction_ok(direction: str, first: float, last: float) -> bool:
    if direction == "rise":
        return last > first
    if direction == "fall":
        return last < first
    return abs(last - first) <= 0.1 * max(abs(first), abs(last))


def _comparisons(table: _Table, s: _Sentence) -> Iterator[Claim]:
    for match in _COMPARATIVE.finditer(s.text):
        if _negated(s.text, match.start()):
            continue
        a = s.before(match.start())
        b = s.after(match.end(), min(len(s.text), match.end() + 40))
        if a is None or b is None:
            continue
        if any(match.end() <= m.span[0] < b.start for m in s.values):
            continue  # "more than 40%": a hedge, not a comparison of two names
        higher = not match.group("down")
        count = _COUNTED.match(s.text[b.end :])
        if count and a.axis == b.axis:
            ok = _count_ok(table, a, b, higher, count)
        else:
            ok = _compare(table, s, a, b, higher)
        if ok is not None:
            yield Claim("comparison", s.text, ok, "" if ok else f"'{match.group()}' reversed")
    for match in _OVERTOOK.finditer(s.text):
        a, b = s.before(match.start()), s.after(match.end())
        if a is None or b is None or a.axis != b.axis or table.time == a.axis:
            continue
        ok = _overtook(table, s, a, b)
        if ok is not None:
            yield Claim("overtaking", s.text, ok, "" if ok else f"{match.group()} does not hold")


# Small counts in words ("four of the six"): the writers use them so a count is never read as a
# chart figure, and the comparison counts read them back.
COUNT_WORDS: tuple[str, ...] = tuple(
    [
        "no",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
    ]
)
_NUMBER_WORDS = {w: i for i, w in enumerate(COUNT_WORDS)}
_COUNTED = re.compile(
    r"\s*in\s+(?P<n>no|none|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\d+)"
    r"\s+of\s+the\s+(?P<m>\w+)\b",
    re.IGNORECASE,
)


def _count_ok(table: _Table, a: NameSpan, b: NameSpan, higher: bool, count) -> bool | None:
    """ "A exceeded B in four of the six categories": count the positions where it holds."""

    def number(word: str) -> int | None:
        word = word.lower()
        return int(word) if word.isdigit() else _NUMBER_WORDS.get("no" if word == "none" else word)

    n, m = number(count.group("n")), number(count.group("m"))
    holds = []
    for k in range(table.size(_other(a.axis))):
        va, vb = table.value(a.axis, a.index, k), table.value(b.axis, b.index, k)
        if va is not None and vb is not None:
            holds.append(va > vb if higher else va < vb)
    if n is None or (m is not None and m != len(holds)):
        return None if n is None else False
    return sum(holds) == n


def _compare(table: _Table, s: _Sentence, a: NameSpan, b: NameSpan, higher: bool):
    if a.axis == b.axis:
        if a.index == b.index:
            return None

        def holds(points: list[tuple[int, float]]) -> bool:
            values = dict(points)
            va, vb = values.get(a.index), values.get(b.index)
            if va is None or vb is None:
                return False
            return va > vb if higher else va < vb

        return _over_contexts(table, s, a, holds, exclude=(a, b))
    # "X was higher in 2020 than in 2010": the same name at two positions of the other axis.
    now = [n for n in s.names_in(0, b.start, b.axis) if n.index != b.index]
    if not now:
        return None
    va, vb = table.value(a.axis, a.index, now[-1].index), table.value(a.axis, a.index, b.index)
    if va is None or vb is None:
        return None
    return va > vb if higher else va < vb


def _overtook(table: _Table, s: _Sentence, a: NameSpan, b: NameSpan) -> bool | None:
    if table.time is None:
        return None
    times = [n.index for n in s.names_in(0, len(s.text), table.time)]
    gap = {
        k: va - vb
        for k in range(table.size(table.time))
        if (va := table.value(a.axis, a.index, k)) is not None
        and (vb := table.value(b.axis, b.index, k)) is not None
    }
    if len(times) >= 2:
        before, after = min(times[:2]), max(times[:2])
        if before not in gap or after not in gap:
            return None
        return gap[before] < 0 < gap[after]
    ks = sorted(gap)
    crossings = [k2 for k1, k2 in zip(ks, ks[1:], strict=False) if gap[k1] < 0 < gap[k2]]
    if times:
        return times[0] in crossings or (gap.get(times[0], 0) > 0 and bool(crossings))
    return bool(crossings) or any(gap[k1] < 0 < gap[k2] for k1 in ks for k2 in ks if k1 < k2)


def _fractions(table: _Table, s: _Sentence) -> Iterator[Claim]:
    multiples = [m.span() for m in _MULTIPLE.finditer(s.text)]
    for match in _FRACTION.finditer(s.text):
        target = _fraction_value(match)
        if target is None or any(a <= match.start() < b for a, b in multiples):
            continue
        if _NOT_A_SHARE.search(s.text[max(0, match.start() - 12) : match.start()]):
            continue
        if _NOT_A_SHARE.match(s.text[match.end() :]):
            continue
        hedge = (match.group("hedge") or "").lower()
        other = s.after(match.end())
        subject = s.before(match.start())
        if subject is not None and other is not None and other.axis == subject.axis:
            ok = _ratio_claim(table, s, subject, other, target, hedge)
            kind = "ratio"
        else:
            ok = _share_claim(table, s, match, target, hedge)
            kind = "fraction"
        if ok is not None:
            yield Claim(kind, s.text, ok, "" if ok else f"'{match.group().strip()}' is wrong")
    for match in _MULTIPLE.finditer(s.text):
        target = _multiple_value(match)
        subject = s.before(match.start())
        other = s.after(match.end())
        if subject is None or other is None or other.axis != subject.axis:
            continue
        ok = _ratio_claim(table, s, subject, other, target, (match.group("hedge") or "").lower())
        if ok is not None:
            yield Claim("ratio", s.text, ok, "" if ok else f"'{match.group().strip()}' is wrong")


def _fraction_value(match: re.Match[str]) -> float | None:
    if match.group("glyph"):
        return _UNICODE_FRACTIONS[match.group("glyph")]
    if match.group("in"):
        return 1 / _IN_N[match.group("in").lower()]
    part = match.group("part").lower()
    count = (match.group("count") or "").lower()
    if part == "half":
        return 0.5
    if not count:
        return None  # "quarter" alone: "the second quarter" of a year, not a fraction
    n = _COUNT_WORDS[count]
    return n * _WORD_FRACTIONS[part]


def _multiple_value(match: re.Match[str]) -> float:
    if match.group("double"):
        return 2.0
    if match.group("triple"):
        return 3.0
    if match.group("half"):
        return 1.5
    if match.group("twohalf"):
        return 2.5
    n = match.group("n").lower()
    return float(_TIMES_WORDS.get(n, 0) or float(n))


def _fits(actual: float, target: float, hedge: str) -> bool:
    """`actual` is what "<hedge> <target>" says: "about a third", "more than half", ..."""
    slack = 0.12 * target + 0.02
    hedge = " ".join(hedge.split())
    if hedge in ("more than", "over", "above", "well over"):
        return actual > target * 0.995
    if hedge in ("just over", "just above"):
        return target * 0.995 < actual <= target + slack
    if hedge in ("less than", "under", "below"):
        return actual < target * 1.005
    if hedge in ("just under", "just below"):
        return target - slack <= actual < target * 1.005
    if hedge in ("nearly", "almost", "close to"):
        return target - 2 * slack <= actual <= target * 1.005
    return abs(actual - target) <= slack


def _ratio_claim(table, s, subject, other, target, hedge) -> bool | None:
    def holds(points: list[tuple[int, float]]) -> bool:
        values = dict(points)
        va, vb = values.get(subject.index), values.get(other.index)
        if va is None or vb is None or vb <= 0 or va < 0:
            return False
        return _fits(va / vb, target, hedge)

    return _over_contexts(table, s, subject, holds, exclude=(subject, other))


def _share_claim(table, s, match, target, hedge) -> bool | None:
    """ "X accounted for about a third (of the total)": X's share of its series (or, on a
    percentage table, X's value as a fraction of 100)."""
    start, end = s.clause_of(match.start())
    before = s.names_in(start, match.start())
    if not before:
        return None
    together = bool(_TOGETHER.search(s.text[start:end]))
    subjects = before if together else before[-1:]
    if len({n.axis for n in subjects}) != 1:
        return None
    indices = {n.index for n in subjects}

    def holds(points: list[tuple[int, float]]) -> bool:
        values = dict(points)
        mine = [values.get(i) for i in indices]
        if any(v is None for v in mine):
            return False
        part = sum(mine)  # type: ignore[arg-type]
        total = sum(values.values())
        readings = [part / total] if total > 0 else []
        if table.numbers.percent_table and not table.pie:
            readings.append(part / 100)
        return any(_fits(r, target, hedge) for r in readings)

    return _over_contexts(table, s, subjects[0], holds, exclude=tuple(subjects))


_PERIOD = re.compile(
    r"\b(?:from|between)\s+(?P<a>(?:1[89]|20)\d\d)\s+(?:to|and|until|till)\s+"
    r"(?P<b>(?:1[89]|20)\d\d)\b",
    re.IGNORECASE,
)


def _periods(s: _Sentence) -> Iterator[Claim]:
    for match in _PERIOD.finditer(s.text):
        ok = int(match.group("a")) < int(match.group("b"))
        yield Claim("period", s.text, ok, "" if ok else f"'{match.group()}' is not a period")


# --- the API --------------------------------------------------------------------------------


def check_claims(text: str, chart: ChartRecord, numbers: ChartNumbers | None = None) -> list[Claim]:
    """Every claim in `text` that the rules can read, each checked against the chart's table."""
    numbers = numbers or ChartNumbers.from_chart(chart)
    table = _Table(chart, numbers)
    claims: list[Claim] = []
    for start, end in sentence_spans(text):
        sentence = text[start:end]
        values, _ = numbers.split(sentence, 0.0)
        s = _Sentence(sentence, numbers.name_spans(sentence), values, _clauses(sentence))
        for check in (_superlatives, _orders, _trends, _comparisons, _fractions):
            claims.extend(check(table, s))
        claims.extend(_periods(s))
    return claims


@dataclass
class Verification:
    """What a text's table supports: its figures (grounding) and its claims."""

    grounding: Grounding
    claims: list[Claim]

    @property
    def false_claims(self) -> list[Claim]:
        return [c for c in self.claims if not c.ok]

    def claim_counts(self) -> dict[str, object]:
        """{"checked", "failed", "failed_by_kind"}: for records and metrics."""
        failed = Counter(c.kind for c in self.false_claims)
        return {
            "checked": len(self.claims),
            "failed": sum(failed.values()),
            "failed_by_kind": dict(sorted(failed.items())),
        }


def verify(
    text: str,
    chart: ChartRecord,
    tolerance: float,
    approx_tolerance: float,
    numbers: ChartNumbers | None = None,
) -> Verification:
    """The one check of a text against its chart: figures grounded and attributed
    (ground_numbers), and claims true (check_claims). Validation, the datasets filter,
    evaluation and the report all call this, with their own bounds; `numbers` is the chart's
    prepared table when the caller checks several texts against one chart."""
    numbers = numbers or ChartNumbers.from_chart(chart)
    grounding = ground_numbers(text, chart, tolerance, approx_tolerance, numbers=numbers)
    return Verification(grounding, check_claims(text, chart, numbers))
