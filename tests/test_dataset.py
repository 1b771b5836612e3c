import random
from pathlib import Path

from chartdistill.data.records import ChartRecord, EssayRecord
from chartdistill.data.synthetic import ChartsParams, generate_synthetic, make_chart
from chartdistill.dataset.build import (
    DatasetsParams,
    SplitFractions,
    assign_splits,
    clean_essays,
    dataset_metrics,
    ensure_validation,
    held_out_charts,
    held_out_examples,
    leaked_pairs,
    render_card,
    write_variant,
)
from chartdistill.dataset.dedup import near_duplicate_pairs
from chartdistill.essay.sections import MARKERS, SECTIONS
from harness.fake_teacher import paragraphs

PARAMS = DatasetsParams(
    bounds={"min_words": 60, "min_grounded_fraction": 0.5},
    split=SplitFractions(train=0.7, validation=0.15, test=0.15),
)


def _charts(n: int) -> list[ChartRecord]:
    types = ("bar", "line", "pie", "table")
    return [make_chart(random.Random(i), types[i % 4], f"c{i:03d}") for i in range(n)]


def _essay(chart: ChartRecord, **overrides) -> EssayRecord:
    rows = [[str(c) for c in row] for row in chart.rows]
    fields = {
        "id": chart.id,
        "chart_type": chart.chart_type,
        "prompt_hash": "h",
        "model": "m",
        "mode": "stepwise",
        "status": "accepted",
        "sections": paragraphs(chart.title, rows),
    }
    return EssayRecord(**{**fields, **overrides})


def test_every_chart_type_gets_its_validation_share_however_few_it_has() -> None:
    # 44 teacher charts: an independent coin per chart once put 1 of them in validation.
    charts = _charts(44)
    splits = assign_splits(charts, DatasetsParams())
    for chart_type in ("bar", "line", "pie", "table"):
        names = [splits[c.id] for c in charts if c.chart_type == chart_type]
        assert (names.count("train"), names.count("validation")) == (9, 2)  # 11 x 0.15 = 1.65


def test_split_is_exact_per_chart_type() -> None:
    charts = _charts(2000)
    params = DatasetsParams(split=SplitFractions(train=0.7, validation=0.15, test=0.15))
    splits = assign_splits(charts, params)
    for chart_type in ("bar", "line", "pie", "table"):
        names = [splits[c.id] for c in charts if c.chart_type == chart_type]
        assert (names.count("train"), names.count("validation"), names.count("test")) == (
            350,
            75,
            75,
        )


def test_adding_a_chart_moves_at_most_one_chart_of_its_type() -> None:
    charts = _charts(400)
    before = assign_splits(charts[:200], DatasetsParams())
    for extra in range(200, 240):
        after = assign_splits(charts[: extra + 1], DatasetsParams())
        moved = [i for i in before if after[i] != before[i]]
        assert len(moved) <= 1
        assert all(c.chart_type == charts[extra].chart_type for c in charts if c.id in moved)
        before = after


def test_split_order_is_the_salted_hash_not_the_input_order() -> None:
    charts = _charts(40)
    assert assign_splits(charts, DatasetsParams()) == assign_splits(charts[::-1], DatasetsParams())
    salted = assign_splits(charts, DatasetsParams(split_salt="other"))
    assert salted != assign_splits(charts, DatasetsParams())


def test_source_split_is_kept() -> None:
    charts = _charts(20)
    hashed = assign_splits(charts, DatasetsParams())
    train = next(c for c in charts if hashed[c.id] == "train")
    charts = [c.model_copy(update={"split": "test"}) if c is train else c for c in charts]
    assert assign_splits(charts, DatasetsParams())[train.id] == "test"
    unsourced = assign_splits(charts, DatasetsParams(use_source_split=False))
    assert unsourced[train.id] == hashed[train.id]


