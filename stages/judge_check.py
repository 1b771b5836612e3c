"""Stage `judge_check`: how far the judge can be trusted, before it judges the students.

Known-answer pairs from the teacher's accepted essays (each against a copy with a known flaw;
chartdistill.evaluation.known_answer) are judged like the student pairs, without a reference
essay. Accepted essays, because a flaw is only a known answer against a grounded original; and
any split, because held-out test charts have no teacher essay. Writes the pairs with
their verdicts (judgements/known_answer.jsonl) and the judge's accuracy per flaw, overall and
its position consistency (metrics/judge.json), flagged unreliable below
judge.known_answer.min_accuracy and when the judge is the teacher's own model.
"""

from __future__ import annotations

import logging

from chartdistill.config import load_paths, load_section, parse_section, read_params
from chartdistill.data.records import load_charts, load_essays
from chartdistill.evaluation.judge import (
    JudgeParams,
    judge_backend,
    judge_known_answers,
    same_model,
)
from chartdistill.evaluation.known_answer import (
    JUDGE_CHECK_METRICS,
    KNOWN_ANSWER_NAME,
    build_pairs,
    reliability,
)
from chartdistill.evaluation.summary import EvaluationParams
from chartdistill.io import write_json, write_jsonl
from chartdistill.llm.cache import CachedClient, ResponseCache
from chartdistill.llm.types import LLMParams
from stages.common import run, setup

log = logging.getLogger("stages.judge_check")


def main() -> None:
    setup()
    paths = load_paths()
    params = load_section("judge", JudgeParams)
    eval_params = load_section("evaluation", EvaluationParams)
    teacher_llm = parse_section(
        "teacher.llm", LLMParams, (read_params().get("teacher") or {}).get("llm")
    )
    by_id = {c.id: c for c in load_charts(paths.charts / "charts.jsonl")}
    essays = {
        e.id: e.sections
        for e in load_essays(paths.essays / "essays.jsonl")
        if e.status == "accepted" and e.sections and e.id in by_id
    }
    known = params.known_answer
    pairs = build_pairs(
        [by_id[i] for i in sorted(essays)],
        essays,
        known.pairs,
        known.kinds,
        known.seed,
        eval_params.tolerance,
    )
    client = CachedClient(
        judge_backend(params, paths.prompts),
        ResponseCache(paths.judge_cache / KNOWN_ANSWER_NAME),
    )
    judgements = judge_known_answers(pairs, params, client, paths.prompts)
    report = reliability(pairs, judgements, known.min_accuracy)
    report["same_model_as_teacher"] = same_model(params.llm, teacher_llm)
    write_jsonl(
        paths.judgements / f"{KNOWN_ANSWER_NAME}.jsonl",
        (
            {"kind": p.kind, "intact": p.intact, "corrupted": p.corrupted, **j.to_dict()}
            for p, j in zip(pairs, judgements, strict=True)
        ),
    )
    write_json(paths.metrics / JUDGE_CHECK_METRICS, report)
    log.info(
        "judge %s: %s of %d known-answer pairs right (accuracy %s, position consistency %s); "
        "%s; same model as the teacher: %s",
        client.model_id,
        report["correct"],
        report["n"],
        report["accuracy"],
        report["position_consistency"],
        "reliable" if report["reliable"] else "UNRELIABLE",
        report["same_model_as_teacher"],
    )


if __name__ == "__main__":
    run(main)
