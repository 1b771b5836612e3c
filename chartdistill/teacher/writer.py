"""The teacher: one IELTS Task 1 essay per chart, validated, resampled with a repair hint.

Three modes: `reference` computes the essay from the table (teacher.reference: no LLM; the
offline default, since no model that ships in a wheel writes true essays); `single` asks an LLM
for the whole essay in one call (chain of thought in <analysis>, then the four marked sections);
`stepwise` asks for one section per call (measured: small models keep the structure this way).
With `sentence_repair`, each LLM attempt's sentences are checked one by one and only the faulty
ones are asked again (teacher.repair), before the essay is validated. Each round sends the
requests of every pending chart at once, so the backend can batch or run them concurrently,
and every answer is cached by content before the next round starts.

Stepwise, a later attempt writes again only the sections that failed on their own (cut off,
not prose, looping, off the subject, figures not grounded: `section_reasons`) and keeps the
others; an essay whose sections all passed but which fails as a whole (too short, too few
figures) is written afresh. Either way the essay is accepted only by `validate_essay`.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from chartdistill.config import Section
from chartdistill.data.records import ChartRecord, EssayRecord
from chartdistill.essay.sections import MARKERS, SECTIONS
from chartdistill.essay.structured import essay_from_json, essay_response_format
from chartdistill.essay.text import (
    LENIENT_BOUNDS,
    REASON_CODES,
    EssayBounds,
    injection_reasons,
    parse_sections,
    section_reasons,
    sentences,
    strip_wrapping,
    validate_essay,
    verify_essay,
)
from chartdistill.llm.cache import CachedClient
from chartdistill.llm.cost import PriceTable, cost_summary
from chartdistill.llm.types import ChatRequest, ChatResult, LLMParams
from chartdistill.prompts.render import image_data_url
from chartdistill.teacher.figures import pattern_shares, teacher_figures
from chartdistill.teacher.prompts import prompt_hash, render_teacher_messages
from chartdistill.teacher.reference import WRITER_ID, reference_essay
from chartdistill.teacher.repair import ORIGINS, Repairable, repair_sentences

log = logging.getLogger(__name__)


class TeacherParams(Section):
    llm: LLMParams
    mode: Literal["reference", "single", "stepwise"] = "reference"
    # Reference mode: the writer also states figures worked out from the table (sums,
    # differences, shares, ratios, fractions, counts); false: only the figures the chart prints.
    derived_figures: bool = True
    temperature: float = Field(default=0.0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_tokens: int = Field(default=110, ge=1)  # per call: one section (~700 for a whole essay)
    seed: int = 0
    max_attempts: int = Field(default=1, ge=1)
    # After a reply cut off by max_tokens ("truncated"), the chart's next attempt asks for this
    # many times as many tokens.
    retry_max_tokens_factor: float = Field(default=2.0, ge=1.0)
    # Later attempts sample at this temperature, so a resample can differ from the first try.
    retry_temperature: float = Field(default=0.7, ge=0)
    # Show the failed attempt's reasons to the teacher on a retry (small models copy the hint
    # into the essay, so the embedded profile turns this off).
    repair_hint: bool = False
    # Stepwise: show the sections written so far (small models copy them instead of going on).
    stepwise_context: bool = False
    vision: bool = False  # also send the chart image (multimodal teachers only)
    fact_sheet: bool = True  # give the chart's key facts (prompts/facts.md) with its table
    # Single mode, a server: ask for the essay as a JSON schema (response_format); a server
    # that rejects it is asked without, once per run, and the reply parsed as before.
    structured_output: bool = False
    # false: held-out test charts (charts.test_counts) get no essay; the judge compares the
    # students on the chart's data alone.
    test_references: bool = False
    # LLM modes: re-ask each sentence that fails its checks alone; replace it with the reference
    # writer's sentence if the answer still fails (teacher.repair).
    sentence_repair: bool = True
    repair_max_tokens: int = Field(default=80, ge=1)
    validation: EssayBounds = LENIENT_BOUNDS
    prices: PriceTable = PriceTable()


@dataclass
class Draft:
    """A chart's essay while it is being written; becomes an EssayRecord at the end."""

    chart: ChartRecord
    attempts: int = 0
    sections: dict[str, str] = field(default_factory=dict)
    raw_parts: dict[str, str] = field(default_factory=dict)  # per section ("" in single mode)
    reasoning: str = ""
    reasons: list[str] = field(default_factory=list)
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    max_tokens: int = 0  # this attempt's budget per call (raised after a truncated reply)
    # Injection found anywhere in a reply (even in text clean_paragraph dropped), per section.
    reply_reasons: dict[str, list[str]] = field(default_factory=dict)
    cleaned: list[str] = field(default_factory=list)  # harmless wrapping stripped
    good: set[str] = field(default_factory=set)  # stepwise: sections kept for the next attempt
    origins: dict[str, list[str]] = field(default_factory=dict)  # per section, per sentence
    failed: dict[str, str] = field(default_factory=dict)  # stepwise: section -> its reply's error

    @property
    def accepted(self) -> bool:
        return self.attempts > 0 and not self.reasons and self.error is None

    def start_attempt(self, max_tokens: int, factor: float) -> None:
        if self.attempts == 0:
            self.max_tokens = max_tokens
        elif self.error == "truncated":
            self.max_tokens = math.ceil(self.max_tokens * factor)
        self.attempts += 1
        self.error, self.failed = None, {}
        if not self.good:
            self.sections, self.raw_parts, self.reasoning = {}, {}, ""
            self.reply_reasons, self.cleaned, self.origins = {}, [], {}

    def add(self, result: ChatResult, part: str) -> str | None:
        """Count the result; return its text with wrapping stripped (None when it failed)."""
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        self.latency_s += result.latency_s
        if result.reasoning:
            self.reasoning = "\n\n".join(p for p in (self.reasoning, result.reasoning) if p)
        self.raw_parts[part] = result.text or ""  # a cut or filtered reply is kept, never used
        if not result.ok:
            self.reply_reasons.pop(part, None)
            return None
        wrapped = strip_wrapping(result.text or "")
        self.cleaned += [s for s in wrapped.stripped if s not in self.cleaned]
        if wrapped.reasoning:
            self.reasoning = "\n\n".join(p for p in (self.reasoning, wrapped.reasoning) if p)
        self.reply_reasons[part] = injection_reasons(wrapped.text)
        return wrapped.text

    def raw(self) -> str:
        parts = [(MARKERS.get(k, ""), self.raw_parts.get(k, "")) for k in ("", *SECTIONS)]
        return "\n\n".join(f"{m}\n{t}" if m else t for m, t in parts if t)


