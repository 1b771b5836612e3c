"""Judging students: the pairwise LLM judge, automatic metrics and the per-variant summary."""
