"""Build the evaluation report: one static HTML page per variant, and an index.

Everything a reader needs sits on disk beside the pages (chart images copied next to them, the
loss curve drawn as inline SVG, styles inline), so a page opens from a file with no network.
Per variant: the win rates with their intervals and the judge's known-answer accuracy, the
automatic metrics per chart type, the loss curve, and for every test chart its image and data,
the teacher, baseline and fine-tuned essays side by side with each figure marked grounded,
misattributed or ungrounded, and the judge's verdicts and reasons in both orders.

The HTML lives in Jinja templates (chartdistill/report/templates); this module only assembles
the values they show.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from pydantic import Field

from chartdistill.config import InputError, PathsParams, Section
from chartdistill.data.records import ChartRecord, load_charts
from chartdistill.essay.claims import verify
from chartdistill.essay.grounding import ChartNumbers
from chartdistill.essay.text import EssayBounds, essay_body
from chartdistill.evaluation.known_answer import JUDGE_CHECK_METRICS, trusted_sources
from chartdistill.io import atomic_write_text, read_json, read_jsonl

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
IMAGES_DIR = "images"
MARKS: tuple[str, ...] = ("grounded", "misattributed", "ungrounded")
# Automatic metrics shown per chart type, in this order, with their labels.
AUTO_COLUMNS: dict[str, str] = {
    "numeric_precision": "numeric precision (value)",
    "attributed_precision": "numeric precision (attribution)",
    "key_value_recall": "key-value recall",
    "words": "words",
    "structure_compliance_rate": "structure",
    "loop_rate": "loops",
    "off_task_rate": "off task",
    "rouge_l": "ROUGE-L",
}
WRITERS: tuple[str, ...] = ("teacher", "baseline", "finetuned")


class ReportParams(Section):
    """`mlflow`: log each variant's page and evaluation figures to its training run (found by
    the `mlflow_run_id` in metrics/train_<variant>.json); `max_charts`: per-chart sections
    shown per variant (null: every test chart)."""

    mlflow: bool = True
    max_charts: int | None = Field(default=None, ge=1)


# --------------------------------------------------------------------------- figure marks


@dataclass(frozen=True)
class Segment:
    """A run of essay text; `mark` is grounded | misattributed | ungrounded for a figure."""

    text: str
    mark: str | None = None


@dataclass
class EssayView:
    paragraphs: list[list[Segment]]
    counts: dict[str, int] = field(default_factory=dict)


def _statuses(
    text: str, chart: ChartRecord, bounds: EssayBounds, numbers: ChartNumbers
) -> list[tuple[tuple[int, int], str]]:
    """(span, mark) of each value mention, in text order, from the one verification (claims.
    verify at the evaluation bounds, hedged figures included). The grounding reports its
    verdicts as lists of mention texts in text order; they are matched back onto the mentions'
    spans (a year read as a date is in neither list and is left unmarked)."""
    grounding = verify(text, chart, bounds.tolerance, bounds.approx_tolerance, numbers).grounding
    ungrounded = list(grounding.ungrounded)
    misattributed = list(grounding.misattributed)
    dates = [t for t in grounding.labels]
    out = []
    for mention in numbers.split(text, bounds.tolerance)[0]:
        if ungrounded and ungrounded[0] == mention.text:
            ungrounded.pop(0)
            out.append((mention.span, "ungrounded"))
        elif misattributed and misattributed[0] == mention.text:
            misattributed.pop(0)
            out.append((mention.span, "misattributed"))
        elif mention.is_year and mention.text in dates:
            dates.remove(mention.text)
        else:
            out.append((mention.span, "grounded"))
    return out


def essay_view(text: str, chart: ChartRecord, bounds: EssayBounds) -> EssayView:
    """The essay body in paragraphs, each figure a marked segment (grounding is per sentence,
    so a paragraph's marks are the essay's)."""
    numbers = ChartNumbers.from_chart(chart)
    counts = dict.fromkeys(MARKS, 0)
    paragraphs = []
    for paragraph in (p.strip() for p in essay_body(text).split("\n\n")):
        if not paragraph:
            continue
        segments, cursor = [], 0
        for (start, end), mark in _statuses(paragraph, chart, bounds, numbers):
            if start > cursor:
                segments.append(Segment(paragraph[cursor:start]))
            segments.append(Segment(paragraph[start:end], mark))
            counts[mark] += 1
            cursor = end
        if cursor < len(paragraph):
            segments.append(Segment(paragraph[cursor:]))
        paragraphs.append(segments)
    return EssayView(paragraphs, counts)


# --------------------------------------------------------------------------- loss curve


@dataclass(frozen=True)
class Curve:
    """A loss curve scaled into an SVG viewport (points as "x,y" strings)."""

    width: int
    height: int
    series: dict[str, str]  # name -> polyline points
    x_range: tuple[float, float]
    y_range: tuple[float, float]


def loss_curve(rows: Iterable[dict[str, Any]], width: int = 480, height: int = 200) -> Curve | None:
    """loss and eval_loss against step from the training plot rows; None without numbers."""
    points: dict[str, list[tuple[float, float]]] = {"loss": [], "eval_loss": []}
    for row in rows:
        step = _number(row.get("step"))
        for name in points:
            value = _number(row.get(name))
            if step is not None and value is not None:
                points[name].append((step, value))
    everything = [p for series in points.values() for p in series]
    if not everything:
        return None
    xs, ys = [p[0] for p in everything], [p[1] for p in everything]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    pad = 10

    def scale(x: float, y: float) -> str:
        sx = pad + (x - x0) / ((x1 - x0) or 1) * (width - 2 * pad)
        sy = height - pad - (y - y0) / ((y1 - y0) or 1) * (height - 2 * pad)
        return f"{sx:.1f},{sy:.1f}"

    series = {name: " ".join(scale(x, y) for x, y in pts) for name, pts in points.items() if pts}
    return Curve(width, height, series, (x0, x1), (y0, y1))


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------- pages


@dataclass
class ChartView:
    chart: ChartRecord
    image: str  # relative to the page
    essays: dict[str, EssayView]  # teacher | baseline | finetuned
    judgement: dict[str, Any]


def chart_views(
    judgements: Sequence[dict[str, Any]],
    charts: dict[str, ChartRecord],
    images: dict[str, str],
    bounds: EssayBounds,
    limit: int | None = None,
) -> list[ChartView]:
    """One view per judged chart (judgement file order), up to `limit`; the essays are the
    texts the judge stage judged (each judgement row's `texts`)."""
    views = []
    for judgement in judgements[:limit] if limit else judgements:
        chart = charts[judgement["id"]]
        texts = judgement.get("texts") or {}
        views.append(
            ChartView(
                chart=chart,
                image=images.get(chart.id, ""),
                essays={w: essay_view(texts.get(w, ""), chart, bounds) for w in WRITERS},
                judgement=judgement,
            )
        )
    return views


def copy_images(charts: Iterable[ChartRecord], charts_dir: Path, out_dir: Path) -> dict[str, str]:
    """Each chart's image copied under out_dir/images/ (chart id -> path relative to out_dir);
    a missing image is logged and left out."""
    target = out_dir / IMAGES_DIR
    target.mkdir(parents=True, exist_ok=True)
    out = {}
    for chart in charts:
        source = charts_dir / chart.image
        if not source.is_file():
            log.warning("chart %s: image %s not found; the report shows no image", chart.id, source)
            continue
        name = f"{chart.id}{source.suffix.lower()}"
        shutil.copyfile(source, target / name)
        out[chart.id] = f"{IMAGES_DIR}/{name}"
    return out


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **values: Any) -> str:
    env = environment()
    env.filters["pct"] = _pct
    env.filters["num"] = _num
    return env.get_template(template).render(
        marks=MARKS, writers=WRITERS, auto_columns=AUTO_COLUMNS, **values
    )


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f} %"


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{float(value):.{digits}g}"


