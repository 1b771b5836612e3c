"""The API key reaches the server and nothing else: no file the pipeline leaves holds it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from harness.fake_teacher import reply
from harness.stub_server import StubServer
from tests.conftest import Project

pytestmark = pytest.mark.slow

KEY_ENV = "CHARTDISTILL_TEST_SECRET_KEY"


def files_holding(root: Path, needles: list[bytes]) -> list[str]:
    """Every file under root (hidden folders, caches and databases included) whose bytes
    contain one of the needles."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            if any(needle in data for needle in needles):
                found.append(str(path.relative_to(root)))
    return found


@pytest.mark.parametrize("batch", [False, True], ids=["live", "batch"])
def test_api_key_reaches_the_server_but_no_file(tiny_project: Project, batch: bool) -> None:
    sentinel = f"sk-sentinel-{secrets.token_hex(16)}"
    tiny_project.env[KEY_ENV] = sentinel
    with StubServer(reply=reply) as stub:
        llm = {"base_url": stub.base_url, "model": "stub", "api_key_env": KEY_ENV}
        if batch:  # uploads, batches and result files: the Batch API path
            llm.update(batch=True, batch_poll_interval_s=0.05)
        tiny_project.set_params(
            {"teacher": {"llm": llm, "mode": "stepwise"}, "judge": {"llm": llm}}
        )
        tiny_project.commit("teacher and judge on the stub, key from the environment")
        tiny_project.run("dvc", "repro")
        tiny_project.commit("results")  # git objects are files under the repo too
        bodies = stub.batch_bodies if batch else [r.body for r in stub.chat_requests]
        seen = stub.requests
        assert bool(stub.batch_creates) == batch and bool(stub.chat_requests) != batch

    judge_calls = [b for b in bodies if "<essay_a>" in str(b["messages"])]
    assert len(bodies) > len(judge_calls) > 0  # the teacher and the judge both called
    assert {r.headers.get("authorization") for r in seen} == {f"Bearer {sentinel}"}

    root = tiny_project.root
    for expected in ("dvc.lock", ".dvc/cache", "mlflow.db", "metrics/teacher.json", "models"):
        assert (root / expected).exists(), expected  # the walk covers what the run wrote
    needles = [sentinel.encode(), sentinel.encode("utf-16-le")]
    assert files_holding(root, needles) == []
    # The check itself can fail: a file holding the key is found.
    (root / "data" / "leak.txt").write_text(f"key={sentinel}\n")
    assert files_holding(root, needles) == ["data/leak.txt"]