class Teacher:
    """Writes essays for a list of charts through a cached LLM client."""

    def __init__(
        self,
        params: TeacherParams,
        client: CachedClient | None,
        prompts_dir: Path,
        charts_dir: Path,
    ) -> None:
        self.params = params
        self.client = client
        self.prompts_dir = prompts_dir
        self.charts_dir = charts_dir

    @property
    def model_id(self) -> str:
        return WRITER_ID if self.client is None else self.client.model_id

    def write(self, charts: list[ChartRecord]) -> list[EssayRecord]:
        drafts = [Draft(chart) for chart in charts]
        if self.params.mode == "reference":
            for draft in drafts:
                self._compute(draft)
            return [self._record(d) for d in drafts]
        if self.client is None:
            raise ValueError(f"teacher.mode {self.params.mode!r} needs an LLM client")
        for attempt in range(1, self.params.max_attempts + 1):
            todo = [d for d in drafts if not d.accepted]
            if not todo:
                break
            log.info("attempt %d: %d charts to write", attempt, len(todo))
            repair = {id(d): self._repair_reasons(d) for d in todo}
            for draft in todo:
                draft.start_attempt(self.params.max_tokens, self.params.retry_max_tokens_factor)
            if self.params.mode == "single":
                self._single_round(todo, attempt, repair)
            else:
                for section in SECTIONS:
                    self._section_round(todo, section, attempt, repair)
            if self.params.sentence_repair:
                self._repair_sentences(todo, attempt)
            for draft in todo:
                self._validate(draft)
        return [self._record(d) for d in drafts]

    def _compute(self, draft: Draft) -> None:
        """The reference writer's essay: computed, not asked (attempts stay 0)."""
        draft.sections = reference_essay(draft.chart, self.params.seed, self.params.derived_figures)
        draft.origins = {s: ["computed"] * len(sentences(t)) for s, t in draft.sections.items()}
        found = validate_essay(draft.sections, draft.chart, self.params.validation)
        draft.reasons = [code for code in REASON_CODES if code in found]

    def _repair_sentences(self, todo: list[Draft], attempt: int) -> None:
        """One round of sentence repair over the drafts that have all four sections."""
        whole = [d for d in todo if d.error is None and set(d.sections) == set(SECTIONS)]
        essays = [Repairable(d.chart, d.sections, d.origins) for d in whole]
        assert self.client is not None
        repair_sentences(
            essays,
            self.client,
            self.prompts_dir,
            self.params.validation,
            max_tokens=self.params.repair_max_tokens,
            temperature=self.params.temperature if attempt == 1 else self.params.retry_temperature,
            seed=self.params.seed + attempt - 1,
        )
        for draft, essay in zip(whole, essays, strict=True):
            draft.sections, draft.origins = essay.sections, essay.origins

    def _repair_reasons(self, draft: Draft) -> list[str] | None:
        if draft.attempts == 0 or not self.params.repair_hint:
            return None
        return draft.reasons or (["parse_error"] if draft.error else None)

    def _request(self, messages: list[dict[str, Any]], attempt: int, draft: Draft) -> ChatRequest:
        p = self.params
        return ChatRequest(
            messages=messages,
            max_tokens=draft.max_tokens,
            temperature=p.temperature if attempt == 1 else p.retry_temperature,
            top_p=p.top_p,
            seed=p.seed + attempt - 1,
            response_format=essay_response_format() if self._structured() else None,
        )

    def _structured(self) -> bool:
        p = self.params
        return p.structured_output and p.mode == "single" and p.llm.base_url is not None

    def _context(self, section: str | None) -> bool:
        return section is not None and self.params.stepwise_context

    def _image(self, chart: ChartRecord) -> str | None:
        return image_data_url(self.charts_dir / chart.image) if self.params.vision else None

    def _requests(
        self,
        drafts: list[Draft],
        attempt: int,
        mode: Literal["single", "stepwise"],
        repair: dict[int, Any],
        section: str | None = None,
    ) -> tuple[list[Draft], list[ChatRequest]]:
        """Requests for the drafts whose prompt renders; the others fail with the reason."""
        alive, requests = [], []
        for draft in drafts:
            try:
                messages = render_teacher_messages(
                    self.prompts_dir,
                    draft.chart,
                    mode=mode,
                    section=section,
                    previous=dict(draft.sections) if self._context(section) else None,
                    repair_reasons=repair[id(draft)],
                    image_data_url=self._image(draft.chart),
                    fact_sheet=self.params.fact_sheet,
                )
            except (OSError, ValueError) as exc:
                log.error("chart %s: cannot build its prompt: %s", draft.chart.id, exc)
                draft.error = f"prompt_error: {exc}"
                continue
            alive.append(draft)
            requests.append(self._request(messages, attempt, draft))
        return alive, requests

    def _single_round(self, todo: list[Draft], attempt: int, repair: dict[int, Any]) -> None:
        alive, requests = self._requests(todo, attempt, mode="single", repair=repair)
        results = self.client.complete_all(requests, desc=f"teacher essays (attempt {attempt})")
        for draft, result in zip(alive, results, strict=True):
            text = draft.add(result, "")
            if text is None:
                draft.error = result.error or "empty_content"
            else:
                parsed = parse_sections(essay_from_json(text))
                if parsed.reasoning:
                    draft.reasoning = "\n\n".join(
                        p for p in (draft.reasoning, parsed.reasoning) if p
                    )
                if parsed.sections is None:
                    draft.error = f"parse_error: {parsed.error}"
                else:
                    draft.sections, draft.origins = parsed.sections, {}

    def _section_round(
        self, todo: list[Draft], section: str, attempt: int, repair: dict[int, Any]
    ) -> None:
        pending = [d for d in todo if section not in d.good and d.error is None]
        alive, requests = self._requests(pending, attempt, "stepwise", repair, section)
        if not requests:
            return
        desc = f"teacher {section} (attempt {attempt})"
        for draft, result in zip(alive, self.client.complete_all(requests, desc=desc), strict=True):
            text = draft.add(result, section)
            if text is None:
                draft.failed[section] = result.error or "empty_content"
                draft.sections.pop(section, None)
                continue
            draft.sections[section] = paragraph = clean_paragraph(text)
            draft.origins.pop(section, None)
            reasons = section_reasons(section, paragraph, draft.chart, self.params.validation)
            if not reasons and not draft.reply_reasons[section]:
                draft.good.add(section)

    def _validate(self, draft: Draft) -> None:
        if draft.failed and draft.error is None:
            draft.error = next(draft.failed[s] for s in SECTIONS if s in draft.failed)
        if draft.error is not None:
            draft.reasons = []
            return
        found = set(validate_essay(draft.sections, draft.chart, self.params.validation))
        found.update(r for reasons in draft.reply_reasons.values() for r in reasons)
        draft.reasons = [code for code in REASON_CODES if code in found]
        if draft.reasons and draft.good == set(SECTIONS):
            draft.good = set()  # every section passed, the essay did not: write it afresh

    def _prompt_hash(self, chart_type: str) -> str:
        try:
            return prompt_hash(self.prompts_dir, chart_type)
        except (OSError, ValueError):
            return ""

    def _record(self, draft: Draft) -> EssayRecord:
        chart = draft.chart
        if draft.error is not None:
            status = "failed"
        elif draft.reasons:
            status = "rejected"
        else:
            status = "accepted"
        for section, text in (draft.sections or {}).items():  # unrepaired: the model's own
            if len(draft.origins.get(section, [])) != len(sentences(text)):
                draft.origins[section] = ["model"] * len(sentences(text))
        claims = {}
        if draft.sections and set(draft.sections) == set(SECTIONS):
            claims = verify_essay(draft.sections, chart, self.params.validation).claim_counts()
        return EssayRecord(
            id=chart.id,
            chart_type=chart.chart_type,
            prompt_hash=self._prompt_hash(chart.chart_type),
            model=self.model_id,
            mode=self.params.mode,
            status=status,
            sections=draft.sections or None,
            raw=draft.raw(),
            reasoning=draft.reasoning,
            attempts=draft.attempts,
            reasons=draft.reasons,
            cleaned=draft.cleaned,
            origins=draft.origins,
            claims=claims,
            error=draft.error,
            prompt_tokens=draft.prompt_tokens,
            completion_tokens=draft.completion_tokens,
            latency_s=round(draft.latency_s, 3),
        )


