"""The teacher's prompt: system message, few-shot turns and the ask, from files in prompts/."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import jinja2

from chartdistill.data.records import CHART_TYPES, ChartRecord
from chartdistill.essay.sections import MARKERS, PURPOSE, SECTIONS
from chartdistill.prompts.chart_types import (
    example_context,
    load_examples,
    load_type_prompt,
    type_file,
)
from chartdistill.prompts.render import (
    PromptError,
    chart_context,
    environment,
    fence_safe,
    render_template,
    user_message,
)
from chartdistill.teacher.facts import chart_facts

Mode = Literal["single", "stepwise"]

# Files every teacher prompt reads, whatever the chart type (the type's YAML comes first).
TEACHER_FILES: tuple[str, ...] = (
    "teacher_system.md",
    "_chart.md",
    "_example.md",
    "essay.md",
    "section.md",
    "repair.md",
    "facts.md",
    "repair_sentence.md",
)


def prompt_files(chart_type: str) -> list[str]:
    """The files (relative to the prompts folder) that a chart type's teacher prompt reads."""
    if chart_type not in CHART_TYPES:
        raise PromptError(
            f"unknown chart type {chart_type!r}: expected one of {', '.join(CHART_TYPES)}"
        )
    return [f"{chart_type}.yaml", *TEACHER_FILES]


def prompt_hash(prompts_dir: Path, chart_type: str) -> str:
    """sha256 over the names and bytes of the files a type's teacher prompt reads."""
    type_file(prompts_dir, chart_type)
    digest = hashlib.sha256()
    for name in prompt_files(chart_type):
        path = Path(prompts_dir) / name
        if not path.is_file():
            raise PromptError(f"{path}: prompt file not found")
        data = path.read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def repair_codes(prompts_dir: Path) -> list[str]:
    """The validation reason codes that prompts/repair.md has a hint for."""
    env = environment(Path(prompts_dir))
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
    fact_sheet: bool = True,
) -> list[dict[str, Any]]:
    """OpenAI chat messages asking the teacher for a whole essay or for one section.

    mode "single": one call, analysis in <analysis> tags, then the four marked sections.
    mode "stepwise": one call per `section`, given the sections written so far in `previous`;
    the type's examples come first as few-shot turns (user: example chart, assistant: that
    example's paragraph for the same section), which keeps a small teacher from copying them.
    With `image_data_url` the user content is a list: a text part and an image_url part.
    With `fact_sheet` every chart (the examples' too) comes with its key facts (facts.md).
    """
    prompts_dir = Path(prompts_dir)
    spec = load_type_prompt(prompts_dir, chart.chart_type)
    examples = load_examples(prompts_dir, chart.chart_type)
    values: dict[str, Any] = {
        "name": spec.name,
        "guidance": spec.guidance,
        "examples": [example_context(ex) for ex in examples],
        "chart": chart_context(chart, spec.name),
        "facts": fact_lines(chart) if fact_sheet else [],
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
            facts = fact_lines(example.chart) if fact_sheet else []
            ask = {**values, **step, "chart": example_chart, "facts": facts}
            ask.update(previous={}, repair="")
            shots += [
                {"role": "user", "content": render_template(prompts_dir, "section.md", **ask)},
                {"role": "assistant", "content": example.sections[section]},
            ]
        written = {name: fence_safe(text.strip()) for name, text in ordered.items()}
        user = render_template(prompts_dir, "section.md", **{**values, **step, "previous": written})
        system = render_template(prompts_dir, "teacher_system.md")
        return [{"role": "system", "content": system}, *shots, user_message(user, image_data_url)]
    else:
        raise PromptError(f"chart {chart.id}: unknown mode {mode!r} (expected single|stepwise)")
    system = render_template(prompts_dir, "teacher_system.md")
    return [{"role": "system", "content": system}, user_message(user, image_data_url)]


def fact_lines(chart: ChartRecord) -> list[str]:
    """The chart's key facts for facts.md, fence-safe (labels come from untrusted data)."""
    return [fence_safe(fact) for fact in chart_facts(chart)]


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


def render_sentence_repair(
    prompts_dir: Path,
    chart: ChartRecord,
    paragraph: str,
    sentence: str,
    reasons: list[str],
    details: list[str],
) -> list[dict[str, Any]]:
    """Messages asking the teacher to rewrite one faulty sentence of a paragraph, alone."""
    prompts_dir = Path(prompts_dir)
    spec = load_type_prompt(prompts_dir, chart.chart_type)
    user = render_template(
        prompts_dir,
        "repair_sentence.md",
        name=spec.name,
        chart=chart_context(chart, spec.name),
        facts=fact_lines(chart),
        paragraph=fence_safe(paragraph),
        sentence=fence_safe(sentence),
        reasons=reasons,
        details=[fence_safe(d) for d in details],
    )
    system = render_template(prompts_dir, "teacher_system.md")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
