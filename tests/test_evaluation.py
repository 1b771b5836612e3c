"""Evaluation: inputs, automatic metric means, win rates (raw, expected, length-controlled) with
bootstrap intervals, known-answer pairs, and the `judge_check` and `judge` stages end to end
against a stub judge server."""

from __future__ import annotations

import csv
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from chartdistill.config import InputError, ParamsError, parse_section
from chartdistill.data.records import ChartRecord, EssayRecord, save_records
from chartdistill.essay.sections import render_structured, render_unstructured
from chartdistill.essay.text import EssayBounds
from chartdistill.evaluation.judge import OrderVerdict, PairJudgement
from chartdistill.evaluation.summary import (
    PLOT_FIELDS,
    EvaluationParams,
    Prediction,
    automatic_metrics,
    eval_summary,
    load_predictions,
    match_inputs,
    mean_metrics,
    outcome_stats,
    reference_texts,
    win_rate_plot_rows,
)
from chartdistill.evaluation.winrate import PairScore, fit_logistic, spread, win_rates
from chartdistill.io import read_json, read_jsonl, write_csv, write_jsonl
from chartdistill.teacher.reference import reference_essay
from harness.fake_teacher import judge_reply
from harness.stub_server import StubServer
from tests.test_essays import CHART, GOOD

ROOT = Path(__file__).resolve().parents[1]
PARAMS = EvaluationParams(bounds=EssayBounds(min_words=150, max_words=300), tolerance=0.02)


def judgement(
    n: int,
    outcome: str | None,
    chart_type: str = "bar",
    single: bool = False,
    bands: dict[str, dict[str, float]] | None = None,
) -> PairJudgement:
    verdicts = [
        OrderVerdict(order=1, essay_a="baseline"),
        OrderVerdict(order=2, essay_a="finetuned"),
    ]
    return PairJudgement(
        id=f"{chart_type}-{n}",
        chart_type=chart_type,
        outcome=outcome,  # type: ignore[arg-type]
        single_order=single,
        agree=None,
        verdicts=verdicts,
        bands=bands or {},
        error=None if outcome else "order 1: no_json; order 2: no_json",
    )


# --------------------------------------------------------------------------- params


def test_params_have_one_tolerance() -> None:
    params = parse_section("evaluation", EvaluationParams, {"tolerance": 0.05})
    assert params.essay_bounds.tolerance == 0.05 and params.bounds.min_words == 150
    same = {"tolerance": 0.05, "bounds": {"tolerance": 0.05}}
    assert parse_section("evaluation", EvaluationParams, same).essay_bounds.tolerance == 0.05
    with pytest.raises(ParamsError, match="set only evaluation.tolerance"):
        parse_section("evaluation", EvaluationParams, {"bounds": {"tolerance": 0.1}})
    with pytest.raises(ParamsError, match="evaluation.bounds.min_word"):
        parse_section("evaluation", EvaluationParams, {"bounds": {"min_word": 10}})


# --------------------------------------------------------------------------- win rates, summary


def test_win_tie_loss_with_bootstrap_intervals() -> None:
    outcomes = ["finetuned"] * 6 + ["tie"] * 2 + ["baseline"] * 2 + [None]
    stats = outcome_stats([judgement(i, o) for i, o in enumerate(outcomes)])
    assert (stats["charts"], stats["n"], stats["judge_failures"]) == (11, 10, 1)
    assert (stats["wins"], stats["ties"], stats["losses"]) == (6, 2, 2)
    assert (stats["win_rate"], stats["tie_rate"], stats["loss_rate"]) == (0.6, 0.2, 0.2)
    assert stats["score"] == 0.7
    # One-hot verdicts: the expected win rate is the score; no length signal: LC = raw.
    assert stats["expected_win_rate"] == 0.7
    assert stats["lc_win_rate"] == pytest.approx(0.7, abs=1e-3)
    for name in ("win_rate", "score", "expected_win_rate", "lc_win_rate"):
        ci = stats[f"{name}_ci95"]
        assert 0 <= ci["low"] < stats[name] < ci["high"] <= 1, name
    # Percentile bootstrap of 6/10 wins: roughly 0.3 to 0.9.
    assert 0.2 <= stats["win_rate_ci95"]["low"] <= 0.4
    assert 0.8 <= stats["win_rate_ci95"]["high"] <= 0.9
    assert outcome_stats([judgement(i, o) for i, o in enumerate(outcomes)]) == stats  # seeded


