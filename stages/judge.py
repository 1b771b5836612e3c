"""Stage `judge@<variant>`: the table gate, then the LLM judge (fine-tuned vs baseline), and the
automatic metrics.

Run as `python -m stages.judge <variant>`; the variant (structured | unstructured) is the DVC
foreach item, everything else comes from params.yaml (paths, judge, evaluation). The work is
one library call (chartdistill.evaluation.evaluate.evaluate_variant).
"""

from __future__ import annotations

import sys

from chartdistill.config import load_paths, load_section
from chartdistill.evaluation.evaluate import evaluate_variant, parse_variant
from chartdistill.evaluation.judge import JudgeParams
from chartdistill.evaluation.summary import PLOT_FIELDS, EvaluationParams
from chartdistill.io import write_csv, write_json, write_jsonl
from stages.common import run, setup


def main() -> None:
    variant = parse_variant(sys.argv, "judge")
    setup()
    paths = load_paths()
    params = load_section("judge", JudgeParams)
    evaluation = evaluate_variant(
        variant, paths, params, load_section("evaluation", EvaluationParams)
    )
    write_jsonl(paths.judgements / f"{variant}.jsonl", evaluation.rows)
    write_json(paths.metrics / f"eval_{variant}.json", evaluation.summary)
    write_csv(paths.plots / f"eval_{variant}.csv", evaluation.plot_rows, PLOT_FIELDS)


if __name__ == "__main__":
    run(main)
