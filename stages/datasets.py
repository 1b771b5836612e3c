"""Stage `datasets`: structured and unstructured parquet datasets from the teacher essays."""

from __future__ import annotations

import logging

from chartdistill.config import load_paths, load_section, read_params
from chartdistill.data.records import load_charts, load_essays, save_records
from chartdistill.dataset.build import (
    VARIANTS,
    DatasetsParams,
    clean_essays,
    dataset_metrics,
    held_out_charts,
    held_out_examples,
    leaked_pairs,
    render_card,
    write_variant,
)
from chartdistill.io import atomic_write_text, write_json
from chartdistill.ocr import OcrParams, drop_mismatched, load_ocr, ocr_texts
from stages.common import run, setup

log = logging.getLogger("stages.datasets")

# The teacher settings quoted in the dataset cards (declared as params deps in dvc.yaml).
GENERATION_KEYS = ("mode", "temperature", "top_p", "max_tokens", "seed")


def main() -> None:
    setup()
    paths = load_paths()
    params = load_section("datasets", DatasetsParams)
    teacher = read_params()["teacher"]
    generation = {key: teacher[key] for key in GENERATION_KEYS}
    charts = {c.id: c for c in load_charts(paths.charts / "charts.jsonl")}
    essays = load_essays(paths.essays / "essays.jsonl")
    total = len(essays)
    # Charts whose image does not show their own title and labels never reach a dataset.
    held_out, mismatched_held_out = drop_mismatched(
        held_out_charts(charts, essays), paths.ocr / "rejects.jsonl"
    )
    essays, mismatched = drop_mismatched(essays, paths.ocr / "rejects.jsonl")
    hints = ocr_texts(
        load_ocr(paths.ocr / "ocr.jsonl"), load_section("ocr", OcrParams).hint_max_chars
    )

    examples, rejects, dedup = clean_essays(essays, charts, params)
    examples += held_out_examples(held_out)
    rejects = [*mismatched, *rejects]
    leaks = leaked_pairs(examples, params)
    if leaks:
        raise SystemExit(f"datasets: test items near-duplicate train items: {leaks[:5]}")
    if not any(e.split == "train" for e in examples):
        raise SystemExit(
            f"datasets: no training example left ({len(rejects)} rejected; reasons in "
            f"{paths.datasets / 'rejects.jsonl'})"
        )
    metrics = dataset_metrics(examples, rejects, total, dedup)
    for variant in VARIANTS:
        out = paths.datasets / variant
        write_variant(examples, variant, paths.charts, out, hints)
        atomic_write_text(
            out / "README.md", render_card(variant, examples, metrics, rejects, generation)
        )
    save_records(paths.datasets / "rejects.jsonl", [*rejects, *mismatched_held_out])
    write_json(paths.metrics / "datasets.json", metrics)
    log.info("datasets: %s kept per split, %d rejected", metrics["per_split"], len(rejects))


if __name__ == "__main__":
    run(main)
