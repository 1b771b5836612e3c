"""Render the teacher, judge and student prompts from the files under prompts/.

All prompt text lives in prompts/: Jinja2 templates (`*.md`, StrictUndefined) and one YAML file
per chart type (`bar.yaml`, ...) holding the analysis checklist, the per-section focus and the
Band 9 example essays. This module only loads, validates and fills them.

Chart titles, tables and essays are untrusted data: they are placed between tags such as
<chart_data> ... </chart_data>, and any tag-like text inside them that could close (or open) one
of those fences is neutralised first, so the data cannot escape its fence.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any, Literal

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from chartdistill.records import CHART_TYPES, ChartRecord
from chartdistill.sections import MARKERS, PURPOSE, SECTIONS, render_structured

Mode = Literal["single", "stepwise"]

# Files every teacher prompt reads, whatever the chart type (the type's YAML comes first).
TEACHER_FILES: tuple[str, ...] = (
    "teacher_system.md",
    "_chart.md",
    "_example.md",
    "essay.md",
    "section.md",
    "repair.md",
)
JUDGE_FILES: tuple[str, ...] = ("judge_system.md", "judge.md", "_chart.md")
STUDENT_FILE = "student.md"

# Every tag the templates use as a fence; data must never contain one of them verbatim.
FENCE_TAGS: tuple[str, ...] = (
    "chart_data",
    "example_chart",
    "example_essay",
    "example",
    "reference_essay",
    "essay_a",
    "essay_b",
    "analysis",
)
_FENCE_RE = re.compile(r"<(?=\s*/?\s*(?:" + "|".join(FENCE_TAGS) + r")\b)", re.IGNORECASE)

IMAGE_MIME: dict[str, str] = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
}


class PromptError(ValueError):
    """A prompt file is missing or malformed, or the inputs to a prompt are invalid."""


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


# --------------------------------------------------------------------------- files and types


def prompt_files(chart_type: str) -> list[str]:
    """The files (relative to the prompts folder) that a chart type's teacher prompt reads."""
    if chart_type not in CHART_TYPES:
        raise PromptError(
            f"unknown chart type {chart_type!r}: expected one of {', '.join(CHART_TYPES)}"
        )
    return [f"{chart_type}.yaml", *TEACHER_FILES]


def prompt_hash(prompts_dir: Path, chart_type: str) -> str:
    """sha256 over the names and bytes of the files a type's teacher prompt reads."""
    _type_file(prompts_dir, chart_type)
    digest = hashlib.sha256()
    for name in prompt_files(chart_type):
        path = Path(prompts_dir) / name
        if not path.is_file():
            raise PromptError(f"{path}: prompt file not found")
        data = path.read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def load_type_prompt(prompts_dir: Path, chart_type: str) -> TypePrompt:
    """Load and validate `prompts/<chart_type>.yaml`."""
    path = _type_file(prompts_dir, chart_type)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PromptError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return TypePrompt.model_validate(raw)
    except ValidationError as exc:
        raise PromptError(f"{path}: {_pydantic_problems(exc)}") from exc


def load_examples(prompts_dir: Path, chart_type: str) -> list[Example]:
    """The Band 9 example essays (with their example charts) for one chart type."""
    path = _type_file(prompts_dir, chart_type)
    spec = load_type_prompt(prompts_dir, chart_type)
    return [_example(path, chart_type, number, ex) for number, ex in enumerate(spec.examples, 1)]


def _type_file(prompts_dir: Path, chart_type: str) -> Path:
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
        raise PromptError(f"{path}: example {number}: {_pydantic_problems(exc)}") from exc
    return Example(chart=chart, sections=spec.sections)


def _pydantic_problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'file'}: {err['msg']}" for err in exc.errors()
    )


# --------------------------------------------------------------------------- rendering


def fence_safe(text: str) -> str:
    """Neutralise anything in untrusted text that looks like one of the prompt's fence tags."""
    return _FENCE_RE.sub("‹", text)