def test_no_usable_verdicts_is_a_counted_failure_not_a_zero() -> None:
    stats = outcome_stats([judgement(1, None)])
    assert stats["n"] == 0 and stats["judge_failures"] == 1
    assert stats["win_rate"] is None and stats["win_rate_ci95"] is None
    assert stats["lc_win_rate"] is None and stats["expected_win_rate"] is None


def pair(n: int, expected: float, diff: float) -> PairScore:
    outcome = "finetuned" if expected > 0.5 else "baseline" if expected < 0.5 else "tie"
    return PairScore(f"c{n}", "bar", outcome, expected, diff)


def test_length_controlled_rate_removes_a_pure_length_preference() -> None:
    """A judge that always prefers the longer essay, and a fine-tuned student that is longer
    on 8 of 10 charts: the raw win rate is 0.8, the length-controlled one moves towards 0.5."""
    diffs = [40, 55, 30, 70, 25, 60, 45, 35, -50, -30]
    pairs = [pair(n, 1.0 if d > 0 else 0.0, d) for n, d in enumerate(diffs)]
    rates = win_rates(pairs, spread(diffs), ridge=0.1, samples=200, seed=0)
    assert rates["win_rate"] == 0.8 and rates["expected_win_rate"] == 0.8
    # Length alone separates the verdicts, so the slope is held finite only by the ridge and
    # the intercept does not reach 0 exactly; it moves most of the way.
    assert 0.5 < rates["lc_win_rate"] < 0.7
    assert rates["lc_win_rate_ci95"]["low"] < rates["lc_win_rate"]


def test_length_controlled_rate_keeps_a_real_preference() -> None:
    """Wins that do not follow length are left alone: LC stays near the raw rate."""
    diffs = [40, -40, 30, -30, 20, -20, 10, -10, 5, -5]
    pairs = [pair(n, 1.0 if n < 8 else 0.0, d) for n, d in enumerate(diffs)]
    rates = win_rates(pairs, spread(diffs), ridge=0.1, samples=0, seed=0)
    assert rates["win_rate"] == 0.8
    assert rates["lc_win_rate"] == pytest.approx(0.8, abs=0.05)
    assert rates["lc_win_rate_ci95"] is None  # no resamples asked for


def test_fit_logistic_soft_labels() -> None:
    theta, phi = fit_logistic([0.7] * 5, [0.0] * 5, ridge=1.0)
    assert phi == 0.0 and 1 / (1 + math.exp(-theta)) == pytest.approx(0.7, abs=1e-3)


