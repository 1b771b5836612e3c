"""The instruction the student sees beside the chart image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chartdistill.prompts.render import fence_safe, render_template

STUDENT_FILE = "student.md"
# The dataset column that holds the OCR text of a chart, in reading order (datasets stage).
OCR_COLUMN = "ocr_text"


def render_student_prompt(prompts_dir: Path, title: str | None, ocr_text: str | None = None) -> str:
    """The instruction the student sees beside the chart image (same for both variants).

    `ocr_text`: the text read in the image (the OCR hint); left out when empty or None.
    """
    clean = " ".join(title.split()) if title else ""
    hint = fence_safe(" ".join(ocr_text.split())) if ocr_text else ""
    return render_template(
        Path(prompts_dir), STUDENT_FILE, title=clean or None, ocr_text=hint or None
    )


@dataclass(frozen=True)
class StudentPrompt:
    """The student's prompt for one dataset row: the same instruction for every row, plus the
    row's OCR text when `ocr_hint` is on. Training and prediction call it alike."""

    prompts_dir: Path
    ocr_hint: bool

    def __call__(self, row: dict[str, Any]) -> str:
        text = row.get(OCR_COLUMN) if self.ocr_hint else None
        return render_student_prompt(self.prompts_dir, None, text or None)

    def fingerprint(self) -> str:
        """What a checkpoint must match: the prompt file and whether the hint is given."""
        template = (Path(self.prompts_dir) / STUDENT_FILE).read_text(encoding="utf-8")
        return f"{template}\0ocr_hint={self.ocr_hint}"


def prompt_for(prompt: str | StudentPrompt, row: dict[str, Any]) -> str:
    """A fixed prompt string, or the row's prompt."""
    return prompt(row) if callable(prompt) else prompt
