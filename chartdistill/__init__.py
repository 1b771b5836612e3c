"""chartdistill: distil a teacher LLM's chart essays into a small vision-language student."""

__version__ = "0.1.0"
