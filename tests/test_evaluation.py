"""Evaluation: inputs, automatic metric means, the eval metrics file with Wilson intervals, and
the `judge` stage end to end against a stub judge server."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from chartdistill.config import ParamsError, parse_section
from chartdistill.data.records import ChartRecord, EssayRecord, save_records
from chartdistill.essay.sections import render_structured, render_unstructured
from chartdistill.essay.text import EssayBounds
from chartdistill.evaluation.judge import OrderVerdict, PairJudgement
from chartdistill.evaluation.summary import (
    EvaluationParams,
    Prediction,
    automatic_metrics,
    eval_summary,
    load_predictions,
    match_inputs,
    mean_metrics,
    outcome_stats,
    win_rate_plot_rows,
    write_csv,
)
from chartdistill.io import read_json, read_jsonl, write_jsonl
from tests.fake_teacher import judge_reply
from tests.stub_server import StubServer
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


# --------------------------------------------------------------------------- wilson, summary


def test_win_tie_loss_with_wilson_intervals() -> None:
    outcomes = ["finetuned"] * 6 + ["tie"] * 2 + ["baseline"] * 2 + [None]
    stats = outcome_stats([judgement(i, o) for i, o in enumerate(outcomes)])
    assert (stats["charts"], stats["n"], stats["judge_failures"]) == (11, 10, 1)
    assert (stats["wins"], stats["ties"], stats["losses"]) == (6, 2, 2)
    assert (stats["win_rate"], stats["tie_rate"], stats["loss_rate"]) == (0.6, 0.2, 0.2)
    # Wilson 95 % for 6/10 and for (6 + 0.5 * 2)/10, worked by hand.
    assert stats["win_rate_ci95"] == {"low": 0.3127, "high": 0.8318}
    assert stats["score"] == 0.7
    assert stats["score_ci95"] == {"low": 0.3968, "high": 0.8922}


def test_no_usable_verdicts_gives_an_uninformative_interval() -> None:
    stats = outcome_stats([judgement(1, None)])
    assert stats["n"] == 0 and stats["win_rate"] == 0.0
    assert stats["win_rate_ci95"] == {"low": 0.0, "high": 1.0}


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
    assert line["win_rate"] == 0.6667 and line["win_rate_ci95"] == {"low": 0.2077, "high": 0.9385}
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
        "order_disagreement_rate": 1.0,
    }


def test_plot_csv(tmp_path: Path) -> None:
    path = tmp_path / "plots" / "eval.csv"
    write_csv(path, [{"chart_type": "bar", "win_rate": 0.5, "tie_rate": 0.25, "loss_rate": 0.25}])
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
        params |= {
            "paths": {
                "charts": "data/charts",
                "teacher_cache": "data/teacher_cache",
                "essays": "data/essays",
                "datasets": "data/datasets",
                "base_model": "models/base",
                "models": "models",
                "checkpoints": "checkpoints",
                "predictions": "data/predictions",
                "judge_cache": "data/judge_cache",
                "judgements": "data/judgements",
                "metrics": "metrics",
                "plots": "plots",
                "prompts": "prompts",
            },
            "judge": {
                "llm": {
                    "base_url": stub.base_url,
                    "model": "stub-judge",
                    "max_retries": 0,
                    "api_key_env": "CHARTDISTILL_TEST_KEY",
                },
                "max_tokens": 200,
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


def test_stage_writes_judgements_metrics_and_plot(project, monkeypatch) -> None:
    root, stub = project
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
    assert metrics["score"] == round(2.5 / 3, 4)
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
    assert read_json(root / "metrics/eval_structured.json") == metrics


def test_stage_validates_variant_and_inputs(project, monkeypatch) -> None:
    root, stub = project
    with pytest.raises(SystemExit, match="usage: python -m stages.judge <structured|unstructured>"):
        run_stage(monkeypatch, "plain")
    with pytest.raises(SystemExit, match="usage"):
        run_stage(monkeypatch)
    with pytest.raises(SystemExit, match="unstructured.jsonl not found"):
        run_stage(monkeypatch, "unstructured")
    (root / "data/predictions/structured.jsonl").write_text("")
    with pytest.raises(SystemExit, match="holds no test predictions"):
        run_stage(monkeypatch, "structured")
    assert stub.chat_requests == []
    assert not (root / "metrics").exists()


def test_stage_records_judge_failures_without_failing(project, monkeypatch, caplog) -> None:
    root, stub = project
    stub.reply = lambda body: "The chart data, the reference essay and the two essays are:"
    run_stage(monkeypatch, "structured")
    metrics = read_json(root / "metrics/eval_structured.json")
    assert (metrics["n"], metrics["judge_failures"], metrics["charts"]) == (0, 3, 3)
    assert metrics["win_rate_ci95"] == {"low": 0.0, "high": 1.0}
    assert metrics["auto"]["finetuned"]["n"] == 3
    records = list(read_jsonl(root / "data/judgements/structured.jsonl"))
    assert all(r["outcome"] is None and "no_json" in r["error"] for r in records)
    assert "no chart got a usable verdict" in caplog.text
