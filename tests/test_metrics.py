"""Automatic essay metrics against the chart's ground-truth table."""

from __future__ import annotations

import pytest

from chartdistill.data.records import ChartRecord
from chartdistill.essay.sections import render_structured, render_unstructured
from chartdistill.essay.text import EssayBounds, essay_body, is_question_list, parse_sections
from chartdistill.evaluation.metrics import (
    essay_metrics,
    key_value_recall,
    key_values,
    off_task,
    repeated_ngram_rate,
    rouge_l,
    structure_compliance,
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


def numeric_precision(text: str, chart: ChartRecord, tolerance: float) -> float | None:
    bounds = EssayBounds(tolerance=tolerance)
    return essay_metrics(text, chart, None, bounds)["numeric_precision"]  # type: ignore[return-value]


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
    def compliant(text: str) -> bool:
        return structure_compliance(parse_sections(text))

    assert compliant(render_structured(GOOD))
    assert compliant("<analysis>plan</analysis>\n" + render_structured(GOOD))
    assert not compliant(render_unstructured(GOOD))  # no markers
    swapped = (
        render_structured(GOOD)
        .replace("Introduction:", "TMP")
        .replace("Overview:", "Introduction:")
    )
    assert not compliant(swapped.replace("TMP", "Overview:"))
    dropped = render_structured({**GOOD}).split("Overview:")[0]
    assert not compliant(dropped)


def test_word_count_and_bounds() -> None:
    assert word_count("Spain had 46.4 million visitors.") == 5
    text = render_structured(GOOD)
    n = word_count(essay_body(text))  # markers are not words of the essay
    assert n < word_count(text)
    for lo, hi, inside in ((n, n, True), (n + 1, n + 9, False), (n - 9, n - 1, False)):
        bounds = EssayBounds(min_words=lo, max_words=hi)
        assert essay_metrics(text, CHART, None, bounds)["within_word_bounds"] is inside


def test_repeated_ngram_rate_reexported() -> None:
    assert repeated_ngram_rate("a b c d a b c d", n=2) == pytest.approx(3 / 7)


def test_off_task() -> None:
    def why(text: str) -> str | None:
        return off_task(essay_body(text))

    assert why("") == "empty"
    assert why("<analysis>only thinking</analysis>") == "empty"
    assert why("What does the chart show? Which year was highest? Why?") == "mostly_questions"
    listed = "- Spain: 46.4\n- Italy: 41.2\n- Spain 2020: 19"
    assert why(listed) == "list_format"
    assert why("| Year | Spain |\n| 2000 | 46.4 |") == "list_format"
    assert why("The chart shows tourist arrivals in Spain and Italy.") == "one_liner"
    assert why(render_structured(GOOD)) is None
    assert why(render_unstructured(GOOD)) is None


def test_question_list_has_one_meaning() -> None:
    """ "question_list" is validation's reason for an essay that asks any question; a text made
    of questions is off task under its own code, "mostly_questions" (it fails both)."""
    from chartdistill.evaluation.metrics import check_essay

    one = render_unstructured({**GOOD, "overview": GOOD["overview"] + " Why did it rise?"})
    checked = check_essay(one, CHART, EssayBounds())
    assert "question_list" in checked.reasons and checked.off_task is None
    text = render_unstructured(GOOD) + "\n\nWhy did it rise? What came next?"
    assert is_question_list(essay_body(text))
    assert off_task(essay_body(text)) == "mostly_questions"
    assert "question_list" in check_essay(text, CHART, EssayBounds()).reasons


def test_rouge_l() -> None:
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    # LCS("the cat sat", "the dog sat") = 2 -> P = R = 2/3
    assert rouge_l("The cat sat", "the dog sat.") == pytest.approx(2 / 3)
    # LCS = 3 ("a b d"); P = 3/4, R = 3/5 -> F = 2/3
    assert rouge_l("a b c d", "a x b d y") == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert rouge_l("", "anything") == 0.0
    assert rouge_l("nothing shared", "entirely different") == 0.0


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
    # without sections validation reads the whole body: the loop and the false figure count
    assert str(m["reasons"]).split(",") == [
        "missing_section",
        "too_short",
        "loop",
        "too_few_numbers",
        "ungrounded_numbers",
        "misattributed_numbers",
    ]


def test_value_and_attribution_level_precision_side_by_side() -> None:
    """32.5 is in the table (men aged 16-24), so it is grounded at value level, but the sentence
    gives it to women aged 45-64: wrong at attribution level."""
    text = "Women aged 45-64 spent 32.5 hours a week online. Men aged 45-64 spent 15.2 hours."
    m = essay_metrics(text, CHART, None, EssayBounds())
    assert (m["numbers_mentioned"], m["numbers_grounded"], m["numbers_attributed"]) == (2, 2, 1)
    assert m["numeric_precision"] == 1.0 and m["attributed_precision"] == 0.5
    good = essay_metrics(render_structured(GOOD), CHART, None, EssayBounds())
    assert good["attributed_precision"] == good["numeric_precision"] == 1.0


def test_a_hedged_figure_counts_the_same_in_validation_metrics_and_report() -> None:
    """'about 28 hours' for 30.1 (7 % off): outside the tolerance, inside an approx_tolerance
    of 0.1 (not the default 0.05). Validation, the metrics and the report all read the bounds'
    approx_tolerance through the one verification, so all three call it grounded; at the
    default approx_tolerance all three call it ungrounded."""
    from chartdistill.essay.text import verify_essay
    from chartdistill.report.build import essay_view

    sections = {
        **GOOD,
        "features_2": GOOD["features_2"] + " Women aged 16-24 spent about 28 hours.",
    }
    text = render_structured(sections)
    for approx, grounded in ((0.1, True), (0.05, False)):
        bounds = EssayBounds(approx_tolerance=approx)
        validated = verify_essay(sections, CHART, bounds).grounding
        metrics = essay_metrics(text, CHART, None, bounds)
        report = essay_view(text, CHART, bounds).counts
        assert (validated.ungrounded == []) is grounded
        assert (metrics["numeric_precision"] == 1.0) is grounded
        assert (report["ungrounded"] == 0) is grounded
        assert metrics["numbers_grounded"] == validated.grounded
        assert report["grounded"] + report["misattributed"] == validated.grounded


def test_an_essay_known_by_its_sections_is_checked_as_written() -> None:
    """The reference is checked from its sections (never rendered and parsed back), with the
    same reasons, figures and metrics as its rendered text."""
    from chartdistill.evaluation.metrics import check_essay, check_metrics, check_sections

    bounds = EssayBounds()
    for render, markers in ((render_structured, True), (render_unstructured, False)):
        direct = check_sections(GOOD, CHART, bounds, had_markers=markers)
        parsed = check_essay(render(GOOD), CHART, bounds)
        assert direct.reasons == parsed.reasons
        assert direct.verification.grounding == parsed.verification.grounding
        assert check_metrics(direct, CHART, None, bounds) == check_metrics(
            parsed, CHART, None, bounds
        )
    partial = check_sections({k: GOOD[k] for k in ("introduction", "overview")}, CHART, bounds)
    assert "missing_section" in partial.reasons
