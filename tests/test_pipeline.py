"""End to end: `dvc repro` in a throwaway git repo on the tiny profile."""

import json

import pytest

from tests.conftest import Project

pytestmark = pytest.mark.slow


def test_repro_runs_every_stage_then_does_nothing(tiny_project: Project) -> None:
    tiny_project.run("dvc", "repro")
    charts = json.loads((tiny_project.root / "metrics/charts.json").read_text())
    assert charts["charts"] == 6 and charts["per_type"] == {"bar": 2, "line": 2, "pie": 1, "table": 1}

    second = tiny_project.run("dvc", "repro")
    assert "Data and pipelines are up to date" in second.stdout
    status = tiny_project.run("dvc", "status")
    assert "up to date" in status.stdout