def test_bad_essays_are_rejected_with_reasons() -> None:
    charts = _charts(6)
    short = {name: "Too short." for name in SECTIONS}
    essays = [
        _essay(charts[0]),
        _essay(charts[1], status="rejected", reasons=["loop"]),
        _essay(charts[2], sections=short),
        _essay(charts[3], sections={"introduction": "x"}),
        _essay(charts[4], sections={**paragraphs("t", [["a", "999999"]] * 3)}),
        _essay(charts[5], status="failed", error="timeout"),
    ]
    examples, rejects, _ = clean_essays(essays, {c.id: c for c in charts}, PARAMS)
    assert [e.essay.id for e in examples] == ["c000"]
    # reason: the first code validate_essay gave (datasets.bounds); detail: all of them
    by_item = {r.item: r for r in rejects}
    assert {item: r.reason for item, r in by_item.items() if item != "c004"} == {
        "c001": "teacher_rejected",
        "c002": "too_short",
        "c003": "missing_section",
        "c005": "teacher_failed",
    }
    wrong = by_item["c004"].detail.split(",")
    assert "ungrounded_numbers" in wrong and by_item["c004"].reason == wrong[0]


def test_exact_and_near_duplicates_are_dropped() -> None:
    charts = _charts(3)
    base = _essay(charts[0])
    same = _essay(charts[1], sections={k: v.upper() + "  " for k, v in base.sections.items()})
    near = dict(base.sections)
    near["overview"] = near["overview"].replace("markedly", "clearly")
    nearly = _essay(charts[2], sections=near)
    table = {c.id: c for c in charts}
    table["c001"] = charts[0].model_copy(update={"id": "c001"})
    table["c002"] = charts[0].model_copy(update={"id": "c002"})
    examples, rejects, stats = clean_essays([base, same, nearly], table, PARAMS)
    assert [e.essay.id for e in examples] == ["c000"]
    assert {r.item: r.reason for r in rejects} == {
        "c001": "exact_duplicate",
        "c002": "near_duplicate",
    }
    assert stats["exact_duplicates"] == 1


def test_near_duplicate_search_finds_pairs_above_threshold_only() -> None:
    a = " ".join(f"word{i}" for i in range(60))
    b = a.replace("word30", "other")
    c = " ".join(f"thing{i}" for i in range(60))
    assert [(i, j) for i, j, _ in near_duplicate_pairs([a, b, c], 0.8)] == [(0, 1)]


def test_no_test_item_near_duplicates_a_train_item() -> None:
    charts = _charts(200)
    essays = [_essay(c) for c in charts]
    examples, _, _ = clean_essays(essays, {c.id: c for c in charts}, PARAMS)
    assert {e.split for e in examples} == {"train", "validation", "test"}
    assert leaked_pairs(examples, PARAMS) == []


def test_variants_load_with_datasets_and_carry_the_same_content(tmp_path: Path) -> None:
    from datasets import load_dataset

    charts, _ = generate_synthetic(
        ChartsParams(seed=2, counts={"bar": 6, "pie": 6}, test_counts={}), tmp_path
    )
    essays = [_essay(c) for c in charts]
    examples, rejects, stats = clean_essays(essays, {c.id: c for c in charts}, PARAMS)
    for variant in ("structured", "unstructured"):
        write_variant(examples, variant, tmp_path, tmp_path / variant)
    structured = load_dataset("parquet", data_dir=str(tmp_path / "structured"))
    unstructured = load_dataset("parquet", data_dir=str(tmp_path / "unstructured"))
    for split in structured:
        s, u = structured[split], unstructured[split]
        assert s["id"] == u["id"]
        for text_s, text_u in zip(s["text"], u["text"], strict=True):
            assert text_s.startswith(MARKERS["introduction"]) and MARKERS["overview"] in text_s
            assert not any(marker in text_u for marker in MARKERS.values())
            kept = [line for line in text_s.splitlines() if line not in MARKERS.values()]
            assert "\n".join(kept).replace("\n\n", "\n") == text_u.replace("\n\n", "\n")
    image = structured["train"][0]["image"]
    assert image.size == (448, 336)
    metrics = dataset_metrics(examples, rejects, len(essays), stats)
    card = render_card("structured", examples, metrics, rejects, {"mode": "stepwise"})
    assert card.startswith("---\n") and "path: train.parquet" in card and "push_to_hub" in card


