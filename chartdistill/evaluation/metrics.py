"""Automatic metrics for one essay (teacher, baseline or fine-tuned student) against its chart.

Every text-level metric reads the essay body: chain-of-thought blocks and section marker lines
are removed first (a marker such as "Key features, paragraph 1:" must not count as a number).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from chartdistill.data.records import ChartRecord
from chartdistill.essay.claims import Verification
from chartdistill.essay.grounding import ChartNumbers
from chartdistill.essay.sections import SECTIONS
from chartdistill.essay.text import (
    EssayBounds,
    ParsedEssay,
    essay_body,
    has_loop,
    is_question_list,
    list_lines,
    parse_sections,
    repeated_ngram_rate,
    sentences,
    validation,
    word_count,
    words,
)

__all__ = [
    "EssayCheck",
    "check_essay",
    "essay_metrics",
    "key_value_recall",
    "key_values",
    "label_recall",
    "off_task",
    "repeated_ngram_rate",
    "rouge_l",
    "structure_compliance",
    "wilson_interval",
    "word_count",
]

# "mostly_questions": questions make up the text (is_question_list); not "question_list", the
# validation reason an essay gets for asking any question at all (one code, one meaning).
OFF_TASK_CODES: tuple[str, ...] = ("empty", "mostly_questions", "list_format", "one_liner")
_ONE_LINER_WORDS = 30
_LIST_FORMAT_MIN_LINES = 3


def key_values(chart: ChartRecord) -> list[float]:
    """Largest, smallest, first and last value of each series, deduplicated, in table order."""
    keys: list[float] = []
    for c in range(1, len(chart.columns)):
        series = [float(row[c]) for row in chart.rows if row[c] is not None]
        if not series:
            continue
        for value in (max(series), min(series), series[0], series[-1]):
            if value not in keys:
                keys.append(value)
    return keys


def chart_labels(chart: ChartRecord) -> list[str]:
    """The names an essay should use: the series for a line graph (its rows are time points),
    else the categories (the rows)."""
    if chart.chart_type == "line":
        return list(chart.series)
    return [str(row[0]) for row in chart.rows]


def label_recall(body: str, chart: ChartRecord) -> float:
    """Share of the chart's category (or line series) names that the essay body names, as
    whole words, case-insensitive."""
    labels = [label for label in chart_labels(chart) if label.strip()]
    if not labels:
        return 1.0
    text = " ".join(body.split()).lower()
    named = 0
    for label in labels:
        words = r"\s+".join(re.escape(part) for part in label.lower().split())
        named += bool(re.search(rf"(?<!\w){words}(?!\w)", text))
    return named / len(labels)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """Wilson score interval for a rate (95 % at z=1.96); None when n is 0."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def key_value_recall(
    body: str, chart: ChartRecord, tolerance: float, numbers: ChartNumbers | None = None
) -> float:
    """Share of the chart's key values that the essay body states."""
    table = numbers or ChartNumbers.from_chart(chart)
    mentions = table.split(body, tolerance)[0]
    keys = key_values(chart)
    stated = sum(
        1 for key in keys if any(table.mentions_value(m, key, tolerance) for m in mentions)
    )
    return stated / len(keys)


def structure_compliance(parsed: ParsedEssay) -> bool:
    """All four section markers are present (variants allowed), each once, in order."""
    complete = parsed.had_markers and parsed.sections is not None
    return complete and parsed.marker_order == list(SECTIONS)


