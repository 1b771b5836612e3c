"""The OCR hint reaches the student's prompt per row in training, and never its labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from chartdistill.prompts.student import StudentPrompt
from chartdistill.student.model import END_OF_UTTERANCE, load_student
from chartdistill.student.training import (
    IGNORE_INDEX,
    TrainParams,
    make_collator,
    run_fingerprint,
    sample_length,
)
from tests.test_student import chart_image, tiny_student_dir

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
pytestmark = pytest.mark.slow  # builds the tiny student (minutes on a loaded 2-core machine)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_student_dir(tmp_path_factory)


def rows() -> list[dict]:
    return [
        {
            "id": "a",
            "image": chart_image(),
            "text": "North led at 40.",
            "ocr_text": "Sales | North",
        },
        {"id": "b", "image": chart_image(), "text": "South was last.", "ocr_text": ""},
    ]


def test_collator_puts_each_rows_ocr_text_in_its_prompt(tiny_dir: Path) -> None:
    _, processor = load_student(tiny_dir)
    batch = make_collator(processor, StudentPrompt(PROMPTS, ocr_hint=True))(rows())
    decoded = [processor.tokenizer.decode(ids) for ids in batch["input_ids"]]
    assert "Sales | North" in decoded[0] and "Sales" not in decoded[1]
    for i, row in enumerate(rows()):
        kept = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX].tolist()
        assert processor.tokenizer.decode(kept).strip() == row["text"] + END_OF_UTTERANCE
    off = make_collator(processor, StudentPrompt(PROMPTS, ocr_hint=False))(rows())
    assert "Sales" not in processor.tokenizer.decode(off["input_ids"][0])
    with_hint, _ = sample_length(processor, StudentPrompt(PROMPTS, True), rows()[0])
    without, _ = sample_length(processor, StudentPrompt(PROMPTS, False), rows()[0])
    assert with_hint > without


def test_checkpoints_of_the_other_hint_setting_are_not_resumed(tiny_dir: Path) -> None:
    params = TrainParams()
    on = run_fingerprint(params, "data", tiny_dir, StudentPrompt(PROMPTS, True))
    off = run_fingerprint(params, "data", tiny_dir, StudentPrompt(PROMPTS, False))
    assert on != off
