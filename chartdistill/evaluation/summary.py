"""Evaluation of one fine-tuned variant: its inputs, automatic metrics, and the metrics file.

`eval_summary` turns the judge's pairwise outcomes and the automatic metrics of the teacher,
baseline and fine-tuned essays into `metrics/eval_<variant>.json`: win/tie/loss counts of the
fine-tuned student, raw, expected (debiased probability) and length-controlled win rates with
paired bootstrap 95 % intervals (chartdistill.evaluation.winrate), the same per chart type,
rubric band means, judge failures by reason, position consistency, the judge's known-answer
accuracy, and the automatic metrics overall and per chart type. Everything in it is a number
(or null) in nested dicts, never a list, so `dvc metrics diff` shows it key by key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chartdistill.config import Section
from chartdistill.data.records import CHART_TYPES, ChartRecord, EssayRecord
from chartdistill.essay.sections import SECTIONS, VARIANTS
from chartdistill.essay.text import EssayBounds, clean_prose, essay_body, word_count
from chartdistill.evaluation.gate import SOURCES
from chartdistill.evaluation.judge import CRITERIA, SIDES, PairJudgement
from chartdistill.evaluation.metrics import essay_metrics, wilson_interval
from chartdistill.evaluation.winrate import (
    OUTCOME_SCORE,
    PairScore,
    bootstrap_intervals,
    mean,
    spread,
    win_rates,
)
from chartdistill.io import read_jsonl

log = logging.getLogger(__name__)

_DIGITS = 4
# Fields of essay_metrics that are a reason (str) or None: reported as the rate of non-None.
_RATE_OF_PRESENT: tuple[str, ...] = ("off_task", "parse_error")
_NOT_AVERAGED: tuple[str, ...] = ("id", "chart_type", "reasons")
# Means of per-essay fractions reported with a bootstrap 95 % interval over the essays.
_BOOTSTRAPPED: tuple[str, ...] = (
    "numeric_precision",
    "attributed_precision",
    "key_value_recall",
    "label_recall",
    "repeated_trigram_rate",
)
PLOT_FIELDS: tuple[str, ...] = ("chart_type", "win_rate", "tie_rate", "loss_rate")


class EvaluationParams(Section):
    """Bounds for the automatic metrics (word-count compliance, loops, validity), the
    relative tolerance for matching an essay's numbers to the table, and the win-rate
    statistics' bootstrap and length-model settings.

    `tolerance` is the one knob for number matching; it overrides `bounds.tolerance`, which
    must therefore not be set to a different value.
    """

    bounds: EssayBounds = EssayBounds()
    tolerance: float = Field(default=0.02, ge=0, le=1)
    bootstrap_samples: int = Field(default=1000, ge=0)  # paired bootstrap over test charts
    bootstrap_seed: int = 0
    length_ridge: float = Field(default=0.1, gt=0)  # on the length-control slope

    @model_validator(mode="after")
    def _one_tolerance(self) -> EvaluationParams:
        if "tolerance" in self.bounds.model_fields_set and self.bounds.tolerance != self.tolerance:
            raise ValueError(
                f"bounds.tolerance ({self.bounds.tolerance}) differs from tolerance "
                f"({self.tolerance}); set only evaluation.tolerance"
            )
        return self

    @property
    def essay_bounds(self) -> EssayBounds:
        """`bounds` with `tolerance` applied."""
        return self.bounds.model_copy(update={"tolerance": self.tolerance})


# --------------------------------------------------------------------------- inputs


class Prediction(BaseModel):
    """One student essay for one test chart, as the predict stages write it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    chart_type: str
    text: str
    seconds: float = 0.0
    model: str = ""


def load_predictions(path: Path) -> dict[str, Prediction]:
    """Predictions by chart id, in file order; a bad line or a repeated id is an error."""
    out: dict[str, Prediction] = {}
    for number, row in enumerate(read_jsonl(path), start=1):
        try:
            prediction = Prediction.model_validate(row)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"{path}:{number}: not a prediction record: {problems}") from exc
        if prediction.id in out:
            raise ValueError(f"{path}:{number}: chart {prediction.id} predicted twice")
        out[prediction.id] = prediction
    return out


@dataclass
class EvalInputs:
    """Everything one variant's evaluation reads, matched by chart id (finetuned file order)."""

    charts: list[ChartRecord]
    references: dict[str, str]  # the teacher essay rendered like the variant; "" held out
    baseline: dict[str, str]
    finetuned: dict[str, str]
    # held-out charts whose reference is the computed reference writer's (judge.reference_writer)
    reference_writer: set[str] = field(default_factory=set)
    # each reference's sections, as written (checked as they are, never parsed back)
    reference_sections: dict[str, dict[str, str]] = field(default_factory=dict)


