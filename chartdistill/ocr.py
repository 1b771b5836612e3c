"""Text read from chart images with PP-OCR (rapidocr + onnxruntime, models ship in the wheel).

One pass per chart image, cached by content (image bytes + the OCR settings), so a rerun reads
only new or changed charts. Each result keeps every text line with its box and score. From it,
`check_chart` tells whether the image shows its own title and category labels; a chart whose
image does not match its table is rejected with a reason (`ocr_title_missing`,
`ocr_labels_missing`, or `ocr_failed` when the image cannot be read). The student's hint is
made from the same lines in chartdistill/ocr_hint.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from chartdistill.config import Section
from chartdistill.data.records import ChartRecord, Reject
from chartdistill.io import atomic_write_text, read_jsonl

log = logging.getLogger(__name__)

T = TypeVar("T")
HintLayout = Literal["paired", "reading_order"]  # the student's hint (ocr_hint.py)

_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")


class OcrCheck(Section):
    """How much of a chart's own text its image must show (fractions of words / labels)."""

    min_title_recall: float = Field(default=0.6, ge=0, le=1)
    min_label_recall: float = Field(default=0.5, ge=0, le=1)


class OcrParams(Section):
    # Detection input size: "max" shrinks an image whose longest side exceeds limit_side_len and
    # leaves smaller ones alone; "min" scales the shortest side up or down to it (rapidocr's
    # default, min/736, upscales a 448x336 chart to 981x736). Measured on 4 synthetic charts
    # (bench/ocr_settings.py): max/640 read as much as min/736 (title 1.0, labels 0.958, printed
    # values 1.0 vs 0.917) in 7.7 s instead of 10.3 s per chart on a loaded 2-core machine.
    limit_type: Literal["min", "max"] = "max"
    limit_side_len: int = Field(default=640, ge=32)
    use_cls: bool = False  # text direction classifier (chart text is upright; rotated y labels
    # are read by the recogniser anyway)
    min_score: float = Field(default=0.5, ge=0, le=1)
    threads: int = Field(default=2, ge=1)
    hint_max_chars: int = Field(default=600, ge=0)  # the student's OCR hint, cut at an item
    hint_layout: HintLayout = "paired"
    check: OcrCheck = OcrCheck()

    def engine_settings(self) -> dict[str, Any]:
        """The settings that change what is read (part of the cache key)."""
        return {
            "engine": "rapidocr==3.10.0",
            "limit_type": self.limit_type,
            "limit_side_len": self.limit_side_len,
            "use_cls": self.use_cls,
            "min_score": self.min_score,
        }


class OcrLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    score: float
    box: list[list[float]]  # four [x, y] corners, clockwise from top-left, in image pixels


class OcrRecord(BaseModel):
    """What OCR read in one chart image."""

    model_config = ConfigDict(extra="forbid")

    id: str
    image_sha256: str
    lines: list[OcrLine] = []
    seconds: float = 0.0
    cached: bool = False
    error: str | None = None
    title_recall: float | None = None
    label_recall: float | None = None


