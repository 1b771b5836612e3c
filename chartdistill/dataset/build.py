"""From accepted teacher essays to the two training datasets (structured and unstructured).

Both variants are rendered from the same parsed sections (chartdistill.essay.sections), so they
carry the same content and differ only in the section markers. Hygiene (exact and near
duplicates, length, structure, numeric grounding) runs once on the essays; the split is a
hash of the chart id, so adding charts never moves an existing one.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import mean
from typing import Any, Literal

from pydantic import Field, model_validator

from chartdistill.config import InputError, PathsParams, Section
from chartdistill.data.records import (
    ChartRecord,
    EssayRecord,
    Reject,
    load_charts,
    load_essays,
    save_records,
)
from chartdistill.dataset.dedup import exact_key, near_duplicate_pairs
from chartdistill.essay.sections import SECTIONS, VARIANTS, render_unstructured
from chartdistill.essay.text import LENIENT_BOUNDS, EssayBounds, validate_essay, word_count
from chartdistill.io import atomic_write_text
from chartdistill.ocr import HintLayout, drop_mismatched, load_ocr
from chartdistill.ocr_hint import ocr_texts

log = logging.getLogger(__name__)

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")


class SplitFractions(Section):
    train: float = Field(default=0.85, ge=0)
    validation: float = Field(default=0.15, ge=0)
    test: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        if abs(self.train + self.validation + self.test - 1) > 1e-6:
            raise ValueError("split fractions must sum to 1")
        return self


class DatasetsParams(Section):
    split: SplitFractions = SplitFractions()
    split_salt: str = "chartdistill-v1"  # change it to draw a new split
    use_source_split: bool = True  # keep a dataset's own split (Chart-to-text) when it has one
    # The teacher's checks again (validate_essay), with the datasets' own values: set them
    # stricter than teacher.validation to filter without re-teaching.
    bounds: EssayBounds = LENIENT_BOUNDS
    near_duplicate_threshold: float = Field(default=0.8, gt=0, le=1)
    shingle_size: int = Field(default=5, ge=1)


@dataclass(frozen=True)
class Example:
    """One dataset row: a chart and its teacher essay; a held-out test chart has no essay."""

    essay: EssayRecord | None
    chart: ChartRecord
    split: Split
    words: int
    from_train: bool = False  # moved to validation by ensure_validation

    def text(self, variant: str) -> str:
        return VARIANTS[variant](self.essay.sections or {}) if self.essay else ""


def split_draw(chart: ChartRecord, params: DatasetsParams) -> float:
    """A chart's salted hash as a number in [0, 1): its place in the split draw, stable per id."""
    digest = hashlib.sha256(f"{params.split_salt}:{chart.id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(charts: Sequence[ChartRecord], params: DatasetsParams) -> dict[str, Split]:
    """The split of each chart, stratified by chart type.

    A dataset's own split is kept (Chart-to-text). The rest of each chart type is ordered by the
    salted hash of the id and cut in the split's proportions (largest remainder), so every type
    gets its share of validation and test charts however few it has: an independent coin per
    chart once left 1 of 44 teacher essays in validation. A type's charts move only at the cut
    when charts are added.
    """
    splits: dict[str, Split] = {}
    by_type: dict[str, list[ChartRecord]] = {}
    for chart in charts:
        if params.use_source_split and chart.split in SPLITS:
            splits[chart.id] = chart.split  # type: ignore[assignment]
        else:
            by_type.setdefault(chart.chart_type, []).append(chart)
    for group in by_type.values():
        ordered = sorted(group, key=lambda c: (split_draw(c, params), c.id))
        counts = split_counts(len(ordered), params.split)
        names = ["train"] * counts["train"] + ["validation"] * counts["validation"]
        names += ["test"] * counts["test"]
        splits.update({c.id: name for c, name in zip(ordered, names, strict=True)})  # type: ignore[misc]
    return splits


def split_counts(total: int, fractions: SplitFractions) -> dict[str, int]:
    """`total` items cut in the given fractions by largest remainder (ties: test, then
    validation, so a small type still gets its held-out share before train does)."""
    shares = {s: total * getattr(fractions, s) for s in ("test", "validation", "train")}
    counts = {s: int(share) for s, share in shares.items()}
    by_remainder = sorted(shares, key=lambda s: shares[s] - counts[s], reverse=True)
    for split in by_remainder[: total - sum(counts.values())]:
        counts[split] += 1
    return counts


def _essay_problem(
    essay: EssayRecord, chart: ChartRecord | None, params: DatasetsParams
) -> tuple[str, str] | None:
    if chart is None:
        return "unknown_chart", "no chart with this id in charts.jsonl"
    if essay.status != "accepted":
        return f"teacher_{essay.status}", ",".join(essay.reasons) or (essay.error or "")
    sections = essay.sections or {}
    missing = [name for name in SECTIONS if not sections.get(name, "").strip()]
    if missing:
        return "missing_section", ",".join(missing)
    reasons = validate_essay(sections, chart, params.bounds)
    if reasons:
        return reasons[0], ",".join(reasons)
    return None


def clean_essays(
    essays: list[EssayRecord], charts: dict[str, ChartRecord], params: DatasetsParams
) -> tuple[list[Example], list[Reject], dict[str, Any]]:
    """Keep accepted, well-formed, grounded essays without duplicates; split them."""
    rejects: list[Reject] = []
    kept: list[EssayRecord] = []
    for essay in sorted(essays, key=lambda e: e.id):
        problem = _essay_problem(essay, charts.get(essay.id), params)
        if problem:
            rejects.append(Reject(item=essay.id, reason=problem[0], detail=problem[1]))
        else:
            kept.append(essay)

    seen: dict[str, str] = {}
    unique: list[EssayRecord] = []
    for essay in kept:
        key = exact_key(render_unstructured(essay.sections or {}))
        if key in seen:
            rejects.append(Reject(item=essay.id, reason="exact_duplicate", detail=seen[key]))
        else:
            seen[key] = essay.id
            unique.append(essay)

    texts = [render_unstructured(e.sections or {}) for e in unique]
    pairs = near_duplicate_pairs(texts, params.near_duplicate_threshold, params.shingle_size)
    dropped: set[int] = set()
    for i, j, similarity in pairs:
        if i not in dropped and j not in dropped:
            dropped.add(j)  # keep the first by id
            detail = f"{unique[i].id} (jaccard {similarity})"
            rejects.append(Reject(item=unique[j].id, reason="near_duplicate", detail=detail))

    kept_unique = [(k, e) for k, e in enumerate(unique) if k not in dropped]
    splits = assign_splits([charts[e.id] for _, e in kept_unique], params)
    examples = ensure_validation(
        [Example(e, charts[e.id], splits[e.id], word_count(texts[k])) for k, e in kept_unique]
    )
    stats = {"near_duplicate_pairs": len(pairs), "exact_duplicates": len(kept) - len(unique)}
    return examples, rejects, stats


def ensure_validation(examples: list[Example]) -> list[Example]:
    """Training needs a validation split: when the hash left it empty (a teacher that accepts
    few essays), the last train example by chart id moves there (logged, and counted in the
    metrics as `validation_from_train`). Fewer than two train examples are left as they are."""
    train = sorted((e for e in examples if e.split == "train"), key=lambda e: e.chart.id)
    if any(e.split == "validation" for e in examples) or len(train) < 2:
        return examples
    moved = train[-1]
    log.warning("the validation split is empty: chart %s moves there from train", moved.chart.id)
    return [replace(e, split="validation", from_train=True) if e is moved else e for e in examples]


def held_out_charts(charts: dict[str, ChartRecord], essays: list[EssayRecord]) -> list[ChartRecord]:
    """Held-out test charts (charts.test_counts) the teacher wrote nothing for
    (teacher.test_references: false): test rows without a reference essay."""
    written = {essay.id for essay in essays}
    return sorted(
        (c for c in charts.values() if c.held_out and c.id not in written),
        key=lambda c: c.id,
    )


def held_out_examples(charts: list[ChartRecord]) -> list[Example]:
    return [Example(None, chart, "test", 0) for chart in charts]


def leaked_pairs(examples: list[Example], params: DatasetsParams) -> list[tuple[str, str]]:
    """(test id, train id) pairs whose essays are near duplicates: must be empty."""
    test = [e for e in examples if e.split == "test" and e.essay]
    train = [e for e in examples if e.split == "train"]
    texts = [e.text("unstructured") for e in test + train]
    pairs = near_duplicate_pairs(texts, params.near_duplicate_threshold, params.shingle_size)
    n = len(test)
    return [(test[i].chart.id, train[j - n].chart.id) for i, j, _ in pairs if i < n <= j]


def variant_rows(
    examples: list[Example],
    variant: str,
    charts_dir: Path,
    ocr_texts: dict[str, str] | None = None,
) -> dict[str, list[Any]]:
    """Columns for one split of one variant; images embedded as PNG bytes; `ocr_text` is the
    text OCR read in the chart image, in reading order (empty without the ocr stage)."""
    ocr_texts = ocr_texts or {}
    return {
        "id": [e.chart.id for e in examples],
        "chart_type": [e.chart.chart_type for e in examples],
        "title": [e.chart.title for e in examples],
        "image": [
            {"bytes": (charts_dir / e.chart.image).read_bytes(), "path": None} for e in examples
        ],
        "text": [e.text(variant) for e in examples],
        "teacher_model": [e.essay.model if e.essay else "" for e in examples],
        "prompt_hash": [e.essay.prompt_hash if e.essay else "" for e in examples],
        "ocr_text": [ocr_texts.get(e.chart.id, "") for e in examples],
    }


def dataset_features() -> Any:
    """The columns of every split parquet (the contract the training stage reads)."""
    from datasets import Features, Image, Value

    strings = ("id", "chart_type", "title", "text", "teacher_model", "prompt_hash", "ocr_text")
    return Features({**{name: Value("string") for name in strings}, "image": Image()})


def write_variant(
    examples: list[Example],
    variant: str,
    charts_dir: Path,
    out_dir: Path,
    ocr_texts: dict[str, str] | None = None,
) -> None:
    from datasets import Dataset

    features = dataset_features()
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        part = [e for e in examples if e.split == split]
        if not part:  # an empty parquet split makes `load_dataset` fail for the whole folder
            log.warning("%s: the %s split is empty; no %s.parquet written", variant, split, split)
            continue
        rows = variant_rows(part, variant, charts_dir, ocr_texts)
        Dataset.from_dict(rows, features=features).to_parquet(str(out_dir / f"{split}.parquet"))


def dataset_metrics(
    examples: list[Example], rejects: list[Reject], total: int, dedup: dict[str, Any]
) -> dict[str, Any]:
    reasons = Counter(r.reason for r in rejects)
    written = [e for e in examples if e.essay]
    return {
        "essays_in": total,
        "kept": len(examples),
        "rejected": len(rejects),
        "reject_rate": round(len(rejects) / total, 4) if total else 0.0,
        "reject_rate_by_reason": {k: round(v / total, 4) for k, v in sorted(reasons.items())},
        "per_split": {s: sum(e.split == s for e in examples) for s in SPLITS},
        "per_split_type": {
            s: dict(sorted(Counter(e.chart.chart_type for e in examples if e.split == s).items()))
            for s in SPLITS
        },
        "test_without_reference": sum(e.essay is None for e in examples),
        "validation_from_train": sum(e.from_train for e in examples),
        "mean_words": round(mean(e.words for e in written), 1) if written else 0.0,
        **dedup,
    }


def render_card(
    variant: str,
    examples: list[Example],
    metrics: dict[str, Any],
    rejects: list[Reject],
    generation: dict[str, Any],
) -> str:
    """The dataset card (README.md with hub YAML front matter) for one variant."""
    import jinja2

    from chartdistill.essay.sections import MARKERS

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    types = sorted({e.chart.chart_type for e in examples})
    counts: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        part = [e for e in examples if e.split == split]
        counts[split] = {"total": len(part), **Counter(e.chart.chart_type for e in part)}
    return env.get_template("dataset_card.md").render(
        variant=variant,
        markers=[MARKERS[s].rstrip(":") for s in SECTIONS],
        splits=[s for s in SPLITS if counts[s]["total"]],
        types=types,
        counts=counts,
        teacher_models=sorted({e.essay.model for e in examples if e.essay}) or ["none"],
        prompt_hashes={e.chart.chart_type: e.essay.prompt_hash for e in examples if e.essay},
        without_reference=metrics["test_without_reference"],
        sources=sorted({e.chart.source for e in examples}) or ["none"],
        generation=", ".join(f"{k}={v}" for k, v in sorted(generation.items())),
        mean_words=metrics["mean_words"],
        rejected=metrics["rejected"],
        essays_in=metrics["essays_in"],
        reject_reasons=dict(sorted(Counter(r.reason for r in rejects).items())),
    )


# --------------------------------------------------------------------------- the stage's work


@dataclass
class BuiltDatasets:
    """What the datasets stage wrote and reports: its metrics and the rejects."""

    metrics: dict[str, Any]
    rejects: list[Reject]


def build_datasets(
    paths: PathsParams,
    params: DatasetsParams,
    generation: dict[str, Any],
    hint_max_chars: int,
    hint_layout: HintLayout,
) -> BuiltDatasets:
    """The structured and unstructured datasets from the teacher essays: charts whose image
    does not show their own title and labels dropped (one check over essays and held-out
    charts), cleaning, dedup and splits, a leak check, the parquet files and dataset cards,
    rejects.jsonl; InputError when a test item near-duplicates a train item or nothing is left
    to train on."""
    charts = {c.id: c for c in load_charts(paths.charts / "charts.jsonl")}
    essays = load_essays(paths.essays / "essays.jsonl")
    total = len(essays)
    held_out = held_out_charts(charts, essays)
    kept, mismatched = drop_mismatched([*essays, *held_out], paths.ocr / "rejects.jsonl")
    held_ids = {c.id for c in held_out}
    essays = [e for e in kept if isinstance(e, EssayRecord)]
    held_out = [c for c in kept if isinstance(c, ChartRecord)]
    mismatched_essays = [r for r in mismatched if r.item not in held_ids]
    hints = ocr_texts(load_ocr(paths.ocr / "ocr.jsonl"), hint_max_chars, hint_layout)
    examples, rejects, dedup = clean_essays(essays, charts, params)
    examples += held_out_examples(held_out)
    rejects = [*mismatched_essays, *rejects]
    leaks = leaked_pairs(examples, params)
    if leaks:
        raise InputError(f"test items near-duplicate train items: {leaks[:5]}")
    if not any(e.split == "train" for e in examples):
        raise InputError(
            f"no training example left ({len(rejects)} rejected; reasons in "
            f"{paths.datasets / 'rejects.jsonl'})"
        )
    metrics = dataset_metrics(examples, rejects, total, dedup)
    for variant in VARIANTS:
        out = paths.datasets / variant
        write_variant(examples, variant, paths.charts, out, hints)
        card = render_card(variant, examples, metrics, rejects, generation)
        atomic_write_text(out / "README.md", card)
    mismatched_held_out = [r for r in mismatched if r.item in held_ids]
    save_records(paths.datasets / "rejects.jsonl", [*rejects, *mismatched_held_out])
    log.info("datasets: %s kept per split, %d rejected", metrics["per_split"], len(rejects))
    return BuiltDatasets(metrics, rejects)
