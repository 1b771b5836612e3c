"""Shared fixtures: a throwaway copy of the project as its own git + DVC repo (harness.project)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
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
from harness.stub_server import StubServer


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


@pytest.fixture(scope="session")
def tiny_run_root(tmp_path_factory: pytest.TempPathFactory, session_stub: StubServer) -> Path:
    """The tiny profile run end to end once per session (`dvc repro`, teacher and judge on the
    stub), its results committed: tests that start from a finished run copy it (tiny_run)."""
    project = copy_project(tmp_path_factory.mktemp("tiny-run") / "repo")
    project.set_params(TINY_PROFILE)
    point_llms_at(project, session_stub)
    project.commit("tiny profile, teacher and judge on the stub")
    project.run("dvc", "repro")
    project.commit("pipeline run")
    return project.root


@pytest.fixture
def tiny_run(tiny_run_root: Path, tmp_path: Path) -> Project:
    """A private copy of the session's finished tiny run: outputs, DVC cache and git history."""
    dest = tmp_path / "run"
    shutil.copytree(tiny_run_root, dest, symlinks=True)
    return Project(dest)