def make_engine(params: OcrParams) -> Any:
    """A rapidocr engine with the settings in params (imported here: optional dependency)."""
    try:
        from rapidocr import RapidOCR
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "the ocr stage needs `rapidocr==3.10.0` and `onnxruntime` (requirements.txt)"
        ) from exc
    return RapidOCR(
        params={
            "Global.use_cls": params.use_cls,
            "Global.text_score": params.min_score,
            "Global.log_level": "warning",
            "Det.limit_type": params.limit_type,
            "Det.limit_side_len": params.limit_side_len,
            "EngineConfig.onnxruntime.intra_op_num_threads": params.threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
    )


def read_lines(engine: Any, image: Path) -> list[OcrLine]:
    """Every text line OCR finds in the image, with its box and score."""
    result = engine(str(image))
    if result is None or result.txts is None:
        return []
    return [
        OcrLine(
            text=str(text),
            score=round(float(score), 4),
            box=[[round(float(x), 1), round(float(y), 1)] for x, y in box],
        )
        for text, score, box in zip(result.txts, result.scores, result.boxes, strict=True)
    ]


def words(text: str) -> list[str]:
    """Lower-case words and numbers, for comparing OCR text with a chart's own text."""
    return _WORD.findall(text.lower().replace(",", ""))


def title_recall(chart: ChartRecord, lines: list[OcrLine]) -> float:
    """Fraction of the title's words that OCR read anywhere in the image."""
    wanted = words(chart.title)
    if not wanted:
        return 1.0
    seen = Counter(w for line in lines for w in words(line.text))
    found = 0
    for word, count in Counter(wanted).items():
        found += min(count, seen[word])
    return found / len(wanted)


def label_recall(chart: ChartRecord, lines: list[OcrLine]) -> float:
    """Fraction of the category labels (and series names shown in a legend) read in the image.

    A label counts when all its words appear in one OCR line, or it is the whole line.
    """
    labels = [str(row[0]) for row in chart.rows]
    if len(chart.series) > 1:
        labels += chart.series
    texts = [set(words(line.text)) for line in lines]
    wanted = [set(words(label)) for label in labels if words(label)]
    if not wanted:
        return 1.0
    found = sum(1 for label in wanted if any(label <= text for text in texts))
    return found / len(wanted)


def check_chart(chart: ChartRecord, record: OcrRecord, check: OcrCheck) -> Reject | None:
    """None when the image shows its own title and labels, else a reject with the reason."""
    if record.error is not None:
        return Reject(item=chart.id, reason="ocr_failed", detail=record.error)
    if record.title_recall is not None and record.title_recall < check.min_title_recall:
        return Reject(
            item=chart.id,
            reason="ocr_title_missing",
            detail=f"{record.title_recall:.0%} of the title's words read "
            f"(< {check.min_title_recall:.0%}): {chart.title!r}",
        )
    if record.label_recall is not None and record.label_recall < check.min_label_recall:
        return Reject(
            item=chart.id,
            reason="ocr_labels_missing",
            detail=f"{record.label_recall:.0%} of the category labels read "
            f"(< {check.min_label_recall:.0%})",
        )
    return None


def cache_key(image_bytes: bytes, params: OcrParams) -> str:
    digest = hashlib.sha256(image_bytes)
    digest.update(json.dumps(params.engine_settings(), sort_keys=True).encode())
    return digest.hexdigest()


def run_ocr(
    charts: list[ChartRecord], charts_dir: Path, cache_dir: Path, params: OcrParams
) -> tuple[list[OcrRecord], list[Reject], dict[str, Any]]:
    """OCR for every chart (cached per image and settings), the check, and the stage metrics."""
    engine = None
    records: list[OcrRecord] = []
    rejects: list[Reject] = []
    fresh_seconds: list[float] = []
    for chart in tqdm(charts, desc="ocr", unit="chart"):
        path = Path(charts_dir) / chart.image
        try:
            data = path.read_bytes()
        except OSError as exc:
            record = OcrRecord(id=chart.id, image_sha256="", error=f"unreadable image: {exc}")
        else:
            sha = hashlib.sha256(data).hexdigest()
            cached = Path(cache_dir) / f"{cache_key(data, params)}.json"
            if cached.is_file():
                record = OcrRecord.model_validate_json(cached.read_text(encoding="utf-8"))
                record = record.model_copy(update={"id": chart.id, "cached": True})
            else:
                if engine is None:
                    engine = make_engine(params)
                start = time.perf_counter()
                try:
                    lines = read_lines(engine, path)
                    error = None
                except Exception as exc:  # one unreadable image must not sink the stage
                    lines, error = [], f"{type(exc).__name__}: {exc}"
                seconds = round(time.perf_counter() - start, 3)
                fresh_seconds.append(seconds)
                record = OcrRecord(
                    id=chart.id, image_sha256=sha, lines=lines, seconds=seconds, error=error
                )
                if error is None:
                    atomic_write_text(cached, record.model_dump_json())
            if record.error is None:
                record = record.model_copy(
                    update={
                        "title_recall": round(title_recall(chart, record.lines), 4),
                        "label_recall": round(label_recall(chart, record.lines), 4),
                    }
                )
        records.append(record)
        reject = check_chart(chart, record, params.check)
        if reject is not None:
            log.warning("chart %s rejected: %s (%s)", chart.id, reject.reason, reject.detail)
            rejects.append(reject)
    return records, rejects, ocr_metrics(records, rejects, fresh_seconds)


def ocr_metrics(
    records: list[OcrRecord], rejects: list[Reject], fresh_seconds: list[float]
) -> dict[str, Any]:
    read = [r for r in records if r.error is None]

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    return {
        "charts": len(records),
        "read": len(read),
        "fresh": len(fresh_seconds),
        "cache_hits": sum(r.cached for r in records),
        "seconds_per_fresh_chart": mean(fresh_seconds),
        "lines_per_chart": mean([float(len(r.lines)) for r in read]),
        "mean_score": mean([line.score for r in read for line in r.lines]),
        "title_recall": mean([r.title_recall for r in read if r.title_recall is not None]),
        "label_recall": mean([r.label_recall for r in read if r.label_recall is not None]),
        "rejected": len(rejects),
        "rejected_by_reason": dict(sorted(Counter(r.reason for r in rejects).items())),
    }


def load_ocr(path: Path) -> dict[str, OcrRecord]:
    """OCR records by chart id, from the stage's ocr.jsonl."""
    return {row["id"]: OcrRecord.model_validate(row) for row in read_jsonl(path)}


def drop_mismatched(items: list[T], rejects_path: Path) -> tuple[list[T], list[Reject]]:
    """The items (anything with an `id`) whose chart passed the image/table check, and the
    check's rejects for those that did not."""
    rejected = {row["item"]: Reject.model_validate(row) for row in read_jsonl(rejects_path)}
    kept = [item for item in items if item.id not in rejected]
    return kept, [rejected[item.id] for item in items if item.id in rejected]