def test_summary_per_chart_type_bands_and_auto() -> None:
    band = {"task_achievement": 6.0, "coherence_cohesion": 5.0}
    judgements = [
        judgement(
            1, "finetuned", "line", bands={"finetuned": band, "baseline": {"task_achievement": 4.0}}
        ),
        judgement(2, "finetuned", "line", single=True),
        judgement(3, "baseline", "line"),
        judgement(1, "tie", "bar", bands={"finetuned": {"task_achievement": 8.0}}),
        judgement(2, None, "bar"),
        judgement(1, "finetuned", "pie"),
    ]
    auto = [{"id": "x", "chart_type": "bar", "words": 100, "loop": False, "off_task": None}]
    summary = eval_summary(judgements, auto, auto, auto)
    assert list(summary["per_type"]) == ["bar", "line", "pie"]
    line = summary["per_type"]["line"]
    assert (line["n"], line["wins"], line["losses"], line["single_order"]) == (3, 2, 1, 1)
    assert line["win_rate"] == 0.6667
    assert line["win_rate_ci95"]["low"] <= 0.6667 <= line["win_rate_ci95"]["high"]
    bar = summary["per_type"]["bar"]
    assert (bar["n"], bar["ties"], bar["judge_failures"], bar["score"]) == (1, 1, 1, 0.5)
    assert summary["n"] == 5 and summary["wins"] == 3 and summary["judge_failures"] == 1
    assert summary["bands"]["finetuned"]["task_achievement"] == 7.0
    assert summary["bands"]["finetuned"]["coherence_cohesion"] == 5.0
    assert summary["bands"]["finetuned"]["overall"] == pytest.approx(19 / 3, abs=1e-4)
    assert summary["bands"]["baseline"]["lexical_resource"] is None
    assert summary["auto"]["teacher"] == {
        "n": 1,
        "words": 100,
        "loop_rate": 0.0,
        "loop_rate_ci95_low": 0.0,  # Wilson 95 % interval of one essay
        "loop_rate_ci95_high": 0.7935,
        "off_task_rate": 0.0,
    }
    assert_no_lists(summary)
    rows = win_rate_plot_rows(summary)
    assert rows[1] == {
        "chart_type": "line",
        "win_rate": 0.6667,
        "tie_rate": 0.0,
        "loss_rate": 0.3333,
    }
    assert [r["chart_type"] for r in rows] == ["bar", "line", "pie"]


def assert_no_lists(value: Any, where: str = "summary") -> None:
    assert not isinstance(value, list), f"{where} is a list"
    if isinstance(value, dict):
        for key, item in value.items():
            assert_no_lists(item, f"{where}.{key}")
    else:
        assert value is None or isinstance(value, int | float), f"{where}: {value!r}"


def test_position_stats() -> None:
    a_wins = [
        OrderVerdict(1, "baseline", winner="A", outcome="baseline"),
        OrderVerdict(2, "finetuned", winner="A", outcome="finetuned"),
    ]
    j = judgement(1, "tie")
    j.verdicts, j.agree = a_wins, False
    summary = eval_summary([j], [], [], [])
    assert summary["position"] == {
        "decisive_verdicts": 2,
        "first_position_rate": 1.0,
        "orders_compared": 1,
        "position_consistency": 0.0,
    }


def test_plot_csv(tmp_path: Path) -> None:
    path = tmp_path / "plots" / "eval.csv"
    row = {"chart_type": "bar", "win_rate": 0.5, "tie_rate": 0.25, "loss_rate": 0.25}
    write_csv(path, [row], PLOT_FIELDS)
    assert path.read_text() == "chart_type,win_rate,tie_rate,loss_rate\nbar,0.5,0.25,0.25\n"


# --------------------------------------------------------------------------- automatic metrics


def test_automatic_metrics_and_means() -> None:
    good = render_structured(GOOD)
    texts = {"bar-1": good}
    rows = automatic_metrics(texts, [CHART], {"bar-1": render_unstructured(GOOD)}, PARAMS)
    assert rows[0]["id"] == "bar-1" and rows[0]["chart_type"] == "bar"
    assert rows[0]["structure_compliance"] is True and rows[0]["numeric_precision"] == 1.0
    assert rows[0]["rouge_l"] == pytest.approx(1.0)
    teacher = automatic_metrics(texts, [CHART], None, PARAMS)
    assert teacher[0]["rouge_l"] is None

    bad = automatic_metrics({"bar-1": "What is this? Why?"}, [CHART], None, PARAMS)
    means = mean_metrics(rows + bad)
    assert means["n"] == 2
    assert means["structure_compliance_rate"] == 0.5 and means["off_task_rate"] == 0.5
    assert means["numeric_precision"] == 1.0  # the essay without numbers has None: skipped
    assert means["words"] == pytest.approx((rows[0]["words"] + bad[0]["words"]) / 2, abs=1e-4)
    assert "reasons" not in means and "id" not in means
    assert mean_metrics([]) == {"n": 0}
    assert means["numeric_precision_ci95_low"] == means["numeric_precision_ci95_high"] == 1.0


