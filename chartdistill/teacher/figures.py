"""The teacher's figures per chart type, for metrics/teacher.json (and `dvc metrics diff`).

For each chart type, and over all charts: how many essays were written and accepted, how well
their figures are grounded in the chart's table, at value level (a figure matches a table
value or a derived figure) and at attribution level (it matches a value of the row or series its
sentence names; chartdistill.essay.grounding), and how many of their claims were checked and
found false, by kind (chartdistill.essay.claims). `accepted_grounded` counts the accepted essays
whose figures are grounded at attribution level at least `min_attributed` (0.8 by the issue's
target); its rate is over all charts of the type, so a failed essay counts against it.
Editing one type's prompt moves only that type's block, since the other types' requests are
unchanged and come from the teacher cache.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from chartdistill.data.records import CHART_TYPES, ChartRecord, EssayRecord
from chartdistill.essay.text import EssayBounds, list_like_sentences, sentences, verify_essay


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _block(
    essays: list[EssayRecord],
    charts: dict[str, ChartRecord],
    bounds: EssayBounds,
    threshold: float,
) -> dict[str, Any]:
    accepted = [e for e in essays if e.status == "accepted"]
    value, attributed, good = [], [], 0
    checked, failed = 0, Counter()
    for essay in accepted:
        chart = charts.get(essay.id)
        if chart is None or not essay.sections:
            continue
        verification = verify_essay(essay.sections, chart, bounds)
        grounding = verification.grounding
        if grounding.fraction is not None:
            value.append(grounding.fraction)
        if grounding.attributed_fraction is not None:
            attributed.append(grounding.attributed_fraction)
            good += grounding.attributed_fraction >= threshold
        checked += len(verification.claims)
        failed.update(c.kind for c in verification.false_claims)
    n = len(essays)
    return {
        "charts": n,
        "accepted": len(accepted),
        "acceptance_rate": round(len(accepted) / n, 4) if n else None,
        "grounded_fraction": _mean(value),
        "attributed_fraction": _mean(attributed),
        "accepted_grounded": good,
        "accepted_grounded_rate": round(good / n, 4) if n else None,
        "claims_checked": checked,
        "claims_false": sum(failed.values()),
        "claims_false_by_kind": dict(sorted(failed.items())),
    }


def teacher_figures(
    essays: list[EssayRecord],
    charts: list[ChartRecord],
    bounds: EssayBounds,
    min_attributed: float = 0.8,
) -> dict[str, Any]:
    """{"all": {...}, "per_type": {chart_type: {...}}} over the essays (accepted ones graded)."""
    by_id = {c.id: c for c in charts}
    per_type = {
        chart_type: _block(
            [e for e in essays if e.chart_type == chart_type], by_id, bounds, min_attributed
        )
        for chart_type in CHART_TYPES
        if any(e.chart_type == chart_type for e in essays)
    }
    return {"all": _block(essays, by_id, bounds, min_attributed), "per_type": per_type}


_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")


def sentence_pattern(sentence: str, chart: ChartRecord) -> str:
    """The sentence with the chart's names and all figures masked: what stays is its pattern."""
    names = sorted({str(r[0]) for r in chart.rows} | set(chart.series), key=len, reverse=True)
    for name in names:
        sentence = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", "X", sentence, flags=re.IGNORECASE)
    return " ".join(_DIGITS.sub("N", sentence).lower().split())


def pattern_shares(essays: list[EssayRecord], charts: list[ChartRecord]) -> dict[str, Any]:
    """How often the commonest sentence pattern recurs: the share of essays holding it, and
    the number of list-like sentences (text.list_like_sentences). A writer whose essays share
    their sentences teaches the student a template, not a language."""
    by_id = {c.id: c for c in charts}
    holding: Counter[str] = Counter()
    listed = 0
    written = [e for e in essays if e.sections and e.id in by_id]
    for essay in written:
        body = "\n\n".join(essay.sections.values())  # type: ignore[union-attr]
        patterns = {sentence_pattern(s, by_id[essay.id]) for s in sentences(body)}
        holding.update(patterns)
        listed += len(list_like_sentences(body))
    top = holding.most_common(1)
    return {
        "essays": len(written),
        "max_pattern_share": round(top[0][1] / len(written), 4) if top and written else None,
        "commonest_pattern": top[0][0] if top else None,
        "list_like_sentences": listed,
    }
