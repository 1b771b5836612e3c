"""Seeded synthetic chart generator: bar (single and grouped), line, pie and table charts.

Every chart is drawn from `random.Random(f"{seed}:{chart_type}:{index}")`, so the same
params give byte-identical images and tables, and adding charts of one type never changes
the others. Held-out test charts (`test_counts`) come from their own streams
(`f"{seed}:test:{chart_type}:{index}"`) and carry `split: test` and `held_out` in their
provenance: the teacher never writes for them (teacher.test_references), so evaluation can
use many more charts than the teacher writes for. A share of the bar and line charts
(`value_labels_share`) prints each value on the chart, as Statista's charts do; the rest stay
IELTS-style, with axes only (pie charts always print their percentages, tables their cells).
That draw has its own random stream, so changing the share never changes any chart's data.
"""

from __future__ import annotations

import io
import logging
import random
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from tqdm import tqdm

from chartdistill.config import Section
from chartdistill.data.chart2text import Chart2TextParams
from chartdistill.data.records import CHART_TYPES, ChartRecord, ChartType, Reject
from chartdistill.data.topics import PLACES, TOPICS, Topic
from chartdistill.io import atomic_write_bytes

log = logging.getLogger(__name__)

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


class ChartsParams(Section):
    source: Literal["synthetic", "chart2text"] = "synthetic"
    seed: int = 1234
    counts: dict[ChartType, int] = {"bar": 12, "line": 12, "pie": 10, "table": 10}
    # Held-out test charts (split: test) on top of `counts` (synthetic source only).
    test_counts: dict[ChartType, int] = {"bar": 6, "line": 6, "pie": 6, "table": 6}
    width: int = 448
    height: int = 336
    value_labels_share: float = Field(default=0.5, ge=0, le=1)
    chart2text: Chart2TextParams = Chart2TextParams()

    @model_validator(mode="after")
    def _check(self) -> ChartsParams:
        if any(n < 0 for n in [*self.counts.values(), *self.test_counts.values()]):
            raise ValueError("counts must be >= 0")
        if self.width < 64 or self.height < 64:
            raise ValueError("width and height must be at least 64 pixels")
        return self


def _round(value: float, decimals: int) -> float:
    return round(value, decimals) if decimals else float(round(value))


def _pick_values(rng: random.Random, topic: Topic, n: int) -> list[float]:
    return [_round(rng.uniform(topic.low, topic.high), topic.decimals) for _ in range(n)]


def _walk(rng: random.Random, topic: Topic, n: int) -> list[float]:
    """A trending series with noise, kept inside the topic's range."""
    span = topic.high - topic.low
    value = rng.uniform(topic.low, topic.high)
    trend = rng.uniform(-0.12, 0.12) * span
    out = []
    for _ in range(n):
        out.append(_round(value, topic.decimals))
        value += trend + rng.gauss(0, 0.06 * span)
        if not topic.low <= value <= topic.high:  # bounce off the range instead of flatlining
            trend = -trend
            value = min(topic.high, max(topic.low, value))
    return out


def _shares(rng: random.Random, n: int) -> list[float]:
    """Whole-number percentages that sum to exactly 100, each at least 2."""
    weights = [rng.uniform(0.3, 1.0) ** 2 for _ in range(n)]
    total = sum(weights)
    shares = [max(2, round(100 * w / total)) for w in weights]
    shares[shares.index(max(shares))] += 100 - sum(shares)
    return [float(s) for s in shares]


def _period(series: list[str], year: int) -> str:
    """The years a grouped chart covers when its groups are years, else the drawn year."""
    years = [s for s in series if s.isdigit()]
    if len(years) < 2:
        return str(year)
    return f"{', '.join(years[:-1])} and {years[-1]}"


def _unit_suffix(unit: str) -> str:
    return f" ({unit})" if unit else ""


