"""Number extraction and grounding against a chart's table."""

from __future__ import annotations

from pathlib import Path

import pytest

from chartdistill.data.records import CHART_TYPES, ChartRecord
from chartdistill.essay.grounding import (
    ChartNumbers,
    Mention,
    close_to,
    extract_numbers,
    ground_numbers,
    names_subject,
    value_mentions,
)
from chartdistill.prompts.chart_types import load_examples

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"


def chart(**overrides: object) -> ChartRecord:
    data: dict[str, object] = {
        "id": "c1",
        "chart_type": "line",
        "title": "Car sales in three countries, 2010-2020",
        "unit": "thousand units",
        "columns": ["Year", "UK", "France"],
        "rows": [[2010, 12.46, 30], [2015, 18.0, 25.5], [2020, 40.0, 21]],
        "image": "c1.png",
        "source": "synthetic",
    }
    data.update(overrides)
    return ChartRecord.model_validate(data)


def one(text: str) -> Mention:
    mentions = extract_numbers(text)
    assert len(mentions) == 1, mentions
    return mentions[0]


# --- extraction --------------------------------------------------------------------------------


def test_thousands_separator_and_decimal_with_full_stop() -> None:
    m = one("It reached 1,234,567.")
    assert m.value == 1234567 and m.text == "1,234,567" and not m.is_percent
    m = one("The figure was 12.5.")
    assert m.value == 12.5 and m.precision == pytest.approx(0.1) and m.text == "12.5"


@pytest.mark.parametrize(
    "text", ["12.5%", "12.5 %", "12.5 per cent", "12.5 percent", "12.5 percentage points"]
)
def test_percent_forms(text: str) -> None:
    m = one(f"a share of {text} in total")
    assert m.is_percent and m.value == 12.5 and m.text == text


@pytest.mark.parametrize(
    ("text", "literal", "value"),
    [
        ("3.2 million", 3.2, 3_200_000),
        ("4 billion", 4, 4e9),
        ("15 thousand", 15, 15_000),
        ("£3bn", 3, 3e9),
        ("$2.5m", 2.5, 2_500_000),
        ("5k", 5, 5000),
    ],
)
def test_scaled_numbers_keep_both_readings(text: str, literal: float, value: float) -> None:
    m = one(f"about {text} people")
    assert m.literal == literal and m.value == pytest.approx(value)
    assert [r[0] for r in m.readings()] == [literal, pytest.approx(value)]
    assert m.text == text


def test_currency_and_negative_numbers() -> None:
    dollars, pounds, minus, neg_dollars = extract_numbers("$4.5, £12, -3.5 and -$7 (-2)")[:4]
    assert (dollars.value, dollars.currency, dollars.text) == (4.5, "$", "$4.5")
    assert (pounds.value, pounds.currency) == (12, "£")
    assert minus.value == -3.5 and minus.text == "-3.5"
    assert neg_dollars.value == -7 and neg_dollars.currency == "$"
    assert extract_numbers("(-2)")[0].value == -2


def test_ranges_give_two_mentions_sharing_the_unit() -> None:
    low, high = extract_numbers("between 10-15% of users")
    assert (low.value, high.value) == (10, 15)
    assert low.is_percent and high.is_percent
    low, high = extract_numbers("from 2 to 3 million")
    assert (low.value, high.value) == (2e6, 3e6)
    low, high = extract_numbers("aged 18 - 24")
    assert (low.value, high.value) == (18, 24)  # a spaced dash is a range, not a minus


def test_years_are_flagged_and_names_ordinals_skipped() -> None:
    mentions = extract_numbers("In 2010, the 1990s and 1750 vs Q3 2020, CO2, COVID-19, 2nd, '20")
    by_text = {m.text: m for m in mentions}
    assert by_text["2010"].is_year and by_text["1990s"].is_year and by_text["2020"].is_year
    assert not by_text["1750"].is_year
    assert set(by_text) == {"2010", "1990s", "1750", "2020"}


def test_year_like_values_with_units_are_not_years() -> None:
    assert not one("2,010").is_year
    assert not one("2010%").is_year
    assert not one("$2010").is_year
    assert not one("2010.5").is_year


def test_precision_of_written_figures() -> None:
    assert one("1,200").precision == 100
    assert one("2,000").precision == 1  # one significant digit: read as exact
    assert one("7").precision == 1
    assert one("0.25").precision == pytest.approx(0.01)


def test_spans_point_at_the_text() -> None:
    text = "Sales hit $4.5 million, up 12%."
    for m in extract_numbers(text):
        assert text[m.span[0] : m.span[1]] == m.text


# --- grounding ---------------------------------------------------------------------------------