def reference_texts(essays: Iterable[EssayRecord], variant: str) -> dict[str, str]:
    """Teacher essays with all four sections, rendered in the variant's format, by chart id (a
    stepwise essay that failed part-way keeps the sections it got: it is no reference)."""
    render = _renderer(variant)
    return {i: render(sections) for i, sections in reference_sections(essays).items()}


def reference_sections(essays: Iterable[EssayRecord]) -> dict[str, dict[str, str]]:
    """The sections of every teacher essay that has all four, by chart id."""
    return {
        e.id: dict(e.sections)
        for e in essays
        if e.sections is not None and all(name in e.sections for name in SECTIONS)
    }


def _renderer(variant: str) -> Callable[[dict[str, str]], str]:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def _missing(ids: Sequence[str], present: Iterable[str]) -> list[str]:
    have = set(present)
    return [i for i in ids if i not in have]


def _preview(ids: list[str]) -> str:
    shown = ", ".join(ids[:5])
    return f"{shown} (+{len(ids) - 5} more)" if len(ids) > 5 else shown


def match_inputs(
    variant: str,
    charts: Iterable[ChartRecord],
    essays: Iterable[EssayRecord],
    baseline: dict[str, Prediction],
    finetuned: dict[str, Prediction],
) -> EvalInputs:
    """Line up charts, teacher references and both students' essays by chart id.

    Both prediction files must cover the same charts, and each chart must be in the manifest
    with a parsed teacher essay, or be a test chart the teacher never wrote for (its reference
    is ""); otherwise the error names the ids that do not match.
    """
    essays = list(essays)
    if not finetuned:
        raise ValueError(f"no {variant} predictions: nothing to judge")
    ids = list(finetuned)
    problems = []
    if only_ft := _missing(ids, baseline):
        problems.append(f"{len(only_ft)} in {variant} but not baseline: {_preview(only_ft)}")
    if only_base := _missing(list(baseline), finetuned):
        problems.append(f"{len(only_base)} in baseline but not {variant}: {_preview(only_base)}")
    by_id = {c.id: c for c in charts}
    if unknown := _missing(ids, by_id):
        problems.append(f"{len(unknown)} not in the chart manifest: {_preview(unknown)}")
    references = reference_texts(essays, variant)
    written = {e.id for e in essays}
    held_out = {i for i in ids if i in by_id and by_id[i].held_out and i not in written}
    if no_ref := _missing([i for i in ids if i not in held_out], references):
        problems.append(f"{len(no_ref)} without a parsed teacher essay: {_preview(no_ref)}")
    mismatched = [i for i in ids if i in by_id and by_id[i].chart_type != finetuned[i].chart_type]
    if mismatched:
        problems.append(f"chart_type differs from the manifest for {_preview(mismatched)}")
    if problems:
        raise ValueError(f"judge inputs for {variant} do not match: " + "; ".join(problems))
    return EvalInputs(
        charts=[by_id[i] for i in ids],
        references={i: references.get(i, "") for i in ids},
        reference_sections={
            i: sections for i, sections in reference_sections(essays).items() if i in references
        },
        baseline={i: baseline[i].text for i in ids},
        finetuned={i: finetuned[i].text for i in ids},
    )


# --------------------------------------------------------------------------- automatic metrics


def automatic_metrics(
    texts: dict[str, str],
    charts: Iterable[ChartRecord],
    references: dict[str, str] | None,
    params: EvaluationParams,
) -> list[dict[str, Any]]:
    """essay_metrics for each essay (id -> text) against its chart; ROUGE-L against the
    reference when `references` is given and holds one for the essay (pass None for the
    teacher's own essays; "" is a held-out chart's missing reference)."""
    by_id = {c.id: c for c in charts}
    bounds = params.essay_bounds
    rows = []
    for essay_id, text in texts.items():
        chart = by_id.get(essay_id)
        if chart is None:
            raise ValueError(f"essay {essay_id}: no chart with this id")
        reference = None
        if references is not None:
            if essay_id not in references:
                raise ValueError(f"essay {essay_id}: no reference essay")
            reference = references[essay_id] or None
        metrics = essay_metrics(text, chart, reference, bounds)
        rows.append({"id": essay_id, "chart_type": chart.chart_type, **metrics})
    return rows


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, _DIGITS)


