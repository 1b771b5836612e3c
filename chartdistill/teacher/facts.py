"""A chart's key facts, computed from its table and written as an IELTS essay would write them.

The teacher gets these sentences in its prompt (prompts/facts.md, param `teacher.fact_sheet`):
a small model that copies a fact copies a figure that is right and attributed to the right
label. Every figure here is a table value, a difference of two values of one series or one row, or a
share of a series total, which the grounding checks (chartdistill.essay.grounding) accept, or
one of these derived figures: relative changes ("an increase of 14.9 million, or 166%"),
totals ("the categories totalled 254.6 thousand"), two slices combined ("together accounted
for 71%"). Ratios are words ("almost double"), not figures.

Per chart type:
- bar / table: highest, lowest and ranking per series; for several series, the change from
  the first to the last series when the series are years, else the largest gap between series;
  totals and shares when the unit is additive; notable ratios between highest and lowest.
- line: each series' change from its first to its last point (absolute and relative), peaks and
  troughs inside the period, the largest rise and fall between two points, crossings, and which
  series is highest at the end.
- pie: largest and smallest shares, ranking, the top two combined, notable ratios.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chartdistill.data.records import ChartRecord
from chartdistill.essay.claims import COUNT_WORDS

_CURRENCY = "$£€¥"
_YEARISH = re.compile(r"^\s*(1[89]|20)\d\d\s*$")
_SCALE_ONLY = {"thousand", "million", "billion", "trillion"}


@dataclass(frozen=True)
class Style:
    """How a chart's figures are written: decimals and unit."""

    decimals: int
    unit: str

    @property
    def percent(self) -> bool:
        return self.unit.strip() == "%"

    def number(self, value: float) -> str:
        """`1234.5` -> `1,234.5` at the table's precision (never `-0`)."""
        value = round(value, self.decimals)
        if value == 0:
            value = 0.0
        return f"{value:,.{self.decimals}f}"

    def value(self, value: float) -> str:
        """A figure with its unit: `45%`, `$320`, `$3.2 billion`, `12.5 hours`, `3.2 million`."""
        sign = "-" if round(value, self.decimals) < 0 else ""
        text = self.number(abs(value))
        unit = self.unit.strip()
        if not unit:
            return f"{sign}{text}"
        if unit == "%":
            return f"{sign}{text}%"
        if unit[0] in _CURRENCY:
            rest = unit[1:].strip()
            return f"{sign}{unit[0]}{text}" + (f" {rest}" if rest else "")
        return f"{sign}{text} {unit}"

    def change(self, delta: float) -> str:
        """A difference: `15 percentage points` for a % table, else the value with its unit."""
        if self.percent:
            points = self.number(abs(delta))
            return f"{points} percentage point" + ("" if points in ("1", "1.0") else "s")
        return self.value(abs(delta))


def style_of(chart: ChartRecord) -> Style:
    """The table's own precision (at most 2 decimals) and unit."""
    decimals = 0
    for value in chart.values():
        text = f"{value:.6f}".rstrip("0").rstrip(".")
        if "." in text:
            decimals = max(decimals, min(2, len(text.split(".")[1])))
    return Style(decimals=decimals, unit=chart.unit)


def relative_change(first: float, last: float) -> float | None:
    """(last - first) / |first| in percent, or None when first is 0."""
    if first == 0:
        return None
    return 100.0 * (last - first) / abs(first)


def ratio_words(big: float, small: float) -> str | None:
    """`almost double`, `about three times`, ... for big/small, or None when not notable."""
    if big <= 0 or small <= 0:
        return None
    ratio = big / small
    if ratio < 1.45:
        return None
    if ratio < 1.6:
        return "about one and a half times"
    if ratio < 1.9:
        return "almost double"
    if ratio < 2.1:
        return "about double"
    if ratio < 2.5:
        return "more than double"
    if ratio < 2.75:
        return "about two and a half times"
    whole = int(ratio + 0.5)
    if whole > 10:
        return "more than ten times"
    words = {3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}
    word = words.get(whole, "ten")
    if ratio < whole - 0.1:
        return f"almost {word} times"
    if ratio > whole + 0.1:
        return f"more than {word} times"
    return f"about {word} times"


def count_words(n: int) -> str:
    """Small counts in words ("four of the six"), so they are never read as chart figures."""
    return COUNT_WORDS[n] if 0 <= n < len(COUNT_WORDS) else str(n)


def join_words(items: list[str]) -> str:
    """`A`, `A and B`, `A, B and C`."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def chart_facts(chart: ChartRecord, limit: int = 10) -> list[str]:
    """The chart's key facts as essay sentences, most important first, at most `limit`."""
    style = style_of(chart)
    if chart.chart_type == "line":
        facts = _line_facts(chart, style)
    elif chart.chart_type == "pie":
        facts = _pie_facts(chart, style)
    else:
        facts = _category_facts(chart, style)
    return [_sentence(fact) for fact in facts[:limit]]


