"""Single-mode essays as a JSON schema (OpenAI `response_format`) and back to the marked text.

A server that supports structured output returns the essay as one JSON object (an `analysis`
and the four sections); `essay_from_json` turns it into the marked format `parse_sections`
reads, so everything after it is the same whichever way the essay came back.
"""

from __future__ import annotations

import json
from typing import Any

from chartdistill.essay.sections import SECTIONS, render_structured

ANALYSIS = "analysis"  # the chain of thought: kept as reasoning, never part of the essay


def essay_response_format() -> dict[str, Any]:
    """The single-mode essay as an OpenAI `json_schema` response format."""
    fields = (ANALYSIS, *SECTIONS)
    schema = {
        "type": "object",
        "properties": {name: {"type": "string"} for name in fields},
        "required": list(fields),
        "additionalProperties": False,
    }
    return {
        "type": "json_schema",
        "json_schema": {"name": "ielts_task1_essay", "strict": True, "schema": schema},
    }


def essay_from_json(text: str) -> str:
    """A reply holding the schema's JSON object as marked text (the analysis in an
    <analysis> block); any other reply unchanged (a server that ignored the schema)."""
    try:
        data = json.loads(text.strip())
    except ValueError:
        return text
    if not isinstance(data, dict) or not all(isinstance(data.get(s), str) for s in SECTIONS):
        return text
    analysis = data.get(ANALYSIS)
    block = f"<analysis>\n{analysis.strip()}\n</analysis>\n\n" if isinstance(analysis, str) else ""
    return block + render_structured({s: data[s] for s in SECTIONS})
