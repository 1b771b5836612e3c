"""Known-answer pairs: how far the judge's verdicts can be trusted.

Each pair puts a test chart's teacher essay against a copy with a known flaw, so the right
verdict is known: the intact essay is better. The flaws are what students get wrong:
- figures_altered: every value the essay states is changed (no figure matches the table);
- paragraph_removed: one key-features paragraph is gone;
- overview_dropped: the overview is gone;
- looped_sentence: a sentence repeats itself several times (the degenerate-decoding loop);
- other_chart: the essay of another test chart (right form, wrong chart);
- sentences_shuffled: the sentences of each paragraph out of their order (same words, figures
  and claims: the table gate cannot see it);
- overview_vague: the overview replaced by generic sentences that state no trend or extreme
  (no figure, no claim: the gate cannot see it either).
The last two are the kinds only a reader (the LLM judge) can catch: they measure the LLM's
share of the verdicts instead of assuming it (GATE_BLIND_KINDS).

The pairs are judged like the students (both orders, same judge, same prompt) but without a
reference essay: with the teacher essay as reference, the intact candidate would simply be the
reference. Essays are plain paragraphs (the unstructured rendering) so the figure is the same
for both variants. The intact essay takes the "finetuned" side of the student judge's pair
machinery, so a correct verdict is a "finetuned" outcome.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from chartdistill.data.records import ChartRecord
from chartdistill.essay.grounding import value_mentions
from chartdistill.essay.sections import SECTIONS, render_unstructured
from chartdistill.essay.text import sentences

log = logging.getLogger(__name__)

CorruptionKind = Literal[
    "figures_altered",
    "paragraph_removed",
    "overview_dropped",
    "looped_sentence",
    "other_chart",
    "sentences_shuffled",
    "overview_vague",
]
CORRUPTION_KINDS: tuple[CorruptionKind, ...] = (
    "figures_altered",
    "paragraph_removed",
    "overview_dropped",
    "looped_sentence",
    "other_chart",
    "sentences_shuffled",
    "overview_vague",
)
# Kinds the table gate cannot see by construction: it should abstain on them.
GATE_BLIND_KINDS: tuple[CorruptionKind, ...] = ("sentences_shuffled", "overview_vague")
_VAGUE_OVERVIEW = (
    "Overall, the chart presents a number of different figures for the categories shown.",
    "There are some similarities and some differences between them, each worth noting.",
    "Taken together, the information gives a general picture of the topic in question.",
    "Some of the figures are higher and some are lower, as the data make clear.",
)
JUDGE_CHECK_METRICS = "judge.json"  # under paths.metrics: the judge_check stage's figures
KNOWN_ANSWER_NAME = "known_answer"  # judgements/<name>.jsonl and judge_cache/<name>/
LOOP_REPEATS = 4  # the looped sentence appears this many times in a row
_FIGURE_FACTORS = (1.37, 0.63, 1.91, 0.41)  # altered figures: scaled, rounded as written
_DIGITS = 4


@dataclass(frozen=True)
class KnownAnswerPair:
    """One known-answer pair; `id` is `<chart id>:<kind>` (unique per pair)."""

    id: str
    chart: ChartRecord
    kind: CorruptionKind
    intact: str
    corrupted: str

    def judged_chart(self) -> ChartRecord:
        """The chart under the pair's id, for the judge's per-id bookkeeping."""
        return self.chart.model_copy(update={"id": self.id})


def _decimals(text: str) -> int:
    digits = text.replace(",", "")
    return len(digits.split(".")[1]) if "." in digits else 0


def _altered(literal: float, places: int, table: list[float], tolerance: float) -> float:
    """The first of literal x 1.37, x 0.63, x 1.91, x 0.41 (rounded as written) that is no
    table value (within 3x the tolerance): an altered figure must not land on another one."""
    altered = literal
    for factor in _FIGURE_FACTORS:
        altered = round(literal * factor, places)
        margin = 3 * tolerance * max(abs(altered), 1e-9)
        if altered != literal and all(abs(abs(altered) - v) > margin for v in table):
            return altered
    return altered if altered != literal else literal + 1


def alter_figures(text: str, chart: ChartRecord, tolerance: float) -> str | None:
    """Every value mention (labels and dates left alone) scaled away from every table value
    and written with as many decimals as before; None when the text states no value."""
    mentions = value_mentions(text, chart, tolerance)
    if not mentions:
        return None
    table = [abs(float(v)) for row in chart.rows for v in row[1:] if v is not None]
    out = text
    for mention in sorted(mentions, key=lambda m: m.span[0], reverse=True):
        start, end = mention.span
        written = out[start:end]
        number = "".join(ch for ch in written if ch.isdigit() or ch in ".,").strip(".,")
        if not number:
            continue
        places = _decimals(number)
        altered = _altered(float(number.replace(",", "")), places, table, tolerance)
        new = f"{altered:,.{places}f}" if "," in number else f"{altered:.{places}f}"
        out = out[:start] + written.replace(number, new, 1) + out[end:]
    return out


def _loop(sections: dict[str, str], rng: random.Random) -> str | None:
    for name in ("features_1", "features_2", "introduction"):
        said = sentences(sections[name])
        if said:
            sentence = rng.choice(said).strip()
            looped = " ".join([sentence] * LOOP_REPEATS)
            return render_unstructured({**sections, name: f"{sections[name].strip()} {looped}"})
    return None


def _shuffled(sections: dict[str, str], rng: random.Random) -> str | None:
    """Each paragraph's sentences in another order (a paragraph of one sentence stays)."""
    out = {}
    for name in SECTIONS:
        said = [s.strip() for s in sentences(sections[name]) if s.strip()]
        if len(said) > 1:
            moved = said[:]
            while moved == said:
                rng.shuffle(moved)
            said = moved
        out[name] = " ".join(said)
    changed = any(out[n] != " ".join(s.strip() for s in sentences(sections[n])) for n in SECTIONS)
    return render_unstructured(out) if changed else None