def test_precision_means_come_with_a_bootstrap_interval_over_essays() -> None:
    rows = [{"numeric_precision": p, "words": 200} for p in (0.0, 0.25, 0.5, 0.75, 1.0) * 4]
    params = EvaluationParams(bootstrap_samples=2000, bootstrap_seed=3)
    means = mean_metrics(rows, params)
    low, high = means["numeric_precision_ci95_low"], means["numeric_precision_ci95_high"]
    assert low < means["numeric_precision"] == 0.5 < high
    # the standard error of a mean of 20 values spread like these is about 0.08
    assert 0.25 < high - low < 0.45
    assert mean_metrics(rows, params) == means  # seeded: repeatable
    assert "words_ci95_low" not in means  # counts are not bootstrapped
    fewer = mean_metrics(rows[:5], params)
    assert fewer["numeric_precision_ci95_high"] - fewer["numeric_precision_ci95_low"] > high - low


def test_automatic_metrics_names_unknown_essays() -> None:
    with pytest.raises(ValueError, match="essay line-9: no chart"):
        automatic_metrics({"line-9": "text"}, [CHART], None, PARAMS)
    with pytest.raises(ValueError, match="essay bar-1: no reference"):
        automatic_metrics({"bar-1": "text"}, [CHART], {}, PARAMS)


# --------------------------------------------------------------------------- inputs


def essay_record(chart: ChartRecord, sections: dict[str, str] | None = GOOD) -> EssayRecord:
    return EssayRecord(
        id=chart.id,
        chart_type=chart.chart_type,
        prompt_hash="h",
        model="teacher",
        mode="stepwise",
        status="accepted" if sections else "failed",
        sections=sections,
    )


def prediction(chart_id: str, text: str, model: str = "m") -> Prediction:
    return Prediction(id=chart_id, chart_type="bar", text=text, seconds=1.0, model=model)


def test_match_inputs_renders_reference_per_variant() -> None:
    base = {"bar-1": prediction("bar-1", "base")}
    ft = {"bar-1": prediction("bar-1", "ft")}
    got = match_inputs("unstructured", [CHART], [essay_record(CHART)], base, ft)
    assert got.references == {"bar-1": render_unstructured(GOOD)}
    assert got.baseline == {"bar-1": "base"} and got.finetuned == {"bar-1": "ft"}
    got = match_inputs("structured", [CHART], [essay_record(CHART)], base, ft)
    assert got.references["bar-1"] == render_structured(GOOD)


def test_match_inputs_names_what_does_not_match() -> None:
    other = CHART.model_copy(update={"id": "bar-2"})
    base = {"bar-1": prediction("bar-1", "b")}
    ft = {i: prediction(i, "f") for i in ("bar-1", "bar-2", "bar-3")}
    with pytest.raises(ValueError) as info:
        match_inputs(
            "structured", [CHART, other], [essay_record(CHART), essay_record(other, None)], base, ft
        )
    message = str(info.value)
    assert "2 in structured but not baseline: bar-2, bar-3" in message
    assert "1 not in the chart manifest: bar-3" in message
    assert "2 without a parsed teacher essay: bar-2, bar-3" in message
    with pytest.raises(ValueError, match="no structured predictions"):
        match_inputs("structured", [CHART], [], base, {})
    with pytest.raises(ValueError, match="unknown variant 'plain'"):
        match_inputs("plain", [CHART], [], base, base)


def test_a_partial_teacher_essay_is_no_reference() -> None:
    partial = essay_record(CHART).model_copy(
        update={"status": "failed", "sections": {"introduction": GOOD["introduction"]}}
    )
    assert reference_texts([partial], "structured") == {}
    assert reference_texts([essay_record(CHART)], "structured") == {
        "bar-1": render_structured(GOOD)
    }


