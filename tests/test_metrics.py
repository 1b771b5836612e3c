"""Automatic essay metrics against the chart's ground-truth table."""

from __future__ import annotations

import pytest

from chartdistill.data.records import ChartRecord
from chartdistill.essay.sections import render_structured, render_unstructured
from chartdistill.essay.text import EssayBounds
from chartdistill.evaluation.metrics import (
    essay_metrics,
    key_value_recall,
    key_values,
    numeric_precision,
    off_task,
    repeated_ngram_rate,
    rouge_l,
    structure_compliance,
    wilson_interval,
    within_word_bounds,
    word_count,
)
from tests.test_essays import CHART, GOOD

LINE = ChartRecord.model_validate(
    {
        "id": "line-7",
        "chart_type": "line",
        "title": "Tourist arrivals (in millions), 2000-2020",
        "columns": ["Year", "Spain", "Italy"],
        "rows": [[2000, 46.4, 41.2], [2010, 52.7, 43.6], [2020, 19.0, 25.2]],
        "image": "line-7.png",
        "source": "synthetic",
    }
)


def test_numeric_precision() -> None:
    text = "Introduction:\nArrivals in Spain went from 46.4 million in 2000 to 19 million in 2020."
    assert numeric_precision(text, LINE, 0.02) == 1.0
    half = "Spain had 46.4 million visitors in 2000 and Italy 50 million in 2010."
    assert numeric_precision(half, LINE, 0.02) == 0.5
    assert numeric_precision("Arrivals fell sharply.", LINE, 0.02) is None


def test_markers_do_not_count_as_numbers() -> None:
    assert numeric_precision(render_structured(GOOD), CHART, 0.02) == 1.0


def test_key_values() -> None:
    # Spain: max 52.7, min 19.0, first 46.4, last 19.0; Italy: 43.6, 25.2, 41.2, 25.2
    assert key_values(LINE) == [52.7, 19.0, 46.4, 43.6, 25.2, 41.2]


def test_key_value_recall() -> None:
    text = "Spain peaked at 52.7 million in 2010 and Italy ended at 25.2 million; Spain 19."
    assert key_value_recall(text, LINE, 0.02) == pytest.approx(3 / 6)
    assert key_value_recall("Both countries had fewer visitors.", LINE, 0.02) == 0.0
    scaled = "Spain peaked at 52,700,000 arrivals."
    assert key_value_recall(scaled, LINE, 0.0) == pytest.approx(1 / 6)
    assert key_value_recall("2010 and 2020 were the key years.", LINE, 0.02) == 0.0


def test_structure_compliance() -> None:
    assert structure_compliance(render_structured(GOOD))
    assert structure_compliance("<analysis>plan</analysis>\n" + render_structured(GOOD))
    assert not structure_compliance(render_unstructured(GOOD))  # no markers
    swapped = (
        render_structured(GOOD)
        .replace("Introduction:", "TMP")
        .replace("Overview:", "Introduction:")
    )
    assert not structure_compliance(swapped.replace("TMP", "Overview:"))
    dropped = render_structured({**GOOD}).split("Overview:")[0]
    assert not structure_compliance(dropped)


def test_word_bounds() -> None:
    assert word_count("Spain had 46.4 million visitors.") == 5
    assert within_word_bounds("one two three", 3, 3)
    assert not within_word_bounds("one two three", 4, 10)
    assert not within_word_bounds("one two three", 1, 2)
    with pytest.raises(ValueError, match="reversed"):
        within_word_bounds("x", 5, 1)


def test_repeated_ngram_rate_reexported() -> None:
    assert repeated_ngram_rate("a b c d a b c d", n=2) == pytest.approx(3 / 7)


def test_off_task() -> None:
    assert off_task("") == "empty"
    assert off_task("<analysis>only thinking</analysis>") == "empty"
    assert off_task("What does the chart show? Which year was highest? Why?") == "question_list"
    listed = "- Spain: 46.4\n- Italy: 41.2\n- Spain 2020: 19"
    assert off_task(listed) == "list_format"
    assert off_task("| Year | Spain |\n| 2000 | 46.4 |") == "list_format"
    assert off_task("The chart shows tourist arrivals in Spain and Italy.") == "one_liner"
    assert off_task(render_structured(GOOD)) is None
    assert off_task(render_unstructured(GOOD)) is None


def test_rouge_l() -> None:
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    # LCS("the cat sat", "the dog sat") = 2 -> P = R = 2/3
    assert rouge_l("The cat sat", "the dog sat.") == pytest.approx(2 / 3)
    # LCS = 3 ("a b d"); P = 3/4, R = 3/5 -> F = 2/3
    assert rouge_l("a b c d", "a x b d y") == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert rouge_l("", "anything") == 0.0
    assert rouge_l("nothing shared", "entirely different") == 0.0


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        (8, 10, (0.490, 0.943)),
        (0, 10, (0.0, 0.278)),
        (10, 10, (0.722, 1.0)),
        (50, 100, (0.404, 0.596)),
        (5.5, 10, (0.274, 0.799)),  # a tie counted as half a win
    ],
)
def test_wilson_interval(successes: float, n: int, expected: tuple[float, float]) -> None:
    low, high = wilson_interval(successes, n)
    assert (round(low, 3), round(high, 3)) == expected


def test_wilson_interval_edges() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(8, 10, z=1.0)
    assert 0.490 < low < 0.8 < high < 0.943
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="n must be"):
        wilson_interval(0, -1)


def test_essay_metrics_for_a_good_structured_essay() -> None:
    text = "<analysis>notes</analysis>\n" + render_structured(GOOD)
    m = essay_metrics(text, CHART, render_structured(GOOD), EssayBounds())
    assert m["structure_compliance"] is True and m["had_markers"] is True
    assert m["parse_error"] is None and m["valid"] is True and m["reasons"] == ""
    assert m["words"] == 204 and m["within_word_bounds"] is True
    assert m["numbers_mentioned"] == 6 and m["numeric_precision"] == 1.0
    assert m["key_value_recall"] == 1.0 and m["rouge_l"] == 1.0
    assert m["off_task"] is None and m["loop"] is False


def test_essay_metrics_for_a_bad_student_output() -> None:
    text = "The chart shows internet use. The chart shows internet use. Men spent 50 hours."
    m = essay_metrics(text, CHART, None, EssayBounds())
    assert m["structure_compliance"] is False and m["had_markers"] is False
    assert m["parse_error"] == "no section markers and 1 paragraphs instead of 4"
    assert m["numeric_precision"] == 0.0 and m["key_value_recall"] == 0.0
    assert m["loop"] is True and m["off_task"] == "one_liner" and m["rouge_l"] is None
    assert m["valid"] is False
    # validation sees only the sections found (none here); text-level flags cover the rest
    assert str(m["reasons"]).split(",") == ["missing_section", "too_short", "too_few_numbers"]