def _vague(sections: dict[str, str]) -> str:
    """The overview replaced by generic sentences, at least as many words as it had."""
    words = len(sections["overview"].split())
    vague: list[str] = []
    for sentence in _VAGUE_OVERVIEW:
        if vague and sum(len(v.split()) for v in vague) >= words:
            break
        vague.append(sentence)
    return render_unstructured({**sections, "overview": " ".join(vague)})


def _without(sections: dict[str, str], drop: str) -> str:
    return "\n\n".join(sections[name].strip() for name in SECTIONS if name != drop)


def corrupt(
    kind: CorruptionKind,
    chart: ChartRecord,
    sections: dict[str, str],
    others: Sequence[tuple[ChartRecord, dict[str, str]]],
    rng: random.Random,
    tolerance: float,
) -> str | None:
    """The flawed copy of an essay (plain paragraphs), or None when the kind does not apply."""
    if kind == "figures_altered":
        return alter_figures(render_unstructured(sections), chart, tolerance)
    if kind == "paragraph_removed":
        return _without(sections, rng.choice(("features_1", "features_2")))
    if kind == "overview_dropped":
        return _without(sections, "overview")
    if kind == "looped_sentence":
        return _loop(sections, rng)
    if kind == "other_chart":
        candidates = [o for o in others if o[0].id != chart.id]
        same_type = [o for o in candidates if o[0].chart_type == chart.chart_type]
        pool = same_type or candidates
        return render_unstructured(rng.choice(pool)[1]) if pool else None
    if kind == "sentences_shuffled":
        return _shuffled(sections, rng)
    if kind == "overview_vague":
        return _vague(sections)
    raise ValueError(f"unknown corruption kind {kind!r}")


def build_pairs(
    charts: Sequence[ChartRecord],
    essays: dict[str, dict[str, str]],
    count: int,
    kinds: Sequence[CorruptionKind],
    seed: int,
    tolerance: float,
) -> list[KnownAnswerPair]:
    """`count` pairs, the kinds taken in turn, each over the next test chart (in a seeded order)
    that has a parsed teacher essay and to which the kind applies; no (chart, kind) twice."""
    usable = [(c, essays[c.id]) for c in charts if c.id in essays]
    if not usable or not kinds or count <= 0:
        return []
    rng = random.Random(seed)
    order = list(range(len(usable)))
    rng.shuffle(order)
    pairs: list[KnownAnswerPair] = []
    used: set[tuple[str, str]] = set()
    cursor = 0
    for number in range(count):
        kind = kinds[number % len(kinds)]
        for step in range(len(usable)):
            chart, sections = usable[order[(cursor + step) % len(usable)]]
            if (chart.id, kind) in used:
                continue
            corrupted = corrupt(kind, chart, sections, usable, rng, tolerance)
            intact = render_unstructured(sections)
            if corrupted is None or corrupted.strip() == intact.strip():
                continue
            used.add((chart.id, kind))
            pairs.append(KnownAnswerPair(f"{chart.id}:{kind}", chart, kind, intact, corrupted))
            cursor += step + 1
            break
        else:
            log.warning("known-answer pair %d (%s): no test chart it applies to", number, kind)
    return pairs


