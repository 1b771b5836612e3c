"""The ocr stage's library: reading order, the image/table check, the per-image cache, hints."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import chartdistill.ocr as ocr
from chartdistill.data.records import Reject
from chartdistill.data.synthetic import make_chart, render_png
from chartdistill.io import write_jsonl
from chartdistill.ocr import (
    OcrCheck,
    OcrLine,
    OcrParams,
    OcrRecord,
    check_chart,
    drop_mismatched,
    label_recall,
    run_ocr,
    title_recall,
)
from chartdistill.ocr_hint import ocr_hint
from chartdistill.prompts.student import StudentPrompt, render_student_prompt

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"


def line(
    text: str, x: float, y: float, w: float = 40, h: float = 10, score: float = 0.99
) -> OcrLine:
    return OcrLine(text=text, score=score, box=[[x, y], [x + w, y], [x + w, y + h], [x, y + h]])


def bar_chart() -> Any:
    return make_chart(random.Random("ocr:bar:1"), "bar", "b1")


def test_title_and_label_recall() -> None:
    chart = bar_chart()
    labels = [str(r[0]) for r in chart.rows]
    full = [
        line(chart.title, 0, 0, w=400),
        *(line(lab, 50 * i, 300) for i, lab in enumerate(labels)),
    ]
    assert title_recall(chart, full) == 1.0
    assert label_recall(chart, full) == 1.0
    half = [line(" ".join(chart.title.split()[:2]), 0, 0), line(labels[0], 0, 300)]
    assert title_recall(chart, half) < 0.6
    assert 0 < label_recall(chart, half) < 0.5


def test_check_rejects_with_a_reason() -> None:
    chart = bar_chart()
    check = OcrCheck()
    ok = OcrRecord(id="b1", image_sha256="x", title_recall=0.9, label_recall=1.0)
    assert check_chart(chart, ok, check) is None
    title = check_chart(chart, ok.model_copy(update={"title_recall": 0.2}), check)
    assert title is not None and title.reason == "ocr_title_missing"
    labels = check_chart(chart, ok.model_copy(update={"label_recall": 0.25}), check)
    assert labels is not None and labels.reason == "ocr_labels_missing"
    failed = check_chart(chart, ok.model_copy(update={"error": "boom"}), check)
    assert failed is not None and failed.reason == "ocr_failed"


class FakeEngine:
    """Reads back the chart's own title and labels, or a foreign chart's for `swap`."""

    def __init__(self, texts: dict[str, list[str]]) -> None:
        self.texts = texts
        self.calls: list[str] = []

    def read(self, path: Path) -> list[OcrLine]:
        self.calls.append(Path(path).name)
        return [line(t, 10, 20 * i) for i, t in enumerate(self.texts[Path(path).name])]


def test_run_ocr_caches_per_image_and_rejects_a_mismatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = bar_chart()
    other = make_chart(random.Random("ocr:line:2"), "line", "l2")
    for chart in (own, other):
        (tmp_path / chart.image).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / chart.image).write_bytes(chart.id.encode())
    texts = {
        "b1.png": [own.title, *(str(r[0]) for r in own.rows)],
        "l2.png": ["Something else entirely", "A", "B"],  # l2's image shows another chart
    }
    engine = FakeEngine(texts)
    monkeypatch.setattr(ocr, "make_engine", lambda params: engine)
    monkeypatch.setattr(ocr, "read_lines", lambda eng, path: eng.read(path))
    params = OcrParams()
    records, rejects, metrics = run_ocr([own, other], tmp_path, tmp_path / "cache", params)
    assert [r.id for r in records] == ["b1", "l2"]
    assert [r.reason for r in rejects] == ["ocr_title_missing"]
    assert metrics["fresh"] == 2 and metrics["cache_hits"] == 0 and metrics["rejected"] == 1

    again, _, metrics = run_ocr([own, other], tmp_path, tmp_path / "cache", params)
    assert engine.calls == ["b1.png", "l2.png"]  # nothing read twice
    assert metrics["cache_hits"] == 2 and [r.lines for r in again] == [r.lines for r in records]

    (tmp_path / own.image).write_bytes(b"changed")  # a changed image is read again
    run_ocr([own, other], tmp_path, tmp_path / "cache", params)
    assert engine.calls == ["b1.png", "l2.png", "b1.png"]
    run_ocr([own], tmp_path, tmp_path / "cache", OcrParams(limit_side_len=448))  # new settings
    assert engine.calls[-1] == "b1.png" and len(engine.calls) == 4


def test_unreadable_image_is_a_reject(tmp_path: Path) -> None:
    chart = bar_chart()
    records, rejects, _ = run_ocr([chart], tmp_path, tmp_path / "cache", OcrParams())
    assert records[0].error and rejects[0].reason == "ocr_failed"


def test_drop_mismatched(tmp_path: Path) -> None:
    path = tmp_path / "rejects.jsonl"
    write_jsonl(path, [Reject(item="b", reason="ocr_labels_missing").model_dump()])
    items = [bar_chart(), bar_chart().model_copy(update={"id": "b"})]
    kept, dropped = drop_mismatched(items, path)
    assert [i.id for i in kept] == ["b1"] and [r.item for r in dropped] == ["b"]


def test_student_prompt_carries_the_hint_only_when_on() -> None:
    row = {"ocr_text": "Sales in 2020 | North | South </chart_data>"}
    on = StudentPrompt(PROMPTS, ocr_hint=True)(row)
    off = StudentPrompt(PROMPTS, ocr_hint=False)(row)
    assert "Sales in 2020 | North | South" in on and "</chart_data>" not in on
    assert off == render_student_prompt(PROMPTS, None) and "North" not in off
    assert StudentPrompt(PROMPTS, ocr_hint=True)({"ocr_text": ""}) == off
    assert StudentPrompt(PROMPTS, True).fingerprint() != StudentPrompt(PROMPTS, False).fingerprint()


@pytest.mark.slow
def test_real_ocr_reads_a_rendered_chart(tmp_path: Path) -> None:
    """PP-OCR on one rendered bar chart with value labels: title, labels and values are read,
    the hint puts each value beside its own label; the same image paired with another chart's
    table is rejected."""
    chart = bar_chart()
    (tmp_path / "images").mkdir()
    (tmp_path / chart.image).write_bytes(render_png(chart, 448, 336, value_labels=True))
    params = OcrParams(limit_type="max", limit_side_len=640)
    records, rejects, _ = run_ocr([chart], tmp_path, tmp_path / "cache", params)
    assert rejects == [] and records[0].title_recall == 1.0 and records[0].label_recall >= 0.75
    hint = ocr_hint(records[0], 600)
    items = hint.split(" | ")
    pairs = [f"{row[0]}: {row[1]:g}" for row in chart.rows]  # grouped: the first series first
    paired = [p for p in pairs if any(i == p or i.startswith(f"{p}, ") for i in items)]
    assert len(paired) >= 0.75 * len(pairs), (hint, pairs)
    wrong = make_chart(random.Random("ocr:pie:3"), "pie", "p3").model_copy(
        update={"image": chart.image}
    )
    _, rejects, metrics = run_ocr([wrong], tmp_path, tmp_path / "cache", params)
    assert metrics["cache_hits"] == 1 and rejects and rejects[0].reason.startswith("ocr_")
