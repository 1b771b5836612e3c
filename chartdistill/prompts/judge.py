"""The judge's prompt: a pairwise comparison of essays A and B against a reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chartdistill.data.records import ChartRecord
from chartdistill.prompts.chart_types import load_type_prompt
from chartdistill.prompts.render import chart_context, fence_safe, render_template


def render_judge_messages(
    prompts_dir: Path,
    chart: ChartRecord,
    reference: str,
    essay_a: str,
    essay_b: str,
    findings_a: str = "",
    findings_b: str = "",
) -> list[dict[str, Any]]:
    """OpenAI chat messages for a pairwise judgement of essays A and B (JSON reply); an empty
    `reference` leaves the reference essay out (known-answer pairs); `findings_a/b` are the
    table checks' findings on each essay (evidence; left out when empty)."""
    prompts_dir = Path(prompts_dir)
    name = load_type_prompt(prompts_dir, chart.chart_type).name
    user = render_template(
        prompts_dir,
        "judge.md",
        chart=chart_context(chart, name),
        reference=fence_safe(reference.strip()),
        essay_a=fence_safe(essay_a.strip()),
        essay_b=fence_safe(essay_b.strip()),
        findings_a=fence_safe(findings_a.strip()),
        findings_b=fence_safe(findings_b.strip()),
    )
    system = render_template(prompts_dir, "judge_system.md")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def judge_answer_prefix(prompts_dir: Path) -> str:
    """The start of the judge's reply up to its verdict (`{"winner": "`): the position where a
    constrained judge scores the verdict letters."""
    return render_template(Path(prompts_dir), "judge_verdict.md")