def mean_metrics(
    rows: list[dict[str, Any]], params: EvaluationParams | None = None
) -> dict[str, float | int | None]:
    """Means of the numeric fields (None values skipped; None when no value), booleans as
    `<name>_rate` with a Wilson 95 % interval, off_task and parse_error as the rate of essays
    where they are set; the precision and recall means with a bootstrap 95 % interval over
    the essays that have a value (`<name>_ci95_low/high`, `params.bootstrap_*`)."""
    params = params or EvaluationParams()
    summary: dict[str, float | int | None] = {"n": len(rows)}
    keys = list(dict.fromkeys(k for row in rows for k in row if k not in _NOT_AVERAGED))
    for key in keys:
        values = [row.get(key) for row in rows]
        if key in _RATE_OF_PRESENT:
            summary[f"{key}_rate"] = _round(sum(v is not None for v in values) / len(rows))
            continue
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, bool) for v in present):
            summary[f"{key}_rate"] = _round(sum(present) / len(present))
            # Wilson 95 % interval of the rate, as two metrics so `dvc metrics diff` shows them.
            low, high = wilson_interval(sum(present), len(present)) or (None, None)
            summary[f"{key}_rate_ci95_low"] = _round(low)
            summary[f"{key}_rate_ci95_high"] = _round(high)
        elif all(_is_number(v) for v in present):
            summary[key] = _round(mean(present))
            if key in _BOOTSTRAPPED:
                stat = {"mean": mean}
                interval = bootstrap_intervals(
                    present, stat, params.bootstrap_samples, params.bootstrap_seed
                )["mean"]
                summary[f"{key}_ci95_low"] = (interval or {}).get("low")
                summary[f"{key}_ci95_high"] = (interval or {}).get("high")
    return summary


# --------------------------------------------------------------------------- judge summary


def length_differences(inputs: EvalInputs) -> dict[str, float]:
    """Fine-tuned minus baseline essay length (words of the body, as judged), by chart id."""
    return {
        i: float(
            word_count(essay_body(clean_prose(inputs.finetuned[i]).text))
            - word_count(essay_body(clean_prose(inputs.baseline[i]).text))
        )
        for i in inputs.finetuned
    }


def _pair_scores(
    judgements: list[PairJudgement], length_diffs: dict[str, float]
) -> list[PairScore]:
    return [
        PairScore(
            j.id,
            j.chart_type,
            j.outcome,
            OUTCOME_SCORE[j.outcome] if j.expected_score is None else j.expected_score,
            length_diffs.get(j.id, 0.0),
        )
        for j in judgements
        if j.outcome is not None
    ]


def failure_reasons(judgements: list[PairJudgement]) -> dict[str, int]:
    """How many order verdicts failed, by error kind (the text before any ':')."""
    counts: dict[str, int] = {}
    for j in judgements:
        for v in j.verdicts:
            if v.error is not None:
                kind = v.error.split(":", 1)[0].strip()
                counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def outcome_stats(
    judgements: list[PairJudgement],
    length_diffs: dict[str, float] | None = None,
    params: EvaluationParams | None = None,
    length_scale: float | None = None,
) -> dict[str, Any]:
    """Counts and rates of the fine-tuned student's wins, ties and losses over the judged
    charts (failures excluded from n and counted), the expected (debiased, probability-weighted)
    and length-controlled win rates, each with a paired bootstrap 95 % interval over charts.

    `length_scale` (the spread of the length differences) defaults to the one of these pairs;
    per chart type the overall one is passed, so the length model means the same everywhere.
    """
    params = params or EvaluationParams()
    diffs = length_diffs or {}
    judged = [j for j in judgements if j.outcome is not None]
    n = len(judged)
    pairs = _pair_scores(judged, diffs)
    if length_scale is None:
        length_scale = spread([p.length_diff for p in pairs])
    rates = win_rates(
        pairs, length_scale, params.length_ridge, params.bootstrap_samples, params.bootstrap_seed
    )

    def rate(count: float) -> float | None:
        return round(count / n, _DIGITS) if n else None

    return {
        "charts": len(judgements),
        "n": n,
        "wins": sum(j.outcome == "finetuned" for j in judged),
        "ties": sum(j.outcome == "tie" for j in judged),
        "losses": sum(j.outcome == "baseline" for j in judged),
        "tie_rate": rate(sum(j.outcome == "tie" for j in judged)),
        "loss_rate": rate(sum(j.outcome == "baseline" for j in judged)),
        **rates,
        "length_scale": round(length_scale, 2),
        "judge_failures": len(judgements) - n,
        "single_order": sum(j.single_order for j in judged),
    }


