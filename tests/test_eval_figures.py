"""Label recall and Wilson intervals for the default profile's evaluation figures."""

from __future__ import annotations

import random

import pytest

from chartdistill.data.synthetic import make_chart
from chartdistill.evaluation.metrics import chart_labels, label_recall, wilson_interval
from chartdistill.evaluation.summary import mean_metrics


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(20, 24)
    assert (round(low, 3), round(high, 3)) == (0.641, 0.933)
    assert wilson_interval(0, 24)[0] == 0.0 and wilson_interval(24, 24)[1] == 1.0
    assert wilson_interval(0, 0) is None
    narrow, wide = wilson_interval(50, 100), wilson_interval(5, 10)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]


def test_label_recall_names_categories_or_line_series() -> None:
    bar = make_chart(random.Random("lr:bar"), "bar", "b")
    labels = chart_labels(bar)
    assert labels == [str(r[0]) for r in bar.rows]
    body = f"The chart shows that {labels[0].upper()} led, while {labels[1]}s were lower."
    assert label_recall(body, bar) == pytest.approx(1 / len(labels))  # "{label}s" is no name
    assert label_recall(" and ".join(labels), bar) == 1.0
    line = make_chart(random.Random("lr:line"), "line", "l")
    assert chart_labels(line) == line.series
    assert label_recall("Nothing relevant here.", line) == 0.0


def test_mean_metrics_gives_wilson_bounds_for_rates() -> None:
    rows = [{"id": str(i), "structure_compliance": i < 3, "words": 100} for i in range(4)]
    summary = mean_metrics(rows)
    assert summary["structure_compliance_rate"] == 0.75
    low, high = wilson_interval(3, 4)
    assert summary["structure_compliance_rate_ci95_low"] == pytest.approx(low, abs=1e-4)
    assert summary["structure_compliance_rate_ci95_high"] == pytest.approx(high, abs=1e-4)