def test_match_inputs_gives_held_out_test_charts_an_empty_reference() -> None:
    """A test chart the teacher never wrote for is judged without a reference; any other chart
    without a teacher essay is still an error."""
    held_out = CHART.model_copy(
        update={"id": "bar-9", "split": "test", "provenance": {"held_out": True}}
    )
    base = {i: prediction(i, "b") for i in ("bar-1", "bar-9")}
    ft = {i: prediction(i, "f") for i in ("bar-1", "bar-9")}
    got = match_inputs("structured", [CHART, held_out], [essay_record(CHART)], base, ft)
    assert got.references == {"bar-1": render_structured(GOOD), "bar-9": ""}
    rows = automatic_metrics(got.baseline, got.charts, got.references, EvaluationParams())
    assert [row["rouge_l"] is None for row in rows] == [False, True]
    with pytest.raises(ValueError, match="1 without a parsed teacher essay: bar-1"):
        match_inputs("structured", [CHART, held_out], [], base, ft)


def test_load_predictions_rejects_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    write_jsonl(
        path,
        [
            {"id": "a", "chart_type": "bar", "text": "t", "seconds": 1, "model": "m"},
            {"id": "a", "chart_type": "bar", "text": "u"},
        ],
    )
    with pytest.raises(ValueError, match=r"p.jsonl:2: chart a predicted twice"):
        load_predictions(path)
    write_jsonl(path, [{"id": "a", "chart_type": "bar"}])
    with pytest.raises(ValueError, match=r"p.jsonl:1: not a prediction record: text"):
        load_predictions(path)


# --------------------------------------------------------------------------- the stage


