"""One validated config: the root model covers params.yaml, code defaults agree with it, and a
stage fails on a bad key, value or input with one line on stderr (no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chartdistill.config import (
    SECTIONS,
    ParamsError,
    Section,
    root_model,
    section_model,
    validate_params,
)

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


def raw_params() -> dict[str, Any]:
    return yaml.safe_load(PARAMS.read_text(encoding="utf-8"))


def test_every_section_of_params_yaml_has_a_schema() -> None:
    assert set(raw_params()) == set(SECTIONS)
    params = validate_params(PARAMS)
    assert set(type(params).model_fields) == set(SECTIONS)


@pytest.mark.parametrize(
    ("edit", "names"),
    [
        (lambda p: p["judge"]["llm"].update(concurency=4), "judge.llm.concurency"),
        (lambda p: p["train"].update(num_train_epochs="two"), "train.num_train_epochs"),
        (lambda p: p.update(extras={"a": 1}), "extras"),
        (lambda p: p.pop("evaluation"), "evaluation: section is missing"),
    ],
)
def test_root_model_names_the_bad_key(tmp_path: Path, edit: Any, names: str) -> None:
    params = raw_params()
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    with pytest.raises(ParamsError, match=names.replace(".", r"\.")) as info:
        validate_params(path)
    assert "\n" not in str(info.value)


def _contradictions(
    model: type[Section], value: Section, raw: dict[str, Any], default: Section | None, key: str
) -> Iterator[str]:
    """Keys whose value in params.yaml differs from the code default (when there is one)."""
    for name, raw_value in raw.items():
        field = model.model_fields[name]
        got = getattr(value, name)
        if default is not None:
            expected, has_default = getattr(default, name), True
        elif field.is_required():
            expected, has_default = None, False
        else:
            expected, has_default = field.get_default(call_default_factory=True), True
        if isinstance(got, Section):
            inner = expected if has_default and isinstance(expected, Section) else None
            yield from _contradictions(type(got), got, raw_value or {}, inner, f"{key}{name}.")
        elif has_default and expected != got:
            yield f"{key}{name}: params.yaml {got!r}, code default {expected!r}"


def test_no_code_default_contradicts_params_yaml() -> None:
    raw = raw_params()
    params = validate_params(PARAMS)
    found = [
        problem
        for name in SECTIONS
        for problem in _contradictions(
            section_model(name), getattr(params, name), raw[name], None, f"{name}."
        )
    ]
    assert found == []


def test_the_contradiction_check_can_fail() -> None:
    raw = raw_params()
    raw["teacher"]["max_tokens"] += 1
    raw["teacher"]["llm"]["embedded"]["batch_size"] += 1
    params = root_model().model_validate(raw)
    model = section_model("teacher")
    found = list(_contradictions(model, params.teacher, raw["teacher"], None, "teacher."))
    assert [f.split(":")[0] for f in found] == [
        "teacher.llm.embedded.batch_size",
        "teacher.max_tokens",
    ]


def run_stage(cwd: Path, stage: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "CHARTDISTILL_LOG"}
    environ.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [sys.executable, "-m", f"stages.{stage}"],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_params(tmp_path: Path, old: str, new: str) -> None:
    text = PARAMS.read_text(encoding="utf-8")
    assert text.count(old) == 1
    (tmp_path / "params.yaml").write_text(text.replace(old, new), encoding="utf-8")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("  seed: 1234", "  sed: 1234", "charts: params.yaml: charts.sed: Extra inputs"),
        ("  width: 448", "  width: wide", "charts: params.yaml: charts.width: Input should be"),
        # a typo in a later stage's section fails the first stage, before any work
        ("  both_orders: true", "  both_order: true", "judge.both_order: Extra inputs"),
    ],
)
def test_a_bad_param_fails_the_stage_with_one_line(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    write_params(tmp_path, old, new)
    result = run_stage(tmp_path, "charts")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr
    assert not (tmp_path / "data").exists()  # failed before any work


def test_a_missing_input_fails_the_stage_with_one_line(tmp_path: Path) -> None:
    write_params(tmp_path, "paths:\n", "paths:\n")
    result = run_stage(tmp_path, "teach")
    assert result.returncode != 0
    assert result.stderr == "teach: data/charts/charts.jsonl: No such file or directory\n"


def test_debug_log_level_shows_the_traceback(tmp_path: Path) -> None:
    write_params(tmp_path, "  seed: 1234", "  sed: 1234")
    result = run_stage(tmp_path, "charts", CHARTDISTILL_LOG="DEBUG")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "charts.sed" in result.stderr
