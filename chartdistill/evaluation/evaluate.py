"""One variant's evaluation, end to end: the inputs matched, each essay checked once, the table
gate then the LLM judge, the automatic metrics and the metrics file's content.

The judge stage is this one call (`evaluate_variant`) and its writes; the judgement rows it
returns carry the texts that were judged, so the report reads them instead of matching the
inputs again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chartdistill.config import InputError, PathsParams
from chartdistill.data.records import ChartRecord, load_charts, load_essays
from chartdistill.essay.grounding import ChartNumbers
from chartdistill.essay.sections import VARIANTS
from chartdistill.evaluation.gate import GateVerdict, findings, gate_verdict
from chartdistill.evaluation.judge import (
    SIDES,
    JudgeParams,
    PairJudgement,
    decided_by_gate,
    gate_record,
    judge_backend,
    judge_known_answers,
    judge_pairs,
    unjudged,
)
from chartdistill.evaluation.known_answer import (
    GATE_BLIND_KINDS,
    JUDGE_CHECK_METRICS,
    KNOWN_ANSWER_NAME,
    audit,
    build_pairs,
    trusted_sources,
)
from chartdistill.evaluation.metrics import (
    EssayCheck,
    check_essay,
    check_metrics,
    check_sections,
)
from chartdistill.evaluation.summary import (
    EvalInputs,
    EvaluationParams,
    eval_summary,
    length_differences,
    load_predictions,
    match_inputs,
    win_rate_plot_rows,
)
from chartdistill.io import read_json
from chartdistill.llm.cache import CachedClient, ResponseCache
from chartdistill.llm.cost import cost_summary
from chartdistill.llm.types import ChatBackend
from chartdistill.teacher.reference import reference_essay

log = logging.getLogger(__name__)

WRITERS: tuple[str, ...] = ("teacher", "baseline", "finetuned")


def parse_variant(argv: list[str], stage: str) -> str:
    """The variant named on a stage's command line (`python -m stages.<stage> <variant>`)."""
    if len(argv) != 2 or argv[1] not in VARIANTS:
        given = " ".join(argv[1:]) or "nothing"
        raise InputError(f"usage: python -m stages.{stage} <{'|'.join(VARIANTS)}> (got {given})")
    return argv[1]


@dataclass
class VariantEvaluation:
    """What the judge stage writes: the metrics file, the judgement rows (with the texts
    judged), the per-type plot rows."""

    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    plot_rows: list[dict[str, Any]]


def _required(path: Path, hint: str) -> Path:
    if not path.is_file():
        raise InputError(f"{path} not found ({hint})")
    return path


def load_inputs(variant: str, paths: PathsParams, params: JudgeParams) -> EvalInputs:
    """Charts, teacher references and both students' essays matched by chart id; a held-out
    chart without a teacher essay gets the reference writer's (judge.reference_writer)."""
    predictions = {}
    for name in ("baseline", variant):
        path = _required(paths.predictions / f"{name}.jsonl", "run the predict stages first")
        predictions[name] = load_predictions(path)
        if not predictions[name]:
            raise InputError(f"{path} holds no test predictions; nothing to judge")
    try:
        inputs = match_inputs(
            variant,
            load_charts(paths.charts / "charts.jsonl"),
            load_essays(paths.essays / "essays.jsonl"),
            predictions["baseline"],
            predictions[variant],
        )
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    if params.reference_writer:
        render = VARIANTS[variant]
        for chart in inputs.charts:
            if not inputs.references[chart.id]:
                sections = reference_essay(chart, params.seed)
                inputs.references[chart.id] = render(sections)
                inputs.reference_sections[chart.id] = sections
                inputs.reference_writer.add(chart.id)
    return inputs


def check_essays(
    inputs: EvalInputs, params: EvaluationParams, variant: str
) -> dict[str, dict[str, EssayCheck]]:
    """Every essay checked once against its chart at the evaluation bounds, the chart's table
    prepared once for its three essays: the students' texts as they wrote them, the reference
    by its sections (never rendered and parsed back)."""
    bounds = params.essay_bounds
    checks: dict[str, dict[str, EssayCheck]] = {writer: {} for writer in WRITERS}
    for chart in inputs.charts:
        numbers = ChartNumbers.from_chart(chart)
        for writer, texts in (("baseline", inputs.baseline), ("finetuned", inputs.finetuned)):
            checks[writer][chart.id] = check_essay(texts[chart.id], chart, bounds, numbers)
        sections = inputs.reference_sections.get(chart.id)
        if sections:
            checks["teacher"][chart.id] = check_sections(
                sections, chart, bounds, numbers, had_markers=variant == "structured"
            )
    return checks