def stage_judge(body: dict[str, Any]) -> str:
    """Prefers the essay with more digits; answers in a code fence like chatty models do."""
    return "```json\n" + judge_reply(body) + "\n```"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A project folder with params, prompts, charts, teacher essays and predictions."""
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    charts = [CHART.model_copy(update={"id": f"bar-{n}"}) for n in (1, 2)]
    charts.append(CHART.model_copy(update={"id": "line-1", "chart_type": "line"}))
    save_records(tmp_path / "data/charts/charts.jsonl", charts)
    save_records(tmp_path / "data/essays/essays.jsonl", [essay_record(c) for c in charts])
    baseline = ["The chart is about the internet.", "Men used it more.", "Use went down."]
    finetuned = [render_structured(GOOD), "Men 32.5 hours, women 30.1 hours.", "Use went down."]
    for name, texts in (("baseline", baseline), ("structured", finetuned)):
        write_jsonl(
            tmp_path / f"data/predictions/{name}.jsonl",
            [
                {"id": c.id, "chart_type": c.chart_type, "text": t, "seconds": 1.5, "model": name}
                for c, t in zip(charts, texts, strict=True)
            ],
        )
    monkeypatch.chdir(tmp_path)
    with StubServer(reply=stage_judge) as stub:
        # Every stage validates all of params.yaml: start from the project's, override three.
        params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
        known = {"pairs": 2, "kinds": ["overview_dropped", "looped_sentence"], "min_accuracy": 0.7}
        params |= {
            "judge": {
                "llm": {
                    "base_url": stub.base_url,
                    "model": "stub-judge",
                    "max_retries": 0,
                    "api_key_env": "CHARTDISTILL_TEST_KEY",
                },
                "max_tokens": 200,
                "known_answer": known,
                # the LLM path alone here; test_the_gate_decides_... turns the gate on. The
                # stub is right on neither known-answer pair, so the audit flags it: ask it anyway.
                "gate": {"enabled": False, "llm_when_unreliable": True},
            },
            "evaluation": {"bounds": {"min_words": 150, "max_words": 300}, "tolerance": 0.02},
        }
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        yield tmp_path, stub
    assert not stub.errors, stub.errors


def run_stage(monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    from stages import judge as stage

    monkeypatch.setattr(sys, "argv", ["stages.judge", *args])
    stage.main()


def run_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from stages import judge_check

    monkeypatch.setattr(sys, "argv", ["stages.judge_check"])
    judge_check.main()


def test_judge_check_stage_measures_the_judge_on_known_answers(project, monkeypatch) -> None:
    root, stub = project
    run_check(monkeypatch)
    # The stub prefers the essay with more digits, so a looped sentence with a figure in it
    # fools it; its accuracy is whatever it is: the shape is what is checked here.
    check = read_json(root / "metrics/judge.json")
    llm = check["llm"]
    assert check["pairs"] == 2 and llm["n"] + llm["judge_failures"] == 2
    assert set(check["per_kind"]) == {"overview_dropped", "looped_sentence"}
    assert llm["reliable"] == (llm["accuracy"] is not None and llm["accuracy"] >= 0.7)
    # the gate (disabled here) decides nothing: every pair is the LLM's
    assert check["gate"]["decided"] == 0 and check["gate"]["reliable"] is False
    assert check["combined"]["n"] == llm["n"]
    assert check["same_model_as_teacher"] is False  # a stub server vs the embedded teacher
    assert_no_lists(check)
    records = list(read_jsonl(root / "data/judgements/known_answer.jsonl"))
    assert [r["kind"] for r in records] == ["overview_dropped", "looped_sentence"]
    assert all(r["id"].endswith(":" + r["kind"]) for r in records)
    # No reference essay in known-answer prompts: the intact essay would be the reference.
    assert all(
        "<reference_essay>" not in m["content"]
        for r in stub.chat_requests
        for m in r.body["messages"]
    )
    assert len(stub.chat_requests) == 4  # two pairs, both orders


def test_stage_writes_judgements_metrics_and_plot(project, monkeypatch) -> None:
    root, stub = project
    run_check(monkeypatch)
    stub.reset_log()
    run_stage(monkeypatch, "structured")
    # line-1's two essays are identical, so both orders are the same prompt: sent once.
    assert len(stub.chat_requests) == 5

    records = list(read_jsonl(root / "data/judgements/structured.jsonl"))
    assert [r["id"] for r in records] == ["bar-1", "bar-2", "line-1"]
    assert [r["outcome"] for r in records] == ["finetuned", "finetuned", "tie"]
    first = records[0]
    assert first["chart_type"] == "bar" and first["agree"] is True and first["error"] is None
    assert [v["order"] for v in first["verdicts"]] == [1, 2]
    assert all(v["raw"].startswith("```json") for v in first["verdicts"])
    assert first["bands"]["finetuned"]["task_achievement"] == 6

    metrics = read_json(root / "metrics/eval_structured.json")
    assert (metrics["n"], metrics["wins"], metrics["ties"], metrics["losses"]) == (3, 2, 1, 0)
    assert metrics["score"] == round(2.5 / 3, 4) == metrics["expected_win_rate"]
    check = read_json(root / "metrics/judge.json")
    assert metrics["judge_check"]["llm"]["accuracy"] == check["llm"]["accuracy"]
    assert metrics["judge_check"]["pairs"] == check["pairs"] == 2
    assert metrics["by_source"]["llm"]["n"] == 3 and metrics["by_source"]["gate"]["n"] == 0
    assert [r["source"] for r in records] == ["llm"] * 3
    assert records[0]["texts"]["finetuned"] == render_structured(GOOD)
    assert metrics["auto_per_type"]["line"]["finetuned"]["n"] == 1
    assert metrics["per_type"]["line"]["ties"] == 1
    auto = metrics["auto"]
    assert auto["teacher"]["structure_compliance_rate"] == 1.0
    assert auto["finetuned"]["rouge_l"] > auto["baseline"]["rouge_l"]
    assert auto["baseline"]["off_task_rate"] == 1.0
    assert_no_lists(metrics)

    with (root / "plots/eval_structured.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows == [
        {"chart_type": "bar", "win_rate": "1.0", "tie_rate": "0.0", "loss_rate": "0.0"},
        {"chart_type": "line", "win_rate": "0.0", "tie_rate": "1.0", "loss_rate": "0.0"},
    ]

    # A rerun is answered from the judge cache: no request reaches the server.
    stub.reset_log()
    run_stage(monkeypatch, "structured")
    assert stub.chat_requests == []
    again = read_json(root / "metrics/eval_structured.json")
    assert again.pop("judge_tokens") != metrics.pop("judge_tokens")  # none sent this time
    assert again == metrics


def enable_gate(root: Path, **gate: Any) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    params["judge"]["gate"] = {**params["judge"]["gate"], "enabled": True, **gate}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def test_the_gate_decides_clear_pairs_and_the_llm_the_rest(project, monkeypatch) -> None:
    """bar-1: the fine-tuned essay passes every check, the baseline fails four: the gate
    decides and the LLM is not asked. bar-2 and line-1: both fail the same four checks, so
    the gate abstains and the LLM judges (line-1's essays are one prompt: sent once)."""
    root, stub = project
    enable_gate(root)
    run_check(monkeypatch)
    stub.reset_log()
    run_stage(monkeypatch, "structured")
    assert len(stub.chat_requests) == 3
    # bar-1's baseline essay is in no prompt: the LLM was not asked about bar-1
    assert not any("about the internet" in str(r.body) for r in stub.chat_requests)
    assert sum("Men used it more" in str(r.body) for r in stub.chat_requests) == 2  # bar-2
    records = {r["id"]: r for r in read_jsonl(root / "data/judgements/structured.jsonl")}
    first = records["bar-1"]
    assert (first["source"], first["outcome"], first["verdicts"]) == ("gate", "finetuned", [])
    assert first["gate"]["rule"] == "essay_beats_non_essay"  # the baseline is one line
    assert first["gate"]["faults"] == {
        "baseline": ["missing_section", "too_short", "too_few_numbers", "off_task"],
        "finetuned": [],
    }
    assert first["probabilities"] == {"finetuned": 1.0, "tie": 0.0, "baseline": 0.0}
    assert [records[i]["source"] for i in ("bar-2", "line-1")] == ["llm", "llm"]
    assert records["bar-2"]["gate"]["outcome"] is None  # the gate's abstention is recorded
    metrics = read_json(root / "metrics/eval_structured.json")
    gate, llm = metrics["by_source"]["gate"], metrics["by_source"]["llm"]
    assert (gate["n"], gate["wins"], gate["win_rate"]) == (1, 1, 1.0)
    assert llm["n"] == 2 and gate["n"] + llm["n"] == metrics["n"]
    assert {"win_rate_ci95", "lc_win_rate", "lc_win_rate_ci95"} <= set(gate)
    check = read_json(root / "metrics/judge.json")
    # overview_dropped and looped_sentence are both visible to the gate: it decides them
    assert check["gate"]["visible"]["decided"] == check["gate"]["correct"] == 2


@pytest.mark.parametrize("min_accuracy", [0.7, 0.0])
def test_an_llm_the_audit_flags_is_not_asked(project, monkeypatch, min_accuracy) -> None:
    """The stub (it prefers the essay with more digits) is right on neither known-answer
    pair: at min_accuracy 0.7 the audit flags it and the pairs the gate leaves (bar-2,
    line-1) are ties from no source, with no request sent; at 0 it is trusted and asked."""
    root, stub = project
    enable_gate(root, llm_when_unreliable=False)
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    params["judge"]["known_answer"]["min_accuracy"] = min_accuracy
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    run_check(monkeypatch)
    check = read_json(root / "metrics/judge.json")
    assert check["llm"]["accuracy"] == 0.0
    stub.reset_log()
    run_stage(monkeypatch, "structured")
    records = {r["id"]: r for r in read_jsonl(root / "data/judgements/structured.jsonl")}
    metrics = read_json(root / "metrics/eval_structured.json")
    assert records["bar-1"]["source"] == "gate"
    if check["llm"]["reliable"]:
        assert min_accuracy == 0.0
        assert [records[i]["source"] for i in ("bar-2", "line-1")] == ["llm", "llm"]
        assert len(stub.chat_requests) == 3
        return
    assert min_accuracy == 0.7 and stub.chat_requests == []
    for chart_id in ("bar-2", "line-1"):
        record = records[chart_id]
        assert (record["source"], record["outcome"], record["verdicts"]) == ("none", "tie", [])
        assert record["gate"]["outcome"] is None and record["expected_score"] == 0.5
    none = metrics["by_source"]["none"]
    assert (none["n"], none["ties"], metrics["by_source"]["llm"]["n"]) == (2, 2, 0)
    assert (metrics["n"], metrics["wins"], metrics["ties"]) == (3, 1, 2)


def test_a_held_out_chart_gets_the_reference_writers_essay(project, monkeypatch) -> None:
    root, stub = project
    charts = list(read_jsonl(root / "data/charts/charts.jsonl"))
    charts[2]["provenance"] = {**charts[2].get("provenance", {}), "held_out": True}
    write_jsonl(root / "data/charts/charts.jsonl", charts)
    essays = [e for e in read_jsonl(root / "data/essays/essays.jsonl") if e["id"] != "line-1"]
    write_jsonl(root / "data/essays/essays.jsonl", essays)
    run_check(monkeypatch)
    run_stage(monkeypatch, "structured")
    records = {r["id"]: r for r in read_jsonl(root / "data/judgements/structured.jsonl")}
    line = ChartRecord.model_validate(charts[2])
    assert records["line-1"]["reference_writer"] is True
    assert records["line-1"]["texts"]["teacher"] == render_structured(reference_essay(line, 0))
    assert records["bar-1"]["reference_writer"] is False
    metrics = read_json(root / "metrics/eval_structured.json")
    assert metrics["references"] == {"teacher": 2, "reference_writer": 1, "none": 0}


def test_stage_validates_variant_and_inputs(project, monkeypatch) -> None:
    root, stub = project
    with pytest.raises(InputError, match="judge.json not found"):
        run_stage(monkeypatch, "structured")
    run_check(monkeypatch)
    stub.reset_log()
    with pytest.raises(InputError, match="usage: python -m stages.judge <structured|unstructured>"):
        run_stage(monkeypatch, "plain")
    with pytest.raises(InputError, match="usage"):
        run_stage(monkeypatch)
    with pytest.raises(InputError, match="unstructured.jsonl not found"):
        run_stage(monkeypatch, "unstructured")
    (root / "data/predictions/structured.jsonl").write_text("")
    with pytest.raises(InputError, match="holds no test predictions"):
        run_stage(monkeypatch, "structured")
    assert stub.chat_requests == []
    assert not (root / "metrics/eval_structured.json").exists()


def test_stage_records_judge_failures_without_failing(project, monkeypatch, caplog) -> None:
    root, stub = project
    stub.reply = lambda body: "The chart data, the reference essay and the two essays are:"
    run_check(monkeypatch)
    run_stage(monkeypatch, "structured")
    metrics = read_json(root / "metrics/eval_structured.json")
    assert (metrics["n"], metrics["judge_failures"], metrics["charts"]) == (0, 3, 3)
    assert metrics["failure_reasons"] == {"no_json": 6}
    assert metrics["win_rate"] is None and metrics["win_rate_ci95"] is None
    brief = metrics["judge_check"]["llm"]
    assert brief["accuracy"] is None and not brief["reliable"]
    assert metrics["auto"]["finetuned"]["n"] == 3
    records = list(read_jsonl(root / "data/judgements/structured.jsonl"))
    assert all(r["outcome"] is None and "no_json" in r["error"] for r in records)
    assert "no chart got a usable verdict" in caplog.text


@pytest.mark.parametrize("stage", ["judge", "judge_check", "report", "datasets"])
def test_stage_mains_are_thin(stage: str) -> None:
    """Validate params, one library call, write the declared outs: 30 lines at most."""
    import ast

    tree = ast.parse((ROOT / "stages" / f"{stage}.py").read_text(encoding="utf-8"))
    [main] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert main.end_lineno is not None and main.end_lineno - main.lineno + 1 <= 30
