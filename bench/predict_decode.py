"""The predict stage's decode on a trained project: rows that end their turn leaving the batch
(`predict.generation.drop_finished_every`) against one generate call per batch, at batch sizes.

    .venv/bin/python -m bench.predict_decode [VARIANT]

Run it in a project where `dvc repro predict@VARIANT` has run (default structured): it reads
models/base, models/VARIANT, the variant's test split and params.yaml, as the stage does. Each
case runs `predict` in a fresh process on the same charts with greedy decoding; `same_text` says
whether its essays equal the first case's, word for word. The cases run in turn, BENCH_ROUNDS
times (default 2: A B C D A B C D, so a drifting machine slows all alike); the median is quoted.
BENCH_CHARTS limits the charts (first N); BENCH_CASES picks the cases, e.g. "8:64,24:64"
(batch size:drop_finished_every).
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from typing import Any

from bench.student_step import run_isolated, table
from bench.suite import machine

CASES = [(8, 0), (8, 64), (24, 0), (24, 64)]  # (batch_size, drop_finished_every)


def cases() -> list[tuple[int, int]]:
    """BENCH_CASES ("8:64,24:64") or CASES."""
    spec = os.environ.get("BENCH_CASES", "")
    if not spec:
        return CASES
    pairs = (case.split(":") for case in spec.split(","))
    return [(int(size), int(every)) for size, every in pairs]


def predict_case(variant: str, batch_size: int, every: int) -> dict[str, Any]:
    from chartdistill.config import load_paths, load_section
    from chartdistill.prompts.student import StudentPrompt
    from chartdistill.student.model import StudentParams
    from chartdistill.student.predict import PredictParams, load_test_split, predict

    paths = load_paths()
    params = load_section("predict", PredictParams)
    limit = int(os.environ.get("BENCH_CHARTS", "0")) or params.limit
    generation = params.generation.model_copy(
        update={"batch_size": batch_size, "drop_finished_every": every, "do_sample": False}
    )
    params = params.model_copy(update={"generation": generation, "limit": limit})
    rows = load_test_split(paths.datasets / variant / "test.parquet", params.limit)
    prompt = StudentPrompt(paths.prompts, load_section("student", StudentParams).ocr_hint)
    began = time.perf_counter()
    essays = predict(rows, paths.base_model, paths.models / variant, prompt, params, variant)
    seconds = time.perf_counter() - began
    new = [e["new_tokens"] for e in essays]
    return {
        "batch": batch_size,
        "drop_every": every,
        "charts": len(essays),
        "seconds": round(seconds, 1),
        "new_tokens": sum(new),
        "at_limit": sum(n >= generation.max_new_tokens for n in new),
        "texts": [e["text"] for e in essays],
    }


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    variant = sys.argv[1] if len(sys.argv) > 1 else "structured"
    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))
    chosen = cases()
    runs = [[run_isolated(predict_case, variant, *case) for case in chosen] for _ in range(rounds)]
    first = runs[0][0]["texts"]
    rows = []
    for index in range(len(chosen)):
        row = {k: v for k, v in runs[0][index].items() if k not in ("texts", "seconds")}
        seconds = [r[index]["seconds"] for r in runs]
        row["seconds"] = statistics.median(seconds)
        row["runs_s"] = ", ".join(map(str, seconds))
        row["tokens_per_s"] = round(row["new_tokens"] / row["seconds"], 1)
        texts = runs[0][index]["texts"]
        row["same_text"] = f"{sum(a == b for a, b in zip(first, texts, strict=True))}/{len(texts)}"
        rows.append(row)
    for row in rows:
        row["vs_first"] = round(row["seconds"] / rows[0]["seconds"], 2)
    print(machine())  # noqa: T201 - a benchmark's report is its stdout
    print(table(rows))  # noqa: T201


if __name__ == "__main__":
    main()
