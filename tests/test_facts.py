"""The teacher's fact sheet: facts per chart type, essay formatting, and grounded figures."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from chartdistill.data.records import CHART_TYPES, ChartRecord
from chartdistill.data.synthetic import make_chart
from chartdistill.essay.grounding import ground_numbers
from chartdistill.teacher.facts import Style, chart_facts, ratio_words, relative_change
from chartdistill.teacher.prompts import render_teacher_messages

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"


def chart(chart_type: str, columns: list[str], rows: list[list], unit: str = "") -> ChartRecord:
    return ChartRecord(
        id="c",
        chart_type=chart_type,
        title="Test chart",
        unit=unit,
        columns=columns,
        rows=rows,
        image="images/c.png",
        source="test",
    )


def test_style_formats_units_and_precision() -> None:
    assert Style(0, "%").value(45) == "45%"
    assert Style(0, "%").change(-15) == "15 percentage points"
    assert Style(0, "%").change(1) == "1 percentage point"
    assert Style(0, "$").value(1234) == "$1,234"
    assert Style(1, "$ billion").value(3.21) == "$3.2 billion"
    assert Style(1, "hours").value(-2.04) == "-2.0 hours"
    assert Style(1, "million tonnes").value(0.04) == "0.0 million tonnes"
    assert Style(2, "").value(1.5) == "1.50"


def test_ratio_words_and_relative_change() -> None:
    assert ratio_words(10, 9) is None
    assert ratio_words(15, 10) == "about one and a half times"
    assert ratio_words(18.5, 10) == "almost double"
    assert ratio_words(20, 10) == "about double"
    assert ratio_words(23, 10) == "more than double"
    assert ratio_words(28, 10) == "almost three times"
    assert ratio_words(30, 10) == "about three times"
    assert ratio_words(43, 5) == "almost nine times"
    assert ratio_words(120, 10) == "more than ten times"
    assert ratio_words(5, 0) is None
    assert relative_change(20, 35) == pytest.approx(75.0)
    assert relative_change(-10, -5) == pytest.approx(50.0)
    assert relative_change(0, 5) is None


def test_single_bar_highest_lowest_ranking_ratio_total() -> None:
    facts = chart_facts(
        chart(
            "bar",
            ["Country", "2019"],
            [["the UK", 80.7], ["Canada", 44.4], ["India", 75]],
            "thousand",
        )
    )
    assert facts[0] == (
        "The UK had the highest figure, at 80.7 thousand, and Canada the lowest, at 44.4 thousand."
    )
    assert facts[1] == (
        "From highest to lowest: the UK (80.7 thousand), India (75.0 thousand) "
        "and Canada (44.4 thousand)."
    )
    assert "almost double" in facts[2]
    assert (
        facts[3]
        == "Together the categories totalled 200.1 thousand, of which the UK accounted for 40%."
    )


def test_percent_bar_has_no_total() -> None:
    facts = chart_facts(chart("bar", ["Age", "2008"], [["18-24", 12], ["35-44", 28]], "%"))
    assert not any("totalled" in f for f in facts)


def test_grouped_years_change_first_to_last() -> None:
    facts = chart_facts(
        chart(
            "table",
            ["Mode", "1995", "2005", "2015"],
            [["Bus", 29, 5, 18], ["Train", 39, 32, 18], ["Car", 24, 36, 42]],
            "%",
        )
    )
    assert (
        "Between 1995 and 2015, the largest rise was in Car, from 24% to 42%, an increase of "
        "18 percentage points." in facts
    )
    assert (
        "Between 1995 and 2015, the largest fall was in Train, from 39% to 18%, a decrease of "
        "21 percentage points." in facts
    )
    assert "One of the three categories were higher in 2015 than in 1995." in facts


def test_grouped_non_years_gap() -> None:
    facts = chart_facts(
        chart("bar", ["Age", "Boys", "Girls"], [["11-12", 5.0, 6.5], ["15-16", 9.2, 4.1]], "hours")
    )
    assert (
        "The largest gap between Boys and Girls was in 15-16: 9.2 hours against 4.1 hours, "
        "a difference of 5.1 hours." in facts
    )
    assert "Boys exceeded Girls in one of the two categories." in facts


def test_line_change_extremes_and_crossing() -> None:
    facts = chart_facts(
        chart(
            "line",
            ["Year", "Coal", "Wind"],
            [["2000", 120, 2], ["2005", 115, 6], ["2010", 95, 100], ["2015", 30, 110]],
            "TWh",
        )
    )
    assert facts[0] == (
        "Coal fell from 120 TWh in 2000 to 30 TWh in 2015, a decrease of 90 TWh, or 75%."
    )
    assert facts[1] == (
        "Wind rose from 2 TWh in 2000 to 110 TWh in 2015, an increase of 108 TWh, so it ended "
        "at more than ten times its first figure."
    )
    assert "In 2015, Wind was highest (110 TWh) and Coal lowest (30 TWh)." in facts
    assert "Wind overtook Coal between 2005 and 2010." in facts
    assert "The sharpest rise was in Wind between 2005 and 2010, from 6 TWh to 100 TWh." in facts
    assert "The sharpest fall was in Coal between 2010 and 2015, from 95 TWh to 30 TWh." in facts


def test_line_peak_inside_the_period() -> None:
    facts = chart_facts(chart("line", ["Year", "Sales"], [["1990", 5], ["1991", 9], ["1992", 5]]))
    assert "Sales was 5 in both 1990 and 1992." in facts
    assert "Sales peaked at 9 in 1991." in facts


def test_pie_shares_combined_and_raw_counts() -> None:
    facts = chart_facts(
        chart("pie", ["Source", "Share"], [["Wind", 43], ["Nuclear", 28], ["Coal", 29]], "%")
    )
    assert facts[0] == "Wind made up the largest share, 43%, and Nuclear the smallest, 28%."
    assert facts[1] == "From largest to smallest: Wind (43%), Coal (29%) and Nuclear (28%)."
    assert facts[2] == "Wind and Coal together accounted for 72%, more than half of the total."
    counts = chart_facts(chart("pie", ["Use", "Litres"], [["Garden", 30], ["Toilet", 10]]))
    assert counts[0] == "Garden made up the largest share, 75%, and Toilet the smallest, 25%."


@pytest.mark.parametrize("chart_type", CHART_TYPES)
def test_synthetic_facts_are_grounded(chart_type: str) -> None:
    """Every figure in the fact sheet passes the essay grounding check, except the derived
    figures the module docstring names: relative changes, totals and combined shares."""
    for index in range(12):
        record = make_chart(random.Random(f"7:{chart_type}:{index}"), chart_type, f"x{index}")
        facts = chart_facts(record)
        assert 2 <= len(facts) <= 10
        for fact in facts:
            assert (fact[0].isupper() or fact[0].isdigit()) and fact.endswith(".")
            if fact.startswith("Summed over") or "together accounted" in fact:
                continue
            text = re.sub(r", or \d+%|, of which .*", "", fact)
            grounding = ground_numbers(text, record, tolerance=0.02)
            assert not grounding.ungrounded, (fact, record.table_markdown())


def test_fact_sheet_in_prompt_and_switch() -> None:
    record = make_chart(random.Random("7:line:0"), "line", "x")
    on = render_teacher_messages(PROMPTS, record, "stepwise", section="features_1")
    off = render_teacher_messages(
        PROMPTS, record, "stepwise", section="features_1", fact_sheet=False
    )
    assert "<chart_facts>" in on[-1]["content"] and chart_facts(record)[0] in on[-1]["content"]
    assert "<chart_facts>" in on[1]["content"]  # the few-shot examples show their facts too
    assert all("chart_facts" not in m["content"] for m in off)
    intro = render_teacher_messages(PROMPTS, record, "stepwise", section="introduction")
    assert "<chart_facts>" not in intro[-1]["content"]
    single = render_teacher_messages(PROMPTS, record, "single")
    assert chart_facts(record)[0] in single[-1]["content"]
