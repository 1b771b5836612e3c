"""Known-answer pairs: how far the judge's verdicts can be trusted.

Each pair puts a test chart's teacher essay against a copy with a known flaw, so the right
verdict is known: the intact essay is better. The flaws are what students get wrong:
- figures_altered: every value the essay states is changed (no figure matches the table);
- paragraph_removed: one key-features paragraph is gone;
- overview_dropped: the overview is gone;
- looped_sentence: a sentence repeats itself several times (the degenerate-decoding loop);
- other_chart: the essay of another test chart (right form, wrong chart).

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
    "figures_altered", "paragraph_removed", "overview_dropped", "looped_sentence", "other_chart"
]
CORRUPTION_KINDS: tuple[CorruptionKind, ...] = (
    "figures_altered",
    "paragraph_removed",
    "overview_dropped",
    "looped_sentence",
    "other_chart",
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


def reliability(
    pairs: Sequence[KnownAnswerPair], judgements: Sequence[Any], min_accuracy: float
) -> dict[str, Any]:
    """The judge's accuracy on known-answer pairs, overall and per kind, its position
    consistency, and whether the evaluation can be trusted (`reliable`).

    A pair is correct when the debiased outcome picks the intact essay ("finetuned"); a tie is
    not correct. `expected_accuracy` is the mean probability the judge gives the intact essay
    (ties half). Pairs without a verdict are counted in `judge_failures`, never as wrong.
    """
    by_id = {j.id: j for j in judgements}
    if set(by_id) != {p.id for p in pairs}:
        raise ValueError("known-answer judgements do not match the pairs")

    def stats(subset: Sequence[KnownAnswerPair]) -> dict[str, Any]:
        judged = [by_id[p.id] for p in subset if by_id[p.id].outcome is not None]
        both = [j for j in judged if j.agree is not None]
        correct = sum(j.outcome == "finetuned" for j in judged)
        scores = [j.expected_score for j in judged if j.expected_score is not None]
        return {
            "pairs": len(subset),
            "n": len(judged),
            "correct": correct,
            "accuracy": round(correct / len(judged), _DIGITS) if judged else None,
            "expected_accuracy": round(sum(scores) / len(scores), _DIGITS) if scores else None,
            "ties": sum(j.outcome == "tie" for j in judged),
            "judge_failures": len(subset) - len(judged),
            "position_consistency": (
                round(sum(bool(j.agree) for j in both) / len(both), _DIGITS) if both else None
            ),
        }

    overall = stats(pairs)
    kinds = list(dict.fromkeys(p.kind for p in pairs))
    accuracy = overall["accuracy"]
    return {
        **overall,
        "per_kind": {k: stats([p for p in pairs if p.kind == k]) for k in kinds},
        "min_accuracy": min_accuracy,
        "reliable": accuracy is not None and accuracy >= min_accuracy,
    }
