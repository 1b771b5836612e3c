"""Stage `export@<variant>`: the LoRA merged into the base student, saved as a plain model.

The export is safetensors weights + config + generation config + processor (tokenizer, image
processor, chat template): it loads with ``AutoModelForImageTextToText.from_pretrained(dir)``
and ``AutoProcessor.from_pretrained(dir)`` alone, and `transformers serve dir` serves it.

It is checked, not assumed: the adapter model (base + unmerged LoRA) and the export reloaded from
disk write greedy essays for the same test charts in fp32; the texts and their automatic metrics
must be equal, or the export fails (:class:`ExportMismatch`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from chartdistill.config import Section
from chartdistill.student.generation import (
    GenerationParams,
    generate_essays,
    load_adapter_model,
)
from chartdistill.student.model import save_student

log = logging.getLogger(__name__)

CHECK_DTYPE = "float32"  # batched greedy text is reproducible in fp32, not in bf16


class ExportParams(Section):
    check_charts: int = Field(default=4, ge=4)  # test charts both models write essays for
    max_new_tokens: int = Field(default=64, ge=1)  # per check essay (greedy)


class ExportMismatch(RuntimeError):
    """The exported model does not write what the adapter model wrote."""


def merge(model: Any) -> Any:
    """The LoRA weights folded into the base weights; a plain transformers model again."""
    return model.merge_and_unload()


def load_export(out_dir: Path, dtype: str = CHECK_DTYPE) -> tuple[Any, Any]:
    """The export as any user loads it: the Auto classes, nothing from this project."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(out_dir, dtype=getattr(torch, dtype))
    return model.eval(), AutoProcessor.from_pretrained(out_dir)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def check_generation(params: ExportParams, batch_size: int) -> GenerationParams:
    """Plain greedy decoding (no repetition penalty): what a user of the export gets."""
    return GenerationParams(
        max_new_tokens=params.max_new_tokens,
        do_sample=False,
        repetition_penalty=1.0,
        batch_size=batch_size,
    )


def export_variant(
    base_dir: Path,
    adapter_dir: Path,
    out_dir: Path,
    rows: Sequence[dict[str, Any]],
    prompt: Callable[[dict[str, Any]], str],
    params: ExportParams,
    score: Callable[[str, dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """Merge, save to out_dir, and check on the first `check_charts` rows (id, image, ...).

    `score(text, row)` gives an essay's automatic metrics. Returns the export metrics; raises
    ExportMismatch (after saving) when an essay or its metrics differ.
    """
    rows = list(rows)[: params.check_charts]
    if len(rows) < params.check_charts:
        raise ExportMismatch(
            f"only {len(rows)} test charts to check the export on; export.check_charts is "
            f"{params.check_charts}"
        )
    began = time.perf_counter()
    images = [row["image"] for row in rows]
    prompts = [prompt(row) for row in rows]
    generation = check_generation(params, len(rows))

    adapter_model, processor = load_adapter_model(base_dir, adapter_dir, CHECK_DTYPE)
    adapter_texts = [
        e.text for e in generate_essays(adapter_model, processor, images, prompts, generation)
    ]
    save_student(merge(adapter_model), processor, out_dir)
    del adapter_model

    exported, exported_processor = load_export(out_dir)
    export_texts = [
        e.text for e in generate_essays(exported, exported_processor, images, prompts, generation)
    ]
    essays = []
    for row, adapter_text, export_text in zip(rows, adapter_texts, export_texts, strict=True):
        adapter_scores, export_scores = score(adapter_text, row), score(export_text, row)
        essays.append(
            {
                "id": row["id"],
                "same_text": adapter_text == export_text,
                "same_metrics": adapter_scores == export_scores,
                "adapter": adapter_text,
                "export": export_text,
                "metrics": adapter_scores,
            }
        )
    mismatched = [e["id"] for e in essays if not (e["same_text"] and e["same_metrics"])]
    metrics = {
        "size_bytes": folder_bytes(out_dir),
        "weights_bytes": sum(f.stat().st_size for f in out_dir.glob("*.safetensors")),
        "dtype": CHECK_DTYPE,
        "check_charts": len(rows),
        "max_new_tokens": params.max_new_tokens,
        "same_essays": sum(e["same_text"] for e in essays),
        "same_metrics": sum(e["same_metrics"] for e in essays),
        "equal": not mismatched,
        "seconds": round(time.perf_counter() - began, 1),
        "essays": essays,
    }
    log.info(
        "export %s: %d bytes; %d of %d check essays equal",
        out_dir,
        metrics["size_bytes"],
        metrics["same_essays"],
        len(rows),
    )
    if mismatched:
        raise ExportMismatch(
            f"{out_dir}: the exported model writes other essays (or metrics) than the adapter "
            f"model on {len(mismatched)} of {len(rows)} test charts ({', '.join(mismatched)})"
        )
    return metrics
