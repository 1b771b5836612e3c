import random
from pathlib import Path

import pytest
from PIL import Image

from chartdistill.config import ParamsError, parse_section
from chartdistill.data.records import ChartRecord
from chartdistill.data.synthetic import ChartsParams, generate_synthetic, make_chart


def _generate(tmp_path: Path, **overrides) -> tuple[list[ChartRecord], Path]:
    params = ChartsParams(
        seed=7, counts={"bar": 3, "line": 3, "pie": 2, "table": 2}, test_counts={}, **overrides
    )
    records, rejects = generate_synthetic(params, tmp_path)
    assert rejects == []
    return records, tmp_path


def test_same_params_give_byte_identical_outputs(tmp_path: Path) -> None:
    first, dir_a = _generate(tmp_path / "a")
    second, dir_b = _generate(tmp_path / "b")
    assert [r.model_dump() for r in first] == [r.model_dump() for r in second]
    for record in first:
        assert (dir_a / record.image).read_bytes() == (dir_b / record.image).read_bytes()


def test_another_seed_gives_other_charts(tmp_path: Path) -> None:
    first, _ = _generate(tmp_path / "a")
    other, _ = generate_synthetic(
        ChartsParams(seed=8, counts={"bar": 3}, test_counts={}), tmp_path / "b"
    )
    assert [r.rows for r in first[:3]] != [r.rows for r in other]


def test_adding_charts_keeps_existing_ones(tmp_path: Path) -> None:
    small, _ = generate_synthetic(
        ChartsParams(seed=3, counts={"line": 2}, test_counts={}), tmp_path / "a"
    )
    large, _ = generate_synthetic(
        ChartsParams(seed=3, counts={"line": 4}, test_counts={}), tmp_path / "b"
    )
    assert [r.model_dump() for r in small] == [r.model_dump() for r in large[:2]]


def test_images_have_requested_size(tmp_path: Path) -> None:
    records, root = _generate(tmp_path, width=320, height=240)
    for record in records:
        with Image.open(root / record.image) as image:
            assert image.size == (320, 240)


@pytest.mark.parametrize("index", range(20))
def test_content_is_valid_per_type(index: int) -> None:
    for chart_type in ("bar", "line", "pie", "table"):
        chart = make_chart(random.Random(index), chart_type, f"c{index}")
        assert chart.title and chart.columns[0] == chart.x_label
        assert len(chart.rows) >= 4 or chart_type == "line"
        assert all(v is not None for v in chart.values())
        if chart_type == "pie":
            assert sum(chart.values()) == 100 and chart.unit == "%"
            assert min(chart.values()) >= 2
        if chart_type == "line":
            years = [int(row[0]) for row in chart.rows]
            assert years == sorted(years) and len(years) >= 6
            assert 1 <= len(chart.series) <= 4
        if chart_type == "bar":
            assert 1 <= len(chart.series) <= 3


def test_both_single_and_grouped_bars_and_multi_series_lines_occur() -> None:
    bars = [make_chart(random.Random(i), "bar", "b") for i in range(40)]
    lines = [make_chart(random.Random(i), "line", "l") for i in range(40)]
    assert {len(b.series) > 1 for b in bars} == {True, False}
    assert {len(c.series) for c in lines} >= {1, 2, 3}


def test_unknown_param_key_is_rejected_by_name() -> None:
    with pytest.raises(ParamsError, match=r"charts\.colour"):
        parse_section("charts", ChartsParams, {"colour": "red"})


def test_negative_count_is_rejected() -> None:
    with pytest.raises(ParamsError, match="counts must be >= 0"):
        parse_section("charts", ChartsParams, {"counts": {"bar": -1}})


def test_unknown_chart_type_in_counts_is_rejected() -> None:
    with pytest.raises(ParamsError, match=r"charts\.counts\.radar"):
        parse_section("charts", ChartsParams, {"counts": {"radar": 2}})


def test_ragged_or_empty_tables_fail_validation() -> None:
    base = {"id": "x", "chart_type": "bar", "title": "t", "image": "i.png", "source": "s"}
    with pytest.raises(ValueError, match="row 1 has 3 cells"):
        ChartRecord(**base, columns=["a", "b"], rows=[["x", 1, 2]])
    with pytest.raises(ValueError, match="no rows"):
        ChartRecord(**base, columns=["a", "b"], rows=[])
    with pytest.raises(ValueError, match="non-numeric"):
        ChartRecord(**base, columns=["a", "b"], rows=[["x", "12%"]])


def test_value_labels_share_changes_images_not_data(tmp_path: Path) -> None:
    none, dir_a = _generate(tmp_path / "a", value_labels_share=0.0)
    every, dir_b = _generate(tmp_path / "b", value_labels_share=1.0)
    half, _ = _generate(tmp_path / "c", value_labels_share=0.5)
    strip = [{**r.model_dump(), "provenance": {**r.provenance, "value_labels": None}} for r in none]
    for other in (every, half):
        assert strip == [
            {**r.model_dump(), "provenance": {**r.provenance, "value_labels": None}} for r in other
        ]
    assert not any(r.provenance["value_labels"] for r in none)
    labelled = [r.provenance["value_labels"] for r in every]
    assert labelled == [r.chart_type in ("bar", "line") for r in every]
    for a, b in zip(none, every, strict=True):
        same = (dir_a / a.image).read_bytes() == (dir_b / b.image).read_bytes()
        assert same == (a.chart_type in ("pie", "table"))
    assert {r.provenance["value_labels"] for r in half if r.chart_type in ("bar", "line")} == {
        True,
        False,
    }


def test_held_out_test_charts_have_their_own_streams_and_split(tmp_path: Path) -> None:
    """Held-out charts are marked split=test and adding them never changes the teacher's charts."""
    counts = {"bar": 2, "pie": 1}
    plain, _ = generate_synthetic(ChartsParams(seed=5, counts=counts, test_counts={}), tmp_path)
    both, _ = generate_synthetic(
        ChartsParams(seed=5, counts=counts, test_counts={"bar": 1, "table": 2}), tmp_path / "b"
    )
    assert [r.model_dump() for r in both[:3]] == [r.model_dump() for r in plain]
    held_out = both[3:]
    assert [(r.id, r.chart_type, r.split) for r in held_out] == [
        ("syn-bar-test-0000", "bar", "test"),
        ("syn-table-test-0000", "table", "test"),
        ("syn-table-test-0001", "table", "test"),
    ]
    assert all(r.held_out for r in held_out) and not any(r.held_out for r in plain)
    assert all(r.split is None for r in plain)
    assert held_out[0].rows != both[0].rows  # its own stream, not a copy of syn-bar-0000
    assert all((tmp_path / "b" / r.image).is_file() for r in held_out)