def _llm_stats(subset: Sequence[KnownAnswerPair], by_id: dict[str, Any]) -> dict[str, Any]:
    """The LLM judge on these pairs: a pair is correct when the debiased outcome picks the
    intact essay ("finetuned"); a tie is not correct; `expected_accuracy` is the mean probability
    it gives the intact essay (ties half); pairs without a verdict are `judge_failures`."""
    judged = [by_id[p.id] for p in subset if by_id[p.id].outcome is not None]
    both = [j for j in judged if j.agree is not None]
    correct = sum(j.outcome == "finetuned" for j in judged)
    scores = [j.expected_score for j in judged if j.expected_score is not None]
    return {
        "pairs": len(subset),
        "n": len(judged),
        "correct": correct,
        "accuracy": _rate(correct, len(judged)),
        "expected_accuracy": round(sum(scores) / len(scores), _DIGITS) if scores else None,
        "ties": sum(j.outcome == "tie" for j in judged),
        "judge_failures": len(subset) - len(judged),
        "position_consistency": _rate(sum(bool(j.agree) for j in both), len(both)),
    }


def _rate(count: int, n: int) -> float | None:
    return round(count / n, _DIGITS) if n else None


def _gate_stats(subset: Sequence[KnownAnswerPair], gate: dict[str, str | None]) -> dict[str, Any]:
    """The table gate on these pairs: how many it decided, how many of those it got right
    (the intact essay, "finetuned"), and how many it left to the LLM."""
    decided = [p for p in subset if gate[p.id] is not None]
    correct = sum(gate[p.id] == "finetuned" for p in decided)
    return {
        "pairs": len(subset),
        "decided": len(decided),
        "correct": correct,
        "accuracy": _rate(correct, len(decided)),
        "abstained": len(subset) - len(decided),
        "abstain_rate": _rate(len(subset) - len(decided), len(subset)),
    }


def audit(
    pairs: Sequence[KnownAnswerPair],
    gate: dict[str, str | None],
    judgements: Sequence[Any],
    min_accuracy: float,
) -> dict[str, Any]:
    """The gate and the LLM judge measured separately on the same known-answer pairs, per kind.

    `gate` is the table gate's outcome per pair id (None: it abstains); `judgements` are the
    LLM's verdicts on every pair (the gate's decisions do not spare the LLM here, so its
    accuracy is measured on every kind). `combined` is what the judge stage does: the gate
    where it decides, the LLM elsewhere. Each source is `reliable` when its accuracy on the
    pairs it decides reaches `min_accuracy`; the gate's abstention is reported on the kinds it
    cannot see (GATE_BLIND_KINDS), where it must not guess.
    """
    by_id = {j.id: j for j in judgements}
    ids = {p.id for p in pairs}
    if set(by_id) != ids or set(gate) != ids:
        raise ValueError("known-answer verdicts do not match the pairs")

    def combined(subset: Sequence[KnownAnswerPair]) -> dict[str, Any]:
        outcomes = [gate[p.id] or by_id[p.id].outcome for p in subset]
        judged = [o for o in outcomes if o is not None]
        correct = sum(o == "finetuned" for o in judged)
        return {"n": len(judged), "correct": correct, "accuracy": _rate(correct, len(judged))}

    kinds = list(dict.fromkeys(p.kind for p in pairs))
    blind = [p for p in pairs if p.kind in GATE_BLIND_KINDS]
    visible = [p for p in pairs if p.kind not in GATE_BLIND_KINDS]
    gate_stats = _gate_stats(pairs, gate)
    llm_stats = _llm_stats(pairs, by_id)
    return {
        "pairs": len(pairs),
        "gate": {
            **gate_stats,
            "visible": _gate_stats(visible, gate),
            "blind": _gate_stats(blind, gate),
            "reliable": gate_stats["accuracy"] is not None
            and gate_stats["accuracy"] >= min_accuracy,
        },
        "llm": {
            **llm_stats,
            "reliable": llm_stats["accuracy"] is not None and llm_stats["accuracy"] >= min_accuracy,
        },
        "combined": combined(pairs),
        "per_kind": {
            kind: {
                "gate_blind": kind in GATE_BLIND_KINDS,
                "gate": _gate_stats(subset, gate),
                "llm": _llm_stats(subset, by_id),
                "combined": combined(subset),
            }
            for kind in kinds
            for subset in ([p for p in pairs if p.kind == kind],)
        },
        "min_accuracy": min_accuracy,
    }


def trusted_sources(check: dict[str, Any]) -> dict[str, bool]:
    """Which verdict sources a reader may trust, from a judge.json audit."""
    return {source: bool((check.get(source) or {}).get("reliable")) for source in ("gate", "llm")}