def test_close_to_relative_and_rounding() -> None:
    assert close_to(12.5, 0.1, 12.46, 0.0)  # rounded to one decimal
    assert close_to(12, 1, 12.46, 0.0)  # rounded to an integer
    assert not close_to(13, 1, 12.46, 0.0)
    assert close_to(102, 1, 100, 0.02)
    assert not close_to(103, 1, 100, 0.02)
    assert close_to(5, 1, -5, 0.0)  # "a loss of 5"


def test_exact_and_rounded_values_are_grounded() -> None:
    g = ground_numbers("UK sales were 12.5 and then 12, France 25.5 and 30.", chart(), 0.02)
    assert (g.mentioned, g.grounded, g.fraction, g.ungrounded) == (4, 4, 1.0, [])


def test_wrong_numbers_are_ungrounded() -> None:
    g = ground_numbers("UK sales were 14 while France sold 33.", chart(), 0.02)
    assert g.mentioned == 2 and g.grounded == 0 and g.fraction == 0.0
    assert g.ungrounded == ["14", "33"]


def test_year_labels_are_not_values() -> None:
    g = ground_numbers("In 2010 the UK sold 40 thousand; by 2020 it was 40.", chart(), 0.02)
    assert "2010" in g.labels and "2020" in g.labels
    assert g.mentioned == 2 and g.grounded == 2


def test_unlisted_year_is_a_date_not_a_wrong_number() -> None:
    g = ground_numbers("Since 2012 UK sales reached 40.", chart(), 0.02)
    assert g.mentioned == 1 and g.labels == ["2012"]


def test_title_numbers_and_row_label_ranges_are_labels() -> None:
    ages = chart(
        title="Internet use by the top 5 age groups",
        columns=["Age", "Share"],
        rows=[["18-24", 91.0], ["25-34", 85.0], ["65+", 40.2]],
        unit="%",
    )
    g = ground_numbers(
        "Among the top 5 groups, 18-24 year olds reached 91%, 65+ only 40%.", ages, 0
    )
    assert g.mentioned == 2 and g.grounded == 2
    assert set(g.labels) == {"5", "18", "24", "65"}


def test_percent_of_a_label_number_is_a_value() -> None:
    ages = chart(columns=["Age", "Share"], rows=[["18-24", 24.0], ["25-34", 30.0]], title="x")
    g = ground_numbers("The youngest group stood at 24%.", ages, 0.02)
    assert g.mentioned == 1 and g.grounded == 1


def test_millions_match_scaled_and_literal_tables() -> None:
    literal = chart(
        title="Population (in millions)",
        unit="",
        columns=["Country", "Population"],
        rows=[["A", 3.2], ["B", 7.85]],
    )
    raw = chart(
        title="Population",
        unit="people",
        columns=["Country", "Population"],
        rows=[["A", 3_200_000], ["B", 7_850_000]],
    )
    text = "A had 3.2 million people, B 7,850,000 and about 7.9 million."
    for table in (literal, raw):
        g = ground_numbers(text, table, 0.0)
        assert (g.mentioned, g.grounded) == (3, 3), table.title
    assert ground_numbers("A had 4.1 million.", literal, 0.02).grounded == 0


def test_rounded_thousands_separator() -> None:
    table = chart(title="Visitors", unit="", columns=["City", "Visitors"], rows=[["A", 1234]])
    assert ground_numbers("about 1,200 visitors", table, 0.0).grounded == 1
    assert ground_numbers("about 1,300 visitors", table, 0.0).grounded == 0
    assert ground_numbers("exactly 1,234 visitors", table, 0.0).grounded == 1


def test_differences_are_grounded() -> None:
    # UK 2020 - UK 2015 = 22; France 2010 - UK 2010 = 17.54
    g = ground_numbers("UK sales grew by 22, and France led the UK by 17.5 at first.", chart(), 0)
    assert (g.mentioned, g.grounded) == (2, 2)


def test_pie_shares_of_raw_counts() -> None:
    pie = chart(
        chart_type="pie",
        title="Household spending",
        unit="dollars",
        columns=["Item", "Spending"],
        rows=[["Food", 250], ["Rent", 500], ["Other", 250]],
    )
    g = ground_numbers("Rent took 50% and food 25%, while other items cost $250.", pie, 0.02)
    assert (g.mentioned, g.grounded) == (3, 3)
    assert ground_numbers("Rent took 40%.", pie, 0.02).grounded == 0


def test_fraction_tables_match_percentages() -> None:
    table = chart(title="Share", unit="", columns=["Group", "Share"], rows=[["A", 0.125]])
    assert ground_numbers("A made up 12.5%.", table, 0.0).grounded == 1


