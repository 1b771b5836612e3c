"""The three teacher paths side by side on the same charts:
`python -m bench.teacher_paths [N_PER_TYPE] [CACHE_DIR]`.

1. the computed reference writer (teacher.mode reference, the offline default);
2. the bundled 135M model, stepwise, as it writes (sentence_repair off);
3. the same model with sentence-level repair (each faulty sentence re-asked alone, then the
   reference writer's sentence where the answer still fails).
On the first N synthetic charts of each type of the default profile (charts.seed), with every
other teacher param as in params.yaml. Prints one row per path: essays accepted, claims checked
and found false in the accepted essays (essay.claims), and over every answered essay: false
claims, figures not attributed to the row they belong to, who wrote the sentences (model /
repaired / computed); requests, tokens and seconds, with the CPU it ran on. Answers are cached
in CACHE_DIR (default /tmp/chartdistill-teacher-paths-cache): a rerun costs nothing.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.suite import machine
from chartdistill.config import load_paths, load_section
from chartdistill.data.records import ChartRecord, EssayRecord
from chartdistill.data.synthetic import ChartsParams, generate_synthetic
from chartdistill.essay.text import verify_essay
from chartdistill.llm.cache import CachedClient, ResponseCache
from chartdistill.llm.factory import make_backend
from chartdistill.teacher.repair import ORIGINS
from chartdistill.teacher.writer import TeacherParams, run_teacher

PATHS = {
    "reference writer (computed, no LLM)": {"mode": "reference"},
    "135M stepwise, as written": {"mode": "stepwise", "sentence_repair": False},
    "135M stepwise + sentence repair": {"mode": "stepwise", "sentence_repair": True},
}


def _answered(essays: list[EssayRecord], charts: list[ChartRecord], bounds) -> dict[str, Any]:
    """Over every essay with all four sections (accepted or not): false claims, figures not
    attributed, and who wrote the sentences."""
    by_id = {c.id: c for c in charts}
    written = [e for e in essays if e.sections and len(e.sections) == 4]
    checks = [verify_essay(e.sections, by_id[e.id], bounds) for e in written]  # type: ignore[arg-type]
    origins = Counter(o for e in written for per in e.origins.values() for o in per)
    total = sum(origins.values()) or None
    return {
        "answered": len(written),
        "false_claims": sum(len(c.false_claims) for c in checks),
        "figures_not_attributed": sum(
            c.grounding.mentioned - c.grounding.attributed for c in checks
        ),
        "sentences": total or 0,
        **{k: round(origins[k] / total, 3) if total else None for k in ORIGINS},
    }


def _row(metrics: dict[str, Any], seconds: float, answered: dict[str, Any]) -> dict[str, Any]:
    figures = metrics["figures"]["all"]
    return {
        "accepted": f"{metrics['accepted']}/{metrics['charts']}",
        "claims_checked (accepted)": figures["claims_checked"],
        "claims_false (accepted)": figures["claims_false"],
        **answered,
        "requests": metrics["requests"],
        "prefilled": metrics.get("prefill_tokens", 0),
        "generated": metrics.get("completion_tokens", 0),
        "seconds": round(seconds, 1),
        "rejected_by_reason": metrics["rejected_by_reason"],
    }


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    per_type = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    cache = Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/chartdistill-teacher-paths-cache")
    paths = load_paths()
    charts_params = load_section("charts", ChartsParams)
    teacher = load_section("teacher", TeacherParams)
    counts = {t: min(per_type, n) for t, n in charts_params.counts.items()}
    rows: dict[str, dict[str, Any]] = {}
    backend = None
    with tempfile.TemporaryDirectory() as tmp:
        params = charts_params.model_copy(update={"counts": counts, "test_counts": {}})
        charts, _ = generate_synthetic(params, Path(tmp))
        for name, update in PATHS.items():
            path_params = teacher.model_copy(update=update)
            client = None
            if path_params.mode != "reference":
                backend = backend or make_backend(teacher.llm)
                client = CachedClient(backend, ResponseCache(cache))
            start = time.perf_counter()
            essays, metrics = run_teacher(charts, path_params, client, paths.prompts, Path(tmp))
            seconds = time.perf_counter() - start
            rows[name] = _row(metrics, seconds, _answered(essays, charts, teacher.validation))
            print(json.dumps({name: rows[name]}), flush=True)
    print(f"\n{len(charts)} charts ({per_type} per type); {machine()}")
    keys = [k for k in next(iter(rows.values())) if k != "rejected_by_reason"]
    print("| path | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(str(row[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
