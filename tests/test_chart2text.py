"""The Chart-to-text importer on a made-up tree with every quirk and bad input."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from chartdistill.config import InputError, ParamsError, parse_section
from chartdistill.data.chart2text import (
    Chart2TextParams,
    choose_unit,
    chronological,
    clean_title,
    import_chart2text,
    load_png,
    parse_csv_table,
    parse_number,
    parse_pew_ocr,
    repair_mojibake,
    time_key,
    unit_from_label,
)
from chartdistill.data.records import ChartRecord
from tests.c2t_fixture import PEW_OCR_PERCENT, PEW_OCR_PLAIN, build_pew, build_tree, png_bytes


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("c2t")
    root = build_tree(base / "root")
    out = base / "out"
    records, rejects = import_chart2text(Chart2TextParams(root=root), out)
    return root, out, records, rejects


def _by_id(records: list[ChartRecord]) -> dict[str, ChartRecord]:
    return {r.id: r for r in records}


# ---------------------------------------------------------------- whole import


def test_records_and_order(imported) -> None:
    _, _, records, _ = imported
    # Datasets are interleaved round robin (statista, statista_multi, pew), file numbers ascending.
    assert [r.id for r in records] == [
        "statista-1",
        "statista_multi-1",
        "statista-2",
        "statista_multi-2",
        "pew-3",
        "statista-3",
        "pew-4",
        "statista-4",
        "statista-5",
        "statista-15",
    ]


def test_rejects_name_item_and_reason(imported) -> None:
    _, _, _, rejects = imported
    assert [(r.item, r.reason) for r in rejects] == [
        ("pew/1", "non_numeric_table"),
        ("pew/6", "unknown_chart_type"),
        ("statista/6", "unknown_chart_type"),
        ("statista/7", "missing_image"),
        ("statista/8", "unreadable_image"),
        ("statista/9", "unreadable_image"),
        ("statista/10", "empty_table"),
        ("statista/11", "ragged_table"),
        ("statista/12", "non_numeric_table"),
        ("statista/13", "non_utf8"),
        ("statista/14", "non_utf8"),
        ("statista/16", "missing_metadata"),
        ("statista/17", "missing_data"),
    ]
    details = {r.item: r.detail for r in rejects}
    assert (
        details["statista/6"] == "chartType 'scatter' is not one of column, bar, line, pie, table"
    )
    assert details["statista/7"] == "imgs/7.png not found"
    assert details["statista/8"] == "imgs/8.png: not an image file"
    assert details["statista/11"] == "line 3 has 3 cells, header has 2"
    assert details["statista/13"].startswith("data/13.csv: not UTF-8")
    assert details["statista/14"].startswith("titles/14.txt: not UTF-8")


def test_statista_quarters_reversed_title_cleaned(imported) -> None:
    _, _, records, _ = imported
    assert _by_id(records)["statista-1"].model_dump() == {
        "id": "statista-1",
        "chart_type": "bar",
        "title": "Number of monthly active users of Service A worldwide as of 3rd quarter 2020 "
        "(in millions)",
        "x_label": "Quarter",
        "y_label": "Number of users in millions",
        "unit": "millions",
        "columns": ["Quarter", "Number of users in millions"],
        "rows": [["Q4 '19", 2498], ["Q1 '20", 2603], ["Q2 '20", 2701], ["Q3 '20", 2740]],
        "image": "images/statista-1.png",
        "source": "statista",
        "split": "test",
        "provenance": {
            "dataset": "statista",
            "file_number": 1,
            "split_key": "two_col-1",
            "original_title": "Number of monthly active users of Service A worldwide as of 3rd "
            "quarter 2020 ( in millions )",
            "caption": "Service A had 2.74 billion users .",
            "url": "https://example.org/statistics/1",
            "reversed_time_order": True,
            "unparsed_cells": 0,
        },
    }


def test_statista_percent_strings_and_mojibake_title(imported) -> None:
    _, _, records, _ = imported
    record = _by_id(records)["statista-2"]
    assert record.chart_type == "pie"
    assert record.title == "Brand X’s market share worldwide in 2020, by vendor"
    assert record.provenance["original_title"] == (
        "Brand Xâ€™s market share worldwide in 2020 , by vendor"
    )
    assert record.rows == [["Vendor A", 12.5], ["Vendor B", 20], ["Others", 67.5]]
    assert record.unit == "%"
    assert (record.x_label, record.y_label) == ("Vendor", "Market share")
    assert record.split == "validation"


def test_statista_thousands_years_reversed_labels_from_header(imported) -> None:
    _, _, records, _ = imported
    record = _by_id(records)["statista-3"]
    assert record.chart_type == "line"
    assert record.title == (
        "Revenue of Company X's streaming unit from 2018 to 2020 (in million U.S. dollars)"
    )
    assert record.rows == [["2018", 987], ["2019", 1050.5], ["2020", 1234]]
    assert isinstance(record.rows[2][1], int)
    assert record.provenance["reversed_time_order"] is True
    # No xAxis / yAxis in the metadata: labels come from the table header, unit from the label.
    assert (record.x_label, record.y_label) == ("Year", "Revenue in million U.S. dollars")
    assert record.unit == "million U.S. dollars"
    assert record.split == "train"


def test_statista_currency_missing_cells_and_no_split(imported) -> None:
    _, _, records, _ = imported
    record = _by_id(records)["statista-4"]
    assert record.rows == [["Norway", 3.2], ["Sweden", 2.8], ["Denmark", None]]
    assert record.unit == "$"
    assert record.provenance["reversed_time_order"] is False  # categories, not times
    assert record.split is None


def test_table_type_ascending_years_and_metadata_title(imported) -> None:
    _, _, records, _ = imported
    record = _by_id(records)["statista-5"]
    assert record.chart_type == "table"
    assert record.title == "Visitors to Museum Y 2018 - 2020"  # no titles/5.txt
    assert record.rows == [["2018", 10], ["2019", 12], ["2020", 14]]
    assert record.provenance["reversed_time_order"] is False


def test_mojibake_cell_and_jpeg_reencoded(imported) -> None:
    _, out, records, _ = imported
    record = _by_id(records)["statista-15"]
    assert record.chart_type == "bar"  # metadata said "Column"
    assert record.rows == [["Café Nero", 1000], ["Costa", 2500]]
    with Image.open(out / record.image) as image:
        assert image.format == "PNG"
        assert image.size == (12, 8)


def test_multicolumn_statista(imported) -> None:
    _, _, records, _ = imported
    first, second = _by_id(records)["statista_multi-1"], _by_id(records)["statista_multi-2"]
    assert first.chart_type == "bar"
    assert first.columns == ["Characteristic", "Male", "Female"]
    assert first.rows == [["2019", 50, 50], ["2020", 50.5, 49.5], ["2021*", 51, 49]]
    assert first.unit == "%"
    assert first.title == "Population by gender, 2019 to 2021"
    assert first.y_label == "Share of population"
    assert first.split == "test"  # listed as multi_col-1 in Statista's own split file
    assert first.source == "statista_multi"
    assert second.rows == [["Jan 2020", 10, 1], ["Feb 2020", 12, None], ["Mar 2020", 15, 2]]
    assert second.unit == "thousand units"
    assert second.split == "train"  # listed in multiColumn/dataset_split


def test_pew_ocr_percent(imported) -> None:
    _, _, records, _ = imported
    assert _by_id(records)["pew-3"].model_dump() == {
        "id": "pew-3",
        "chart_type": "pie",
        "title": "Languages spoken at home among adults, 2020",
        "x_label": "",
        "y_label": "",
        "unit": "%",
        "columns": ["Category", "Value"],
        "rows": [["all other", 12], ["english only", 19], ["spanish", 43], ["chinese", 7]],
        "image": "images/pew-3.png",
        "source": "pew",
        # old_id two_col-7 is in val; the pew train file lists two_col-3, which is not this chart
        "split": "validation",
        "provenance": {
            "dataset": "pew",
            "file_number": 3,
            "split_key": "two_col-7",
            "original_title": "Languages spoken at home among adults, 2020",
            "caption": "Most adults speak English only.",
            "url": "https://example.org/pew/3",
            "reversed_time_order": False,
            "ocr_text": PEW_OCR_PERCENT,
            "ocr_percent_fixes": ["english only", "spanish"],
        },
    }


def test_pew_ocr_plain_numbers_keep_trailing_nine(imported) -> None:
    _, _, records, _ = imported
    record = _by_id(records)["pew-4"]
    assert record.rows == [["station a", 429], ["station b", 310], ["station c", 95.5]]
    assert record.unit == ""
    assert record.provenance["ocr_text"] == PEW_OCR_PLAIN
    assert record.provenance["ocr_percent_fixes"] == []
    assert record.split is None


def test_images_copied_for_records_only(imported) -> None:
    root, out, records, _ = imported
    written = sorted(p.name for p in (out / "images").iterdir())
    assert written == sorted(f"{r.id}.png" for r in records)
    source = root / "statista_dataset" / "dataset" / "imgs" / "1.png"
    assert (out / "images" / "statista-1.png").read_bytes() == source.read_bytes()


def test_records_round_trip_json(imported) -> None:
    _, _, records, _ = imported
    for record in records:
        assert ChartRecord.model_validate(record.model_dump(mode="json")) == record


def test_same_input_same_output(imported, tmp_path: Path) -> None:
    root, out, records, rejects = imported
    again, again_rejects = import_chart2text(Chart2TextParams(root=root), tmp_path / "out")
    assert [r.model_dump() for r in again] == [r.model_dump() for r in records]
    assert again_rejects == rejects

    def digests(folder: Path) -> dict[str, str]:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (folder / "images").iterdir()
        }

    assert digests(tmp_path / "out") == digests(out)


def test_limit_per_type(imported, tmp_path: Path) -> None:
    root = imported[0]
    records, rejects = import_chart2text(
        Chart2TextParams(root=root, limit_per_type=1), tmp_path / "out"
    )
    assert [r.id for r in records] == ["statista-1", "statista-2", "statista_multi-2", "statista-5"]
    assert Counter(r.chart_type for r in records) == {"bar": 1, "pie": 1, "line": 1, "table": 1}
    # All four types were full after statista-5, so the import stopped there: the bad Statista
    # items after it (statista/6 onwards) were never looked at.
    assert [r.item for r in rejects] == ["pew/1", "pew/6"]


def test_selected_datasets_only(imported, tmp_path: Path) -> None:
    root = imported[0]
    records, rejects = import_chart2text(
        Chart2TextParams(root=root, datasets=["pew"]), tmp_path / "out"
    )
    assert [r.id for r in records] == ["pew-3", "pew-4"]
    assert {r.item for r in rejects} == {"pew/1", "pew/6"}


def test_missing_requested_dataset_is_skipped(tmp_path: Path) -> None:
    build_pew(tmp_path)
    records, _ = import_chart2text(
        Chart2TextParams(root=tmp_path, datasets=["statista", "pew"]), tmp_path / "out"
    )
    assert {r.source for r in records} == {"pew"}


def test_root_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="root is not set"):
        import_chart2text(Chart2TextParams(), tmp_path / "out")
    with pytest.raises(ValueError, match="none of the requested datasets"):
        import_chart2text(Chart2TextParams(root=tmp_path), tmp_path / "out")
    (tmp_path / "pew_dataset" / "dataset").mkdir(parents=True)
    with pytest.raises(ValueError, match="metadata.csv not found"):
        import_chart2text(Chart2TextParams(root=tmp_path, datasets=["pew"]), tmp_path / "out")
    with pytest.raises(InputError, match="chart2text.root: .*missing is not a folder"):
        import_chart2text(Chart2TextParams(root=tmp_path / "missing"), tmp_path / "out")


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("null", "charts: charts.chart2text.root is not set"),
        ("/nonexistent/c2t", "charts: charts.chart2text.root: /nonexistent/c2t is not a folder"),
    ],
)
def test_charts_stage_without_a_chart2text_root_fails_with_one_line(
    tmp_path: Path, root: str, expected: str
) -> None:
    from tests.test_config import PARAMS, run_stage

    text = PARAMS.read_text(encoding="utf-8")
    old_source, old_root = "  source: synthetic", "    root: null"
    assert text.count(old_source) == 1 and text.count(old_root) == 1
    text = text.replace(old_source, "  source: chart2text").replace(old_root, f"    root: {root}")
    (tmp_path / "params.yaml").write_text(text, encoding="utf-8")
    result = run_stage(tmp_path, "charts")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(expected), result.stderr


def test_params_section() -> None:
    params = parse_section(
        "charts.chart2text",
        Chart2TextParams,
        {"root": "/data/c2t", "datasets": ["pew"], "limit_per_type": 5},
    )
    assert params == Chart2TextParams(root=Path("/data/c2t"), datasets=["pew"], limit_per_type=5)
    assert Chart2TextParams().datasets == ["statista", "statista_multi", "pew"]
    assert Chart2TextParams().limit_per_type == 200
    for bad in (
        {"datasets": ["statista", "statista"]},
        {"datasets": []},
        {"datasets": ["vega"]},
        {"limit_per_type": 0},
        {"unknown": 1},
    ):
        with pytest.raises(ParamsError):
            parse_section("charts.chart2text", Chart2TextParams, bad)


# ---------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Sales in 2020 ( in millions )", "Sales in 2020 (in millions)"),
        ("Revenue from 2010 to 2020 , by region", "Revenue from 2010 to 2020, by region"),
        ("Facebook 's users", "Facebook's users"),
        ("Facebook ' s users", "Facebook's users"),
        ("Why people do n't vote", "Why people don't vote"),
        ("Price of $ 3 items : a survey ?", "Price of $3 items: a survey?"),
        ("Growth of 12 % in  2020", "Growth of 12% in 2020"),
        ("Appleâ€™s revenue", "Apple’s revenue"),
        ("Already clean: U.S. GDP, 2020 (in %)", "Already clean: U.S. GDP, 2020 (in %)"),
    ],
)
def test_clean_title(raw: str, clean: str) -> None:
    assert clean_title(raw) == clean


@pytest.mark.parametrize(
    ("broken", "fixed"),
    [
        ("Appleâ€™s", "Apple’s"),
        ("CafÃ©", "Café"),
        ("â€œquotedâ€\x9d", "“quoted”"),  # 0x9D is undefined in cp1252: latin-1 fallback
        ("Â£5", "£5"),
        ("naïve â€” mixed", "naïve — mixed"),  # valid run kept, broken run fixed
        ("café", "café"),
        ("日本", "日本"),
        ("plain", "plain"),
    ],
)
def test_repair_mojibake(broken: str, fixed: str) -> None:
    assert repair_mojibake(broken) == fixed


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("12.5%", (12.5, "%")),
        ("12.5 %", (12.5, "%")),
        ("1,234", (1234, "")),
        ("1,234,567.5", (1234567.5, "")),
        ("$3.2", (3.2, "$")),
        ("€1,000", (1000, "€")),
        ("-4.5", (-4.5, "")),
        ("−3", (-3, "")),
        ("-$2", (-2, "$")),
        ("42", (42, "")),
        ("", (None, "")),
        ("-", (None, "")),
        ("n/a", (None, "")),
    ],
)
def test_parse_number(cell: str, expected: tuple) -> None:
    value, symbol = parse_number(cell)
    assert (value, symbol) == expected
    assert type(value) is type(expected[0])


@pytest.mark.parametrize("cell", ["unknown", "1,5", "12abc", "1.2.3"])
def test_parse_number_rejects_text(cell: str) -> None:
    with pytest.raises(ValueError, match="not a number"):
        parse_number(cell)


@pytest.mark.parametrize(
    ("label", "key"),
    [
        ("2020", (2020, 0)),
        ("2021*", (2021, 0)),
        ("Q3 '20", (2020, 3)),
        ("Q1 2019", (2019, 1)),
        ("Jan 2020", (2020, 1)),
        ("December '99", (1999, 12)),
        ("H2 2018", (2018, 3)),
        ("2019/20", (2019, 0)),
        ("FY 2017", (2017, 0)),
        ("Norway", None),
        ("20", None),
        ("Foo 2020", None),
    ],
)
def test_time_key(label: str, key: tuple[int, int] | None) -> None:
    assert time_key(label) == key


def test_chronological() -> None:
    newest_first = [["Q1 '21", 4], ["Q4 '20", 3], ["Q3 '20", 2]]
    assert chronological(newest_first) == ([["Q3 '20", 2], ["Q4 '20", 3], ["Q1 '21", 4]], True)
    ascending = [["2018", 1], ["2019", 2]]
    assert chronological(ascending) == (ascending, False)
    mixed = [["2020", 1], ["Norway", 2]]
    assert chronological(mixed) == (mixed, False)
    unsorted = [["2020", 1], ["2018", 2], ["2019", 3]]
    assert chronological(unsorted) == (unsorted, False)
    assert chronological([["2020", 1]]) == ([["2020", 1]], False)


@pytest.mark.parametrize(
    ("label", "unit"),
    [
        ("Number of users in millions", "millions"),
        ("Revenue in million U.S. dollars", "million U.S. dollars"),
        ("Sales (in billion euros)", "billion euros"),
        ("Share of respondents", "%"),
        ("Population in the United States", ""),
        ("Number of stores", ""),
    ],
)
def test_unit_from_label(label: str, unit: str) -> None:
    assert unit_from_label(label) == unit


def test_choose_unit_precedence() -> None:
    assert choose_unit(Counter({"%": 2, "$": 1}), ["Revenue in million U.S. dollars"]) == "%"
    assert choose_unit(Counter({"$": 3}), ["GDP in thousand U.S. dollars"]) == (
        "thousand U.S. dollars"
    )
    assert choose_unit(Counter({"$": 3}), ["GDP per capita"]) == "$"
    assert choose_unit(Counter(), ["Value"], percent=True) == "%"
    assert choose_unit(Counter(), ["Value"]) == ""


def test_parse_csv_table_counts_unparsed_cells() -> None:
    table = parse_csv_table("Year,A,B\n2019,1,oops\n2020,2,3\n")
    assert table.rows == [["2019", 1, None], ["2020", 2, 3]]
    assert table.unparsed == 1


def test_parse_pew_ocr_rules() -> None:
    table = parse_pew_ocr("share who agree | men 459 | women 51% | ages 18-29 399 | 0 | 100")
    assert table.percent
    assert table.rows == [["men", 45], ["women", 51], ["ages 18-29", 39]]
    assert table.percent_fixes == ["men", "ages 18-29"]
    long_label = "a heading that runs on for far too many words to be a label 12"
    plain = parse_pew_ocr(f"{long_label} | revenue $1,200 | costs 899")
    assert not plain.percent
    assert plain.rows == [["revenue", 1200], ["costs", 899]]


def test_load_png_rejects_bad_images(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes((1, 2, 3)))
    assert load_png(good) == good.read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(png_bytes((1, 2, 3), (64, 64))[:-20])
    with pytest.raises(Exception, match="unreadable_image"):
        load_png(truncated)


def test_bad_metadata_and_split_files(tmp_path: Path) -> None:
    build_pew(tmp_path)
    folder = tmp_path / "pew_dataset" / "dataset"
    (folder / "dataset_split" / "test_index_mapping.csv").write_text("")  # empty: ignored
    records, _ = import_chart2text(Chart2TextParams(root=tmp_path), tmp_path / "out")
    assert [(r.id, r.split) for r in records] == [("pew-3", "validation"), ("pew-4", None)]
    (folder / "dataset_split" / "val_index_mapping.csv").write_text("Name\ntwo_col-7.txt\n")
    with pytest.raises(ValueError, match="no File_No column"):
        import_chart2text(Chart2TextParams(root=tmp_path), tmp_path / "out")
    (folder / "metadata.csv").write_text("title,chartType\nA,bar\n")
    with pytest.raises(ValueError, match="needs an 'id' or 'dataPath' column"):
        import_chart2text(Chart2TextParams(root=tmp_path), tmp_path / "out")
