"""The judge on known-answer pairs, and what it costs:
`python -m bench.judge_check CHARTS_JSONL ESSAYS_JSONL [PAIRS] [CACHE_DIR]`.

Builds PAIRS known-answer pairs (default: five per corruption kind) from the teacher essays in
ESSAYS_JSONL on the charts in CHARTS_JSONL (chartdistill.evaluation.known_answer) and judges
them with the judge of params.yaml (by default the bundled 135M model, verdicts read from the
A/B/tie token probabilities), both orders each, as the judge_check stage does. Prints the
judge's accuracy per kind, its position consistency, whether every pair got a verdict, the
wall time and the prompt tokens. Answers are cached in CACHE_DIR (default
/tmp/chartdistill-judge-check-cache): a rerun costs nothing, so time a cold run.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from chartdistill.config import load_paths, load_section
from chartdistill.data.records import load_charts, load_essays
from chartdistill.evaluation.judge import JudgeParams, judge_backend, judge_known_answers
from chartdistill.evaluation.known_answer import build_pairs, reliability
from chartdistill.evaluation.summary import EvaluationParams
from chartdistill.llm.cache import CachedClient, ResponseCache


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    charts = load_charts(Path(sys.argv[1]))
    essays = {e.id: e.sections for e in load_essays(Path(sys.argv[2])) if e.sections}
    params = load_section("judge", JudgeParams)
    kinds = params.known_answer.kinds
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 5 * len(kinds)
    cache = Path(sys.argv[4] if len(sys.argv) > 4 else "/tmp/chartdistill-judge-check-cache")
    tolerance = load_section("evaluation", EvaluationParams).tolerance
    pairs = build_pairs(charts, essays, count, kinds, params.known_answer.seed, tolerance)
    client = CachedClient(judge_backend(params, load_paths().prompts), ResponseCache(cache))
    start = time.perf_counter()
    judged = judge_known_answers(pairs, params, client, load_paths().prompts)
    seconds = time.perf_counter() - start
    report = reliability(pairs, judged, params.known_answer.min_accuracy)
    report["every_pair_has_a_verdict"] = all(j.outcome is not None for j in judged)
    report["wall_s"] = round(seconds, 1)
    report["requests_sent"] = client.stats.requests_sent
    report["tokens"] = client.stats.token_counts()
    report["judge"] = client.model_id
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
