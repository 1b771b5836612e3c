"""The table gate: a verdict from the checks where one essay is clearly worse, before any LLM.

We hold the ground truth of every chart, so what a table can decide is not left to a judge
model (JudgeBench: GPT-4o right on 56.6 % of objectively checkable pairs). Each essay of a
pair is checked once against its chart (metrics.check_essay at the evaluation bounds: the four
sections, IELTS word bounds, figures grounded and attributed, claims true, loops, the subject
of the introduction, prose, off task); its *faults* are the checks it fails among
`judge.gate.checks`. The rules, all params:
- an essay beats a non-essay (off task: empty, a list, questions, one line) whatever else
  either fails (`essay_beats_non_essay`): the content checks only mean something for text that
  makes claims, and an empty reply fails none of them, so counting faults alone would let it
  beat any essay with one wrong figure;
- a clean essay (no fault) beats one with at least one fault (`clean_beats_faulty`);
- otherwise the essay with at least `margin` fewer faults wins;
- anything else is left to the LLM judge (the gate abstains).
A gate verdict records its source ("gate") and each side's faults; the LLM's records "llm". An
LLM that the known-answer audit (stage judge_check) flagged is not asked unless
`llm_when_unreliable`: the pairs the gate leaves are then ties from no source ("none").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from chartdistill.config import Section
from chartdistill.essay.text import REASON_CODES, word_count
from chartdistill.evaluation.metrics import EssayCheck

# What the gate may count against an essay: validation's reason codes, and off task.
GATE_CHECKS: tuple[str, ...] = (*REASON_CODES, "off_task")


def _known_check(check: str) -> str:
    if check not in GATE_CHECKS:
        raise ValueError(f"unknown check {check!r}; known: {', '.join(GATE_CHECKS)}")
    return check


GateCheck = Annotated[str, AfterValidator(_known_check)]
Source = Literal["gate", "llm", "none"]  # none: the gate abstained and no trusted LLM was asked
SOURCES: tuple[Source, ...] = ("gate", "llm", "none")


class GateParams(Section):
    """The table gate's rules (chartdistill.evaluation.gate). `enabled: false` leaves every
    pair to the LLM judge; `llm_on_decided: true` also asks the LLM about the pairs the gate
    decided (its verdicts are then recorded beside the gate's, which stands);
    `llm_when_unreliable: true` asks it even when judge_check flagged it (its verdicts are then
    reported as not to be trusted), instead of leaving the gate's abstentions as ties."""

    enabled: bool = True
    checks: tuple[GateCheck, ...] = GATE_CHECKS
    essay_beats_non_essay: bool = True  # needs "off_task" among the checks
    clean_beats_faulty: bool = True
    margin: int = Field(default=2, ge=1)
    llm_on_decided: bool = False
    llm_when_unreliable: bool = False


@dataclass(frozen=True)
class GateVerdict:
    """The gate's decision on one pair: `outcome` None means it abstains (the LLM decides)."""

    outcome: Literal["finetuned", "baseline"] | None
    faults: dict[str, list[str]] = field(default_factory=dict)  # side -> failed checks
    rule: str = ""  # essay_beats_non_essay | clean_beats_faulty | margin | "" (abstained)

    @property
    def reason(self) -> str:
        described = "; ".join(
            f"{side}: {', '.join(f) or 'no fault'}" for side, f in self.faults.items()
        )
        if self.outcome is None:
            return f"gate abstains ({described})"
        return f"gate ({self.rule}): {self.outcome} is better ({described})"


def essay_faults(check: EssayCheck, checks: tuple[str, ...]) -> list[str]:
    """The gate's checks this essay fails, in the order of `checks`."""
    failed = set(check.reasons)
    if check.off_task is not None:
        failed.add("off_task")
    return [code for code in checks if code in failed]


def gate_verdict(baseline: EssayCheck, finetuned: EssayCheck, params: GateParams) -> GateVerdict:
    """Decide a pair by the checks, or abstain (see the module docstring for the rules)."""
    faults = {
        "baseline": essay_faults(baseline, params.checks),
        "finetuned": essay_faults(finetuned, params.checks),
    }
    if not params.enabled:
        return GateVerdict(None, faults)
    off_task = {side: "off_task" in found for side, found in faults.items()}
    if params.essay_beats_non_essay and off_task["baseline"] != off_task["finetuned"]:
        winner = "baseline" if off_task["finetuned"] else "finetuned"
        return GateVerdict(winner, faults, "essay_beats_non_essay")
    base, fine = len(faults["baseline"]), len(faults["finetuned"])
    if params.clean_beats_faulty and min(base, fine) == 0 and max(base, fine) > 0:
        return GateVerdict("finetuned" if fine == 0 else "baseline", faults, "clean_beats_faulty")
    if abs(base - fine) >= params.margin:
        return GateVerdict("finetuned" if fine < base else "baseline", faults, "margin")
    return GateVerdict(None, faults)


def findings(check: EssayCheck, limit: int = 5) -> str:
    """The checks' findings on one essay, as evidence for a judge (reference-guided grading):
    the checks it fails, its figures against the table, the claims the table contradicts."""
    grounding = check.verification.grounding
    failed = [*check.reasons, *(["off_task"] if check.off_task else [])]
    lines = [
        f"Checks failed: {', '.join(failed) or 'none'}.",
        f"Words: {word_count(check.body)}.",
        f"Figures: {grounding.mentioned} stated, {grounding.grounded} found in the table, "
        f"{grounding.attributed} given to the row or series the table gives them.",
    ]
    if grounding.ungrounded:
        lines.append(f"Not in the table: {', '.join(grounding.ungrounded[:limit])}.")
    if grounding.misattributed:
        lines.append(
            f"Given to the wrong row or series: {', '.join(grounding.misattributed[:limit])}."
        )
    for claim in check.verification.false_claims[:limit]:
        detail = f" ({claim.detail})" if claim.detail else ""
        lines.append(f'False {claim.kind} claim: "{claim.sentence.strip()}"{detail}')
    return "\n".join(lines)