# ------------------------------------------------------------------ helpers


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _series(chart: ChartRecord, index: int) -> list[tuple[str, float]]:
    """(row label, value) of one series (0-based), missing values left out."""
    return [
        (str(row[0]), float(row[index + 1])) for row in chart.rows if row[index + 1] is not None
    ]


def _ranked(points: list[tuple[str, float]]) -> list[tuple[str, float]]:
    return sorted(points, key=lambda p: (-p[1], p[0]))


def _additive(chart: ChartRecord, style: Style) -> bool:
    """Totals make sense: not a percentage or an average, and no negative value."""
    described = f"{chart.title} {chart.y_label}".lower()
    if style.percent or "average" in described or "per " in described or "rate" in described:
        return False
    return all(v >= 0 for v in chart.values())


def _change_phrase(style: Style, first: float, last: float) -> str:
    delta = last - first
    if round(delta, style.decimals) == 0:
        return "unchanged"
    verb = "an increase" if delta > 0 else "a decrease"
    rel = relative_change(first, last)
    # A relative change of a percentage ("up 75% from 24%") reads badly; points say it all.
    relative = "" if rel is None or style.percent else f", or {abs(rel):.0f}%"
    words = ratio_words(last, first) if rel is not None and rel >= 200 else None
    if words and not style.percent:  # "up by 2650%" reads badly: "more than ten times"
        relative = f", so it ended at {words} its first figure"
    return f"{verb} of {style.change(delta)}{relative}"


def _ratio_fact(style: Style, high: tuple[str, float], low: tuple[str, float]) -> str | None:
    words = ratio_words(high[1], low[1])
    if words is None:
        return None
    return (
        f"The figure for {high[0]} ({style.value(high[1])}) was {words} "
        f"that for {low[0]} ({style.value(low[1])})."
    )


# ------------------------------------------------------------------ bar and table


def _category_facts(chart: ChartRecord, style: Style) -> list[str]:
    names = chart.series
    facts: list[str] = []
    single = len(names) == 1
    for index, name in enumerate(names):
        ranked = _ranked(_series(chart, index))
        if not ranked:
            continue
        where = "" if single else f"For {name}, "
        top, bottom = ranked[0], ranked[-1]
        opener = f"{where}{top[0]}" if where else top[0]
        facts.append(
            f"{opener} had the highest figure, at {style.value(top[1])}, and "
            f"{bottom[0]} the lowest, at {style.value(bottom[1])}."
        )
        if single:
            order = join_words([f"{label} ({style.value(v)})" for label, v in ranked])
            facts.append(f"From highest to lowest: {order}.")
            ratio = _ratio_fact(style, top, bottom)
            if ratio:
                facts.append(ratio)
            if _additive(chart, style) and len(ranked) > 1:
                total = sum(v for _, v in ranked)
                share = 100 * top[1] / total if total else 0
                facts.append(
                    f"Together the categories totalled {style.value(total)}, of which "
                    f"{top[0]} accounted for {share:.0f}%."
                )
    if len(names) > 1:
        facts += _across_series(chart, style)
    return facts


def _across_series(chart: ChartRecord, style: Style) -> list[str]:
    """Several series per category: change over time when they are years, else the gaps."""
    names = chart.series
    first, last = names[0], names[-1]
    pairs = [
        (str(row[0]), float(row[1]), float(row[-1]))
        for row in chart.rows
        if row[1] is not None and row[-1] is not None
    ]
    if not pairs:
        return []
    facts: list[str] = []
    if all(_YEARISH.match(n) for n in names):
        rises = sorted(pairs, key=lambda p: p[2] - p[1])
        up, down = rises[-1], rises[0]
        if up[2] > up[1]:
            facts.append(
                f"Between {first} and {last}, the largest rise was in {up[0]}, from "
                f"{style.value(up[1])} to {style.value(up[2])}, "
                f"{_change_phrase(style, up[1], up[2])}."
            )
        if down[2] < down[1]:
            facts.append(
                f"Between {first} and {last}, the largest fall was in {down[0]}, from "
                f"{style.value(down[1])} to {style.value(down[2])}, "
                f"{_change_phrase(style, down[1], down[2])}."
            )
        grew = sum(1 for _, a, b in pairs if b > a)
        facts.append(
            f"{count_words(grew)} of the {count_words(len(pairs))} categories were higher in "
            f"{last} than in {first}."
        )
    else:
        gaps = sorted(pairs, key=lambda p: abs(p[1] - p[2]))
        label, a, b = gaps[-1]
        facts.append(
            f"The largest gap between {first} and {last} was in {label}: "
            f"{style.value(a)} against {style.value(b)}, a difference of {style.change(a - b)}."
        )
        more = sum(1 for _, a, b in pairs if a > b)
        facts.append(
            f"{first} exceeded {last} in {count_words(more)} of the {count_words(len(pairs))} "
            "categories."
        )
    if _additive(chart, style):
        totals = [(name, sum(v for _, v in _series(chart, i))) for i, name in enumerate(names)]
        facts.append(
            "Summed over the categories, the totals were "
            + join_words([f"{style.value(t)} for {name}" for name, t in totals])
            + "."
        )
    return facts


