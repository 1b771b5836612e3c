"""The instruction the student sees beside the chart image."""

from __future__ import annotations

from pathlib import Path

from chartdistill.prompts.render import render_template

STUDENT_FILE = "student.md"


def render_student_prompt(prompts_dir: Path, title: str | None) -> str:
    """The instruction the student sees beside the chart image (same for both variants)."""
    clean = " ".join(title.split()) if title else ""
    return render_template(Path(prompts_dir), STUDENT_FILE, title=clean or None)
