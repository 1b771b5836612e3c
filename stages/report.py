"""Stage `report`: a static HTML evaluation page per variant and an index, logged to MLflow.

Reads every variant's judge outputs, the known-answer check, the test charts with their images,
the teacher and student essays and the training loss; writes ${paths.reports}/index.html,
<variant>.html and images/. With report.mlflow each variant's page and evaluation figures go to
its training run (the `mlflow_run_id` in metrics/train_<variant>.json).
"""

from __future__ import annotations

import csv
import logging
import shutil

from chartdistill.config import load_paths, load_section
from chartdistill.data.records import load_charts, load_essays
from chartdistill.essay.sections import VARIANTS
from chartdistill.evaluation.known_answer import JUDGE_CHECK_METRICS
from chartdistill.evaluation.summary import EvaluationParams, load_predictions, match_inputs
from chartdistill.io import read_json, read_jsonl
from chartdistill.report.build import (
    IMAGES_DIR,
    ReportParams,
    chart_views,
    copy_images,
    flat_numbers,
    log_to_training_run,
    loss_curve,
    write_page,
)
from stages.common import run, setup

log = logging.getLogger("stages.report")


def main() -> None:
    setup()
    paths = load_paths()
    params = load_section("report", ReportParams)
    tolerance = load_section("evaluation", EvaluationParams).tolerance
    charts = {c.id: c for c in load_charts(paths.charts / "charts.jsonl")}
    essays = load_essays(paths.essays / "essays.jsonl")
    check = read_json(paths.metrics / JUDGE_CHECK_METRICS)
    baseline = load_predictions(paths.predictions / "baseline.jsonl")
    out = paths.reports
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    variants = []
    for variant in VARIANTS:
        summary = read_json(paths.metrics / f"eval_{variant}.json")
        judgements = list(read_jsonl(paths.judgements / f"{variant}.jsonl"))
        inputs = match_inputs(
            variant,
            charts.values(),
            essays,
            baseline,
            load_predictions(paths.predictions / f"{variant}.jsonl"),
        )
        texts = {
            "teacher": inputs.references,
            "baseline": inputs.baseline,
            "finetuned": inputs.finetuned,
        }
        images = copy_images(inputs.charts, paths.charts, out)
        loss_csv = paths.plots / f"train_{variant}.csv"
        rows = list(csv.DictReader(loss_csv.open(encoding="utf-8"))) if loss_csv.is_file() else []
        groups = [("all chart types", summary["auto"])]
        groups += list(summary.get("auto_per_type", {}).items())
        page = write_page(
            out / f"{variant}.html",
            "variant.html.j2",
            variant=variant,
            summary=summary,
            check=check,
            curve=loss_curve(rows),
            charts=chart_views(judgements, charts, texts, images, tolerance, params.max_charts),
            metric_groups=groups,
        )
        variants.append({"name": variant, "summary": summary, "page": page})
        log.info("%s: %s (%d charts)", variant, page, len(judgements))
    index = write_page(out / "index.html", "index.html.j2", variants=variants, check=check)
    if not params.mlflow:
        return
    for item in variants:
        train = paths.metrics / f"train_{item['name']}.json"
        run_id = read_json(train).get("mlflow_run_id") if train.is_file() else None
        if not run_id:
            log.info("%s: no MLflow training run recorded; the report is not logged", item["name"])
            continue
        figures = flat_numbers({"eval": item["summary"], "judge": check})
        if log_to_training_run(run_id, [item["page"], index], out / IMAGES_DIR, figures):
            log.info(
                "%s: report and %d figures logged to run %s", item["name"], len(figures), run_id
            )


if __name__ == "__main__":
    run(main)