def test_held_out_test_charts_become_test_rows_without_a_reference(tmp_path: Path) -> None:
    """Charts of split test that the teacher skipped are test rows with empty text; a test
    chart the teacher did write for keeps its essay, and the rest split as usual."""
    from datasets import load_dataset

    params = ChartsParams(seed=4, counts={"bar": 4}, test_counts={"pie": 2, "table": 1})
    charts, _ = generate_synthetic(params, tmp_path)
    taught = [c for c in charts if not c.held_out]
    by_id = {c.id: c for c in charts}
    written = charts[-1]  # a held-out chart the teacher wrote for anyway
    essays = [_essay(c) for c in [*taught, written]]
    held_out = held_out_charts(by_id, essays)
    assert [c.id for c in held_out] == ["syn-pie-test-0000", "syn-pie-test-0001"]

    train_only = DatasetsParams(bounds=PARAMS.bounds)  # the default split: no hashed test share
    examples, rejects, stats = clean_essays(essays, by_id, train_only)
    examples += held_out_examples(held_out)
    assert {e.chart.id: e.split for e in examples if e.essay and e.split == "test"} == {
        written.id: "test"  # its own split, kept (use_source_split)
    }
    assert leaked_pairs(examples, train_only) == []
    write_variant(examples, "structured", tmp_path, tmp_path / "structured")
    test = load_dataset("parquet", data_dir=str(tmp_path / "structured"))["test"]
    texts = dict(zip(test["id"], test["text"], strict=True))
    assert texts["syn-pie-test-0000"] == "" and texts["syn-pie-test-0001"] == ""
    assert texts[written.id].startswith(MARKERS["introduction"])
    metrics = dataset_metrics(examples, rejects, len(essays), stats)
    assert metrics["test_without_reference"] == 2
    assert metrics["per_split"]["test"] == 3
    card = render_card("structured", examples, metrics, rejects, {"mode": "stepwise"})
    assert "2 test charts are held out from the teacher" in card


def test_an_empty_validation_split_borrows_the_last_train_example() -> None:
    charts = _charts(8)
    train_only = DatasetsParams(
        bounds=PARAMS.bounds, split=SplitFractions(train=1.0, validation=0.0)
    )
    examples, rejects, stats = clean_essays(
        [_essay(c) for c in charts], {c.id: c for c in charts}, train_only
    )
    assert [e.chart.id for e in examples if e.split == "validation"] == ["c007"]
    assert sum(e.split == "train" for e in examples) == 7
    assert dataset_metrics(examples, rejects, 8, stats)["validation_from_train"] == 1
    one = [e for e in examples if e.chart.id == "c000"]
    assert ensure_validation(one) == one  # a single example stays in train


def test_build_datasets_drops_ocr_mismatches_of_essays_and_held_out_charts_once(
    tmp_path: Path,
) -> None:
    """The stage's one call: an essay chart and a held-out chart whose images failed the OCR
    check are both left out (one drop_mismatched over both); the essay's reject counts among
    the datasets' rejects, the held-out chart's only in rejects.jsonl."""
    from chartdistill.config import PathsParams
    from chartdistill.data.records import save_records
    from chartdistill.dataset.build import build_datasets
    from chartdistill.io import read_jsonl, write_jsonl

    paths = PathsParams.model_validate({k: tmp_path / k for k in PathsParams.model_fields})
    params = ChartsParams(seed=4, counts={"bar": 4}, test_counts={"pie": 2})
    charts, _ = generate_synthetic(params, paths.charts)
    save_records(paths.charts / "charts.jsonl", charts)
    taught = [c for c in charts if not c.held_out]
    save_records(paths.essays / "essays.jsonl", [_essay(c) for c in taught])
    bad_essay, bad_held_out = taught[0].id, "syn-pie-test-0001"
    write_jsonl(
        paths.ocr / "rejects.jsonl",
        [{"item": i, "reason": "image_mismatch"} for i in (bad_essay, bad_held_out)],
    )
    write_jsonl(paths.ocr / "ocr.jsonl", [])
    built = build_datasets(
        paths, DatasetsParams(bounds=PARAMS.bounds), {"mode": "x"}, 100, "paired"
    )
    assert [r.item for r in built.rejects if r.reason == "image_mismatch"] == [bad_essay]
    assert built.metrics["test_without_reference"] == 1  # syn-pie-test-0000 only
    written = {row["item"] for row in read_jsonl(paths.datasets / "rejects.jsonl")}
    assert {bad_essay, bad_held_out} <= written
    assert (paths.datasets / "structured" / "README.md").is_file()
