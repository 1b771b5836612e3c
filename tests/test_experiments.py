"""DVC experiments on the tiny profile: one run in the workspace, one through the queue.

Both change only a datasets param, so the teacher is not asked again: charts and teach come
from the cache and only `datasets` reruns. An experiment that trains (on a copy of the session's
finished run, conftest `tiny_run`) tags its MLflow runs with its name and baseline commit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.fake_teacher import reply
from harness.stub_server import StubServer
from tests.conftest import Project, point_llms_at

pytestmark = pytest.mark.slow

PARAM = "datasets.near_duplicate_threshold"
# Experiments run up to this stage (`dvc exp run datasets`): training is exercised by the
# MLflow test below, the later stages by tests/test_pipeline.py.
STAGE = "datasets"


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with StubServer(reply=reply) as server:
        yield server


def _rows(node: Any) -> Iterator[dict[str, Any]]:
    """Every row of `dvc exp show --json` (the baseline and its experiments), whatever nesting."""
    if isinstance(node, list):
        for item in node:
            yield from _rows(item)
    elif isinstance(node, dict):
        if "rev" in node and isinstance(node.get("data"), dict):
            yield node
        for key in ("experiments", "revs"):
            if node.get(key):
                yield from _rows(node[key])


def _metric_files(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    metrics = row["data"].get("metrics") or {}
    return {path: entry.get("data", {}) for path, entry in metrics.items()}


def _param(row: dict[str, Any]) -> Any:
    params = row["data"]["params"]["params.yaml"]["data"]
    return params["datasets"]["near_duplicate_threshold"]


def _wait_for_queue(project: Project, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = project.run("dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            assert "Failed" not in status, status
            return
        time.sleep(2)
    logs = project.run("dvc", "queue", "logs", "queued-09", check=False)
    raise AssertionError(f"queue did not finish in {timeout_s} s:\n{status}\n{logs.stdout}")


def test_two_experiments_show_their_metrics(tiny_project: Project, stub: StubServer) -> None:
    point_llms_at(tiny_project, stub)
    tiny_project.run("dvc", "repro", STAGE)
    tiny_project.commit("baseline run")
    sent = len(stub.chat_requests)

    exp = ("dvc", "exp", "run", STAGE)
    run = tiny_project.run(*exp, "-n", "workspace-07", "-S", f"{PARAM}=0.7")
    assert "Running stage 'datasets'" in run.stdout
    assert "Running stage 'teach'" not in run.stdout and "Running stage 'charts'" not in run.stdout
    tiny_project.run(*exp, "--queue", "-n", "queued-09", "-S", f"{PARAM}=0.9")
    tiny_project.run("dvc", "queue", "start")
    _wait_for_queue(tiny_project)
    assert len(stub.chat_requests) == sent  # neither experiment asked the teacher again

    shown = json.loads(tiny_project.run("dvc", "exp", "show", "--json").stdout)
    rows = {row.get("name") or row["rev"]: row for row in _rows(shown)}
    assert {"workspace-07", "queued-09"} <= set(rows), sorted(rows)
    assert _param(rows["workspace-07"]) == 0.7 and _param(rows["queued-09"]) == 0.9
    # Every metrics file the baseline run wrote has values in each experiment's row (files of
    # stages that have not run are listed empty).
    written = {f"metrics/{p.name}" for p in (tiny_project.root / "metrics").glob("*.json")}
    assert {"metrics/charts.json", "metrics/teacher.json", "metrics/datasets.json"} <= written
    for name in ("workspace-07", "queued-09"):
        files = _metric_files(rows[name])
        assert {path for path, data in files.items() if data} >= written, files
        assert files["metrics/datasets.json"]["kept"] > 0


def test_training_runs_are_tagged_with_the_dvc_experiment(
    tiny_run: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dvc exp show` row -> MLflow run: by the dvc_exp_name tag, at the baseline's commit.

    The experiment starts from the session's finished run and changes a training param, so
    only the two training stages (the ones that log to MLflow) run again."""
    stages = yaml.safe_load((tiny_run.root / "dvc.yaml").read_text())["stages"]
    assert "train" in stages, "dvc.yaml has no train stage: nothing would log to MLflow"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tiny_run.env["MLFLOW_TRACKING_URI"] = tracking
    baseline = tiny_run.run("git", "rev-parse", "HEAD").stdout.strip()
    run = tiny_run.run("dvc", "exp", "run", "train", "-n", "tagged", "-S", "train.max_steps=3")
    assert "Running stage 'train@structured'" in run.stdout
    assert "Running stage 'train@unstructured'" in run.stdout

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string="tags.dvc_exp_name = 'tagged'")
    assert runs, "no MLflow run is tagged dvc_exp_name=tagged"
    assert {run.data.tags.get("git_commit") for run in runs} == {baseline}
    logged = set()
    for path in (tiny_run.root / "metrics").glob("*.json"):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("mlflow_run_id"):
            logged.add(data["mlflow_run_id"])
    assert logged and logged <= {run.info.run_id for run in runs}, logged