def off_task(body: str) -> str | None:
    """Why the essay body is not an essay at all ("empty", "mostly_questions", "list_format",
    "one_liner"), or None."""
    if word_count(body) == 0:
        return "empty"
    if is_question_list(body):
        return "mostly_questions"
    listed, lines = list_lines(body)
    if listed >= _LIST_FORMAT_MIN_LINES or (listed and 2 * listed >= lines):
        return "list_format"
    if len(sentences(body)) < 2 or word_count(body) < _ONE_LINER_WORDS:
        return "one_liner"
    return None


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 on lowercase word tokens (longest common subsequence)."""
    cand, ref = words(candidate), words(reference)
    if not cand or not ref:
        return 0.0
    lcs = _lcs_length(cand, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def _lcs_length(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


@dataclass(frozen=True)
class EssayCheck:
    """One essay checked against its chart, once: the sections parsed, the validation reasons
    at the evaluation bounds and the verification (figures and claims) they rest on, and why
    the essay is no essay at all (off_task). Metrics, the judge's gate and the report read
    this; nothing grounds the essay again."""

    text: str
    parsed: ParsedEssay
    reasons: list[str]
    verification: Verification
    off_task: str | None
    key_value_recall: float

    @property
    def body(self) -> str:
        return self.parsed.body


def checked_sections(parsed: ParsedEssay) -> dict[str, str]:
    """What validation reads: the sections found (all four, or those there were), else the
    whole body as one key-features paragraph, so an essay without markers is still checked
    for its figures, claims and loops (and fails missing_section)."""
    if parsed.partial:
        return parsed.partial
    return {"features_1": parsed.body} if parsed.body.strip() else {}


def check_essay(
    text: str, chart: ChartRecord, bounds: EssayBounds, numbers: ChartNumbers | None = None
) -> EssayCheck:
    """Check one essay against its chart at `bounds` (one grounding, one claims check)."""
    numbers = numbers or ChartNumbers.from_chart(chart)
    parsed = parse_sections(text)
    reasons, verification = validation(checked_sections(parsed), chart, bounds, numbers)
    return EssayCheck(
        text=text,
        parsed=parsed,
        reasons=reasons,
        verification=verification,
        off_task=off_task(parsed.body),
        key_value_recall=key_value_recall(parsed.body, chart, bounds.tolerance, numbers),
    )


def check_sections(
    sections: dict[str, str],
    chart: ChartRecord,
    bounds: EssayBounds,
    numbers: ChartNumbers | None = None,
    had_markers: bool = True,
) -> EssayCheck:
    """check_essay for an essay known by its sections (a teacher or reference-writer essay):
    checked as written, never rendered and parsed back; `had_markers` says whether the text
    the judge saw carried the section markers (the structured variant)."""
    numbers = numbers or ChartNumbers.from_chart(chart)
    body = "\n\n".join(sections[name].strip() for name in SECTIONS if name in sections)
    complete = all(name in sections for name in SECTIONS)
    parsed = ParsedEssay(
        sections=dict(sections) if complete else None,
        reasoning="",
        error=None if complete else "missing sections",
        had_markers=had_markers,
        body=body,
        partial=dict(sections),
        marker_order=[name for name in SECTIONS if name in sections] if had_markers else [],
    )
    reasons, verification = validation(checked_sections(parsed), chart, bounds, numbers)
    return EssayCheck(
        text=body,
        parsed=parsed,
        reasons=reasons,
        verification=verification,
        off_task=off_task(body),
        key_value_recall=key_value_recall(body, chart, bounds.tolerance, numbers),
    )


def essay_metrics(
    text: str, chart: ChartRecord, reference: str | None, bounds: EssayBounds
) -> dict[str, float | bool | str | None]:
    """All automatic metrics for one essay (check_essay, then check_metrics)."""
    reference_body = None if reference is None else essay_body(reference)
    return check_metrics(check_essay(text, chart, bounds), chart, reference_body, bounds)


def check_metrics(
    check: EssayCheck, chart: ChartRecord, reference_body: str | None, bounds: EssayBounds
) -> dict[str, float | bool | str | None]:
    """All automatic metrics for one checked essay; `reference_body` (the reference essay's
    body, without markers) enables ROUGE-L.

    Text-level figures (words, numbers, loop, off_task, rouge_l) read the whole essay body;
    `valid` and `reasons` come from the validation in `check` (an unparseable output is
    invalid with "missing_section" among its reasons).
    """
    parsed = check.parsed
    body = parsed.body
    grounding = check.verification.grounding
    words_in_body = word_count(body)
    return {
        "words": words_in_body,
        "within_word_bounds": bounds.min_words <= words_in_body <= bounds.max_words,
        "structure_compliance": structure_compliance(parsed),
        "had_markers": parsed.had_markers,
        "parse_error": parsed.error,
        "numbers_mentioned": grounding.mentioned,
        "numbers_grounded": grounding.grounded,
        "numeric_precision": grounding.fraction,  # value level: the figure is in the table
        "numbers_attributed": grounding.attributed,
        # attribution level: the figure belongs to the row or series its sentence names
        "attributed_precision": grounding.attributed_fraction,
        "false_claims": len(check.verification.false_claims),
        "key_value_recall": check.key_value_recall,
        "label_recall": label_recall(body, chart),
        "repeated_trigram_rate": repeated_ngram_rate(body, 3),
        "loop": has_loop(body, bounds.max_repeated_trigram_rate),
        "off_task": check.off_task,
        "rouge_l": None if reference_body is None else rouge_l(body, reference_body),
        "valid": not check.reasons,
        "reasons": ",".join(check.reasons),
    }