def band_means(judgements: list[PairJudgement]) -> dict[str, dict[str, float | None]]:
    """Mean rubric band per criterion (and over all four) for the baseline and fine-tuned."""
    out: dict[str, dict[str, float | None]] = {}
    for side in SIDES:
        per: dict[str, float | None] = {}
        everything: list[float] = []
        for criterion in CRITERIA:
            values = [
                j.bands[side][criterion] for j in judgements if criterion in j.bands.get(side, {})
            ]
            everything.extend(values)
            per[criterion] = _round(sum(values) / len(values)) if values else None
        per["overall"] = _round(sum(everything) / len(everything)) if everything else None
        out[side] = per
    return out


def position_stats(judgements: list[PairJudgement]) -> dict[str, float | int | None]:
    """How often the judge picked the essay shown first (A) among its decisive verdicts, and
    how often the two orders gave the same verdict (position consistency); None without data."""
    letters = [v.winner for j in judgements for v in j.verdicts if v.ok and v.winner != "tie"]
    both = [j for j in judgements if j.agree is not None]
    return {
        "decisive_verdicts": len(letters),
        "first_position_rate": (
            round(letters.count("A") / len(letters), _DIGITS) if letters else None
        ),
        "orders_compared": len(both),
        "position_consistency": (
            round(sum(bool(j.agree) for j in both) / len(both), _DIGITS) if both else None
        ),
    }


def eval_summary(
    judgements: list[PairJudgement],
    auto_teacher: list[dict[str, Any]],
    auto_baseline: list[dict[str, Any]],
    auto_finetuned: list[dict[str, Any]],
    length_diffs: dict[str, float] | None = None,
    params: EvaluationParams | None = None,
    judge_check: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of metrics/eval_<variant>.json (nested dicts of numbers, no lists).

    `judge_check` is the judge's known-answer reliability (metrics/judge.json); its accuracy,
    position consistency and flags are repeated here, next to the win rates.
    """
    types = [t for t in CHART_TYPES if any(j.chart_type == t for j in judgements)]
    types += sorted({j.chart_type for j in judgements} - set(types))
    overall = outcome_stats(judgements, length_diffs, params)
    scale = overall["length_scale"]
    summary: dict[str, Any] = {
        **overall,
        # the table gate's verdicts and the LLM judge's, each with its own intervals
        "by_source": {
            source: outcome_stats(
                [j for j in judgements if j.source == source], length_diffs, params, scale
            )
            for source in SOURCES
        },
        "failure_reasons": failure_reasons(judgements),
        "per_type": {
            t: outcome_stats(
                [j for j in judgements if j.chart_type == t], length_diffs, params, scale
            )
            for t in types
        },
        "bands": band_means(judgements),
        "position": position_stats(judgements),
        "auto": {
            "teacher": mean_metrics(auto_teacher, params),
            "baseline": mean_metrics(auto_baseline, params),
            "finetuned": mean_metrics(auto_finetuned, params),
        },
        "auto_per_type": {
            t: {
                name: mean_metrics([r for r in rows if r["chart_type"] == t], params)
                for name, rows in (
                    ("teacher", auto_teacher),
                    ("baseline", auto_baseline),
                    ("finetuned", auto_finetuned),
                )
            }
            for t in types
        },
    }
    if judge_check is not None:
        summary["judge_check"] = judge_check_brief(judge_check)
    return summary


def judge_check_brief(check: dict[str, Any]) -> dict[str, Any]:
    """The known-answer audit's figures repeated beside the win rates: per source, its accuracy
    on the pairs it decided and whether its verdicts may be trusted."""
    gate, llm = check.get("gate") or {}, check.get("llm") or {}
    return {
        "pairs": check.get("pairs"),
        "gate": {k: gate.get(k) for k in ("decided", "accuracy", "abstained", "reliable")},
        "llm": {
            k: llm.get(k)
            for k in ("n", "accuracy", "expected_accuracy", "position_consistency", "reliable")
        },
        "combined_accuracy": (check.get("combined") or {}).get("accuracy"),
        "same_model_as_teacher": check.get("same_model_as_teacher"),
    }


def win_rate_plot_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per chart type (chart_type, win_rate, tie_rate, loss_rate) for a DVC bar plot."""
    return [
        {"chart_type": chart_type, **{k: stats[k] for k in PLOT_FIELDS[1:]}}
        for chart_type, stats in summary["per_type"].items()
    ]