_MARKER_ECHO = re.compile(r"^\s*[#*\d.\s]*[A-Za-z ,()0-9]{0,40}:\s*$")


_PROMPT_TAG = re.compile(r"</?[A-Za-z_]+>|<(?:chart_data|example)\b")


def clean_paragraph(text: str) -> str:
    """One section's answer as one paragraph: drop an echoed marker line, keep the first
    paragraph, and stop where a small model starts echoing the prompt's tags."""
    text = _PROMPT_TAG.split(text, maxsplit=1)[0]
    lines = text.strip().splitlines()
    while lines and (not lines[0].strip() or _MARKER_ECHO.match(lines[0])):
        lines.pop(0)
    paragraph = re.split(r"\n\s*\n", "\n".join(lines), maxsplit=1)[0]
    return re.sub(r"\s+", " ", paragraph).strip()


def teacher_metrics(
    essays: list[EssayRecord], client: CachedClient | None, prices: PriceTable, wall_s: float
) -> dict[str, Any]:
    """Counts, tokens and cost for metrics/teacher.json (tokens and cost: fresh requests only)."""
    status = Counter(e.status for e in essays)
    metrics: dict[str, Any] = {
        "writer": WRITER_ID if client is None else client.model_id,
        "computed_writer": client is None,  # true: no LLM wrote these essays
        "charts": len(essays),
        "accepted": status["accepted"],
        "rejected": status["rejected"],
        "failed": status["failed"],
        "acceptance_rate": round(status["accepted"] / len(essays), 4) if essays else 0.0,
        "rejected_by_reason": dict(
            sorted(Counter(r for e in essays if e.status == "rejected" for r in e.reasons).items())
        ),
        "failed_by_error": dict(
            sorted(Counter((e.error or "").split(":")[0] for e in essays if e.error).items())
        ),
        "cleaned_by_reason": dict(sorted(Counter(c for e in essays for c in e.cleaned).items())),
        "wall_time_s": round(wall_s, 2),
        "accepted_per_type": dict(
            sorted(Counter(e.chart_type for e in essays if e.status == "accepted").items())
        ),
        "origins": origin_shares(essays),
    }
    if client is None:
        return {**metrics, "requests": 0, "cache_hits": 0, "cost_usd": 0.0}
    stats = client.stats
    return {
        **metrics,
        "request_errors": dict(sorted(stats.errors.items())),
        "requests": stats.requests_sent,
        "cache_hits": stats.cache_hits,
        **stats.token_counts(),  # prompt vs actually prefilled (prefix reuse), generated
        **cost_summary(stats, prices),  # batch price beside the live price of the same tokens
    }