def make_chart(rng: random.Random, chart_type: ChartType, chart_id: str) -> ChartRecord:
    """Draw one chart's data and labels (no image) from the topic bank."""
    topic = rng.choice(TOPICS)
    place = rng.choice(PLACES)
    year = rng.randrange(2005, 2024)
    n_cats = rng.randint(4, min(6, len(topic.categories)))
    cats = rng.sample(topic.categories, n_cats)
    unit = topic.unit
    y_label = f"{topic.subject}{_unit_suffix(unit)}"
    if chart_type == "bar":
        grouped = rng.random() < 0.5
        series = list(topic.groups[: rng.randint(2, len(topic.groups))]) if grouped else [str(year)]
        rows = [[c, *_pick_values(rng, topic, len(series))] for c in cats]
        title = f"{topic.subject} in {place}, {_period(series, year)}"
        x_label = topic.category_name
    elif chart_type == "line":
        step = rng.choice((1, 2, 5))
        n_points = rng.randint(6, 9)
        start = rng.randrange(1980, 2024 - step * (n_points - 1))
        years = [start + step * i for i in range(n_points)]
        series = cats[: rng.randint(1, 4)]
        columns_values = [_walk(rng, topic, n_points) for _ in series]
        rows = [[str(y), *(col[i] for col in columns_values)] for i, y in enumerate(years)]
        title = f"{topic.subject} in {place}, {years[0]}-{years[-1]}"
        x_label = "Year"
    elif chart_type == "pie":
        series = [f"Share of total, {year}"]
        rows = [[c, s] for c, s in zip(cats, _shares(rng, n_cats), strict=True)]
        title = f"{topic.subject}: breakdown by {topic.category_name.lower()} in {place}, {year}"
        unit, x_label, y_label = "%", topic.category_name, "Share of total (%)"
    else:
        series = list(topic.groups)
        rows = [[c, *_pick_values(rng, topic, len(series))] for c in cats]
        title = f"{topic.subject}{_unit_suffix(unit)} in {place}, {_period(series, year)}"
        x_label = topic.category_name
    return ChartRecord(
        id=chart_id,
        chart_type=chart_type,
        title=title,
        x_label=x_label,
        y_label=y_label,
        unit=unit,
        columns=[x_label, *series],
        rows=rows,
        image=f"images/{chart_id}.png",
        source="synthetic",
        provenance={"generator": "chartdistill.charts", "topic": topic.subject},
    )


