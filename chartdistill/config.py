"""Typed access to params.yaml: each section loads into a model that rejects unknown keys.

`validate_params` checks the whole file against one root model (every section in `SECTIONS`)
before a stage does any work, so a typo anywhere fails at once, naming the key.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

PARAMS_FILE = Path("params.yaml")


class Section(BaseModel):
    """Base for a params.yaml section: unknown keys are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


T = TypeVar("T", bound=Section)


class ParamsError(ValueError):
    """params.yaml is missing, malformed, or a section does not match its schema."""


class InputError(ValueError):
    """An input the user points at (a folder or file named in params.yaml) is missing or not
    what it should be: a stage reports it on one line, naming the path or key."""


class PathsParams(Section):
    charts: Path
    teacher_cache: Path
    essays: Path
    datasets: Path
    base_model: Path
    models: Path
    checkpoints: Path
    predictions: Path
    judge_cache: Path
    judgements: Path
    ocr: Path
    ocr_cache: Path
    metrics: Path
    plots: Path
    prompts: Path
    reports: Path
    exports: Path


def read_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    if not path.exists():
        raise ParamsError(f"{path}: not found (run from the project root)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    return data


def parse_section(name: str, model: type[T], raw: Any) -> T:
    """Validate one section's raw mapping, naming the section and key on error."""
    if raw is None:
        raise ParamsError(f"params.yaml: section '{name}' is missing")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{name}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ParamsError(f"params.yaml: {problems}") from exc


def load_section(name: str, model: type[T], path: Path = PARAMS_FILE) -> T:
    return parse_section(name, model, read_params(path).get(name))


def load_paths(path: Path = PARAMS_FILE) -> PathsParams:
    return load_section("paths", PathsParams, path)


# Every params.yaml section and its schema as "module:Class"; a new section is one line here.
# Named, not imported: a stage validates all sections, but only the code it runs is a DVC dep
# of that stage (tests/test_dvc_deps.py follows imports), so validating `judge` in `charts`
# does not make `charts` rerun when the judge code changes.
SECTIONS: dict[str, str] = {
    "paths": "chartdistill.config:PathsParams",
    "charts": "chartdistill.data.synthetic:ChartsParams",
    "teacher": "chartdistill.teacher.writer:TeacherParams",
    "datasets": "chartdistill.dataset.build:DatasetsParams",
    "student": "chartdistill.student.model:StudentParams",
    "train": "chartdistill.student.training:TrainParams",
    "predict": "chartdistill.student.predict:PredictParams",
    "judge": "chartdistill.evaluation.judge:JudgeParams",
    "evaluation": "chartdistill.evaluation.summary:EvaluationParams",
    "report": "chartdistill.report.build:ReportParams",
    "ocr": "chartdistill.ocr:OcrParams",
    "export": "chartdistill.student.export:ExportParams",
}


def section_model(name: str) -> type[Section]:
    """The schema class of one params.yaml section (imported on demand)."""
    module, _, cls = SECTIONS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def root_model() -> type[Section]:
    """One model over the whole file: each section required, unknown sections rejected."""
    fields: dict[str, Any] = {name: (section_model(name), ...) for name in SECTIONS}
    return create_model("Params", __base__=Section, **fields)


def validate_params(path: Path = PARAMS_FILE) -> Section:
    """Validate all of params.yaml; ParamsError names each bad key (dotted) and why, on one line."""
    raw = read_params(path)
    try:
        return root_model().model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(f"{path}: {_problems(exc)}") from exc


def _problems(exc: ValidationError) -> str:
    out = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        message = (
            "section is missing"
            if err["type"] == "missing" and len(err["loc"]) == 1
            else err["msg"]
        )
        out.append(f"{key}: {message}")
    return "; ".join(out)
