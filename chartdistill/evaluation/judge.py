"""The pairwise LLM judge: fine-tuned student against baseline, debiased by asking both orders.

For every chart the judge sees the chart data, the teacher's essay as a reference and two
candidate essays, and answers with a JSON verdict (prompts/judge_system.md, prompts/judge.md).
Each chart is asked twice, once with the baseline as essay A and once with the fine-tuned
student as essay A (MT-Bench style): the two verdicts are mapped back to "baseline" /
"finetuned" / "tie", and when the orders disagree the outcome is a tie. This cancels the
judge's preference for a position, and it also blunts prompt injection: an essay that tells a
naive judge to "answer A" wins in one order only, which makes a tie, never a win.

A verdict is read from token probabilities where the backend offers them: the embedded judge
scores the allowed verdicts ("A", "B", "tie") at the verdict position (chartdistill.llm.scoring),
so every pair gets a verdict and no free text is parsed. Each order then gives a distribution
over the candidates; their mean over both orders is the debiased probability that the
fine-tuned essay is better (G-Eval-style expectation), kept beside the hard MT-Bench outcome.
A parsed JSON reply gives a one-hot distribution.

A reply that cannot be parsed is an error recorded beside the raw text, never a crash; it is a
counted judge failure, never a 0 or NaN in a rate.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from chartdistill.config import Section
from chartdistill.data.records import ChartRecord
from chartdistill.essay.text import clean_prose, strip_wrapping
from chartdistill.evaluation.gate import GateParams, GateVerdict, Source
from chartdistill.evaluation.known_answer import (
    CORRUPTION_KINDS,
    CorruptionKind,
    KnownAnswerPair,
)
from chartdistill.llm.cache import CachedClient
from chartdistill.llm.cost import PriceTable
from chartdistill.llm.factory import make_backend
from chartdistill.llm.types import (
    ChatBackend,
    ChatRequest,
    ChatResult,
    EmbeddedParams,
    LLMParams,
)
from chartdistill.prompts.judge import judge_answer_prefix, render_judge_messages

log = logging.getLogger(__name__)

Letter = Literal["A", "B", "tie"]
LETTERS: tuple[Letter, ...] = ("A", "B", "tie")
Outcome = Literal["finetuned", "baseline", "tie"]
Side = Literal["baseline", "finetuned"]

CRITERIA: tuple[str, ...] = (
    "task_achievement",
    "coherence_cohesion",
    "lexical_resource",
    "grammatical_range",
)
BAND_MIN, BAND_MAX = 0.0, 9.0
SIDES: tuple[Side, ...] = ("baseline", "finetuned")
OUTCOMES: tuple[Outcome, ...] = ("finetuned", "tie", "baseline")

# Which candidate is essay A in each order; essay B is the other one.
ORDER_A: dict[int, Side] = {1: "baseline", 2: "finetuned"}

_WINNER_ALIASES: dict[str, Letter] = {
    "a": "A",
    "essay a": "A",
    "b": "B",
    "essay b": "B",
    "tie": "tie",
    "draw": "tie",
    "equal": "tie",
}
_FENCE_OPEN = re.compile(r"```[a-zA-Z]*")


class KnownAnswerParams(Section):
    """Known-answer pairs (chartdistill.evaluation.known_answer): a true essay (the teacher's,
    or the reference writer's for a held-out chart) against a corrupted copy. `pairs` is the
    total number judged (the LLM in both orders, and the table gate), the kinds taken in turn
    over the charts; each verdict source is flagged unreliable when its accuracy on the pairs
    it decides is below `min_accuracy`."""

    pairs: int = Field(default=21, ge=0)
    kinds: tuple[CorruptionKind, ...] = CORRUPTION_KINDS
    min_accuracy: float = Field(default=0.7, ge=0, le=1)
    seed: int = 0


class JudgeParams(Section):
    """The judge endpoint and its sampling; `both_orders: false` halves the cost by asking one
    order per chart, alternating which candidate is shown first.

    `verdict`: "auto" reads the verdict from token probabilities where the backend offers them
    (the embedded model: a constrained choice among A, B and tie, nothing generated), else
    parses the JSON reply; "reply" always parses the generated reply. `logprobs` > 0 asks a
    server for that many top alternatives per token (OpenAI `logprobs`/`top_logprobs`; 0: off,
    for servers that reject it): the verdict's probabilities are then read at the winner token
    instead of one-hot."""

    llm: LLMParams = LLMParams(
        model="smollm2-135m-instruct", embedded=EmbeddedParams(repetition_penalty=1.0)
    )
    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=160, ge=1)  # a verdict is ~100 tokens of JSON
    seed: int = 0
    both_orders: bool = True
    verdict: Literal["auto", "reply"] = "auto"
    logprobs: int = Field(default=0, ge=0, le=20)  # a server's top alternatives per token
    known_answer: KnownAnswerParams = KnownAnswerParams()
    prices: PriceTable = PriceTable()  # for judge_cost in metrics/eval_*.json
    # A server is asked for the verdict as a JSON schema (response_format); one that rejects
    # it is asked without, once per run, and its reply parsed as before.
    structured_output: bool = True
    gate: GateParams = GateParams()
    # auto: a judge by URL gets the table checks' findings on each essay as evidence beside the
    # table (reference-guided grading); the embedded model's prompt stays as measured.
    evidence: Literal["auto", "on", "off"] = "auto"
    # Held-out test charts without a teacher essay get the computed reference writer's essay
    # (teacher/reference.py): the judge's reference, and a known-answer pair's true essay.
    reference_writer: bool = True

    def shows_evidence(self) -> bool:
        return self.evidence == "on" or (self.evidence == "auto" and self.llm.base_url is not None)


@dataclass
class Verdict:
    """One parsed judge reply. `winner` is None exactly when `error` is set; `probabilities`
    (A, B, tie; summing to 1) come from token scores, or are one-hot on the parsed winner."""

    winner: Letter | None
    bands: dict[str, dict[str, float]] = field(default_factory=dict)  # "A"/"B" -> criterion
    reason: str = ""
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # bands dropped or clamped
    probabilities: dict[str, float] = field(default_factory=dict)


def _first_json_object(text: str) -> dict[str, Any] | None:
    """The first `{...}` in the text that decodes to a JSON object (code fences allowed)."""
    cleaned = _FENCE_OPEN.sub(" ", text)
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", cleaned):
        try:
            value, _ = decoder.raw_decode(cleaned, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _band(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if number == number else None  # NaN is not a band


def _parse_bands(raw: Any, notes: list[str]) -> dict[str, dict[str, float]]:
    """Bands per letter and criterion, clamped to 0-9; unusable entries are dropped (noted)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        notes.append("bands is not an object")
        return {}
    bands: dict[str, dict[str, float]] = {}
    for letter in ("A", "B"):
        side = raw.get(letter, raw.get(letter.lower()))
        if not isinstance(side, dict):
            if side is not None:
                notes.append(f"bands.{letter} is not an object")
            continue
        parsed: dict[str, float] = {}
        for criterion in CRITERIA:
            if criterion not in side:
                continue
            number = _band(side[criterion])
            if number is None:
                notes.append(f"bands.{letter}.{criterion}: not a number ({side[criterion]!r:.40})")
                continue
            clamped = min(BAND_MAX, max(BAND_MIN, number))
            if clamped != number:
                notes.append(f"bands.{letter}.{criterion}: {number:g} clamped to {clamped:g}")
            parsed[criterion] = clamped
        if parsed:
            bands[letter] = parsed
    return bands


def parse_verdict(text: str | None) -> Verdict:
    """Read a judge reply: the first JSON object in it, winner A|B|tie, bands 0-9.

    Errors: "empty_reply", "no_json" (no JSON object in the text), "bad_verdict" (the object
    has no winner, or one other than A, B or tie).
    """
    if not text or not text.strip():
        return Verdict(None, error="empty_reply")
    # Reasoning blocks, fences and a "Here is my verdict:" line go before the JSON is read, so
    # an object inside <think> is never taken for the verdict.
    data = _first_json_object(strip_wrapping(text).text)
    if data is None:
        return Verdict(None, error="no_json")
    notes: list[str] = []
    bands = _parse_bands(data.get("bands"), notes)
    reason = data.get("reason")
    prose = clean_prose(reason) if isinstance(reason, str) else None
    reason = prose.text if prose else ""
    if prose and prose.reasons:
        notes.append(f"reason is not prose: {', '.join(prose.reasons)}")
    raw_winner = data.get("winner")
    winner = (
        _WINNER_ALIASES.get(" ".join(raw_winner.lower().split()))
        if isinstance(raw_winner, str)
        else None
    )
    if winner is None:
        notes.append(f"winner {raw_winner!r:.40} is not A, B or tie")
        return Verdict(None, bands, reason, "bad_verdict", notes)
    probabilities = _parse_probabilities(data.get("probabilities"), notes)
    if not probabilities:
        probabilities = {letter: float(letter == winner) for letter in LETTERS}
    return Verdict(winner, bands, reason, None, notes, probabilities)


def _parse_probabilities(raw: Any, notes: list[str]) -> dict[str, float]:
    """A, B and tie probabilities (token scores), renormalised; {} when absent or unusable."""
    if raw is None:
        return {}
    values = [_band(raw.get(letter)) if isinstance(raw, dict) else None for letter in LETTERS]
    numbers = [v for v in values if v is not None and v >= 0]
    if len(numbers) != len(LETTERS) or sum(numbers) <= 0:
        notes.append("probabilities unusable; the verdict counts as one-hot")
        return {}
    total = sum(numbers)
    return {letter: v / total for letter, v in zip(LETTERS, numbers, strict=True)}


def map_letter(letter: Letter | None, order: int) -> Outcome | None:
    """The candidate a letter names in the given order (1: A = baseline; 2: A = finetuned)."""
    if letter is None:
        return None
    if letter == "tie":
        return "tie"
    a_side = ORDER_A[order]
    if letter == "A":
        return a_side
    return "finetuned" if a_side == "baseline" else "baseline"


def map_bands(bands: dict[str, dict[str, float]], order: int) -> dict[str, dict[str, float]]:
    """Bands keyed by candidate ("baseline"/"finetuned") instead of letter."""
    mapped: dict[str, dict[str, float]] = {}
    for letter, side_bands in bands.items():
        side = map_letter(letter, order)  # type: ignore[arg-type]
        if side is not None:
            mapped[side] = dict(side_bands)
    return mapped


@dataclass
class OrderVerdict:
    """One order's request and answer, mapped back to the candidates."""

    order: int  # 1: A = baseline, B = finetuned; 2: A = finetuned, B = baseline
    essay_a: Side
    raw: str | None = None
    winner: Letter | None = None  # the letter the judge chose
    outcome: Outcome | None = None  # that letter mapped back to a candidate
    bands: dict[str, dict[str, float]] = field(default_factory=dict)  # by candidate
    reason: str = ""
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    cached: bool = False
    probabilities: dict[str, float] = field(default_factory=dict)  # by candidate and "tie"

    @property
    def ok(self) -> bool:
        return self.error is None and self.outcome is not None


@dataclass
class PairJudgement:
    """The judge's decision for one chart: fine-tuned student against baseline.

    outcome: both orders agree -> that; they disagree -> "tie"; one order failed (or only one
    was asked) -> the other's outcome with `single_order` set; none usable -> None, `error` set.
    `bands` averages each candidate's bands over the usable orders. `probabilities` is the mean
    over the usable orders of each order's distribution over "finetuned", "tie" and "baseline"
    (position bias cancels when both orders are asked); `expected_score` = P(finetuned) +
    0.5 P(tie), the G-Eval-style expected verdict. Both are None exactly when `outcome` is.
    """

    id: str
    chart_type: str
    outcome: Outcome | None
    single_order: bool
    agree: bool | None  # None unless both orders gave a verdict
    verdicts: list[OrderVerdict]
    bands: dict[str, dict[str, float]]
    error: str | None = None
    probabilities: dict[str, float] | None = None
    expected_score: float | None = None
    source: Source = "llm"  # gate: the table checks decided; llm: the judge model; none: neither
    gate: dict[str, Any] | None = None  # the gate's faults per side, rule and reason

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gate_record(verdict: GateVerdict) -> dict[str, Any]:
    return {
        "outcome": verdict.outcome,
        "rule": verdict.rule,
        "faults": verdict.faults,
        "reason": verdict.reason,
    }


def decided_by_gate(
    chart: ChartRecord, verdict: GateVerdict, llm: PairJudgement | None = None
) -> PairJudgement:
    """The pair's judgement when the gate decided it: its outcome, one-hot probabilities; the
    LLM's order verdicts kept beside it when it was asked too (judge.gate.llm_on_decided)."""
    if verdict.outcome is None:
        raise ValueError(f"chart {chart.id}: the gate abstained")
    return _one_hot(chart, verdict, verdict.outcome, "gate", llm)


def unjudged(chart: ChartRecord, verdict: GateVerdict) -> PairJudgement:
    """A pair the gate left when the LLM was not asked (judge_check flagged it and
    judge.gate.llm_when_unreliable is off): a tie that no source decided."""
    if verdict.outcome is not None:
        raise ValueError(f"chart {chart.id}: the gate decided it")
    return _one_hot(chart, verdict, "tie", "none")


def _one_hot(
    chart: ChartRecord,
    verdict: GateVerdict,
    outcome: Outcome,
    source: Source,
    llm: PairJudgement | None = None,
) -> PairJudgement:
    probabilities = {key: float(key == outcome) for key in OUTCOMES}
    return PairJudgement(
        id=chart.id,
        chart_type=chart.chart_type,
        outcome=outcome,
        single_order=False,
        agree=None,
        verdicts=llm.verdicts if llm else [],
        bands=llm.bands if llm else {},
        probabilities=probabilities,
        expected_score=probabilities["finetuned"] + 0.5 * probabilities["tie"],
        source=source,
        gate=gate_record(verdict),
    )


def combine(chart: ChartRecord, verdicts: list[OrderVerdict]) -> PairJudgement:
    """The final outcome of one chart from its order verdicts (one or two)."""
    usable = [v for v in verdicts if v.ok]
    agree: bool | None = None
    error: str | None = None
    if not usable:
        outcome: Outcome | None = None
        error = "; ".join(f"order {v.order}: {v.error or 'no verdict'}" for v in verdicts)
        if not verdicts:
            error = "not judged"
    elif len(usable) == 1:
        outcome = usable[0].outcome
    else:
        agree = len({v.outcome for v in usable}) == 1
        outcome = usable[0].outcome if agree else "tie"
    probabilities = _mean_probabilities(usable)
    return PairJudgement(
        id=chart.id,
        chart_type=chart.chart_type,
        outcome=outcome,
        single_order=len(usable) == 1,
        agree=agree,
        verdicts=verdicts,
        bands=_mean_bands(usable),
        error=error,
        probabilities=probabilities,
        expected_score=(
            None
            if probabilities is None
            else round(probabilities["finetuned"] + 0.5 * probabilities["tie"], 6)
        ),
    )


def _mean_probabilities(verdicts: list[OrderVerdict]) -> dict[str, float] | None:
    if not verdicts:
        return None
    return {
        key: round(sum(v.probabilities.get(key, 0.0) for v in verdicts) / len(verdicts), 6)
        for key in OUTCOMES
    }


def map_probabilities(probabilities: dict[str, float], order: int) -> dict[str, float]:
    """Letter probabilities (A, B, tie) keyed by the candidate each letter names in `order`."""
    return {map_letter(letter, order): p for letter, p in probabilities.items()}  # type: ignore


def _mean_bands(verdicts: list[OrderVerdict]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for side in SIDES:
        per_criterion: dict[str, float] = {}
        for criterion in CRITERIA:
            values = [
                v.bands[side][criterion] for v in verdicts if criterion in v.bands.get(side, {})
            ]
            if values:
                per_criterion[criterion] = sum(values) / len(values)
        if per_criterion:
            out[side] = per_criterion
    return out


def _orders_for(index: int, params: JudgeParams) -> tuple[int, ...]:
    if params.both_orders:
        return (1, 2)
    return (1,) if index % 2 == 0 else (2,)


def _pair(order: int, baseline: str, finetuned: str) -> tuple[str, str]:
    return (baseline, finetuned) if ORDER_A[order] == "baseline" else (finetuned, baseline)


def _apply(verdict: OrderVerdict, result: ChatResult) -> None:
    verdict.raw = result.text
    verdict.cached = result.cached
    if not result.ok:
        verdict.error = f"request_failed: {result.error or 'empty_content'}"
        return
    parsed = parse_verdict(result.text)
    verdict.winner = parsed.winner
    verdict.outcome = map_letter(parsed.winner, verdict.order)
    verdict.bands = map_bands(parsed.bands, verdict.order)
    verdict.reason = parsed.reason
    verdict.error = parsed.error
    verdict.notes = parsed.notes
    probabilities = parsed.probabilities
    if parsed.winner is not None and result.logprobs:
        from_logprobs = logprob_verdict(result.logprobs)
        if from_logprobs:
            probabilities = from_logprobs
        else:
            verdict.notes.append("no verdict token among the logprobs; one-hot")
    verdict.probabilities = map_probabilities(probabilities, verdict.order)


def _letter(token: str) -> Letter | None:
    return _WINNER_ALIASES.get(token.strip().strip('"').strip().lower())


def logprob_verdict(tokens: list[dict[str, Any]]) -> dict[str, float]:
    """A, B and tie probabilities at the token where the reply's winner value starts: the first
    token after `"winner"` that reads as a verdict letter; the top alternatives there that read
    as letters, renormalised. {} when there is no such token."""
    seen = ""
    for item in tokens:
        token = str(item.get("token", ""))
        if '"winner"' in seen.lower() and _letter(token) is not None:
            weights = dict.fromkeys(LETTERS, 0.0)
            for alternative, logprob in (item.get("top") or {}).items():
                letter = _letter(str(alternative))
                if letter is not None and isinstance(logprob, int | float):
                    weights[letter] += math.exp(logprob)
            total = sum(weights.values())
            return {k: v / total for k, v in weights.items()} if total > 0 else {}
        seen += token
    return {}


def _require(mapping: dict[str, str], chart_id: str, what: str) -> str:
    if chart_id not in mapping:
        raise ValueError(f"chart {chart_id}: no {what} to judge")
    return mapping[chart_id]


def verdict_response_format() -> dict[str, Any]:
    """The verdict object of prompts/judge.md as an OpenAI `json_schema` response format."""
    bands = {
        "type": "object",
        "properties": {name: {"type": "integer"} for name in CRITERIA},
        "required": list(CRITERIA),
        "additionalProperties": False,
    }
    schema = {
        "type": "object",
        "properties": {
            "winner": {"type": "string", "enum": list(LETTERS)},
            "bands": {
                "type": "object",
                "properties": {"A": bands, "B": bands},
                "required": ["A", "B"],
                "additionalProperties": False,
            },
            "reason": {"type": "string"},
        },
        "required": ["winner", "bands", "reason"],
        "additionalProperties": False,
    }
    return {
        "type": "json_schema",
        "json_schema": {"name": "judge_verdict", "strict": True, "schema": schema},
    }


def judge_pairs(
    charts: list[ChartRecord],
    references: dict[str, str],
    baseline_texts: dict[str, str],
    finetuned_texts: dict[str, str],
    params: JudgeParams,
    client: CachedClient,
    prompts_dir: Path,
    findings: dict[str, dict[str, str]] | None = None,
) -> list[PairJudgement]:
    """Judge every chart's fine-tuned essay against its baseline essay, in both orders.

    All requests go to the client in one call. A chart whose prompt cannot be
    rendered, or whose replies fail or cannot be parsed, gets a judgement with its error.
    `findings` (chart id -> side -> text) is the table checks' evidence on each essay, shown
    beside essay A and B when given.
    """
    verdicts: dict[str, list[OrderVerdict]] = {chart.id: [] for chart in charts}
    if len(verdicts) != len(charts):
        raise ValueError("judge_pairs: chart ids are not unique")
    for chart in charts:  # every input present before the first request goes out
        _require(references, chart.id, "reference essay")
        _require(baseline_texts, chart.id, "baseline essay")
        _require(finetuned_texts, chart.id, "fine-tuned essay")
    # Both orders in one call: a scoring backend then prefills what a pair's two prompts share
    # (the chart and the reference) once.
    batch: list[OrderVerdict] = []
    requests: list[ChatRequest] = []
    structured = params.structured_output and params.llm.base_url is not None
    response_format = verdict_response_format() if structured else None
    for order in (1, 2):
        for index, chart in enumerate(charts):
            if order not in _orders_for(index, params):
                continue
            reference = references[chart.id]
            essay_a, essay_b = _pair(
                order,
                clean_prose(baseline_texts[chart.id]).text,
                clean_prose(finetuned_texts[chart.id]).text,
            )
            verdict = OrderVerdict(order=order, essay_a=ORDER_A[order])
            verdicts[chart.id].append(verdict)
            evidence = (findings or {}).get(chart.id)
            shown = _pair(order, *(evidence[s] for s in SIDES)) if evidence else ("", "")
            try:
                messages = render_judge_messages(
                    prompts_dir, chart, reference, essay_a, essay_b, *shown
                )
            except (OSError, ValueError) as exc:
                log.error("chart %s: cannot build the judge prompt: %s", chart.id, exc)
                verdict.error = f"prompt_error: {exc}"
                continue
            batch.append(verdict)
            requests.append(
                ChatRequest(
                    messages=messages,
                    max_tokens=params.max_tokens,
                    temperature=params.temperature,
                    seed=params.seed,
                    top_logprobs=params.logprobs or None,
                    response_format=response_format,
                )
            )
    if requests:
        results = client.complete_all(requests, desc=f"judge {len(charts)} pairs")
        for verdict, result in zip(batch, results, strict=True):
            _apply(verdict, result)
    return [combine(chart, verdicts[chart.id]) for chart in charts]


def judge_backend(params: JudgeParams, prompts_dir: Path) -> ChatBackend:
    """The judge's backend: with `verdict: auto` and the embedded model, a constrained choice
    among the verdict letters scored after the reply's opening (prompts/judge_verdict.md);
    otherwise the backend that generates a reply to parse."""
    backend = make_backend(params.llm)
    if params.verdict == "auto" and params.llm.base_url is None:
        from chartdistill.llm.embedded import EmbeddedBackend
        from chartdistill.llm.scoring import ScoringBackend

        if isinstance(backend, EmbeddedBackend):
            return ScoringBackend(backend, LETTERS, judge_answer_prefix(prompts_dir), "winner")
    return backend


def judge_known_answers(
    pairs: list[KnownAnswerPair],
    params: JudgeParams,
    client: CachedClient,
    prompts_dir: Path,
    findings: dict[str, dict[str, str]] | None = None,
) -> list[PairJudgement]:
    """Judge each known-answer pair like a student pair, without a reference essay: the
    corrupted copy takes the baseline side, the intact essay the fine-tuned side."""
    return judge_pairs(
        [p.judged_chart() for p in pairs],
        {p.id: "" for p in pairs},
        {p.id: p.corrupted for p in pairs},
        {p.id: p.intact for p in pairs},
        params,
        client,
        prompts_dir,
        findings,
    )


def same_model(judge: LLMParams, teacher: LLMParams) -> bool:
    """Whether the judge is the teacher's own model (self-preference): both embedded with the
    same model, or both servers naming the same model."""
    if (judge.base_url is None) != (teacher.base_url is None):
        return False
    if judge.base_url is None:
        return judge.embedded.model == teacher.embedded.model
    return judge.model.strip().lower() == teacher.model.strip().lower()
