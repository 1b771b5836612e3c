"""Stage `judge@<variant>`: pairwise LLM judge (fine-tuned vs baseline) plus automatic metrics.

Run as `python -m stages.judge <variant>`; the variant (structured | unstructured) is the DVC
foreach item, everything else comes from params.yaml (paths, judge, evaluation).
"""

from __future__ import annotations

import logging
import sys

from chartdistill.config import load_paths, load_section
from chartdistill.data.records import load_charts, load_essays
from chartdistill.essay.sections import VARIANTS
from chartdistill.evaluation.judge import JudgeParams, judge_pairs
from chartdistill.evaluation.summary import (
    EvaluationParams,
    automatic_metrics,
    eval_summary,
    load_predictions,
    match_inputs,
    win_rate_plot_rows,
    write_csv,
)
from chartdistill.io import write_json, write_jsonl
from chartdistill.llm.cache import CachedClient, ResponseCache
from chartdistill.llm.factory import make_backend
from stages.common import run, setup

log = logging.getLogger("stages.judge")


def parse_variant(argv: list[str]) -> str:
    if len(argv) != 2 or argv[1] not in VARIANTS:
        given = " ".join(argv[1:]) or "nothing"
        raise SystemExit(f"usage: python -m stages.judge <{'|'.join(VARIANTS)}> (got {given})")
    return argv[1]


def main() -> None:
    variant = parse_variant(sys.argv)
    setup()
    paths = load_paths()
    params = load_section("judge", JudgeParams)
    eval_params = load_section("evaluation", EvaluationParams)
    predictions = {}
    for name in ("baseline", variant):
        path = paths.predictions / f"{name}.jsonl"
        if not path.is_file():
            raise SystemExit(f"judge: {path} not found (run the predict stages first)")
        predictions[name] = load_predictions(path)
        if not predictions[name]:
            raise SystemExit(f"judge: {path} holds no test predictions; nothing to judge")
    try:
        inputs = match_inputs(
            variant,
            load_charts(paths.charts / "charts.jsonl"),
            load_essays(paths.essays / "essays.jsonl"),
            predictions["baseline"],
            predictions[variant],
        )
    except ValueError as exc:
        raise SystemExit(f"judge: {exc}") from exc

    backend = make_backend(params.llm)
    client = CachedClient(backend, ResponseCache(paths.judge_cache / variant))
    judgements = judge_pairs(
        inputs.charts,
        inputs.references,
        inputs.baseline,
        inputs.finetuned,
        params,
        client,
        paths.prompts,
    )
    summary = eval_summary(
        judgements,
        automatic_metrics(inputs.references, inputs.charts, None, eval_params),
        automatic_metrics(inputs.baseline, inputs.charts, inputs.references, eval_params),
        automatic_metrics(inputs.finetuned, inputs.charts, inputs.references, eval_params),
    )
    summary["judge_dtype"] = getattr(backend, "dtype", None)  # embedded: resolved; a server: None
    write_jsonl(paths.judgements / f"{variant}.jsonl", (j.to_dict() for j in judgements))
    write_json(paths.metrics / f"eval_{variant}.json", summary)
    write_csv(paths.plots / f"eval_{variant}.csv", win_rate_plot_rows(summary))
    ci = summary["score_ci95"]
    log.info(
        "%s vs baseline: %d wins, %d ties, %d losses of %d judged (score %.3f, 95%% CI "
        "%.3f-%.3f); %d judge failures, %d single-order; %d requests, %d cache hits",
        variant,
        summary["wins"],
        summary["ties"],
        summary["losses"],
        summary["n"],
        summary["score"],
        ci["low"],
        ci["high"],
        summary["judge_failures"],
        summary["single_order"],
        client.requests_sent,
        client.cache_hits,
    )
    if summary["n"] == 0:
        # The automatic metrics still stand, so the outputs are written and the stage passes;
        # the metrics file says n: 0 and counts every chart as a judge failure.
        log.error(
            "judge: no chart got a usable verdict from %s; see %s for the raw replies",
            client.model_id,
            paths.judgements / f"{variant}.jsonl",
        )


if __name__ == "__main__":
    run(main)