def _one_line(text: str) -> str:
    return fence_safe(" ".join(text.split()))


def chart_context(chart: ChartRecord, name: str) -> dict[str, str]:
    """The chart's fields as template values, whitespace-normalised and fence-safe."""
    return {
        "chart_type": name,
        "title": _one_line(chart.title),
        "unit": _one_line(chart.unit),
        "x_label": _one_line(chart.x_label),
        "y_label": _one_line(chart.y_label),
        "table": fence_safe(chart.table_markdown()),
    }


def _example_context(example: Example) -> dict[str, Any]:
    return {
        "title": example.chart.title,
        "unit": example.chart.unit,
        "table": example.chart.table_markdown(),
        "sections": example.sections,
        "essay": example.essay,
    }


def _environment(prompts_dir: Path) -> jinja2.Environment:
    if not Path(prompts_dir).is_dir():
        raise PromptError(f"{prompts_dir}: prompts folder not found")
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(prompts_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )


def render_template(prompts_dir: Path, template: str, **values: Any) -> str:
    """Render one template; a missing file or variable is an error naming the file."""
    env = _environment(prompts_dir)
    path = Path(prompts_dir) / template
    try:
        text = env.get_template(template).render(**values)
    except jinja2.TemplateNotFound as exc:
        raise PromptError(f"{Path(prompts_dir) / exc.name}: prompt template not found") from exc
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or str(path)
        raise PromptError(f"{where}:{exc.lineno}: template syntax error: {exc.message}") from exc
    except jinja2.UndefinedError as exc:
        raise PromptError(f"{path}: template variable missing: {exc.message}") from exc
    return text.strip()


def repair_codes(prompts_dir: Path) -> list[str]:
    """The validation reason codes that prompts/repair.md has a hint for."""
    env = _environment(prompts_dir)
    try:
        module = env.get_template("repair.md").make_module({"reasons": []})
    except jinja2.TemplateError as exc:
        raise PromptError(f"{Path(prompts_dir) / 'repair.md'}: {exc}") from exc
    hints = getattr(module, "hints", None)
    if not isinstance(hints, dict):
        raise PromptError(f"{Path(prompts_dir) / 'repair.md'}: must `set hints = {{...}}`")
    return list(hints)


def render_repair(prompts_dir: Path, reasons: list[str]) -> str:
    """The hint appended after a failed attempt; unknown reason codes are an error."""
    known = repair_codes(prompts_dir)
    unknown = [r for r in reasons if r not in known]
    if unknown:
        raise PromptError(
            f"{Path(prompts_dir) / 'repair.md'}: no hint for reason code(s) {unknown}; "
            f"known: {', '.join(known)}"
        )
    return render_template(prompts_dir, "repair.md", reasons=list(dict.fromkeys(reasons)))