def write_page(path: Path, template: str, **values: Any) -> Path:
    atomic_write_text(path, render(template, **values))
    return path


# --------------------------------------------------------------------------- the report


def _required(path: Path) -> Path:
    if not path.is_file():
        raise InputError(f"{path} not found (run the judge stages first)")
    return path


def build_report(
    paths: PathsParams, params: ReportParams, bounds: EssayBounds, variants: Sequence[str]
) -> list[Path]:
    """Every variant's page and the index under paths.reports, from what the judge stages
    wrote (their judgement rows carry the texts judged); with `params.mlflow` each page and the
    evaluation figures go to the variant's training run. Returns the pages written."""
    charts = {c.id: c for c in load_charts(paths.charts / "charts.jsonl")}
    check = read_json(_required(paths.metrics / JUDGE_CHECK_METRICS))
    trusted = trusted_sources(check)
    out = paths.reports
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pages = []
    for variant in variants:
        summary = read_json(_required(paths.metrics / f"eval_{variant}.json"))
        judgements = list(read_jsonl(_required(paths.judgements / f"{variant}.jsonl")))
        unknown = [j["id"] for j in judgements if j["id"] not in charts]
        if unknown:
            raise InputError(f"{paths.judgements / variant}.jsonl: charts {unknown[:5]} unknown")
        images = copy_images([charts[j["id"]] for j in judgements], paths.charts, out)
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
            trusted=trusted,
            curve=loss_curve(rows),
            charts=chart_views(judgements, charts, images, bounds, params.max_charts),
            metric_groups=groups,
        )
        pages.append(page)
        log.info("%s: %s (%d charts)", variant, page, len(judgements))
    index = write_page(
        out / "index.html",
        "index.html.j2",
        variants=[
            {"name": v, "summary": read_json(paths.metrics / f"eval_{v}.json")} for v in variants
        ],
        check=check,
        trusted=trusted,
    )
    if params.mlflow:
        for variant, page in zip(variants, pages, strict=True):
            _log_variant(paths, variant, [page, index], out, check)
    return [*pages, index]