def gate_then_judge(
    inputs: EvalInputs,
    checks: dict[str, dict[str, EssayCheck]],
    params: JudgeParams,
    client: CachedClient,
    prompts_dir: Path,
    llm_trusted: bool = True,
) -> list[PairJudgement]:
    """The table gate on every pair; the LLM judge (both orders) on the pairs it leaves, and
    on all of them with judge.gate.llm_on_decided. An LLM the audit did not trust
    (`llm_trusted` false) is not asked unless judge.gate.llm_when_unreliable: the pairs the
    gate leaves are then ties from no source. Each judgement records its source."""
    gate: dict[str, GateVerdict] = {
        c.id: gate_verdict(checks["baseline"][c.id], checks["finetuned"][c.id], params.gate)
        for c in inputs.charts
    }
    asked = [c for c in inputs.charts if gate[c.id].outcome is None or params.gate.llm_on_decided]
    if not (llm_trusted or params.gate.llm_when_unreliable):
        asked = []
    evidence = None
    if params.shows_evidence():
        evidence = {c.id: {side: findings(checks[side][c.id]) for side in SIDES} for c in asked}
    llm = {
        j.id: j
        for j in judge_pairs(
            asked,
            inputs.references,
            inputs.baseline,
            inputs.finetuned,
            params,
            client,
            prompts_dir,
            evidence,
        )
    }
    out = []
    for chart in inputs.charts:
        verdict = gate[chart.id]
        if verdict.outcome is not None:
            out.append(decided_by_gate(chart, verdict, llm.get(chart.id)))
        elif chart.id not in llm:
            out.append(unjudged(chart, verdict))
        else:
            judgement = llm[chart.id]
            judgement.gate = gate_record(verdict)
            out.append(judgement)
    unasked = sum(j.source == "none" for j in out)
    log.info(
        "gate decided %d of %d pairs; the LLM judged %d%s",
        sum(j.source == "gate" for j in out),
        len(out),
        len(asked),
        f"; {unasked} left as ties (judge_check flagged the LLM; judge.gate.llm_when_unreliable "
        "asks it anyway)"
        if unasked
        else "",
    )
    return out


def _metric_rows(
    checks: dict[str, EssayCheck],
    charts: Iterable[ChartRecord],
    references: dict[str, EssayCheck] | None,
    params: EvaluationParams,
) -> list[dict[str, Any]]:
    """Automatic metrics per checked essay; ROUGE-L against the reference's checked body."""
    rows = []
    for chart in charts:
        if chart.id not in checks:
            continue
        reference = (references or {}).get(chart.id)
        body = None if reference is None else reference.body
        metrics = check_metrics(checks[chart.id], chart, body, params.essay_bounds)
        rows.append({"id": chart.id, "chart_type": chart.chart_type, **metrics})
    return rows


def judgement_rows(
    judgements: list[PairJudgement], inputs: EvalInputs, checks: dict[str, dict[str, EssayCheck]]
) -> list[dict[str, Any]]:
    """The judgements as written (judgements/<variant>.jsonl), each with the texts judged and
    the reasons the checks found per essay, so the report needs no other input."""
    texts = {"teacher": inputs.references, "baseline": inputs.baseline}
    texts["finetuned"] = inputs.finetuned
    return [
        {
            **j.to_dict(),
            "texts": {writer: texts[writer][j.id] for writer in WRITERS},
            "reference_writer": j.id in inputs.reference_writer,
            "reasons": {
                writer: checks[writer][j.id].reasons for writer in WRITERS if j.id in checks[writer]
            },
        }
        for j in judgements
    ]


def evaluate_variant(
    variant: str,
    paths: PathsParams,
    params: JudgeParams,
    eval_params: EvaluationParams,
    backend: ChatBackend | None = None,
) -> VariantEvaluation:
    """One variant against the baseline: inputs, checks, gate then LLM judge, metrics."""
    inputs = load_inputs(variant, paths, params)
    check = read_json(_required(paths.metrics / JUDGE_CHECK_METRICS, "run judge_check first"))
    backend = backend or judge_backend(params, paths.prompts)
    client = CachedClient(backend, ResponseCache(paths.judge_cache / variant))
    checks = check_essays(inputs, eval_params, variant)
    judgements = gate_then_judge(
        inputs, checks, params, client, paths.prompts, trusted_sources(check)["llm"]
    )
    summary = eval_summary(
        judgements,
        _metric_rows(checks["teacher"], inputs.charts, None, eval_params),
        _metric_rows(checks["baseline"], inputs.charts, checks["teacher"], eval_params),
        _metric_rows(checks["finetuned"], inputs.charts, checks["teacher"], eval_params),
        length_differences(inputs),
        eval_params,
        check,
    )
    summary["references"] = {
        "teacher": sum(bool(t) for t in inputs.references.values()) - len(inputs.reference_writer),
        "reference_writer": len(inputs.reference_writer),
        "none": sum(not t for t in inputs.references.values()),
    }
    summary["judge_dtype"] = getattr(backend, "dtype", None)  # embedded: resolved; server: None
    summary["judge_tokens"] = client.stats.token_counts()  # prompt vs prefilled, generated
    summary["judge_cost"] = cost_summary(client.stats, params.prices)  # batch beside live
    log.info(
        "judge %s: %d requests, %d cache hits",
        client.model_id,
        client.requests_sent,
        client.cache_hits,
    )
    _log_summary(variant, summary, check)
    return VariantEvaluation(
        summary, judgement_rows(judgements, inputs, checks), win_rate_plot_rows(summary)
    )


