"""Shared fixtures: a throwaway copy of the project as its own git + DVC repo (harness.project)."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.fake_teacher import reply
from harness.project import (  # noqa: F401  (re-exported for the tests)
    BIN,
    ROOT,
    TINY_PROFILE,
    Project,
    copy_project,
    point_llms_at,
)
from harness.stub_server import RecordedRequest, StubServer

# The environment variable the shared tiny run reads its LLM API key from.
API_KEY_ENV = "CHARTDISTILL_TEST_SECRET_KEY"


@pytest.fixture
def tiny_project(tmp_path: Path) -> Project:
    project = copy_project(tmp_path / "repo")
    project.set_params(TINY_PROFILE)
    project.commit("tiny profile")
    return project


@pytest.fixture(scope="session")
def session_stub() -> Iterator[StubServer]:
    """One stub teacher and judge for the whole session (the shared tiny run talks to it)."""
    with StubServer(reply=reply) as server:
        yield server


@dataclass(frozen=True)
class FinishedRun:
    """The session's tiny run: its folder, the API key its LLM calls carried and every request
    the stub received during it."""

    root: Path
    api_key: str
    requests: tuple[RecordedRequest, ...]


@pytest.fixture(scope="session")
def tiny_run_record(
    tmp_path_factory: pytest.TempPathFactory, session_stub: StubServer
) -> FinishedRun:
    """The tiny profile run end to end once per session (`dvc repro`, teacher and judge on the
    stub, the API key from the environment as for a real endpoint), its results committed:
    tests that start from a finished run copy it (tiny_run)."""
    api_key = f"sk-sentinel-{secrets.token_hex(16)}"
    project = copy_project(tmp_path_factory.mktemp("tiny-run") / "repo")
    project.env[API_KEY_ENV] = api_key
    project.set_params(TINY_PROFILE)
    point_llms_at(project, session_stub, api_key_env=API_KEY_ENV)
    project.commit("tiny profile, teacher and judge on the stub")
    already_seen = len(session_stub.requests)
    project.run("dvc", "repro")
    project.commit("pipeline run")
    return FinishedRun(project.root, api_key, tuple(session_stub.requests[already_seen:]))


@pytest.fixture(scope="session")
def tiny_run_root(tiny_run_record: FinishedRun) -> Path:
    return tiny_run_record.root


@pytest.fixture
def tiny_run(tiny_run_root: Path, tmp_path: Path) -> Project:
    """A private copy of the session's finished tiny run: outputs, DVC cache and git history."""
    dest = tmp_path / "run"
    shutil.copytree(tiny_run_root, dest, symlinks=True)
    return Project(dest)