def render_png(chart: ChartRecord, width: int, height: int, value_labels: bool = False) -> bytes:
    """Draw the chart with matplotlib (Agg) and return deterministic PNG bytes.

    `value_labels`: print each bar's or point's value on the chart (bar and line charts).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width / 100, height / 100), dpi=100)
    try:
        _DRAW[chart.chart_type](ax, chart)
        if value_labels and chart.chart_type in _LABEL:
            _LABEL[chart.chart_type](ax, chart)
        ax.set_title(chart.title, fontsize=8, wrap=True)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
        return buf.getvalue()
    finally:
        plt.close(fig)


def _draw_bar(ax, chart: ChartRecord) -> None:
    labels = [str(r[0]) for r in chart.rows]
    n = len(chart.series)
    width = 0.8 / n
    for j, name in enumerate(chart.series):
        xs = [i + (j - (n - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, [r[j + 1] for r in chart.rows], width, label=name, color=PALETTE[j])
    ax.set_xticks(range(len(labels)), labels, fontsize=6, rotation=20)
    ax.set_xlabel(chart.x_label, fontsize=7)
    ax.set_ylabel(chart.y_label, fontsize=6)
    ax.tick_params(axis="y", labelsize=6)
    if n > 1:
        ax.legend(fontsize=6)


def _draw_line(ax, chart: ChartRecord) -> None:
    xs = [str(r[0]) for r in chart.rows]
    for j, name in enumerate(chart.series):
        ax.plot(xs, [r[j + 1] for r in chart.rows], marker="o", ms=3, label=name, color=PALETTE[j])
    ax.set_xlabel(chart.x_label, fontsize=7)
    ax.set_ylabel(chart.y_label, fontsize=6)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6)


def _draw_pie(ax, chart: ChartRecord) -> None:
    ax.pie(
        [r[1] for r in chart.rows],
        labels=[str(r[0]) for r in chart.rows],
        autopct="%1.0f%%",
        colors=PALETTE[: len(chart.rows)],
        textprops={"fontsize": 6},
        startangle=90,
        counterclock=False,
    )
    ax.axis("equal")


def _draw_table(ax, chart: ChartRecord) -> None:
    ax.axis("off")
    cells = [[_fmt(v) for v in row[1:]] for row in chart.rows]
    table = ax.table(
        cellText=cells,
        rowLabels=[str(r[0]) for r in chart.rows],
        colLabels=chart.series,
        loc="center",
        cellLoc="center",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.scale(1, 1.4)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else str(value)


_DRAW = {"bar": _draw_bar, "line": _draw_line, "pie": _draw_pie, "table": _draw_table}


def _label_bars(ax, chart: ChartRecord) -> None:
    for container in ax.containers:
        ax.bar_label(
            container, labels=[_fmt(v) for v in container.datavalues], fontsize=6, padding=1
        )
    ax.margins(y=0.12)


def _label_points(ax, chart: ChartRecord) -> None:
    for j, line in enumerate(ax.get_lines()):
        values = [row[j + 1] for row in chart.rows]
        for x, value in zip(line.get_xdata(), values, strict=True):
            if value is not None:
                ax.annotate(
                    _fmt(value),
                    (x, value),
                    textcoords="offset points",
                    xytext=(0, 3),
                    ha="center",
                    fontsize=6,
                    color=PALETTE[j],
                )
    ax.margins(y=0.12)


_LABEL = {"bar": _label_bars, "line": _label_points}


def has_value_labels(params: ChartsParams, chart_type: ChartType, stream: str) -> bool:
    """Whether this chart prints its values: drawn from its own stream, apart from its data."""
    if chart_type not in _LABEL:
        return False
    draw = random.Random(f"{stream}:value_labels").random()
    return draw < params.value_labels_share


def _jobs(params: ChartsParams) -> list[tuple[ChartType, str, str, str | None]]:
    """(chart type, chart id, random stream, split) for every chart the params ask for."""
    jobs: list[tuple[ChartType, str, str, str | None]] = []
    for split, counts in ((None, params.counts), ("test", params.test_counts)):
        tag = f"{split}:" if split else ""  # held-out charts: "test:" in stream and id
        for chart_type in CHART_TYPES:
            for index in range(counts.get(chart_type, 0)):
                chart_id = f"syn-{chart_type}-{tag.replace(':', '-')}{index:04d}"
                stream = f"{params.seed}:{tag}{chart_type}:{index}"
                jobs.append((chart_type, chart_id, stream, split))
    return jobs


def generate_synthetic(
    params: ChartsParams, out_dir: Path
) -> tuple[list[ChartRecord], list[Reject]]:
    """Write `images/<id>.png` under out_dir for every requested chart; return the records."""
    records: list[ChartRecord] = []
    rejects: list[Reject] = []
    for chart_type, chart_id, stream, split in tqdm(_jobs(params), desc="charts", unit="chart"):
        try:
            chart = make_chart(random.Random(stream), chart_type, chart_id)
            if split == "test":
                chart.split, chart.provenance["held_out"] = split, True
            labelled = has_value_labels(params, chart_type, stream)
            chart.provenance["value_labels"] = labelled
            png = render_png(chart, params.width, params.height, value_labels=labelled)
        except Exception as exc:  # one broken chart must not sink the rest
            log.warning("chart %s skipped: %s", chart_id, exc)
            rejects.append(Reject(item=chart_id, reason="render_failed", detail=str(exc)))
            continue
        atomic_write_bytes(out_dir / chart.image, png)
        records.append(chart)
    return records, rejects
