"""The fixed essay structure shared by teacher output, datasets and student evaluation.

An essay is four sections, always in this order: the introduction describes the chart, two
body paragraphs give the key features and comparisons, and the overview sums up the trends.
"""

from __future__ import annotations

SECTIONS: tuple[str, ...] = ("introduction", "features_1", "features_2", "overview")

# The marker line that opens each section in the structured format.
MARKERS: dict[str, str] = {
    "introduction": "Introduction:",
    "features_1": "Key features, paragraph 1:",
    "features_2": "Key features, paragraph 2:",
    "overview": "Overview:",
}

# What each section must do, shown to the teacher and in dataset cards.
PURPOSE: dict[str, str] = {
    "introduction": "paraphrase what the chart shows: subject, place, period and units",
    "features_1": "describe the most important features and comparisons with exact figures",
    "features_2": "describe the remaining key features and contrasts with exact figures",
    "overview": "summarise the main trends or the overall picture without new figures",
}


def render_structured(sections: dict[str, str]) -> str:
    """Essay with a marker line before each section."""
    return "\n\n".join(f"{MARKERS[name]}\n{sections[name].strip()}" for name in SECTIONS)


def render_unstructured(sections: dict[str, str]) -> str:
    """The same essay as plain paragraphs."""
    return "\n\n".join(sections[name].strip() for name in SECTIONS)


# The two dataset variants: the same essay with and without its section markers.
VARIANTS = {"structured": render_structured, "unstructured": render_unstructured}