# ------------------------------------------------------------------ line


def _line_facts(chart: ChartRecord, style: Style) -> list[str]:
    names = chart.series
    main: list[str] = []
    extra: list[str] = []
    steps: list[tuple[float, str, str, str, float, float]] = []
    for index, name in enumerate(names):
        points = _series(chart, index)
        if len(points) < 2:
            continue
        (x0, v0), (x1, v1) = points[0], points[-1]
        if round(v1 - v0, style.decimals) == 0:
            main.append(f"{name} was {style.value(v0)} in both {x0} and {x1}.")
        else:
            verb = "rose" if v1 > v0 else "fell"
            main.append(
                f"{name} {verb} from {style.value(v0)} in {x0} to {style.value(v1)} in {x1}, "
                f"{_change_phrase(style, v0, v1)}."
            )
        peak = max(points, key=lambda p: p[1])
        trough = min(points, key=lambda p: p[1])
        if peak not in (points[0], points[-1]):
            extra.append(f"{name} peaked at {style.value(peak[1])} in {peak[0]}.")
        if trough not in (points[0], points[-1]):
            extra.append(f"{name} was lowest at {style.value(trough[1])} in {trough[0]}.")
        for (xa, a), (xb, b) in zip(points, points[1:], strict=False):
            steps.append((b - a, name, xa, xb, a, b))
    if steps:
        rise = max(steps)
        fall = min(steps)
        if rise[0] > 0:
            extra.insert(
                0,
                f"The sharpest rise was in {rise[1]} between {rise[2]} and {rise[3]}, "
                f"from {style.value(rise[4])} to {style.value(rise[5])}.",
            )
        if fall[0] < 0:
            extra.insert(
                1 if rise[0] > 0 else 0,
                f"The sharpest fall was in {fall[1]} between {fall[2]} and {fall[3]}, "
                f"from {style.value(fall[4])} to {style.value(fall[5])}.",
            )
    facts = main + _crossings(chart) + extra
    if len(names) > 1:
        last_row = chart.rows[-1]
        ends = [(n, float(v)) for n, v in zip(names, last_row[1:], strict=True) if v is not None]
        if len(ends) > 1:
            ranked = _ranked(ends)
            facts.insert(
                len(main),
                f"In {last_row[0]}, {ranked[0][0]} was highest ({style.value(ranked[0][1])}) and "
                f"{ranked[-1][0]} lowest ({style.value(ranked[-1][1])}).",
            )
    return facts


def _crossings(chart: ChartRecord) -> list[str]:
    """`A overtook B between 2008 and 2010` for every sign change between two series."""
    names = chart.series
    return [
        f"{ahead} overtook {names[j] if ahead == names[i] else names[i]} between {a} and {b}."
        for i in range(len(names))
        for j in range(i + 1, len(names))
        for a, b, ahead in crossing_points(chart, i, j)
    ]


def crossing_points(chart: ChartRecord, i: int, j: int) -> list[tuple[str, str, str]]:
    """(label before, label after, the series that moved ahead) where series i and j cross;
    rows where they are level or a value is missing are skipped."""
    out = []
    previous: tuple[str, float] | None = None
    for row in chart.rows:
        x, y = row[i + 1], row[j + 1]
        if x is None or y is None or x == y:
            continue
        gap = float(x) - float(y)
        if previous is not None and (gap > 0) != (previous[1] > 0):
            ahead = chart.series[i] if gap > 0 else chart.series[j]
            out.append((previous[0], str(row[0]), ahead))
        previous = (str(row[0]), gap)
    return out


# ------------------------------------------------------------------ pie


def _pie_facts(chart: ChartRecord, style: Style) -> list[str]:
    points = _series(chart, 0)
    total = sum(v for _, v in points)
    if not points or total <= 0:
        return []
    if not style.percent:  # raw counts: state each slice as its share of the total
        points = [(label, 100 * v / total) for label, v in points]
        style = Style(decimals=0, unit="%")
    ranked = _ranked(points)
    top, bottom = ranked[0], ranked[-1]
    facts = [
        f"{top[0]} made up the largest share, {style.value(top[1])}, and {bottom[0]} the "
        f"smallest, {style.value(bottom[1])}.",
        "From largest to smallest: "
        + join_words([f"{label} ({style.value(v)})" for label, v in ranked])
        + ".",
    ]
    if len(ranked) > 2:
        second = ranked[1]
        combined = top[1] + second[1]
        half = "more than half" if combined > 50 else "less than half"
        facts.append(
            f"{top[0]} and {second[0]} together accounted for {style.value(combined)}, "
            f"{half} of the total."
        )
    ratio = _ratio_fact(style, top, bottom)
    if ratio:
        facts.append(ratio)
    if len(ranked) > 1:
        ratio = _ratio_fact(style, ranked[0], ranked[1])
        if ratio:
            facts.append(ratio)
    return facts
