"""The per-chart-type prompt file `prompts/<chart_type>.yaml`: checklist, focus, examples.

Each file is read and validated once per run (and again only if it changes on disk).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from chartdistill.data.records import CHART_TYPES, ChartRecord
from chartdistill.essay.sections import SECTIONS, render_structured
from chartdistill.prompts.render import PromptError, pydantic_problems


class ExampleSpec(BaseModel):
    """One Band 9 example as written in a chart type's YAML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    unit: str = ""
    columns: list[str]
    rows: list[list[Any]]
    sections: dict[str, str]

    @field_validator("sections")
    @classmethod
    def _four_sections(cls, sections: dict[str, str]) -> dict[str, str]:
        if list(sections) != list(SECTIONS):
            raise ValueError(f"sections must be exactly {list(SECTIONS)} in that order")
        empty = [name for name, text in sections.items() if not text.strip()]
        if empty:
            raise ValueError(f"empty sections: {empty}")
        return {name: " ".join(text.split()) for name, text in sections.items()}


class TypePrompt(BaseModel):
    """The contents of `prompts/<chart_type>.yaml`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    guidance: list[str]
    focus: dict[str, str]
    examples: list[ExampleSpec]

    @field_validator("focus")
    @classmethod
    def _focus_per_section(cls, focus: dict[str, str]) -> dict[str, str]:
        if set(focus) != set(SECTIONS):
            raise ValueError(f"focus needs exactly the keys {list(SECTIONS)}")
        return focus

    @field_validator("examples")
    @classmethod
    def _some_examples(cls, examples: list[ExampleSpec]) -> list[ExampleSpec]:
        if not examples:
            raise ValueError("at least one example is required")
        return examples


class Example(BaseModel):
    """A validated example: its chart (as a ChartRecord, so tables render like real charts)."""

    model_config = ConfigDict(frozen=True)

    chart: ChartRecord
    sections: dict[str, str]

    @property
    def essay(self) -> str:
        return render_structured(self.sections)


def load_type_prompt(prompts_dir: Path, chart_type: str) -> TypePrompt:
    """Load and validate `prompts/<chart_type>.yaml` (parsed once per run while unchanged)."""
    path = type_file(prompts_dir, chart_type)
    stat = path.stat()
    return _parse_type_prompt(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _parse_type_prompt(path: Path, _mtime_ns: int, _size: int) -> TypePrompt:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PromptError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return TypePrompt.model_validate(raw)
    except ValidationError as exc:
        raise PromptError(f"{path}: {pydantic_problems(exc)}") from exc


def load_examples(prompts_dir: Path, chart_type: str) -> list[Example]:
    """The Band 9 example essays (with their example charts) for one chart type."""
    path = type_file(prompts_dir, chart_type)
    spec = load_type_prompt(prompts_dir, chart_type)
    return [_example(path, chart_type, number, ex) for number, ex in enumerate(spec.examples, 1)]


def type_file(prompts_dir: Path, chart_type: str) -> Path:
    path = Path(prompts_dir) / f"{chart_type}.yaml"
    if chart_type not in CHART_TYPES or not path.is_file():
        available = sorted(p.name for p in Path(prompts_dir).glob("*.yaml"))
        raise PromptError(
            f"unknown chart type {chart_type!r}: no {path.name} among the prompt files in "
            f"{prompts_dir} (available: {', '.join(available) or 'none'}; "
            f"chart types: {', '.join(CHART_TYPES)})"
        )
    return path


def _example(path: Path, chart_type: str, number: int, spec: ExampleSpec) -> Example:
    try:
        chart = ChartRecord(
            id=f"{chart_type}-example-{number}",
            chart_type=chart_type,  # type: ignore[arg-type]  # checked by _type_file
            title=spec.title,
            unit=spec.unit,
            columns=spec.columns,
            rows=spec.rows,
            image="",
            source=str(path),
        )
    except ValidationError as exc:
        raise PromptError(f"{path}: example {number}: {pydantic_problems(exc)}") from exc
    return Example(chart=chart, sections=spec.sections)


def example_context(example: Example) -> dict[str, Any]:
    return {
        "title": example.chart.title,
        "unit": example.chart.unit,
        "table": example.chart.table_markdown(),
        "sections": example.sections,
        "essay": example.essay,
    }