def origin_shares(essays: list[EssayRecord]) -> dict[str, Any]:
    """Who wrote the accepted essays' sentences (model / repaired / computed), as shares,
    overall and per chart type: computed text is never reported as the model's."""

    def shares(chosen: list[EssayRecord]) -> dict[str, Any]:
        counts = Counter(o for e in chosen for per in e.origins.values() for o in per)
        total = sum(counts.values())
        out: dict[str, Any] = {"sentences": total}
        for origin in ORIGINS:
            out[origin] = round(counts[origin] / total, 4) if total else None
        return out

    accepted = [e for e in essays if e.status == "accepted"]
    types = sorted({e.chart_type for e in accepted})
    return {
        "all": shares(accepted),
        "per_type": {t: shares([e for e in accepted if e.chart_type == t]) for t in types},
    }


def number_precision(
    essays: list[EssayRecord], charts: list[ChartRecord], bounds: EssayBounds
) -> dict[str, Any]:
    """Figures in the essays' sections and the share grounded at value level and at attribution
    level (pooled over essays), for the accepted essays and for every essay with sections."""
    by_id = {c.id: c for c in charts}
    out: dict[str, Any] = {}
    for name, wanted in (("accepted", ("accepted",)), ("answered", ("accepted", "rejected"))):
        mentioned = grounded = attributed = 0
        for essay in essays:
            if essay.status in wanted and essay.sections and essay.id in by_id:
                g = verify_essay(essay.sections, by_id[essay.id], bounds).grounding
                mentioned, grounded = mentioned + g.mentioned, grounded + g.grounded
                attributed += g.attributed
        out[name] = {
            "numbers": mentioned,
            "value_precision": round(grounded / mentioned, 4) if mentioned else None,
            "attribution_precision": round(attributed / mentioned, 4) if mentioned else None,
        }
    return out


def run_teacher(
    charts: list[ChartRecord],
    params: TeacherParams,
    client: CachedClient | None,
    prompts_dir: Path,
    charts_dir: Path,
) -> tuple[list[EssayRecord], dict[str, Any]]:
    start = time.perf_counter()
    if not params.test_references:
        held_out = sum(c.held_out for c in charts)
        charts = [c for c in charts if not c.held_out]
        log.info("%d test charts get no teacher essay (teacher.test_references: false)", held_out)
    essays = Teacher(params, client, prompts_dir, charts_dir).write(charts)
    metrics = teacher_metrics(essays, client, params.prices, time.perf_counter() - start)
    # Per chart type, so `dvc metrics diff` shows which type a prompt edit moved.
    metrics["figures"] = teacher_figures(essays, charts, params.validation)
    metrics["number_precision"] = number_precision(essays, charts, params.validation)
    metrics["sentence_patterns"] = pattern_shares(essays, charts)
    return essays, metrics
