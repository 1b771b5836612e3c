"""Sentence-level repair for LLM teachers: plan -> write -> check -> repair.

Each sentence of a teacher's essay is checked on its own (essay.text.sentence_faults: figures
grounded and attributed, claims true, prose). Only the faulty sentences are asked again, one
request each, with the paragraph around them as context and the reasons; the passing ones are
kept. A reply that still fails is replaced by the reference writer's sentence about the same
names (teacher.reference), or dropped when the writer has none. Every sentence keeps its origin:
"model", "repaired" or "computed", so computed text is never counted as the model's.
Peers retry or drop whole items; this repairs single claims.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from chartdistill.data.records import ChartRecord
from chartdistill.essay.grounding import ChartNumbers
from chartdistill.essay.text import (
    EssayBounds,
    SentenceFault,
    sentence_faults,
    sentences,
    strip_wrapping,
    word_count,
)
from chartdistill.llm.cache import CachedClient
from chartdistill.llm.types import ChatRequest
from chartdistill.teacher.prompts import render_sentence_repair
from chartdistill.teacher.reference import Planned, reference_sentences

log = logging.getLogger(__name__)

ORIGINS: tuple[str, ...] = ("model", "repaired", "computed")


@dataclass
class Repairable:
    """An essay under repair: its sections and, per section, each sentence's origin."""

    chart: ChartRecord
    sections: dict[str, str]
    origins: dict[str, list[str]] = field(default_factory=dict)

    def sentences_of(self, section: str) -> list[str]:
        found = sentences(self.sections[section])
        if len(self.origins.get(section, [])) != len(found):
            self.origins[section] = ["model"] * len(found)
        return found


@dataclass
class RepairStats:
    """Counts of one repair round, for metrics/teacher.json."""

    faulty: int = 0
    repaired: int = 0
    computed: int = 0
    dropped: int = 0


@dataclass(frozen=True)
class _Job:
    essay: Repairable
    section: str
    fault: SentenceFault


def repair_sentences(
    essays: list[Repairable],
    client: CachedClient,
    prompts_dir: Path,
    bounds: EssayBounds,
    max_tokens: int,
    temperature: float = 0.0,
    seed: int = 0,
) -> RepairStats:
    """Check every sentence; re-ask the faulty ones in one round (a batch of its own through the
    client); keep a passing answer, else the reference writer's sentence, else drop it.
    Sections and origins are updated in place."""
    jobs = [
        _Job(essay, section, fault)
        for essay in essays
        for section in essay.sections
        if essay.sentences_of(section)
        for fault in sentence_faults(essay.sections[section], essay.chart, bounds)
    ]
    stats = RepairStats(faulty=len(jobs))
    if not jobs:
        return stats
    requests = [
        ChatRequest(
            messages=render_sentence_repair(
                prompts_dir,
                job.essay.chart,
                job.essay.sections[job.section],
                job.fault.sentence,
                job.fault.reasons,
                job.fault.details,
            ),
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
        )
        for job in jobs
    ]
    results = client.complete_all(requests, desc="teacher sentence repairs")
    replacements: dict[tuple[int, str], dict[int, tuple[str | None, str]]] = {}
    planned: dict[int, list[Planned]] = {}  # the reference writer's sentences, once per essay
    for job, result in zip(jobs, results, strict=True):
        answer = _one_sentence(result.text or "") if result.ok else None
        if answer and not sentence_faults(answer, job.essay.chart, bounds):
            new, origin = answer, "repaired"
        else:
            if id(job.essay) not in planned:
                planned[id(job.essay)] = reference_sentences(job.essay.chart, seed)
            new = _computed(job, planned[id(job.essay)])
            origin = "computed" if new else "dropped"
        setattr(stats, origin, getattr(stats, origin) + 1)
        key = (id(job.essay), job.section)
        replacements.setdefault(key, {})[job.fault.index] = (new, origin)
    for essay in essays:
        for section in list(essay.sections):
            changes = replacements.get((id(essay), section))
            if changes:
                _apply(essay, section, changes)
    log.info(
        "sentence repair: %d faulty, %d repaired by the teacher, %d computed, %d dropped",
        stats.faulty,
        stats.repaired,
        stats.computed,
        stats.dropped,
    )
    return stats


def _one_sentence(reply: str) -> str | None:
    """The first sentence of a reply (wrapping stripped), if it is a sentence at all."""
    found = sentences(strip_wrapping(reply).text.strip().strip('"'))
    if not found or word_count(found[0]) < 4:
        return None
    return found[0]


def _computed(job: _Job, reference: list[Planned]) -> str | None:
    """The reference writer's sentence for the same fact: the one sharing most names with the
    faulty sentence (same section first), not already in the essay. A faulty sentence that names
    nothing takes the section's next unused sentence; None when the writer has none left."""
    chart = job.essay.chart
    rows, series = ChartNumbers.from_chart(chart).named(job.fault.sentence)
    names = {str(chart.rows[r][0]) for r in rows} | {chart.series[c] for c in series}
    present = " ".join(job.essay.sections.values())

    def score(planned: Planned) -> tuple[int, bool]:
        return len(planned.names & names), planned.section == job.section

    candidates = [p for p in reference if p.text not in present]
    if job.section in ("introduction", "overview"):
        candidates = [p for p in candidates if p.section == job.section]
    best = max(candidates, key=score, default=None)
    if best is None or (names and not best.names & names and best.section != job.section):
        return None
    return best.text


def _apply(essay: Repairable, section: str, changes: dict[int, tuple[str | None, str]]) -> None:
    kept: list[str] = []
    origins: list[str] = []
    for index, (sentence, origin) in enumerate(
        zip(essay.sentences_of(section), essay.origins[section], strict=True)
    ):
        if index in changes:
            sentence, origin = changes[index]
            if sentence is None:
                continue
        kept.append(sentence)
        origins.append(origin)
    essay.sections[section] = " ".join(kept)
    essay.origins[section] = origins
