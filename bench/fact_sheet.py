"""Teacher acceptance and grounding with and without the fact sheet:
`python -m bench.fact_sheet [N_PER_TYPE] [CACHE_DIR]`.

Runs the teacher of params.yaml (the bundled 135M model in-process by default) on the first N
synthetic charts of each type of the default profile (charts.seed), once with
`teacher.fact_sheet` on and once off, with every other teacher param as in params.yaml, and
prints metrics/teacher.json's `figures` block for both (acceptance, value-level and
attribution-level grounding, per type). Answers are cached in CACHE_DIR (default
/tmp/chartdistill-fact-sheet-cache), so a rerun costs nothing.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from chartdistill.config import load_paths, load_section
from chartdistill.data.synthetic import ChartsParams, generate_synthetic
from chartdistill.llm.cache import CachedClient, ResponseCache
from chartdistill.llm.factory import make_backend
from chartdistill.teacher.writer import TeacherParams, run_teacher


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    per_type = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    cache = Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/chartdistill-fact-sheet-cache")
    paths = load_paths()
    charts_params = load_section("charts", ChartsParams)
    teacher = load_section("teacher", TeacherParams).model_copy(update={"mode": "stepwise"})
    counts = {t: min(per_type, n) for t, n in charts_params.counts.items()}
    backend = make_backend(teacher.llm)
    with tempfile.TemporaryDirectory() as tmp:
        params = charts_params.model_copy(update={"counts": counts, "test_counts": {}})
        charts, _ = generate_synthetic(params, Path(tmp))
        out = {}
        for fact_sheet in (True, False):
            client = CachedClient(backend, ResponseCache(cache))
            start = time.perf_counter()
            params = teacher.model_copy(update={"fact_sheet": fact_sheet})
            _, metrics = run_teacher(charts, params, client, paths.prompts, Path(tmp))
            out[f"fact_sheet={fact_sheet}"] = {
                "seconds": round(time.perf_counter() - start, 1),
                "requests": metrics["requests"],
                "rejected_by_reason": metrics["rejected_by_reason"],
                **metrics["figures"],
            }
            print(json.dumps({f"fact_sheet={fact_sheet}": out[f"fact_sheet={fact_sheet}"]}))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
