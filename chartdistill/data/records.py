"""The records that travel between stages (one JSON object per line in each stage's output)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from chartdistill.io import read_jsonl, write_jsonl

ChartType = Literal["bar", "line", "pie", "table"]
CHART_TYPES: tuple[ChartType, ...] = ("bar", "line", "pie", "table")


class ChartRecord(BaseModel):
    """One chart: its image (relative to the charts folder) and its ground-truth table.

    `columns[0]` names the category / time column; `columns[1:]` are the series.
    Each row is `[label, value_1, ..., value_n]` with numeric values (None where missing).
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    chart_type: ChartType
    title: str
    x_label: str = ""
    y_label: str = ""
    unit: str = ""
    columns: list[str]
    rows: list[list[Any]]
    image: str
    source: str
    split: str | None = None
    provenance: dict[str, Any] = {}

    @property
    def held_out(self) -> bool:
        """A test chart made for evaluation only (charts.test_counts): no teacher essay needed."""
        return bool(self.provenance.get("held_out"))

    @field_validator("rows")
    @classmethod
    def _rows_not_empty(cls, rows: list[list[Any]]) -> list[list[Any]]:
        if not rows:
            raise ValueError("table has no rows")
        return rows

    @model_validator(mode="after")
    def _rows_match_columns(self) -> ChartRecord:
        width = len(self.columns)
        if width < 2:
            raise ValueError("table needs a label column and at least one series")
        for number, row in enumerate(self.rows, start=1):
            if len(row) != width:
                raise ValueError(f"row {number} has {len(row)} cells, expected {width}")
            if any(v is not None and not isinstance(v, int | float) for v in row[1:]):
                raise ValueError(f"row {number} has a non-numeric value: {row[1:]}")
        if all(v is None for row in self.rows for v in row[1:]):
            raise ValueError("table has no numeric values")
        return self

    @property
    def series(self) -> list[str]:
        return self.columns[1:]

    def values(self) -> list[float]:
        return [float(v) for row in self.rows for v in row[1:] if v is not None]

    def table_markdown(self) -> str:
        """The table as pipe-separated text, the form prompts show to a language model."""
        header = " | ".join(self.columns)
        body = "\n".join(" | ".join(_cell(v) for v in row) for row in self.rows)
        return f"{header}\n{body}"


class Reject(BaseModel):
    """An input item that a stage skipped, and why."""

    model_config = ConfigDict(extra="forbid")

    item: str
    reason: str
    detail: str = ""


def _cell(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def load_charts(path: Path) -> list[ChartRecord]:
    return [ChartRecord.model_validate(row) for row in read_jsonl(path)]


def save_records(path: Path, records: list[BaseModel]) -> None:
    write_jsonl(path, (r.model_dump(mode="json") for r in records))


EssayStatus = Literal["accepted", "rejected", "failed"]


class EssayRecord(BaseModel):
    """One teacher essay for one chart: parsed sections beside the raw text, and its fate.

    status: accepted (passed validation), rejected (answered but failed validation after every
    attempt; `reasons` says why), failed (no usable answer; `error` says why).
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    chart_type: ChartType
    prompt_hash: str
    model: str
    mode: str
    status: EssayStatus
    sections: dict[str, str] | None = None
    raw: str = ""
    reasoning: str = ""
    attempts: int = 0
    reasons: list[str] = []
    cleaned: list[str] = []  # harmless wrapping stripped from the replies ("code_fence", ...)
    # Who wrote each sentence, per section: "model" (the teacher's reply), "repaired" (the
    # teacher's answer to a one-sentence repair request) or "computed" (the reference writer).
    origins: dict[str, list[str]] = {}
    # Claims checked against the table: {"checked", "failed", "failed_by_kind"} (essay.claims).
    claims: dict[str, Any] = {}
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0


def load_essays(path: Path) -> list[EssayRecord]:
    return [EssayRecord.model_validate(row) for row in read_jsonl(path)]
