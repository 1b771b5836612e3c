"""End to end: `dvc repro` in a throwaway git repo on the tiny profile, teacher on a stub.

The run itself happens once per session (conftest `tiny_run_root`); each test works on its own
copy of the finished run (`tiny_run`)."""

import json

import pytest

from harness.stub_server import StubServer
from tests.conftest import Project

pytestmark = pytest.mark.slow


def _metrics(project: Project, name: str) -> dict:
    return json.loads((project.root / "metrics" / f"{name}.json").read_text())


def test_repro_runs_every_stage_then_does_nothing(
    tiny_run: Project, session_stub: StubServer
) -> None:
    charts = _metrics(tiny_run, "charts")
    assert charts["charts"] == 8 and charts["per_type"] == {
        "bar": 2,
        "line": 2,
        "pie": 2,
        "table": 2,
    }
    teacher = _metrics(tiny_run, "teacher")  # the two held-out charts are not taught
    assert teacher["accepted"] == 6 and teacher["requests"] == 6 * 4
    datasets = _metrics(tiny_run, "datasets")
    assert datasets["kept"] == 8 and datasets["per_split"]["test"] == 2 + 2
    assert datasets["test_without_reference"] == 2
    for variant in ("structured", "unstructured"):
        train = _metrics(tiny_run, f"train_{variant}")
        assert train["steps"] == 2 and train["eval_loss"] > 0
        evaluation = _metrics(tiny_run, f"eval_{variant}")
        # the two held-out charts are judged against the reference writer's essay
        assert evaluation["n"] == 4 and evaluation["references"]["reference_writer"] == 2
        by_source = evaluation["by_source"]
        assert sum(source["n"] for source in by_source.values()) == 4
        if not evaluation["judge_check"]["llm"]["reliable"]:  # flagged by the audit: not asked
            assert by_source["llm"]["n"] == 0
        assert evaluation["wins"] + evaluation["ties"] + evaluation["losses"] == 4
        assert (tiny_run.root / f"plots/eval_{variant}.csv").read_text().startswith("chart_type")
        assert (tiny_run.root / "models" / variant / "adapter_config.json").exists()
        export = _metrics(tiny_run, f"export_{variant}")  # merged, checked on 4 test charts
        assert export["equal"] and export["check_charts"] == 4 and export["size_bytes"] > 0
        assert (tiny_run.root / "models" / "export" / variant / "model.safetensors").exists()

    sent = len(session_stub.chat_requests)
    second = tiny_run.run("dvc", "repro")
    assert "Data and pipelines are up to date" in second.stdout
    assert len(session_stub.chat_requests) == sent
    assert "up to date" in tiny_run.run("dvc", "status").stdout


def test_prompt_edit_requests_only_that_type(tiny_run: Project, session_stub: StubServer) -> None:
    session_stub.reset_log()
    prompt = tiny_run.root / "prompts/pie.yaml"
    text = prompt.read_text()
    assert "  - title: " in text  # every section's prompt shows the example titles
    prompt.write_text(text.replace("  - title: ", "  - title: Revised ", 1))
    tiny_run.run("dvc", "repro", "teach")
    teacher_calls = [r for r in session_stub.chat_requests if "<essay_a>" not in str(r.body)]
    assert len(teacher_calls) == 1 * 4  # one pie chart, four sections
    assert _metrics(tiny_run, "teacher")["cache_hits"] == 5 * 4


def test_datasets_param_change_does_not_rerun_teach(tiny_run: Project) -> None:
    tiny_run.set_params({"datasets": {"split_salt": "another"}})
    out = tiny_run.run("dvc", "repro", "datasets").stdout
    assert "Running stage 'datasets'" in out
    assert "Running stage 'teach'" not in out and "Running stage 'charts'" not in out


def test_metrics_diff_between_branches(tiny_run: Project) -> None:
    tiny_run.run("git", "checkout", "-q", "-b", "more-steps")
    tiny_run.set_params({"train": {"max_steps": 3}})
    out = tiny_run.run("dvc", "repro", "train").stdout  # both variants; the diff needs no more
    assert "Running stage 'teach'" not in out and "Running stage 'train@structured'" in out
    tiny_run.commit("three training steps")

    diff = tiny_run.run("dvc", "metrics", "diff", "main", "--json").stdout
    changes = json.loads(diff)
    steps = changes["metrics/train_structured.json"]["steps"]
    assert (steps["old"], steps["new"]) == (2, 3)
    assert "metrics/charts.json" not in changes  # unchanged metrics stay out of the diff
    table = tiny_run.run("dvc", "metrics", "diff", "main").stdout
    assert "metrics/train_unstructured.json" in table and "steps" in table
