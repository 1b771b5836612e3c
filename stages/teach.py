"""Stage `teach`: teacher essays for every chart, through the cached LLM client."""

from __future__ import annotations

import logging

from chartdistill.config import load_paths, load_section
from chartdistill.data.records import load_charts, save_records
from chartdistill.io import write_json
from chartdistill.llm.cache import CachedClient, ResponseCache
from chartdistill.llm.factory import make_backend
from chartdistill.teacher.writer import TeacherParams, run_teacher
from stages.common import run, setup

log = logging.getLogger("stages.teach")


def main() -> None:
    setup()
    paths = load_paths()
    params = load_section("teacher", TeacherParams)
    charts = load_charts(paths.charts / "charts.jsonl")
    backend = None if params.mode == "reference" else make_backend(params.llm)
    cache = ResponseCache(paths.teacher_cache)  # a declared out, even if unused
    client = backend and CachedClient(backend, cache)
    essays, metrics = run_teacher(charts, params, client, paths.prompts, paths.charts)
    metrics["dtype"] = getattr(backend, "dtype", None)  # embedded: resolved; else None
    save_records(paths.essays / "essays.jsonl", essays)
    write_json(paths.metrics / "teacher.json", metrics)
    log.info(
        "%d/%d essays accepted (%d requests, %d cache hits)",
        metrics["accepted"],
        metrics["charts"],
        metrics["requests"],
        metrics["cache_hits"],
    )
    if metrics["accepted"] == 0:
        raise SystemExit(
            "teach: no essay passed validation; see data/essays/essays.jsonl for the reasons "
            "(thresholds are teacher.validation.* in params.yaml)"
        )


if __name__ == "__main__":
    run(main)
