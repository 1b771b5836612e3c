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
from chartdistill.evaluation.judge import JudgeParams, judge_backend, judge_pairs
from chartdistill.evaluation.known_answer import JUDGE_CHECK_METRICS
from chartdistill.evaluation.summary import (
    PLOT_FIELDS,
    EvaluationParams,
    automatic_metrics,
    eval_summary,
    length_differences,
    load_predictions,
    match_inputs,
    win_rate_plot_rows,
)
from chartdistill.io import read_json, write_csv, write_json, write_jsonl
from chartdistill.llm.cache import CachedClient, ResponseCache
from chartdistill.llm.cost import cost_summary
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

    check_path = paths.metrics / JUDGE_CHECK_METRICS
    if not check_path.is_file():
        raise SystemExit(f"judge: {check_path} not found (run the judge_check stage first)")
    judge_check = read_json(check_path)
    backend = judge_backend(params, paths.prompts)
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
        automatic_metrics(
            {i: text for i, text in inputs.references.items() if text},
            inputs.charts,
            None,
            eval_params,
        ),
        automatic_metrics(inputs.baseline, inputs.charts, inputs.references, eval_params),
        automatic_metrics(inputs.finetuned, inputs.charts, inputs.references, eval_params),
        length_differences(inputs),
        eval_params,
        judge_check,
    )
    summary["without_reference"] = sum(not text for text in inputs.references.values())
    summary["judge_dtype"] = getattr(backend, "dtype", None)  # embedded: resolved; a server: None
    summary["judge_tokens"] = client.stats.token_counts()  # prompt vs prefilled, generated
    summary["judge_cost"] = cost_summary(client.stats, params.prices)  # batch beside live
    write_jsonl(paths.judgements / f"{variant}.jsonl", (j.to_dict() for j in judgements))
    write_json(paths.metrics / f"eval_{variant}.json", summary)
    write_csv(paths.plots / f"eval_{variant}.csv", win_rate_plot_rows(summary), PLOT_FIELDS)
    log.info(
        "%s vs baseline: %d wins, %d ties, %d losses of %d judged; expected win rate %s "
        "(95%% CI %s), length-controlled %s (95%% CI %s); %d judge failures; %d requests, "
        "%d cache hits",
        variant,
        summary["wins"],
        summary["ties"],
        summary["losses"],
        summary["n"],
        summary["expected_win_rate"],
        summary["expected_win_rate_ci95"],
        summary["lc_win_rate"],
        summary["lc_win_rate_ci95"],
        summary["judge_failures"],
        client.requests_sent,
        client.cache_hits,
    )
    check = summary.get("judge_check", {})
    if not check.get("reliable"):
        log.warning(
            "judge: accuracy on known-answer pairs %s is below judge.known_answer.min_accuracy: "
            "these win rates cannot be trusted",
            check.get("accuracy"),
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
