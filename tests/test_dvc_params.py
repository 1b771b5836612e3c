"""Through DVC: params are declared at the granularity that changes outputs, and a bad key
fails `dvc repro` with the stage's one line (no traceback)."""

from __future__ import annotations

import json

import pytest

from harness.fake_teacher import reply
from harness.stub_server import StubServer
from tests.conftest import Project, point_llms_at

pytestmark = pytest.mark.slow


def _stale(project: Project, stage: str) -> dict:
    """`dvc status --json <stage>`: {} when the stage would not rerun."""
    return json.loads(project.run("dvc", "status", "--json", stage).stdout or "{}")


def test_operational_knobs_rerun_nothing_output_knobs_rerun_teach(tiny_project: Project) -> None:
    with StubServer(reply=reply) as stub:
        point_llms_at(tiny_project, stub)
        tiny_project.commit("teacher on the stub")
        tiny_project.run("dvc", "repro", "teach")
    assert _stale(tiny_project, "teach") == {}

    # concurrency, timeouts, retries, prices, the Batch API: they cannot change an essay
    # (a batch answers the same requests, under the same cache keys)
    batch = {"batch": True, "batch_wait": False, "batch_poll_interval_s": 5}
    tiny_project.set_params(
        {
            "teacher": {
                "llm": {"concurrency": 3, "timeout_s": 7, "max_retries": 1, **batch},
                "prices": {"input_per_mtok": 1.5, "batch_discount": 0.4},
            },
            "judge": {"llm": batch, "prices": {"output_per_mtok": 2.0}},
        }
    )
    assert _stale(tiny_project, "teach") == {}

    tiny_project.set_params({"teacher": {"temperature": 0.3}})
    status = _stale(tiny_project, "teach")
    assert "teach" in status and "teacher.temperature" in json.dumps(status), status


def test_bad_key_fails_dvc_repro_with_one_line(tiny_project: Project) -> None:
    tiny_project.set_params({"judge": {"both_order": True}})
    result = tiny_project.run("dvc", "repro", "charts", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if "judge.both_order" in line]
    assert lines == ["charts: params.yaml: judge.both_order: Extra inputs are not permitted"]
    assert not (tiny_project.root / "data" / "charts").exists()