def _log_variant(
    paths: PathsParams, variant: str, files: list[Path], out: Path, check: dict[str, Any]
) -> None:
    train = paths.metrics / f"train_{variant}.json"
    run_id = read_json(train).get("mlflow_run_id") if train.is_file() else None
    if not run_id:
        log.info("%s: no MLflow training run recorded; the report is not logged", variant)
        return
    summary = read_json(paths.metrics / f"eval_{variant}.json")
    figures = flat_numbers({"eval": summary, "judge": check})
    if log_to_training_run(run_id, files, out / IMAGES_DIR, figures):
        log.info("%s: report and %d figures logged to run %s", variant, len(figures), run_id)


# --------------------------------------------------------------------------- MLflow


def flat_numbers(data: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every number (and bool) in nested dicts as one `a.b.c` -> float mapping (None skipped)."""
    out: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_numbers(value, f"{name}."))
        elif isinstance(value, bool | int | float) and value is not None:
            out[name] = float(value)
    return out


def log_to_training_run(
    run_id: str, files: Sequence[Path], images_dir: Path | None, metrics: dict[str, float]
) -> bool:
    """Log the report files (under `report/`) and the evaluation figures (`eval.` prefix) to the
    variant's training run; False (logged) when the run cannot be found or written."""
    import mlflow

    from chartdistill.student.training import default_tracking_uri

    uri = os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    try:
        client.get_run(run_id)
        for path in files:
            client.log_artifact(run_id, str(path), artifact_path="report")
        if images_dir is not None and images_dir.is_dir():
            client.log_artifacts(run_id, str(images_dir), artifact_path=f"report/{IMAGES_DIR}")
        for name, value in metrics.items():
            client.log_metric(run_id, name, value)
    except mlflow.exceptions.MlflowException as exc:
        log.warning("MLflow run %s at %s: %s; the report is not logged there", run_id, uri, exc)
        return False
    return True
