"""Student predictions on the test charts: the base student, or base + a variant's adapter."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from chartdistill.config import Section
from chartdistill.device import DtypeName, resolve_dtype_name
from chartdistill.student.generation import GenerationParams, generate_essays, load_for_inference

log = logging.getLogger(__name__)

MODELS = ("baseline", "structured", "unstructured")


class PredictParams(Section):
    dtype: DtypeName = "float32"  # reproducible; auto: bfloat16 where native (params.yaml)
    limit: int | None = Field(default=None, ge=1)  # first N test charts only (None: all)
    generation: GenerationParams = GenerationParams()


def check_model_name(name: str) -> str:
    if name not in MODELS:
        raise SystemExit(f"predict: unknown model '{name}' (expected one of {', '.join(MODELS)})")
    return name


def load_test_split(path: Path, limit: int | None) -> list[dict[str, Any]]:
    """The test rows (id, chart_type, title, image as PIL) of a dataset variant."""
    import pyarrow.parquet as pq
    from PIL import Image

    if not path.exists():
        raise FileNotFoundError(f"{path}: test split not found (run the datasets stage)")
    wanted = ["id", "chart_type", "title", "image", "ocr_text"]  # ocr_text: the OCR hint
    names = set(pq.read_schema(path).names)
    rows = pq.read_table(path, columns=[c for c in wanted if c in names]).to_pylist()
    rows = rows[:limit] if limit else rows
    for row in rows:
        try:
            row["image"] = Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB")
        except Exception as exc:
            raise ValueError(f"{path}: item {row['id']}: image cannot be decoded: {exc}") from exc
    return rows


def predict(
    rows: list[dict[str, Any]],
    base_dir: Path,
    adapter_dir: Path | None,
    prompt: str | Callable[[dict[str, Any]], str],
    params: PredictParams,
    model_name: str,
) -> list[dict[str, Any]]:
    """One essay per test chart: {id, chart_type, text, seconds, prompt_tokens, new_tokens,
    model, dtype}."""
    if not rows:
        return []
    dtype = resolve_dtype_name(params.dtype)
    model, processor = load_for_inference(base_dir, adapter_dir, dtype)
    outputs = generate_essays(
        model,
        processor,
        [r["image"] for r in rows],
        [prompt(r) if callable(prompt) else prompt for r in rows],
        params.generation,
    )
    return [
        {
            "id": row["id"],
            "chart_type": row["chart_type"],
            "text": essay.text,
            "seconds": round(essay.seconds, 3),
            "prompt_tokens": essay.prompt_tokens,
            "new_tokens": essay.new_tokens,
            "model": model_name,
            "dtype": dtype,
        }
        for row, essay in zip(rows, outputs, strict=True)
    ]
