"""Typed access to params.yaml: each section loads into a model that rejects unknown keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

PARAMS_FILE = Path("params.yaml")


class Section(BaseModel):
    """Base for a params.yaml section: unknown keys are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


T = TypeVar("T", bound=Section)


class ParamsError(ValueError):
    """params.yaml is missing, malformed, or a section does not match its schema."""


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
    metrics: Path
    plots: Path
    prompts: Path


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
