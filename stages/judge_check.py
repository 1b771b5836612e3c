"""Stage `judge_check`: how far each verdict source can be trusted, before it judges students.

Known-answer pairs (a true essay against a copy with a known flaw; chartdistill.evaluation.
known_answer) are judged by the table gate and, separately, by the LLM judge on every pair in
both orders, without a reference essay. The true essays are the teacher's accepted essays and,
for held-out charts the teacher never wrote for, the reference writer's (judge.reference_writer).
Writes the pairs with both verdicts (judgements/known_answer.jsonl) and each source's accuracy
per kind, the gate's abstention on the kinds it cannot see, and `reliable` per source
(metrics/judge.json), plus whether the judge is the teacher's own model.
"""

from __future__ import annotations

from chartdistill.config import load_paths, load_section, parse_section, read_params
from chartdistill.evaluation.evaluate import audit_judge
from chartdistill.evaluation.judge import JudgeParams, same_model
from chartdistill.evaluation.known_answer import JUDGE_CHECK_METRICS, KNOWN_ANSWER_NAME
from chartdistill.evaluation.summary import EvaluationParams
from chartdistill.io import write_json, write_jsonl
from chartdistill.llm.types import LLMParams
from stages.common import run, setup


def main() -> None:
    setup()
    paths = load_paths()
    params = load_section("judge", JudgeParams)
    teacher_llm = parse_section(
        "teacher.llm", LLMParams, (read_params().get("teacher") or {}).get("llm")
    )
    result = audit_judge(paths, params, load_section("evaluation", EvaluationParams))
    result.report["same_model_as_teacher"] = same_model(params.llm, teacher_llm)
    write_jsonl(paths.judgements / f"{KNOWN_ANSWER_NAME}.jsonl", result.rows)
    write_json(paths.metrics / JUDGE_CHECK_METRICS, result.report)


if __name__ == "__main__":
    run(main)
