"""The computed reference writer: an IELTS Task 1 essay written from the chart's table by rules.

It is not a language model. No model that ships in a wheel writes true essays (measured, see
the README), so the offline default teaches the student from this writer, and an LLM teacher's
sentence that still fails its checks after a repair is replaced by this writer's sentence about
the same names. Every record it writes says so (model `reference-writer`, origin `computed`).

A content plan per chart type picks the facts for each body paragraph from the table; each fact
is realised from seeded, varied sentence patterns, with paragraph openers, so no pattern
dominates a dataset. The introduction paraphrases the title, unit, categories and period; the
overview states the main picture without figures. Further details are added, most important
first, until the essay reaches the IELTS length. Every sentence states only what the table shows,
in forms the claim checks (chartdistill.essay.claims) read: the tests check every sentence of
hundreds of seeded charts against them. With derived=False (teacher.derived_figures) it states
only the figures the chart prints: no sums, differences, shares, ratios, fractions or counts.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from chartdistill.data.records import ChartRecord
from chartdistill.essay.sections import SECTIONS
from chartdistill.essay.text import word_count
from chartdistill.teacher.facts import (
    Style,
    count_words,
    crossing_points,
    join_words,
    ratio_words,
    relative_change,
    style_of,
)

WRITER_ID = "reference-writer"
MIN_WORDS, MAX_WORDS = 175, 280
_YEARISH = re.compile(r"^\s*(1[89]|20)\d\d\s*$")
_SCALE = re.compile(r"^(thousand|million|billion)\b\s*(.*)$")
_OPENED = ("The ", "At ", "For ", "Between ", "In ", "Among ", "Along ", "By ", "Together")

Point = tuple[str, float]


@dataclass(frozen=True)
class Planned:
    """One sentence of a computed essay, its section, and the names (rows, series) it is about."""

    section: str
    text: str
    names: frozenset[str] = frozenset()


def reference_sentences(chart: ChartRecord, seed: int = 0, derived: bool = True) -> list[Planned]:
    """The essay as planned sentences in section order (see reference_essay)."""
    writer = _Writer(chart, random.Random(f"{seed}:{chart.id}"), derived)
    core, extra = writer.body()
    planned = [*writer.introduction(), *core, *writer.overview()]
    for sentence in extra:  # further details, most important first, until long enough
        if any(p.text == sentence.text for p in planned):
            continue
        total = sum(word_count(p.text) for p in planned)
        if total >= MIN_WORDS:
            break
        if total + word_count(sentence.text) <= MAX_WORDS:
            planned.append(sentence)
    return sorted(planned, key=lambda p: SECTIONS.index(p.section))


def reference_essay(chart: ChartRecord, seed: int = 0, derived: bool = True) -> dict[str, str]:
    """The four sections of the computed essay for `chart` (the same for the same seed).

    derived=False: only figures the chart prints, with words for their order and direction; no
    sums, differences, shares, ratios, fractions or counts worked out from them."""
    planned = reference_sentences(chart, seed, derived)
    return {s: " ".join(p.text for p in planned if p.section == s) for s in SECTIONS}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _plural(noun: str) -> str:
    """ "Age group" -> "age groups", "Mode of transport" -> "modes of transport"."""
    noun = noun.strip().lower() or "category"
    head, sep, tail = noun.partition(" of ")
    if head.endswith("y") and not head.endswith(("ay", "ey", "oy")):
        head = head[:-1] + "ies"
    elif not head.endswith("s"):
        head += "s"
    return head + (sep + tail if sep else "")


class _Writer:
    """Realises one chart's content plan with seeded choices."""

    def __init__(self, chart: ChartRecord, rng: random.Random, derived: bool = True) -> None:
        self.chart = chart
        self.rng = rng
        self.derived = derived
        self.style: Style = style_of(chart)
        self.kind = chart.chart_type
        self.category = (chart.columns[0] or "category").strip().lower()
        self.time_series = len(chart.series) > 1 and all(_YEARISH.match(s) for s in chart.series)
        self.mentions: dict[str, int] = {}
        self.gaps: set[frozenset[str]] = set()

    # -- helpers --------------------------------------------------------------------------------

    def say(self, section: str, names: tuple[str, ...], *options: str) -> Planned:
        return Planned(section, _cap(self.rng.choice(options).strip()), frozenset(names))

    def pick(self, *options: str) -> str:
        return self.rng.choice(options)

    def v(self, value: float) -> str:
        return self.style.value(value)

    def name(self, label: str) -> str:
        """A label as a noun phrase, varied across mentions: "11-12" -> "the 11-12 age group",
        "the 11-12 group", "those aged 11-12"."""
        label = str(label)
        if not label[:1].isdigit() or _YEARISH.match(label):
            return label
        seen = self.mentions.get(label, 0)
        self.mentions[label] = seen + 1
        group = self.category if self.kind != "line" else "group"
        forms = [f"the {label} {group}", f"the {label} group"]
        if "age" in self.category or self.kind == "line":
            forms.append(f"those aged {label}")
        return forms[seen % len(forms)]

    def points(self, index: int) -> list[Point]:
        return [
            (str(r[0]), float(r[index + 1])) for r in self.chart.rows if r[index + 1] is not None
        ]

    def ranked(self, index: int) -> list[Point]:
        return sorted(self.points(index), key=lambda p: (-p[1], p[0]))

    def opened(self, opener: str, sentence: Planned) -> Planned:
        """The sentence after a paragraph opener ("Turning to ..., the figure ...")."""
        text = sentence.text
        if not opener:
            return sentence
        if text.startswith(_OPENED):
            text = text[:1].lower() + text[1:]
        return Planned(sentence.section, opener + text, sentence.names)

    def change(self, first: float, last: float) -> str:
        """ ", an increase of 3.2 million, or 40%" (relative only where it reads well)."""
        delta = last - first
        if not self.derived or round(delta, self.style.decimals) == 0:
            return ""
        noun = (
            self.pick("an increase", "a rise") if delta > 0 else self.pick("a decrease", "a fall")
        )
        rel = relative_change(first, last)
        relative = ""
        if rel is not None and not self.style.percent and abs(rel) < 200:
            relative = f", or {abs(rel):.0f}%"
        return f", {noun} of {self.style.change(delta)}{relative}"

    # -- introduction ---------------------------------------------------------------------------

    def introduction(self) -> list[Planned]:
        what = {"bar": "bar chart", "line": "line graph", "pie": "pie chart", "table": "table"}
        kind = what[self.kind]
        first = self.say(
            "introduction",
            (),
            f"The {self.pick(kind, 'given ' + kind, kind + ' below')} "
            f"{self.pick('illustrates', 'shows', 'compares', 'presents', 'gives information on')} "
            f"{_title_phrase(self.chart.title)}{self.unit_phrase()}.",
        )
        return [first, self._coverage()]

    def _coverage(self) -> Planned:
        chart = self.chart
        if self.kind == "line":
            years = [str(r[0]) for r in chart.rows]
            n = count_words(len(years))
            if len(chart.series) == 1:
                return self.say(
                    "introduction",
                    (),
                    f"The data covers {n} points in time between {years[0]} and {years[-1]}.",
                    f"Figures are given for {n} years from {years[0]} to {years[-1]}.",
                )
            lines = join_words([self.name(s) for s in chart.series])
            return self.say(
                "introduction",
                tuple(chart.series),
                f"It traces {count_words(len(chart.series))} lines, for {lines}, from "
                f"{years[0]} to {years[-1]}.",
                f"Separate lines are drawn for {lines} over the period from {years[0]} to "
                f"{years[-1]}.",
            )
        rows = [str(r[0]) for r in chart.rows]
        items = join_words([self.name(r) for r in rows])
        n, plural = count_words(len(rows)), _plural(self.category)
        if len(chart.series) > 1:
            each = "year" if self.time_series else "group"
            groups = join_words(chart.series)
            return self.say(
                "introduction",
                tuple(rows),
                f"It covers {n} {plural}, namely {items}, with a figure for each {each}: {groups}.",
                f"Figures are given for {items}, broken down by {groups}.",
                f"The {n} {plural} shown are {items}, each with a value for {groups}.",
            )
        return self.say(
            "introduction",
            tuple(rows),
            f"The {n} {plural} shown are {items}.",
            f"It covers {n} {plural}: {items}.",
            f"The data is broken down into {n} {plural}, namely {items}.",
        )

    def unit_phrase(self) -> str:
        unit = self.style.unit.strip()
        if not unit or self.kind == "pie":
            return ""
        if unit == "%":
            return self.pick(", in percentages", ", expressed as percentages", "")
        money = {"$": "dollars", "£": "pounds", "€": "euros", "¥": "yen"}
        if unit[0] in money:
            rest = unit[1:].strip()
            unit = f"{rest}s of {money[unit[0]]}" if rest else money[unit[0]]
        elif scaled := _SCALE.match(unit):
            unit = f"{scaled.group(1)}s" + (f" of {scaled.group(2)}" if scaled.group(2) else "")
        return self.pick(f", measured in {unit}", f", with figures in {unit}", f" (in {unit})")

    # -- overview -------------------------------------------------------------------------------

    def overview(self) -> list[Planned]:
        opener = self.pick("Overall,", "In general,", "Overall, it is clear that", "In summary,")
        if self.kind == "line":
            return self._line_overview(opener)
        if len(self.chart.series) > 1:
            return self._grouped_overview(opener)
        ranked = self.ranked(0)
        top, low = ranked[0][0], ranked[-1][0]
        if self.kind == "pie":
            first = self.say(
                "overview",
                (top, low),
                f"{opener} {self.name(top)} accounted for by far the largest share, whereas "
                f"{self.name(low)} made up the smallest.",
                f"{opener} {self.name(top)} was the dominant category, while {self.name(low)} "
                "contributed the least.",
                f"{opener} the chart is dominated by {self.name(top)}, with {self.name(low)} "
                "the smallest slice.",
            )
            total = sum(v for _, v in ranked)
            if ranked[0][1] > total / 2:
                second = self.say(
                    "overview",
                    (top,),
                    f"{self.name(top)} alone made up more than half of the whole.",
                )
            else:
                second = self.say(
                    "overview",
                    (),
                    "No single category accounted for a majority of the total.",
                    "The remaining categories were more evenly spread.",
                    "The other slices were of broadly comparable size.",
                )
            return [first, second]
        margin = " by a clear margin" if ranked[0][1] >= 1.15 * ranked[1][1] else ""
        first = self.say(
            "overview",
            (top, low),
            f"{opener} {self.name(top)} recorded the highest figure{margin}, while "
            f"{self.name(low)} had the lowest.",
            f"{opener} {self.name(top)} stood out at the top, and {self.name(low)} came bottom.",
            f"{opener} there was a wide spread between {self.name(top)}, the highest, and "
            f"{self.name(low)}, the lowest.",
        )
        second = self.say(
            "overview",
            (),
            "The other categories fell between these two extremes.",
            "The remaining categories lay in between.",
            "The rest occupied the middle of the range.",
        )
        return [first, second]

    def _line_overview(self, opener: str) -> list[Planned]:
        rising, falling = [], []
        for index, name in enumerate(self.chart.series):
            points = self.points(index)
            if len(points) >= 2 and points[-1][1] > points[0][1]:
                rising.append(name)
            elif len(points) >= 2 and points[-1][1] < points[0][1]:
                falling.append(name)
        if len(self.chart.series) == 1:
            subject = self.pick("the figure", "the value", "the measure")
            moved = "rose" if rising else "fell" if falling else "ended where it began"
            values = [v for _, v in self.points(0)]
            turns = sum(
                1
                for a, b, c in zip(values, values[1:], values[2:], strict=False)
                if (b - a) * (c - b) < 0
            )
            second = (
                "There were marked fluctuations along the way."
                if turns >= 2
                else "The trend ran in one direction throughout, without reversals."
                if turns == 0
                else "There was one clear change of direction along the way."
            )
            return [
                self.say("overview", (), f"{opener} {subject} {moved} over the period as a whole."),
                self.say("overview", (), second),
            ]
        parts = []
        if rising:
            verb = self.pick("rose", "increased", "grew")
            parts.append(f"{join_words([self.name(n) for n in rising])} {verb} over the period")
        if falling:
            verb = self.pick("fell", "declined", "decreased")
            parts.append(f"{join_words([self.name(n) for n in falling])} {verb}")
        trend = (
            self.pick(", whereas ", ", while ").join(parts) or "the lines ended near their start"
        )
        out = [self.say("overview", (*rising, *falling), f"{opener} {trend}.")]
        leader = _always_top(self.chart, by_row=False)
        if leader is not None:
            out.append(
                self.say(
                    "overview",
                    (leader,),
                    f"{self.name(leader)} had the highest figures throughout.",
                    f"{self.name(leader)} remained the highest throughout the period.",
                )
            )
        else:
            out.append(
                self.say(
                    "overview",
                    (),
                    "The order of the lines changed over the period.",
                    "No line stayed ahead for the whole period.",
                )
            )
        return out

    def _grouped_overview(self, opener: str) -> list[Planned]:
        a, b = self.chart.series[0], self.chart.series[-1]
        pairs = _pairs(self.chart)
        later = sum(1 for _, x, y in pairs if y > x)
        if self.time_series:
            if 2 * later > len(pairs):
                text = f"{opener} most categories were higher in {b} than in {a}."
            elif 2 * later < len(pairs):
                text = f"{opener} most categories were lower in {b} than in {a}."
            else:
                text = f"{opener} the categories moved in different directions from {a} to {b}."
            first = self.say("overview", (), text)
        elif 2 * later != len(pairs):
            high, low = (b, a) if 2 * later > len(pairs) else (a, b)
            first = self.say(
                "overview",
                (high, low),
                f"{opener} {high} recorded higher figures than {low} in most categories.",
                f"{opener} the figures for {high} were generally above those for {low}.",
            )
        else:
            first = self.say(
                "overview", (), f"{opener} neither {a} nor {b} was consistently ahead."
            )
        leader = _always_top(self.chart, by_row=True)
        each = "year" if self.time_series else "group"
        if leader is not None:
            second = self.say(
                "overview",
                (leader,),
                f"{self.name(leader)} had the highest figure in every {each}.",
                f"{self.name(leader)} led in each {each}.",
            )
        else:
            second = self.say(
                "overview",
                (),
                "The ranking of the categories also shifted.",
                f"The order of the categories was not the same in each {each}.",
            )
        return [first, second]

    # -- body -----------------------------------------------------------------------------------

    def body(self) -> tuple[list[Planned], list[Planned]]:
        """(the two body paragraphs' sentences, further details to add if too short)."""
        if self.kind == "line":
            return self._line_body()
        if self.kind == "pie":
            return self._pie_body()
        if len(self.chart.series) == 1:
            return self._single_body()
        return self._grouped_body()

    def _top_two(self, ranked: list[Point], measure: str) -> Planned:
        (top, tv), (second, sv) = ranked[0], ranked[1]
        return self.say(
            "features_1",
            (top, second),
            f"{self.name(top)} had the largest {measure}, at {self.v(tv)}, followed by "
            f"{self.name(second)} with {self.v(sv)}.",
            f"At {self.v(tv)}, {self.name(top)} recorded the highest {measure}, ahead of "
            f"{self.name(second)} at {self.v(sv)}.",
            f"The biggest {measure} belonged to {self.name(top)} ({self.v(tv)}), while "
            f"{self.name(second)} came next with {self.v(sv)}.",
        )

    def _ratio(self, section: str, high: Point, low: Point, measure: str) -> list[Planned]:
        words = ratio_words(high[1], low[1])
        if not words or not self.derived:
            return []
        return [
            self.say(
                section,
                (high[0], low[0]),
                f"The figure for {self.name(high[0])} was {words} that for {self.name(low[0])}.",
                f"{self.name(high[0])}'s {measure} was {words} that of {self.name(low[0])}.",
            )
        ]

    def _gap(self, section: str, high: Point, low: Point) -> list[Planned]:
        gap = high[1] - low[1]
        pair = frozenset((high[0], low[0]))
        if not self.derived or round(gap, self.style.decimals) <= 0 or pair in self.gaps:
            return []
        self.gaps.add(pair)
        return [
            self.say(
                section,
                (high[0], low[0]),
                f"{self.name(high[0])} was {self.style.change(gap)} higher than "
                f"{self.name(low[0])}.",
                f"There was a gap of {self.style.change(gap)} between {self.name(high[0])} and "
                f"{self.name(low[0])}.",
                f"{self.name(low[0])} trailed {self.name(high[0])} by {self.style.change(gap)}.",
                f"{self.name(high[0])} finished {self.style.change(gap)} ahead of "
                f"{self.name(low[0])}.",
            )
        ]

    def _shares(self, ranked: list[Point]) -> list[Planned]:
        """The top two as a share of the total, and each other category's share."""
        if not self.derived:
            return []
        total = sum(v for _, v in ranked)
        (a, av), (b, bv) = ranked[0], ranked[1]
        half = "more than half" if av + bv > total / 2 else "less than half"
        out = [
            self.say(
                "features_1",
                (a, b),
                f"Together, {self.name(a)} and {self.name(b)} accounted for {self.v(av + bv)}, "
                f"{half} of the total.",
                f"{self.name(a)} and {self.name(b)} combined came to {self.v(av + bv)}, "
                f"{half} of the total.",
            )
        ]
        for label, value in ranked[2:]:
            out.append(
                self.say(
                    "features_2",
                    (label,),
                    f"{self.name(label)} accounted for {100 * value / total:.0f}% of the total.",
                    f"The share of {self.name(label)} in the total was {100 * value / total:.0f}%.",
                )
            )
        return out

    def _spread(self, ranked: list[Point]) -> Planned:
        wide = ranked[-1][1] <= 0 or ranked[0][1] >= 2 * ranked[-1][1]
        return self.say(
            "overview",
            (),
            "The difference between the top and the bottom of the ranking was considerable."
            if wide
            else "The figures were relatively close to one another.",
            "There was a wide gap between the extremes."
            if wide
            else "No category was far out of line with the others.",
        )

    def _pair_gaps(self, ranked: list[Point]) -> list[Planned]:
        """Neighbours in the ranking compared: "A was 3 hours higher than B"."""
        out = []
        for high, low in zip(ranked[1:], ranked[2:], strict=False):
            out += self._gap("features_2", high, low)
        return out

    def _neighbours(self, ranked: list[Point]) -> list[Planned]:
        """Printed figures only: neighbours in the ranking compared in words, each with its
        value ("A stood at 12%, higher than B at 10%"), from the second place down."""
        if self.derived:
            return []
        out = []
        for (a, av), (b, bv) in zip(ranked[1:], ranked[2:], strict=False):
            if round(av - bv, self.style.decimals) <= 0:
                continue
            out.append(
                self.say(
                    "features_2",
                    (a, b),
                    f"{self.name(a)} stood at {self.v(av)}, higher than {self.name(b)} at "
                    f"{self.v(bv)}.",
                    f"{self.name(a)}, at {self.v(av)}, was ahead of {self.name(b)}, at "
                    f"{self.v(bv)}.",
                    f"{self.name(b)} came below {self.name(a)}, at {self.v(bv)} against "
                    f"{self.v(av)}.",
                )
            )
        return out

    def _axis_sentence(self) -> Planned:
        unit = self.unit_phrase().lstrip(", ").removeprefix("(").removesuffix(")")
        unit = re.sub(r"^(?:measured|with figures|expressed as|in)\s+(?:in\s+)?", "", unit)
        measure = self.chart.y_label.split("(")[0].strip().lower() or "the values"
        return self.say(
            "introduction",
            (),
            f"Each bar stands for one {self.category}, and its height gives {measure}."
            if self.kind == "bar"
            else f"Each row of the table gives one {self.category}.",
            f"The values are given in {unit}."
            if unit and unit != "%"
            else "The values are percentages.",
        )

    def _positions(self, middle: list[Point], section: str) -> list[Planned]:
        """Where each middle category stands against the top one, in words (a ratio)."""
        if not self.derived:
            return []
        out = []
        top = self.ranked(0)[0] if self.kind != "pie" else None
        for label, value in middle:
            if top is None or value <= 0:
                continue
            words = ratio_words(top[1], value)
            if words:
                out.append(
                    self.say(
                        section,
                        (label, top[0]),
                        f"{self.name(top[0])}'s figure was {words} that of {self.name(label)}.",
                        f"{self.name(label)} was well behind {self.name(top[0])}, which reached "
                        f"{words} its level.",
                    )
                )
        return out

    def _bottom(self, point: Point, measure: str) -> Planned:
        low, lv = point
        return self.say(
            "features_2",
            (low,),
            f"{self.name(low)} had the lowest {measure} of all, at just {self.v(lv)}.",
            f"At the other end of the scale, {self.name(low)} had the smallest {measure}, at "
            f"{self.v(lv)}.",
            f"The lowest {measure}, {self.v(lv)}, was recorded for {self.name(low)}.",
        )

    def _middle(self, middle: list[Point]) -> list[Planned]:
        out = []
        for (a, av), (b, bv) in zip(middle[::2], middle[1::2], strict=False):
            if av > bv:
                out.append(
                    self.say(
                        "features_2",
                        (a, b),
                        f"{self.name(a)} stood at {self.v(av)}, somewhat higher than "
                        f"{self.name(b)} at {self.v(bv)}.",
                        f"{self.name(a)} and {self.name(b)} came in the middle, at {self.v(av)} "
                        f"and {self.v(bv)} respectively.",
                        f"The figure for {self.name(a)} was {self.v(av)}, compared with "
                        f"{self.v(bv)} for {self.name(b)}.",
                    )
                )
            else:
                out.append(
                    self.say(
                        "features_2",
                        (a, b),
                        f"{self.name(a)} and {self.name(b)} were level, at {self.v(av)} each.",
                    )
                )
        if len(middle) % 2:
            c, cv = middle[-1]
            out.append(
                self.say(
                    "features_2",
                    (c,),
                    f"{self.name(c)} recorded {self.v(cv)}.",
                    f"The figure for {self.name(c)} was {self.v(cv)}.",
                    f"{self.name(c)} accounted for {self.v(cv)}."
                    if self.kind == "pie"
                    else f"{self.name(c)} came to {self.v(cv)}.",
                )
            )
        if out:
            opener = self.pick(
                "Turning to the other categories, ", "As for the rest, ", "Further down, ", ""
            )
            out[0] = self.opened(opener, out[0])
        return out

    def _single_body(self) -> tuple[list[Planned], list[Planned]]:
        ranked = self.ranked(0)
        core = [
            self._top_two(ranked, "figure"),
            *self._ratio("features_1", ranked[0], ranked[-1], "figure"),
            *self._middle(ranked[2:-1]),
            self._bottom(ranked[-1], "figure"),
        ]
        extra = [*self._neighbours(ranked), *self._gap("features_1", ranked[0], ranked[1])]
        if self.derived and self._additive():
            (top, tv), total = ranked[0], sum(v for _, v in ranked)
            extra.append(
                self.say(
                    "features_2",
                    (top,),
                    f"Together the categories totalled {self.v(total)}, of which "
                    f"{self.name(top)} accounted for {100 * tv / total:.0f}%.",
                    f"In total, the categories amounted to {self.v(total)}, and {self.name(top)} "
                    f"accounted for {100 * tv / total:.0f}% of this.",
                )
            )
        extra += self._gap("features_2", ranked[-2], ranked[-1])
        extra += self._ratio("features_2", ranked[1], ranked[-1], "figure")
        if self._additive():
            extra += self._shares(ranked)
        extra += self._positions(ranked[2:-1], "features_2")
        extra += self._pair_gaps(ranked)
        extra.append(self._axis_sentence())
        extra.append(self._spread(ranked))
        extra += self._gap("features_2", ranked[0], ranked[-1])
        extra += self._ratio("features_1", ranked[0], ranked[1], "figure")
        return core, extra

    def _pie_body(self) -> tuple[list[Planned], list[Planned]]:
        points = self.points(0)
        total = sum(v for _, v in points)
        if not self.style.percent:  # counts: each slice as its share of the total
            points = [(label, 100 * v / total) for label, v in points]
            self.style, total = Style(decimals=0, unit="%"), 100.0
        ranked = sorted(points, key=lambda p: (-p[1], p[0]))
        core = [self._top_two(ranked, "share")]
        if len(ranked) > 2 and self.derived:
            (a, av), (b, bv) = ranked[0], ranked[1]
            half = "more than half" if av + bv > total / 2 else "less than half"
            core.append(
                self.say(
                    "features_1",
                    (a, b),
                    f"Together, {self.name(a)} and {self.name(b)} accounted for "
                    f"{self.v(av + bv)}, {half} of the total.",
                    f"{self.name(a)} and {self.name(b)} combined made up {self.v(av + bv)}, "
                    f"{half} of the whole.",
                )
            )
        core += self._middle(ranked[2:-1])
        core.append(self._bottom(ranked[-1], "share"))
        extra = [
            *self._neighbours(ranked),
            *self._ratio("features_1", ranked[0], ranked[-1], "share"),
        ]
        fraction = _fraction_words(ranked[0][1] / total)
        if fraction and self.derived:
            extra.append(
                self.say(
                    "features_1",
                    (ranked[0][0],),
                    f"In other words, {self.name(ranked[0][0])} accounted for {fraction} of the "
                    "total.",
                    f"This means that {self.name(ranked[0][0])} made up {fraction} of the total.",
                )
            )
        extra += self._gap("features_1", ranked[0], ranked[1])
        if len(ranked) > 3:
            extra.append(self._two_smallest(ranked[-1], ranked[-2]))
        extra += self._ratio("features_2", ranked[1], ranked[-1], "share")
        extra += self._pair_gaps(ranked)
        extra.append(self._spread(ranked))
        extra.append(
            self.say(
                "introduction",
                (),
                "The figures are percentages of the total.",
                "Each slice is given as a percentage of the whole.",
            )
        )
        return core, extra

    def _two_smallest(self, smallest: Point, next_smallest: Point) -> Planned:
        (c, cv), (d, dv) = smallest, next_smallest
        if not self.derived:
            return self.say(
                "features_2",
                (c, d),
                f"The two smallest slices were {self.name(d)} and {self.name(c)}, at {self.v(dv)} "
                f"and {self.v(cv)}.",
                f"{self.name(d)} ({self.v(dv)}) and {self.name(c)} ({self.v(cv)}) were the two "
                "smallest slices.",
            )
        return self.say(
            "features_2",
            (c, d),
            f"The two smallest slices, {self.name(d)} and {self.name(c)}, together "
            f"accounted for only {self.v(cv + dv)}.",
            f"Combined, {self.name(d)} and {self.name(c)} made up just {self.v(cv + dv)}.",
            f"{self.name(d)} and {self.name(c)} together came to a mere {self.v(cv + dv)}.",
        )

    def _additive(self) -> bool:
        described = f"{self.chart.title} {self.chart.y_label}".lower()
        if self.style.percent or any(w in described for w in ("average", "per ", "rate")):
            return False
        return all(v >= 0 for v in self.chart.values())

    def _grouped_body(self) -> tuple[list[Planned], list[Planned]]:
        if self.time_series:
            return self._over_years()
        a, b = self.chart.series[0], self.chart.series[-1]
        pairs = _pairs(self.chart)
        core = [self._group_range("features_1", 0), self._widest_gap(pairs, a, b)]
        more = sum(1 for _, x, y in pairs if x > y)
        core.append(self._group_range("features_2", len(self.chart.series) - 1))
        if self.derived:
            core.append(
                self.say(
                    "features_2",
                    (a, b),
                    f"{a} exceeded {b} in {count_words(more)} of the {count_words(len(pairs))} "
                    "categories.",
                    f"Comparing the two, {a} exceeded {b} in {count_words(more)} of the "
                    f"{count_words(len(pairs))} categories.",
                )
            )
        ratios = [
            sentence
            for index, group in enumerate(self.chart.series)
            for sentence in self._group_ratio(index, group)
        ]
        return core, [*ratios, *self._category_details(pairs, a, b), self._axis_sentence()]

    def _group_range(self, section: str, index: int) -> Planned:
        group = self.chart.series[index]
        ranked = self.ranked(index)
        (top, tv), (low, lv) = ranked[0], ranked[-1]
        return self.say(
            section,
            (top, low, group),
            f"Among {group}, {self.name(top)} had the highest figure, at {self.v(tv)}, while "
            f"{self.name(low)} had the lowest, at {self.v(lv)}.",
            f"For {group}, the figures ranged from {self.v(lv)} for {self.name(low)} to "
            f"{self.v(tv)} for {self.name(top)}, the highest.",
            f"In the {group} group, {self.name(top)} came first with {self.v(tv)}, and "
            f"{self.name(low)} last with {self.v(lv)}.",
        )

    def _group_ratio(self, index: int, group: str) -> list[Planned]:
        ranked = self.ranked(index)
        (top, tv), (low, lv) = ranked[0], ranked[-1]
        words = ratio_words(tv, lv)
        if not words or not self.derived:
            return []
        return [
            self.say(
                "features_2",
                (top, low, group),
                f"Among {group}, the figure for {self.name(top)} was {words} that for "
                f"{self.name(low)}.",
                f"For {group}, {self.name(top)}'s figure was {words} that of {self.name(low)}.",
            )
        ]

    def _widest_gap(self, pairs: list[tuple[str, float, float]], a: str, b: str) -> Planned:
        label, x, y = max(pairs, key=lambda p: (abs(p[1] - p[2]), p[0]))
        return self.say(
            "features_1",
            (label, a, b),
            f"The widest gap between {a} and {b} was in {self.name(label)}, at {self.v(x)} "
            f"against {self.v(y)}.",
            f"{self.name(label)} showed the biggest difference between the two, with "
            f"{self.v(x)} for {a} and {self.v(y)} for {b}.",
        )

    def _category_details(
        self, pairs: list[tuple[str, float, float]], a: str, b: str
    ) -> list[Planned]:
        if self.time_series:
            return [self._over_time(label, x, y, a, b) for label, x, y in pairs]
        out = []
        for label, x, y in pairs:
            out.append(
                self.say(
                    "features_2",
                    (label,),
                    f"{self.name(label)} recorded {self.v(x)} for {a} and {self.v(y)} for {b}.",
                    f"The figures for {self.name(label)} were {self.v(x)} and {self.v(y)} "
                    f"for {a} and {b} respectively.",
                    f"For {self.name(label)}, {a} stood at {self.v(x)} and {b} at {self.v(y)}.",
                    f"{self.name(label)} came to {self.v(x)} among {a}, against {self.v(y)} "
                    f"among {b}.",
                )
            )
        return out

    def _over_time(self, label: str, x: float, y: float, a: str, b: str) -> Planned:
        if round(y - x, self.style.decimals) == 0:
            return self.say(
                "features_2",
                (label,),
                f"{self.name(label)} stood at {self.v(x)} in both {a} and {b}.",
            )
        verb = (
            self.pick("rose", "grew", "went up")
            if y > x
            else self.pick("fell", "went down", "slipped")
        )
        return self.say(
            "features_2",
            (label,),
            f"{self.name(label)} {verb} from {self.v(x)} to {self.v(y)}.",
            f"The figure for {self.name(label)} {verb} from {self.v(x)} in {a} to {self.v(y)} "
            f"in {b}.",
            f"{self.name(label)} went from {self.v(x)} in {a} to {self.v(y)} in {b}.",
        )

    def _over_years(self) -> tuple[list[Planned], list[Planned]]:
        a, b = self.chart.series[0], self.chart.series[-1]
        pairs = _pairs(self.chart)
        by_change = sorted(pairs, key=lambda p: (p[2] - p[1], p[0]))
        up, down = by_change[-1], by_change[0]
        core = []
        if up[2] > up[1]:
            core.append(
                self.say(
                    "features_1",
                    (up[0],),
                    f"Between {a} and {b}, the figure for {self.name(up[0])} rose from "
                    f"{self.v(up[1])} to {self.v(up[2])}{self.change(up[1], up[2])}.",
                    f"{self.name(up[0])} saw the most striking growth, climbing from "
                    f"{self.v(up[1])} in {a} to {self.v(up[2])} in {b}.",
                )
            )
        if down[2] < down[1]:
            core.append(
                self.say(
                    "features_1",
                    (down[0],),
                    f"By contrast, {self.name(down[0])} fell from {self.v(down[1])} to "
                    f"{self.v(down[2])}{self.change(down[1], down[2])}.",
                    f"{self.name(down[0])}, on the other hand, dropped from {self.v(down[1])} in "
                    f"{a} to {self.v(down[2])} in {b}.",
                )
            )
        grew = sum(1 for _, x, y in pairs if y > x)
        share = f"{count_words(grew)} of the {count_words(len(pairs))}"
        if grew == len(pairs):
            share = f"all {count_words(grew)}"
        if self.derived:
            core.append(
                self.say(
                    "features_2",
                    (),
                    f"In all, {share} categories were higher in {b} than in {a}.",
                    f"Altogether, {share} categories had grown by {b}.",
                )
            )
        last = len(self.chart.series) - 1
        core.append(self._year_ranking(last))
        rest = [p for p in pairs if p[0] not in (up[0], down[0])]
        years = [self._year_ranking(i) for i in range(last)]
        return core, [*self._category_details(rest, a, b), *years, self._axis_sentence()]

    def _year_ranking(self, index: int) -> Planned:
        year = self.chart.series[index]
        ranked = self.ranked(index)
        (top, tv), (low, lv) = ranked[0], ranked[-1]
        return self.say(
            "features_2",
            (top, low),
            f"In {year}, {self.name(top)} had the highest figure, at {self.v(tv)}, and "
            f"{self.name(low)} the lowest, at {self.v(lv)}.",
            f"In {year}, the highest figure was recorded for {self.name(top)}, at {self.v(tv)}, "
            f"and the lowest for {self.name(low)}, at {self.v(lv)}.",
            f"{self.name(top)} led in {year} with {self.v(tv)}, while {self.name(low)} was "
            f"lowest at {self.v(lv)}.",
        )

    def _line_body(self) -> tuple[list[Planned], list[Planned]]:
        names = self.chart.series
        moves = sorted(
            ((abs(p[-1][1] - p[0][1]), name, p) for name, p in self._lines()),
            key=lambda m: (-m[0], m[1]),
        )
        f1: list[Planned] = []
        f2: list[Planned] = []
        extra: list[Planned] = []
        single = len(names) == 1
        for rank, (_, name, points) in enumerate(moves):
            section = "features_1" if rank < 2 else "features_2"
            (f1 if rank < 2 else f2).append(self._line_change(section, name, points))
            peak = max(points, key=lambda p: p[1])
            trough = min(points, key=lambda p: p[1])
            if peak not in (points[0], points[-1]):
                target, where = (f1, "features_1") if single or rank == 0 else (extra, section)
                target.append(
                    self.say(
                        where,
                        (name,),
                        f"{self.name(name)} reached a peak of {self.v(peak[1])} in {peak[0]}.",
                        f"Along the way, {self.name(name)} peaked at {self.v(peak[1])} in "
                        f"{peak[0]}.",
                    )
                )
            if trough not in (points[0], points[-1]):
                (f2 if single else extra).append(
                    self.say(
                        "features_2" if single else section,
                        (name,),
                        f"{self.name(name)} hit a low point of {self.v(trough[1])} in {trough[0]}.",
                        f"The trough for {self.name(name)} came in {trough[0]}, at "
                        f"{self.v(trough[1])}.",
                    )
                )
        f2 += self._crossings()
        f2 += self._steps(names[0]) if single else self._line_ends()
        for _, name, points in moves[:2]:
            phases = self._phases(name, points)
            (f2 if single else extra).extend(phases)
        if single:
            extra += self._range(names[0], moves[0][2])
            extra += self._stations(names[0], moves[0][2])
            extra += self._halves(names[0], moves[0][2])
            extra += self._ending(moves[0][2])
        else:
            for _, name, points in moves:
                extra += self._range(name, points)
            extra += self._midpoint()
        extra.append(
            self.say(
                "introduction",
                (),
                "The years run along the horizontal axis.",
                "Time is shown on the horizontal axis.",
            )
        )
        if not f2:
            f2, extra = extra[:1], extra[1:]
            f2 = [Planned("features_2", p.text, p.names) for p in f2]
        return [*f1, *f2], extra

    def _ending(self, points: list[Point]) -> list[Planned]:
        values = [v for _, v in points]
        if values[-1] == min(values) and values.count(values[-1]) == 1:
            where = "its lowest"
        elif values[-1] == max(values) and values.count(values[-1]) == 1:
            where = "its highest"
        else:
            return []
        return [
            self.say(
                "overview",
                (),
                f"By the end of the period, the figure stood at {where} level.",
                f"The period closed with the figure at {where} point.",
            )
        ]

    def _halves(self, name: str, points: list[Point]) -> list[Planned]:
        """The first and the second half of the period, one sentence each."""
        mid = len(points) // 2
        out = []
        for half, (a, b) in (("first", (0, mid)), ("second", (mid, len(points) - 1))):
            (xa, va), (xb, vb) = points[a], points[b]
            if b <= a:
                continue
            if abs(vb - va) <= 0.05 * max(abs(va), abs(vb)):
                how = self.pick("changed little", "remained fairly stable")
            else:
                how = self.pick("rose", "increased") if vb > va else self.pick("fell", "decreased")
            out.append(
                self.say(
                    "features_2",
                    (name,),
                    f"In the {half} half of the period, {self.name(name)} {how}, going from "
                    f"{self.v(va)} in {xa} to {self.v(vb)} in {xb}.",
                    f"During the {half} half, the figure {how}, from {self.v(va)} in {xa} to "
                    f"{self.v(vb)} in {xb}.",
                )
            )
        return out

    def _stations(self, name: str, points: list[Point]) -> list[Planned]:
        """The line at three points inside the period, in one sentence."""
        inside = points[1:-1]
        if len(inside) < 3:
            return []
        picked = [inside[0], inside[len(inside) // 2], inside[-1]]
        told = join_words([f"{self.v(v)} in {x}" for x, v in picked])
        return [
            self.say(
                "features_2",
                (name,),
                f"Along the way, {self.name(name)} passed through {told}.",
                f"In between, {self.name(name)} stood at {told}.",
            )
        ]

    def _midpoint(self) -> list[Planned]:
        row = self.chart.rows[len(self.chart.rows) // 2]
        values = [(n, v) for n, v in zip(self.chart.series, row[1:], strict=True) if v is not None]
        if not 2 <= len(values) <= 3:
            return []
        listed = join_words([f"{self.name(n)} at {self.v(float(v))}" for n, v in values])
        return [
            self.say(
                "features_2",
                tuple(n for n, _ in values),
                f"Midway through the period, in {row[0]}, the figures stood with {listed}.",
                f"In {row[0]}, halfway through the period, the readings were {listed}.",
            )
        ]

    def _range(self, name: str, points: list[Point]) -> list[Planned]:
        (lx, lv), (hx, hv) = min(points, key=lambda p: p[1]), max(points, key=lambda p: p[1])
        if lv == hv:
            return []
        return [
            self.say(
                "features_1",
                (name,),
                f"The lowest value for {self.name(name)} was {self.v(lv)}, recorded in {lx}, and "
                f"the highest was {self.v(hv)}, in {hx}.",
                f"Over the whole period, {self.name(name)} ranged from {self.v(lv)} in {lx} to "
                f"{self.v(hv)} in {hx}.",
            )
        ]

    def _phases(self, name: str, points: list[Point]) -> list[Planned]:
        """The line told as its runs in one direction: "From 2004 to 2008, X climbed from 3
        to 9", "It then fell to 4 by 2012" (at most four runs, the largest, in time order)."""
        runs: list[list[int]] = []
        for i in range(1, len(points)):
            step = points[i][1] - points[i - 1][1]
            sign = (step > 0) - (step < 0)
            if runs and (sign == 0 or sign == runs[-1][2]):
                runs[-1][1] = i
            else:
                runs.append([i - 1, i, sign])
        runs = [r for r in runs if r[2] != 0]
        if len(runs) < 2:
            return []
        biggest = sorted(runs, key=lambda r: -abs(points[r[1]][1] - points[r[0]][1]))[:4]
        out = []
        for n, (a, b, sign) in enumerate(sorted(biggest)):
            (xa, va), (xb, vb) = points[a], points[b]
            verb = (
                self.pick("rose", "climbed", "grew")
                if sign > 0
                else self.pick("fell", "declined", "dropped")
            )
            who = self.name(name)
            options = [
                f"From {xa} to {xb}, {who} {verb} from {self.v(va)} to {self.v(vb)}.",
                f"{who} {verb} from {self.v(va)} in {xa} to {self.v(vb)} in {xb}.",
            ]
            if n:
                options.append(f"After {xa}, {who} {verb} to {self.v(vb)} by {xb}.")
            out.append(self.say("features_2", (name,), *options))
        return out

    def _lines(self) -> list[tuple[str, list[Point]]]:
        return [
            (name, points)
            for index, name in enumerate(self.chart.series)
            if len(points := self.points(index)) >= 2
        ]

    def _line_change(self, section: str, name: str, points: list[Point]) -> Planned:
        (x0, v0), (x1, v1) = points[0], points[-1]
        who = self.name(name)
        if round(v1 - v0, self.style.decimals) == 0:
            return self.say(
                section,
                (name,),
                f"{who} ended the period where it began, at {self.v(v0)} in both {x0} and {x1}.",
            )
        rise = v1 > v0
        verb = (
            self.pick("rose", "climbed", "increased")
            if rise
            else self.pick("fell", "declined", "dropped")
        )
        change = self.change(v0, v1)
        return self.say(
            section,
            (name,),
            f"{who} {verb} from {self.v(v0)} in {x0} to {self.v(v1)} in {x1}{change}.",
            f"Between {x0} and {x1}, {who} {verb} from {self.v(v0)} to {self.v(v1)}{change}.",
        )

    def _steps(self, name: str) -> list[Planned]:
        points = self.points(0)
        steps = [
            (b - a, xa, xb, a, b) for (xa, a), (xb, b) in zip(points, points[1:], strict=False)
        ]
        out = []
        rise, fall = max(steps), min(steps)
        if rise[0] > 0:
            _, xa, xb, a, b = rise
            out.append(
                self.say(
                    "features_2",
                    (name,),
                    f"The sharpest rise came between {xa} and {xb}, when the figure went from "
                    f"{self.v(a)} to {self.v(b)}.",
                    f"Between {xa} and {xb}, the figure jumped from {self.v(a)} to {self.v(b)}, "
                    "the biggest single increase.",
                )
            )
        if fall[0] < 0:
            _, xa, xb, a, b = fall
            out.append(
                self.say(
                    "features_2",
                    (name,),
                    f"The steepest drop came between {xa} and {xb}, from {self.v(a)} to "
                    f"{self.v(b)}.",
                    f"Between {xa} and {xb}, the figure dropped from {self.v(a)} to {self.v(b)}.",
                )
            )
        return out

    def _line_ends(self) -> list[Planned]:
        last = self.chart.rows[-1]
        ends = [
            (n, float(v)) for n, v in zip(self.chart.series, last[1:], strict=True) if v is not None
        ]
        ends.sort(key=lambda p: (-p[1], p[0]))
        if len(ends) < 2 or ends[0][1] <= ends[-1][1]:
            return []
        (hi, hv), (lo, lv) = ends[0], ends[-1]
        return [
            self.say(
                "features_2",
                (hi, lo),
                f"By {last[0]}, {self.name(hi)} was the highest at {self.v(hv)}, while "
                f"{self.name(lo)} was the lowest at {self.v(lv)}.",
                f"In {last[0]}, {self.name(hi)} had the highest figure ({self.v(hv)}) and "
                f"{self.name(lo)} the lowest ({self.v(lv)}).",
            )
        ]

    def _crossings(self) -> list[Planned]:
        out = []
        names = self.chart.series
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                for before, after, ahead in crossing_points(self.chart, i, j):
                    behind = names[j] if ahead == names[i] else names[i]
                    out.append(
                        self.say(
                            "features_2",
                            (ahead, behind),
                            f"{self.name(ahead)} overtook {self.name(behind)} between {before} "
                            f"and {after}.",
                            f"Between {before} and {after}, {self.name(ahead)} overtook "
                            f"{self.name(behind)}.",
                        )
                    )
        return out[:2]


def _pairs(chart: ChartRecord) -> list[tuple[str, float, float]]:
    """(row, first series, last series) for the rows with both values."""
    return [
        (str(r[0]), float(r[1]), float(r[-1]))
        for r in chart.rows
        if r[1] is not None and r[-1] is not None
    ]


def _always_top(chart: ChartRecord, by_row: bool) -> str | None:
    """The one row (by_row) or series that is strictly highest at every position."""
    if by_row:
        columns = [[(str(r[0]), r[c + 1]) for r in chart.rows] for c in range(len(chart.series))]
    else:
        columns = [list(zip(chart.series, r[1:], strict=True)) for r in chart.rows]
    leaders = set()
    for column in columns:
        known = sorted(((v, n) for n, v in column if v is not None), reverse=True)
        if len(known) < 2 or len(known) < len(column) or known[0][0] == known[1][0]:
            return None
        leaders.add(known[0][1])
    return leaders.pop() if len(leaders) == 1 else None


_FRACTIONS = (
    (1 / 2, "half"),
    (1 / 3, "a third"),
    (1 / 4, "a quarter"),
    (2 / 3, "two thirds"),
    (3 / 4, "three quarters"),
    (1 / 5, "a fifth"),
)


def _fraction_words(share: float) -> str | None:
    """ "just over a third" for 0.34: the nearest simple fraction within 0.02, hedged."""
    for value, words in _FRACTIONS:
        if abs(share - value) <= 0.002:
            return "exactly half" if words == "half" else words
        if abs(share - value) <= 0.02:
            return f"{'just over' if share > value else 'just under'} {words}"
    return None


_TITLE_PERIOD = re.compile(r",\s*((?:1[89]|20)\d\d)\s*[-–]\s*((?:1[89]|20)\d\d)\s*$")
_TITLE_YEARS = re.compile(r",\s*((?:(?:1[89]|20)\d\d(?:,\s*|\s+and\s+))*(?:1[89]|20)\d\d)\s*$")


def _title_phrase(title: str) -> str:
    """The title as the object of a verb: "Share of commuters by mode in Japan, 2010-2020" ->
    "the share of commuters by mode in Japan between 2010 and 2020"."""
    text = re.sub(r"\s*\([^)]*\)", "", " ".join(title.split()).rstrip("."))
    text = _TITLE_PERIOD.sub(r" between \1 and \2", text)
    text = _TITLE_YEARS.sub(r" in \1", text)
    text = text.replace(": breakdown by", ", broken down by")
    first, _, rest = text.partition(" ")
    if first.isalpha() and not first.isupper():
        first = first.lower()
    text = f"{first} {rest}".strip()
    return text if text.startswith(("the ", "a ", "an ")) else f"the {text}"