def test_no_numbers_gives_none() -> None:
    g = ground_numbers("Sales rose steadily over the period.", chart(), 0.02)
    assert g.mentioned == 0 and g.fraction is None


def test_negative_tolerance_is_rejected() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        ground_numbers("12", chart(), -0.1)


def test_value_mentions_and_table_index() -> None:
    table = chart()
    assert [m.text for m in value_mentions("In 2015 it was 18 thousand", table)] == ["18 thousand"]
    numbers = ChartNumbers.from_chart(table)
    assert numbers.scale == 1000
    assert numbers.mentions_value(one("18,000 cars"), 18.0, 0.0)
    assert not numbers.mentions_value(one("19,000 cars"), 18.0, 0.0)


def test_a_value_equal_to_a_label_number_is_a_value_unless_written_as_the_label() -> None:
    ages = chart(
        title="Weekly hours online",
        unit="hours",
        columns=["Age", "Hours"],
        rows=[["16-24", 30.0], ["25-44", 24.0]],
    )
    g = ground_numbers("Those aged 16-24 spent 30 hours, the 25-44 group only 24 hours.", ages, 0)
    assert (g.mentioned, g.grounded) == (2, 2)
    assert g.labels == ["16", "24", "25", "44"]
    g = ground_numbers("Those aged 16 to 24 spent 31 hours.", ages, 0)
    assert g.labels == ["16", "24"] and g.ungrounded == ["31"]  # "16 to 24" names the row


# --- attribution level (issue 12) ---------------------------------------------------------------


def test_a_value_given_to_the_wrong_category_is_not_attributed() -> None:
    pie = chart(
        chart_type="pie",
        title="Household energy use by purpose",
        unit="%",
        columns=["Purpose", "Share"],
        rows=[["Heating", 40.0], ["Cooling", 25.0], ["Lighting", 35.0]],
    )
    right = ground_numbers("Heating took 40%, while cooling used 25%.", pie, 0.02)
    wrong = ground_numbers("Heating took 25%. Cooling used 40%.", pie, 0.02)
    assert (right.grounded, right.attributed, right.attributed_fraction) == (2, 2, 1.0)
    assert (wrong.grounded, wrong.attributed, wrong.misattributed) == (2, 0, ["25%", "40%"])


def test_bare_differences_no_longer_ground_any_number() -> None:
    table = chart(
        title="Visitors",
        unit="",
        columns=["Site", "Visitors"],
        rows=[["A", 100.0], ["B", 270.0], ["C", 849.0]],
    )
    # 170 = 270 - 100 and 579 = 849 - 270, but nothing says they are differences
    assert ground_numbers("A had 170 visitors and C 579.", table, 0.02).grounded == 0
    stated = ground_numbers("B had 170 more visitors than A, and C exceeded B by 579.", table, 0)
    assert (stated.grounded, stated.attributed) == (2, 2)


@pytest.mark.parametrize(
    ("text", "grounded"),
    [
        ("In total, the three sites had 1,219 visitors.", True),
        ("C had about 3 times as many visitors as B.", True),
        ("C accounted for 69.6% of all visitors.", True),
        ("C had 69.6% of the visitors.", False),  # a share nobody called one
        ("C drew about 830 visitors.", True),  # hedged: within 5 %
        ("C drew 830 visitors.", False),
    ],
)
def test_derived_figures_and_hedges_stated_as_such(text: str, grounded: bool) -> None:
    table = chart(
        title="Visitors",
        unit="",
        columns=["Site", "Visitors"],
        rows=[["A", 100.0], ["B", 270.0], ["C", 849.0]],
    )
    g = ground_numbers(text, table, 0.02, approx_tolerance=0.05)
    assert (g.grounded == 1) is grounded and (g.attributed == 1) is grounded, g


def test_every_example_essay_names_its_chart_and_attributes_its_figures() -> None:
    for chart_type in CHART_TYPES:
        for example in load_examples(PROMPTS, chart_type):
            body = "\n\n".join(example.sections.values())
            g = ground_numbers(body, example.chart, 0.02)
            assert g.fraction == 1.0 and g.attributed_fraction >= 0.8, (example.chart.title, g)
            assert names_subject(example.sections["introduction"], example.chart)


def test_an_introduction_with_another_charts_title_or_period_does_not_name_this_one() -> None:
    c = chart()  # "Car sales in three countries, 2010-2020"
    assert names_subject("The graph shows car sales in the UK and France from 2010.", c)
    assert not names_subject("The chart shows electricity generated from coal and wind.", c)
    assert not names_subject("The graph shows car sales in three countries, 1990-2000.", c)