def render_teacher_messages(
    prompts_dir: Path,
    chart: ChartRecord,
    mode: Mode,
    section: str | None = None,
    previous: dict[str, str] | None = None,
    repair_reasons: list[str] | None = None,
    image_data_url: str | None = None,
) -> list[dict[str, Any]]:
    """OpenAI chat messages asking the teacher for a whole essay or for one section.

    mode "single": one call, analysis in <analysis> tags, then the four marked sections.
    mode "stepwise": one call per `section`, given the sections written so far in `previous`;
    the type's examples come first as few-shot turns (user: example chart, assistant: that
    example's paragraph for the same section), which keeps a small teacher from copying them.
    With `image_data_url` the user content is a list: a text part and an image_url part.
    """
    prompts_dir = Path(prompts_dir)
    spec = load_type_prompt(prompts_dir, chart.chart_type)
    examples = load_examples(prompts_dir, chart.chart_type)
    values: dict[str, Any] = {
        "name": spec.name,
        "guidance": spec.guidance,
        "examples": [_example_context(ex) for ex in examples],
        "chart": chart_context(chart, spec.name),
        "sections": SECTIONS,
        "markers": MARKERS,
        "purpose": PURPOSE,
        "repair": render_repair(prompts_dir, repair_reasons) if repair_reasons else "",
    }
    if mode == "single":
        if section is not None or previous:
            raise PromptError(f"chart {chart.id}: mode 'single' takes no section or previous")
        user = render_template(prompts_dir, "essay.md", **values)
    elif mode == "stepwise":
        ordered = _check_stepwise(chart.id, section, previous)
        assert section is not None  # checked above
        step = {
            "section": section,
            "marker": MARKERS[section].rstrip(":"),
            "purpose": PURPOSE[section],
            "focus": spec.focus[section],
        }
        shots: list[dict[str, Any]] = []
        for example in examples:
            example_chart = chart_context(example.chart, spec.name)
            ask = {**values, **step, "chart": example_chart, "previous": {}, "repair": ""}
            shots += [
                {"role": "user", "content": render_template(prompts_dir, "section.md", **ask)},
                {"role": "assistant", "content": example.sections[section]},
            ]
        written = {name: fence_safe(text.strip()) for name, text in ordered.items()}
        user = render_template(prompts_dir, "section.md", **{**values, **step, "previous": written})
        system = render_template(prompts_dir, "teacher_system.md")
        return [{"role": "system", "content": system}, *shots, _user_message(user, image_data_url)]
    else:
        raise PromptError(f"chart {chart.id}: unknown mode {mode!r} (expected single|stepwise)")
    system = render_template(prompts_dir, "teacher_system.md")
    return [{"role": "system", "content": system}, _user_message(user, image_data_url)]


def _check_stepwise(
    chart_id: str, section: str | None, previous: dict[str, str] | None
) -> dict[str, str]:
    if section not in SECTIONS:
        raise PromptError(
            f"chart {chart_id}: mode 'stepwise' needs section in {list(SECTIONS)}, got {section!r}"
        )
    earlier = SECTIONS[: SECTIONS.index(section)]
    given = previous or {}
    wrong = [name for name in given if name not in earlier]
    if wrong:
        raise PromptError(
            f"chart {chart_id}: previous sections {wrong} do not come before {section!r} "
            f"(allowed: {list(earlier)})"
        )
    return {name: given[name] for name in earlier if name in given}


def _user_message(text: str, image_url: str | None) -> dict[str, Any]:
    if image_url is None:
        return {"role": "user", "content": text}
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": image_url}},
        ],
    }


def render_judge_messages(
    prompts_dir: Path, chart: ChartRecord, reference: str, essay_a: str, essay_b: str
) -> list[dict[str, Any]]:
    """OpenAI chat messages for a pairwise judgement of essays A and B (JSON reply)."""
    prompts_dir = Path(prompts_dir)
    name = load_type_prompt(prompts_dir, chart.chart_type).name
    user = render_template(
        prompts_dir,
        "judge.md",
        chart=chart_context(chart, name),
        reference=fence_safe(reference.strip()),
        essay_a=fence_safe(essay_a.strip()),
        essay_b=fence_safe(essay_b.strip()),
    )
    system = render_template(prompts_dir, "judge_system.md")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def render_student_prompt(prompts_dir: Path, title: str | None) -> str:
    """The instruction the student sees beside the chart image (same for both variants)."""
    clean = " ".join(title.split()) if title else ""
    return render_template(Path(prompts_dir), STUDENT_FILE, title=clean or None)


def image_data_url(path: Path) -> str:
    """A `data:` URL with the image's bytes in base64, for OpenAI image_url parts."""
    path = Path(path)
    mime = IMAGE_MIME.get(path.suffix.lower())
    if mime is None:
        raise PromptError(
            f"{path}: unsupported image type {path.suffix!r} (expected {', '.join(IMAGE_MIME)})"
        )
    if not path.is_file():
        raise PromptError(f"{path}: image file not found")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