def _log_summary(variant: str, summary: dict[str, Any], check: dict[str, Any]) -> None:
    by_source = summary["by_source"]
    log.info(
        "%s vs baseline: %d wins, %d ties, %d losses of %d judged (gate %d, llm %d, none %d); "
        "win rate %s (95%% CI %s), length-controlled %s (95%% CI %s); %d judge failures",
        variant,
        summary["wins"],
        summary["ties"],
        summary["losses"],
        summary["n"],
        by_source["gate"]["n"],
        by_source["llm"]["n"],
        by_source["none"]["n"],
        summary["win_rate"],
        summary["win_rate_ci95"],
        summary["lc_win_rate"],
        summary["lc_win_rate_ci95"],
        summary["judge_failures"],
    )
    for source, trusted in trusted_sources(check).items():
        if not trusted and by_source[source]["n"]:
            log.warning(
                "judge: the %s's accuracy on known-answer pairs is below "
                "judge.known_answer.min_accuracy: its %d verdicts cannot be trusted",
                source,
                by_source[source]["n"],
            )
    if summary["n"] == 0:
        log.error("judge: no chart got a usable verdict; see the judgements file for the replies")


# --------------------------------------------------------------------------- the audit


@dataclass
class JudgeAudit:
    """What the judge_check stage writes: each pair with both verdicts, and metrics/judge.json."""

    rows: list[dict[str, Any]]
    report: dict[str, Any]


def true_essays(paths: PathsParams, params: JudgeParams) -> tuple[list[ChartRecord], dict]:
    """The charts with a true essay by section: the teacher's accepted essays, and (with
    judge.reference_writer) the reference writer's for held-out charts the teacher never wrote."""
    charts = {c.id: c for c in load_charts(paths.charts / "charts.jsonl")}
    essays = {
        e.id: e.sections
        for e in load_essays(paths.essays / "essays.jsonl")
        if e.status == "accepted" and e.sections and e.id in charts
    }
    if params.reference_writer:
        for chart in charts.values():
            if chart.held_out and chart.id not in essays:
                essays[chart.id] = reference_essay(chart, params.seed)
    return [charts[i] for i in sorted(essays)], essays


def audit_judge(
    paths: PathsParams,
    params: JudgeParams,
    eval_params: EvaluationParams,
    backend: ChatBackend | None = None,
) -> JudgeAudit:
    """Known-answer pairs judged by the table gate and, separately, by the LLM judge on every
    pair (both orders); their accuracy per source and kind (known_answer.audit)."""
    charts, essays = true_essays(paths, params)
    known = params.known_answer
    pairs = build_pairs(charts, essays, known.pairs, known.kinds, known.seed, eval_params.tolerance)
    bounds = eval_params.essay_bounds
    gate: dict[str, str | None] = {}
    verdicts: dict[str, GateVerdict] = {}
    evidence: dict[str, dict[str, str]] = {}
    for pair in pairs:
        numbers = ChartNumbers.from_chart(pair.chart)
        intact = check_essay(pair.intact, pair.chart, bounds, numbers)
        corrupted = check_essay(pair.corrupted, pair.chart, bounds, numbers)
        verdicts[pair.id] = gate_verdict(corrupted, intact, params.gate)  # intact: "finetuned"
        gate[pair.id] = verdicts[pair.id].outcome
        evidence[pair.id] = {"baseline": findings(corrupted), "finetuned": findings(intact)}
    client = CachedClient(
        backend or judge_backend(params, paths.prompts),
        ResponseCache(paths.judge_cache / KNOWN_ANSWER_NAME),
    )
    shown = evidence if params.shows_evidence() else None
    judgements = judge_known_answers(pairs, params, client, paths.prompts, shown)
    report = audit(pairs, gate, judgements, known.min_accuracy)
    report["judge_tokens"] = client.stats.token_counts()  # prompt vs prefilled, generated
    rows = [
        {
            "kind": p.kind,
            "gate_blind": p.kind in GATE_BLIND_KINDS,
            "intact": p.intact,
            "corrupted": p.corrupted,
            "gate": gate_record(verdicts[p.id]),
            **j.to_dict(),
        }
        for p, j in zip(pairs, judgements, strict=True)
    ]
    _log_audit(report, client.model_id)
    return JudgeAudit(rows, report)


def _log_audit(report: dict[str, Any], model_id: str) -> None:
    gate, llm = report["gate"], report["llm"]
    log.info(
        "known-answer pairs: %d; gate decided %d (right %s), abstained on %s of the pairs it "
        "cannot see; %s judge right on %s of %d judged (position consistency %s); "
        "gate %s, llm %s",
        report["pairs"],
        gate["decided"],
        gate["accuracy"],
        gate["blind"]["abstain_rate"],
        model_id,
        llm["accuracy"],
        llm["n"],
        llm["position_consistency"],
        "reliable" if gate["reliable"] else "UNRELIABLE",
        "reliable" if llm["reliable"] else "UNRELIABLE",
    )
