"""Fill the prompt files under prompts/: one cached Jinja environment per folder, fence-safe data.

Chart titles, tables and essays are untrusted data: they are placed between tags such as
<chart_data> ... </chart_data>, and any tag-like text inside them that could close (or open) one
of those fences is neutralised first, so the data cannot escape its fence. Which files a role
reads is named in that role's module (teacher, judge, student, chart_types), so the stages that
read them can declare exactly those files.
"""

from __future__ import annotations

import base64
import functools
import re
from pathlib import Path
from typing import Any

import jinja2
from pydantic import ValidationError

from chartdistill.data.records import ChartRecord

# Every tag the templates use as a fence; data must never contain one of them verbatim.
FENCE_TAGS: tuple[str, ...] = (
    "chart_data",
    "chart_facts",
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


def pydantic_problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'file'}: {err['msg']}" for err in exc.errors()
    )


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


@functools.lru_cache(maxsize=8)
def environment(prompts_dir: Path) -> jinja2.Environment:
    """One environment per folder and run: Jinja re-reads a template only when it changes."""
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
    env = environment(Path(prompts_dir))
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


def user_message(text: str, image_url: str | None) -> dict[str, Any]:
    if image_url is None:
        return {"role": "user", "content": text}
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": image_url}},
        ],
    }


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
