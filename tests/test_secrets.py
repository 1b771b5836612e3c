"""The API key reaches the server and nothing else: no file the pipeline leaves holds it.

Live: the session's tiny run (conftest `tiny_run_record`) ran every stage with the key in the
environment. Batch: a copy of that run asks again through the Batch API, in every stage whose
code includes the LLM client (the only code that reads the key or `llm.batch`)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.fake_teacher import reply
from harness.stub_server import RecordedRequest, StubServer
from tests.conftest import API_KEY_ENV, FinishedRun, Project

pytestmark = pytest.mark.slow

LLM_CLIENT = "chartdistill/llm"
CHAT = "/v1/chat/completions"


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


def llm_stages(root: Path) -> list[str]:
    """The stages whose deps include the LLM client, in dvc.yaml order (foreach expanded)."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    names = []
    for name, stage in stages.items():
        if LLM_CLIENT in stage.get("do", stage).get("deps", []):
            items = stage.get("foreach")
            names += [f"{name}@{item}" for item in items] if items else [name]
    return names


def assert_only_the_server_got_the_key(
    root: Path, key: str, bodies: list[Any], requests: list[RecordedRequest]
) -> None:
    judge_calls = [b for b in bodies if "<essay_a>" in str(b["messages"])]
    assert len(bodies) > len(judge_calls) > 0  # the teacher and the judge both called
    assert {r.headers.get("authorization") for r in requests} == {f"Bearer {key}"}

    for expected in ("dvc.lock", ".dvc/cache", "mlflow.db", "metrics/teacher.json", "models"):
        assert (root / expected).exists(), expected  # the walk covers what the run wrote
    needles = [key.encode(), key.encode("utf-16-le")]
    assert files_holding(root, needles) == []
    # The check itself can fail: a file holding the key is found.
    (root / "data" / "leak.txt").write_text(f"key={key}\n")
    assert files_holding(root, needles) == ["data/leak.txt"]


def test_api_key_reaches_the_server_but_no_file_live(
    tiny_run_record: FinishedRun, tiny_run: Project
) -> None:
    requests = list(tiny_run_record.requests)
    assert not any(r.path.startswith("/v1/batches") for r in requests)
    bodies = [r.body for r in requests if r.path.rstrip("/") == CHAT]
    assert_only_the_server_got_the_key(tiny_run.root, tiny_run_record.api_key, bodies, requests)


def test_api_key_reaches_the_server_but_no_file_batch(tiny_run: Project) -> None:
    sentinel = f"sk-sentinel-{secrets.token_hex(16)}"
    tiny_run.env[API_KEY_ENV] = sentinel
    stages = llm_stages(tiny_run.root)
    assert {"teach", "judge_check", "judge@structured", "judge@unstructured"} <= set(stages)
    with StubServer(reply=reply) as stub:
        llm = {"base_url": stub.base_url, "model": "stub", "api_key_env": API_KEY_ENV}
        llm.update(batch=True, batch_poll_interval_s=0.05)  # uploads, batches, result files
        tiny_run.set_params({"teacher": {"llm": llm}, "judge": {"llm": llm}})
        tiny_run.commit("teacher and judge on the stub's Batch API, key from the environment")
        out = tiny_run.run("dvc", "repro", "--single-item", *stages).stdout
        tiny_run.commit("results")  # git objects are files under the repo too
        bodies = stub.batch_bodies
        seen = stub.requests
        assert stub.batch_creates and not stub.chat_requests

    assert all(f"Running stage '{name}'" in out for name in stages), out
    assert_only_the_server_got_the_key(tiny_run.root, sentinel, bodies, seen)
