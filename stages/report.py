"""Stage `report`: a static HTML evaluation page per variant and an index, logged to MLflow.

Reads what the judge stages wrote (each judgement row carries the texts judged and the source
of its verdict), the known-answer audit, the test charts with their images and the training
loss; writes ${paths.reports}/index.html, <variant>.html and images/. With report.mlflow each
variant's page and evaluation figures go to its training run (the `mlflow_run_id` in
metrics/train_<variant>.json). One library call: chartdistill.report.build.build_report.
"""

from __future__ import annotations

from chartdistill.config import load_paths, load_section
from chartdistill.essay.sections import VARIANTS
from chartdistill.evaluation.summary import EvaluationParams
from chartdistill.report.build import ReportParams, build_report
from stages.common import run, setup


def main() -> None:
    setup()
    bounds = load_section("evaluation", EvaluationParams).essay_bounds
    build_report(load_paths(), load_section("report", ReportParams), bounds, list(VARIANTS))


if __name__ == "__main__":
    run(main)
