"""The table gate: its rules on essays checked against the chart, and its known-answer audit
(it decides the kinds it can see rightly, and abstains on the kinds it cannot)."""

from __future__ import annotations

import random

import pytest

from chartdistill.config import ParamsError, parse_section
from chartdistill.data.synthetic import make_chart
from chartdistill.essay.sections import render_structured
from chartdistill.evaluation.gate import GATE_CHECKS, GateParams, findings, gate_verdict
from chartdistill.evaluation.known_answer import (
    CORRUPTION_KINDS,
    GATE_BLIND_KINDS,
    build_pairs,
)
from chartdistill.evaluation.metrics import check_essay
from chartdistill.evaluation.summary import EvaluationParams
from chartdistill.teacher.reference import reference_essay
from tests.test_essays import CHART, GOOD

BOUNDS = EvaluationParams().essay_bounds
SHORT = "The chart is about the internet."
LOOPED = render_structured(
    {**GOOD, "features_2": " ".join([GOOD["features_2"].split(". ")[0] + "."] * 4)}
)


def verdict(baseline: str, finetuned: str, **params):
    return gate_verdict(
        check_essay(baseline, CHART, BOUNDS),
        check_essay(finetuned, CHART, BOUNDS),
        GateParams(**params),
    )


def test_a_clean_essay_beats_a_faulty_one_in_either_seat() -> None:
    good = render_structured(GOOD)
    assert check_essay(good, CHART, BOUNDS).reasons == []
    won = verdict(LOOPED, good)
    assert (won.outcome, won.rule) == ("finetuned", "clean_beats_faulty")
    assert "loop" in won.faults["baseline"] and won.faults["finetuned"] == []
    lost = verdict(good, LOOPED)
    assert (lost.outcome, lost.rule) == ("baseline", "clean_beats_faulty")
    assert "finetuned is better" in won.reason and "baseline is better" in lost.reason


def test_between_faulty_essays_only_the_margin_decides() -> None:
    """SHORT fails four checks, LOOPED one: three apart, so margin 2 decides and margin 4 does
    not; two equally faulty essays are the LLM's."""
    rules = {"essay_beats_non_essay": False, "clean_beats_faulty": False}
    off = verdict(SHORT, LOOPED, **rules)
    assert len(off.faults["baseline"]) - len(off.faults["finetuned"]) == 3
    assert (off.outcome, off.rule) == ("finetuned", "margin")
    assert verdict(SHORT, LOOPED, **rules, margin=4).outcome is None
    same = verdict(SHORT, "Men used it more.")
    assert same.outcome is None and same.rule == "" and "gate abstains" in same.reason


def test_an_essay_beats_an_empty_reply_that_fails_fewer_checks() -> None:
    """An empty reply fails four checks (no sections, too short, too few numbers, off task); an
    essay with wrong figures, a loop and an empty overview fails five, yet it is an essay."""
    features_1 = GOOD["features_1"].replace("32.5", "41.7").replace("22.8", "19.3")
    features_2 = " ".join([GOOD["features_2"].split(". ")[0] + "."] * 4)
    faulty = render_structured(
        {**GOOD, "features_1": features_1, "features_2": features_2, "overview": ""}
    )
    won = verdict("", faulty)
    assert "off_task" not in won.faults["finetuned"]
    assert len(won.faults["finetuned"]) == len(won.faults["baseline"]) + 1 == 5
    assert (won.outcome, won.rule) == ("finetuned", "essay_beats_non_essay")
    assert verdict(faulty, "").outcome == "baseline"
    counted = verdict("", faulty, essay_beats_non_essay=False, margin=1)
    assert (counted.outcome, counted.rule) == ("baseline", "margin")  # what fault counts say
    assert verdict("", SHORT).outcome is None  # two non-essays: only the counts, too close


def test_a_disabled_gate_abstains_but_records_the_faults() -> None:
    off = verdict(SHORT, render_structured(GOOD), enabled=False)
    assert off.outcome is None and off.faults["baseline"]


def test_only_the_listed_checks_count() -> None:
    only_numbers = verdict(LOOPED, render_structured(GOOD), checks=("ungrounded_numbers",))
    assert only_numbers.outcome is None and only_numbers.faults["baseline"] == []


def test_gate_params_reject_unknown_checks_and_keys() -> None:
    assert GateParams().checks == GATE_CHECKS
    with pytest.raises(ParamsError, match="judge.gate.checks.0"):
        parse_section("judge.gate", GateParams, {"checks": ["spelling"]})
    with pytest.raises(ParamsError, match="judge.gate.margins"):
        parse_section("judge.gate", GateParams, {"margins": 2})


def test_findings_name_the_faults_and_the_figures() -> None:
    wrong = GOOD["features_2"] + " Men aged 16-24 spent 99 hours a week online."
    found = findings(check_essay(render_structured({**GOOD, "features_2": wrong}), CHART, BOUNDS))
    assert "ungrounded_numbers" in found.splitlines()[0] and "Not in the table: 99." in found
    assert findings(check_essay(render_structured(GOOD), CHART, BOUNDS)).startswith(
        "Checks failed: none."
    )


def test_on_known_answer_pairs_the_gate_decides_what_it_sees_and_abstains_on_the_rest() -> None:
    """Reference-writer essays on synthetic charts, two pairs of every kind: every pair of a
    visible kind decided rightly, every pair of a blind kind left to the LLM."""
    rng = random.Random(7)
    charts = [
        make_chart(rng, t, f"{t}-{n}") for t in ("bar", "line", "pie", "table") for n in (1, 2)
    ]
    essays = {c.id: reference_essay(c, 0) for c in charts}
    count = 2 * len(CORRUPTION_KINDS)
    pairs = build_pairs(charts, essays, count, CORRUPTION_KINDS, 0, 0.02)
    assert len(pairs) == count
    for pair in pairs:
        outcome = gate_verdict(
            check_essay(pair.corrupted, pair.chart, BOUNDS),
            check_essay(pair.intact, pair.chart, BOUNDS),
            GateParams(),
        ).outcome
        expected = None if pair.kind in GATE_BLIND_KINDS else "finetuned"
        assert outcome == expected, pair.id
