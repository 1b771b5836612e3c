"""Claim checks: every fact-sheet sentence of hundreds of seeded charts holds, and mutated
facts (wrong row, rank, direction, comparison, overtaking, fraction, ratio) are caught."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from chartdistill.data.records import ChartRecord
from chartdistill.data.synthetic import make_chart
from chartdistill.essay.claims import check_claims
from chartdistill.essay.grounding import ChartNumbers, ground_numbers
from chartdistill.teacher.facts import chart_facts, style_of

TYPES = ("bar", "line", "pie", "table")
N_PER_TYPE = 60


def _charts() -> Iterator[ChartRecord]:
    for chart_type in TYPES:
        for i in range(N_PER_TYPE):
            rng = random.Random(f"claims:{chart_type}:{i}")
            yield make_chart(rng, chart_type, f"{chart_type}-{i}")


CHARTS = list(_charts())


def _false(text: str, chart: ChartRecord) -> list[str]:
    return [c.kind for c in check_claims(text, chart) if not c.ok]


def test_every_fact_sheet_sentence_is_grounded_and_true() -> None:
    checked = 0
    for chart in CHARTS:
        for fact in chart_facts(chart, limit=50):
            grounding = ground_numbers(fact, chart, 0.02)
            assert not grounding.ungrounded and not grounding.misattributed, (chart.id, fact)
            claims = check_claims(fact, chart)
            assert all(c.ok for c in claims), (chart.id, fact, claims)
            checked += len(claims)
    assert checked > 1000  # the sheet's sentences do make claims that the rules read


def _series_points(chart: ChartRecord, c: int) -> list[tuple[str, float]]:
    return [(str(r[0]), float(r[c + 1])) for r in chart.rows if r[c + 1] is not None]


def _single(chart: ChartRecord) -> bool:
    return len(chart.series) == 1


def _mutations(chart: ChartRecord) -> Iterator[tuple[str, str]]:
    """(kind, a false sentence whose figures exist in the table) for one chart."""
    style = style_of(chart)
    if chart.chart_type == "line":
        yield from _line_mutations(chart, style)
        return
    if not _single(chart):
        return
    points = sorted(_series_points(chart, 0), key=lambda p: -p[1])
    top, second, low = points[0], points[1], points[-1]
    if low[1] < top[1]:
        yield "superlative", f"{low[0]} accounted for the largest share, at {style.value(low[1])}."
        yield "superlative", f"{top[0]} had the lowest figure, at {style.value(top[1])}."
        yield "comparison", f"{low[0]} was higher than {top[0]}."
    if len(points) > 3 and points[3][1] < second[1]:
        name, value = points[3]
        yield "rank", f"{name} had the second highest figure, at {style.value(value)}."
    total = sum(v for _, v in points)
    share = low[1] / total if total else 0
    if share < 0.2:
        yield "fraction", f"{low[0]} accounted for about a third of the total."
        yield "fraction", f"{low[0]} accounted for ¾ of the total."
    if low[1] > 0 and top[1] / low[1] > 1.3:
        yield "ratio", f"The figure for {top[0]} was roughly half that for {low[0]}."
        yield "ratio", f"{low[0]} was almost double {top[0]}."


def _line_mutations(chart: ChartRecord, style) -> Iterator[tuple[str, str]]:
    for c, name in enumerate(chart.series):
        points = _series_points(chart, c)
        (x0, v0), (x1, v1) = points[0], points[-1]
        if round(v1 - v0, style.decimals) == 0:
            continue
        verb = "fell" if v1 > v0 else "rose"  # the wrong direction
        yield (
            "trend",
            (f"{name} {verb} from {style.value(v0)} in {x0} to {style.value(v1)} in {x1}."),
        )
        yield "trend", f"{name} {verb} between {x0} and {x1}."
    if len(chart.series) >= 2:
        a, b = chart.series[0], chart.series[1]
        first, last = chart.rows[0], chart.rows[-1]
        if first[1] is not None and first[2] is not None and first[1] != first[2]:
            low, high = (a, b) if first[1] < first[2] else (b, a)
            yield "comparison", f"In {first[0]}, {low} was higher than {high}."
        if None not in (first[1], first[2], last[1], last[2]):
            never = (first[1] - first[2]) * (last[1] - last[2]) > 0
            ahead = a if first[1] > first[2] else b
            behind = b if ahead == a else a
            if never:  # the same one is ahead at both ends: "behind overtook ahead" between them
                yield "overtaking", f"{behind} overtook {ahead} between {first[0]} and {last[0]}."


KINDS = ("superlative", "rank", "trend", "comparison", "overtaking", "fraction", "ratio")
MUTATIONS = [(chart, kind, text) for chart in CHARTS for kind, text in _mutations(chart)]


def test_mutations_cover_every_kind() -> None:
    kinds = {kind for _, kind, _ in MUTATIONS}
    assert kinds == {
        "superlative",
        "rank",
        "trend",
        "comparison",
        "overtaking",
        "fraction",
        "ratio",
    }
    assert len(MUTATIONS) > 300


@pytest.mark.parametrize(
    "kind", ["superlative", "rank", "trend", "comparison", "overtaking", "fraction", "ratio"]
)
def test_every_mutated_fact_is_caught(kind: str) -> None:
    missed = [
        (chart.id, text) for chart, k, text in MUTATIONS if k == kind and not _false(text, chart)
    ]
    total = sum(1 for _, k, _ in MUTATIONS if k == kind)
    assert not missed, f"{len(missed)} of {total} missed: {missed[:5]}"


PIE = ChartRecord(
    id="pie-1",
    chart_type="pie",
    title="Household energy use by purpose in the UK, 2020",
    unit="%",
    columns=["Purpose", "Share of total, 2020"],
    rows=[["Heating", 45], ["Water", 25], ["Cooking", 18], ["Appliances", 8], ["Lighting", 4]],
    image="images/pie-1.png",
    source="synthetic",
)


@pytest.mark.parametrize(
    "sentence",
    [
        "Appliances and Lighting together accounted for 12%.",
        "Heating accounted for almost half of the total, at 45%.",
        "Water made up a quarter of household energy use.",
        "Heating and Water together made up more than two-thirds of the total.",
        "The share of Heating was almost double that of Water.",
        "Cooking came third, at 18%.",
        "Heating was the largest category, followed by Water.",
        "Lighting had the smallest share, just 4%.",
        "Water used more energy than Cooking.",
    ],
)
def test_true_sentences_pass(sentence: str) -> None:
    grounding = ground_numbers(sentence, PIE, 0.02)
    assert not grounding.ungrounded and not grounding.misattributed
    assert not _false(sentence, PIE), check_claims(sentence, PIE)


@pytest.mark.parametrize(
    ("sentence", "kind"),
    [
        ("Lighting accounted for the largest share, at 4%.", "superlative"),
        ("Appliances had the second largest share, at 8%.", "rank"),
        ("Cooking accounted for roughly half of the total.", "fraction"),
        ("Water accounted for ¾ of the total.", "fraction"),
        ("Lighting was higher than Cooking.", "comparison"),
        ("Water was roughly half the figure for Lighting.", "ratio"),
        ("Heating was three times Water.", "ratio"),
    ],
)
def test_false_sentences_fail(sentence: str, kind: str) -> None:
    assert kind in _false(sentence, PIE), check_claims(sentence, PIE)


def test_names_inside_longer_names_are_not_mentions() -> None:
    chart = ChartRecord(
        id="m",
        chart_type="pie",
        title="Museum visits by type",
        unit="%",
        columns=["Museum", "Share"],
        rows=[["Natural history", 23], ["History", 14], ["Modern art", 33], ["Science", 30]],
        image="images/m.png",
        source="synthetic",
    )
    spans = ChartNumbers.from_chart(chart).name_spans("Natural history and History grew.")
    assert [(s.index, s.start) for s in spans] == [(0, 0), (1, 20)]
    text = "Modern art and Natural history together accounted for 56%."
    assert not ground_numbers(text, chart, 0.02).ungrounded


def test_a_period_runs_forwards() -> None:
    chart = make_chart(random.Random("claims:line:0"), "line", "line-0")
    assert _false("The graph shows visits from 2014 to 2014.", chart) == ["period"]


def test_a_true_essay_with_one_false_sentence_is_rejected_for_it() -> None:
    from chartdistill.essay.text import LENIENT_BOUNDS, validate_essay
    from chartdistill.teacher.reference import reference_essay

    for chart, kind, text in MUTATIONS[::7]:
        essay = reference_essay(chart)
        assert "false_claims" not in validate_essay(essay, chart, LENIENT_BOUNDS), chart.id
        spoiled = {**essay, "features_2": f"{essay['features_2']} {text}"}
        assert "false_claims" in validate_essay(spoiled, chart, LENIENT_BOUNDS), (kind, text)


def test_a_true_essay_stating_derived_figures_is_accepted() -> None:
    from chartdistill.essay.text import LENIENT_BOUNDS, validate_essay
    from chartdistill.teacher.reference import reference_essay

    essay = reference_essay(PIE)
    essay["features_2"] += (
        " Cooking and Appliances together made up 26%, about a quarter of the total."
        " In total, Water, Cooking and Lighting amounted to 47%, just under half."
    )
    assert validate_essay(essay, PIE, LENIENT_BOUNDS) == []
