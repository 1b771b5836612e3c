"""End to end: `dvc repro` in a throwaway git repo on the tiny profile, teacher on a stub."""

import json

import pytest

from harness.fake_teacher import reply
from harness.stub_server import StubServer
from tests.conftest import Project, point_llms_at

pytestmark = pytest.mark.slow


@pytest.fixture
def stub():
    with StubServer(reply=reply) as server:
        yield server


def _use_stub(project: Project, stub: StubServer) -> None:
    point_llms_at(project, stub)
    project.commit("teacher on the stub")


def _metrics(project: Project, name: str) -> dict:
    return json.loads((project.root / "metrics" / f"{name}.json").read_text())


def test_repro_runs_every_stage_then_does_nothing(tiny_project: Project, stub) -> None:
    _use_stub(tiny_project, stub)
    tiny_project.run("dvc", "repro")
    charts = _metrics(tiny_project, "charts")
    assert charts["charts"] == 8 and charts["per_type"] == {
        "bar": 2,
        "line": 2,
        "pie": 2,
        "table": 2,
    }
    teacher = _metrics(tiny_project, "teacher")  # the two held-out charts are not taught
    assert teacher["accepted"] == 6 and teacher["requests"] == 6 * 4
    datasets = _metrics(tiny_project, "datasets")
    assert datasets["kept"] == 8 and datasets["per_split"]["test"] == 2 + 2
    assert datasets["test_without_reference"] == 2
    for variant in ("structured", "unstructured"):
        train = _metrics(tiny_project, f"train_{variant}")
        assert train["steps"] == 2 and train["eval_loss"] > 0
        evaluation = _metrics(tiny_project, f"eval_{variant}")
        # the two held-out charts are judged against the reference writer's essay
        assert evaluation["n"] == 4 and evaluation["references"]["reference_writer"] == 2
        by_source = evaluation["by_source"]
        assert by_source["gate"]["n"] + by_source["llm"]["n"] == 4
        assert evaluation["wins"] + evaluation["ties"] + evaluation["losses"] == 4
        assert (
            (tiny_project.root / f"plots/eval_{variant}.csv").read_text().startswith("chart_type")
        )
        assert (tiny_project.root / "models" / variant / "adapter_config.json").exists()

    sent = len(stub.chat_requests)
    second = tiny_project.run("dvc", "repro")
    assert "Data and pipelines are up to date" in second.stdout
    assert len(stub.chat_requests) == sent
    assert "up to date" in tiny_project.run("dvc", "status").stdout


def test_prompt_edit_requests_only_that_type(tiny_project: Project, stub) -> None:
    _use_stub(tiny_project, stub)
    tiny_project.run("dvc", "repro")
    stub.reset_log()
    prompt = tiny_project.root / "prompts/pie.yaml"
    text = prompt.read_text()
    assert "  - title: " in text  # every section's prompt shows the example titles
    prompt.write_text(text.replace("  - title: ", "  - title: Revised ", 1))
    tiny_project.run("dvc", "repro")
    assert len(stub.chat_requests) == 1 * 4  # one pie chart, four sections
    assert _metrics(tiny_project, "teacher")["cache_hits"] == 5 * 4


def test_datasets_param_change_does_not_rerun_teach(tiny_project: Project, stub) -> None:
    _use_stub(tiny_project, stub)
    tiny_project.run("dvc", "repro")
    tiny_project.commit("first run")
    tiny_project.set_params({"datasets": {"split_salt": "another"}})
    out = tiny_project.run("dvc", "repro").stdout
    assert "Running stage 'datasets'" in out
    assert "Running stage 'teach'" not in out and "Running stage 'charts'" not in out


def test_metrics_diff_between_branches(tiny_project: Project, stub) -> None:
    _use_stub(tiny_project, stub)
    tiny_project.run("dvc", "repro")
    tiny_project.commit("baseline results")
    tiny_project.run("git", "checkout", "-q", "-b", "more-steps")
    tiny_project.set_params({"train": {"max_steps": 3}})
    out = tiny_project.run("dvc", "repro").stdout
    assert "Running stage 'teach'" not in out and "Running stage 'train@structured'" in out
    tiny_project.commit("three training steps")

    diff = tiny_project.run("dvc", "metrics", "diff", "main", "--json").stdout
    changes = json.loads(diff)
    steps = changes["metrics/train_structured.json"]["steps"]
    assert (steps["old"], steps["new"]) == (2, 3)
    assert "metrics/charts.json" not in changes  # unchanged metrics stay out of the diff
    table = tiny_project.run("dvc", "metrics", "diff", "main").stdout
    assert "metrics/train_unstructured.json" in table and "steps" in table
