"""Per-type teacher figures in metrics/teacher.json, and `dvc metrics diff` after a prompt edit."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from chartdistill.data.records import EssayRecord
from chartdistill.data.synthetic import make_chart
from chartdistill.essay.text import EssayBounds
from chartdistill.teacher.figures import teacher_figures
from harness.fake_teacher import _user_text, reply
from harness.stub_server import StubServer
from tests.conftest import Project, point_llms_at


def essay(chart_id: str, chart_type: str, status: str, body: str) -> EssayRecord:
    sections = {"introduction": "x", "features_1": body, "features_2": "y", "overview": "z"}
    return EssayRecord(
        id=chart_id,
        chart_type=chart_type,
        prompt_hash="h",
        model="m",
        mode="stepwise",
        status=status,
        sections=sections,
    )


def test_teacher_figures_per_type() -> None:
    bar = make_chart(random.Random("f:bar"), "bar", "b")
    pie = make_chart(random.Random("f:pie"), "pie", "p")
    label, value = bar.rows[0][0], bar.rows[0][1]
    right = f"{label} stood at {value}."
    wrong = f"{label} stood at 98765."
    essays = [
        essay("b", "bar", "accepted", right),
        essay("p", "pie", "accepted", f"{pie.rows[0][0]} made up 98765%."),
        essay("b2", "bar", "rejected", wrong),
    ]
    bar2 = bar.model_copy(update={"id": "b2"})
    figures = teacher_figures(essays, [bar, pie, bar2], EssayBounds(tolerance=0.02))
    assert set(figures["per_type"]) == {"bar", "pie"}
    assert figures["per_type"]["bar"]["charts"] == 2
    assert figures["per_type"]["bar"]["accepted"] == 1
    assert figures["per_type"]["bar"]["grounded_fraction"] == 1.0
    assert figures["per_type"]["pie"]["grounded_fraction"] == 0.0
    assert figures["all"]["acceptance_rate"] == round(2 / 3, 4)


# A teacher that invents figures when its prompt says so: editing one type's prompt file to say
# so must move that type's figures only.
CUE = "Round every figure up to 98765."


def cued_reply(body: dict[str, Any]) -> str:
    text = reply(body)
    if CUE in _user_text(body) and "Write ONLY" in _user_text(body):
        return f"{text} The total came to 98765 units in the end."
    return text


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with StubServer(reply=cued_reply) as server:
        yield server


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
        return out
    return {prefix: node}


@pytest.mark.slow
def test_prompt_edit_moves_only_its_type(tiny_project: Project, stub: StubServer) -> None:
    point_llms_at(tiny_project, stub)
    tiny_project.run("dvc", "repro", "teach")
    tiny_project.commit("teacher run")
    line = tiny_project.root / "prompts" / "line.yaml"
    text = line.read_text()
    assert "focus:\n  introduction: " in text
    line.write_text(text.replace("  features_1: ", f"  features_1: {CUE} ", 1))
    tiny_project.run("dvc", "repro", "teach")
    diff = json.loads(tiny_project.run("dvc", "metrics", "diff", "--json").stdout)
    changed = {
        key
        for key, change in _flatten(diff.get("metrics/teacher.json", {})).items()
        if key.endswith(".diff") and change not in (0, None)
    }
    moved = {k for k in changed if k.startswith("figures.per_type.")}
    assert any(k.startswith("figures.per_type.line.") for k in moved), diff
    assert all(k.startswith("figures.per_type.line.") for k in moved), moved
