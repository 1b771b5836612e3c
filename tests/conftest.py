"""Shared fixtures: a throwaway copy of the project as its own git + DVC repo (harness.project)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.project import (  # noqa: F401  (re-exported for the tests)
    BIN,
    ROOT,
    TINY_PROFILE,
    Project,
    copy_project,
    point_llms_at,
)


@pytest.fixture
def tiny_project(tmp_path: Path) -> Project:
    project = copy_project(tmp_path / "repo")
    project.set_params(TINY_PROFILE)
    project.commit("tiny profile")
    return project
