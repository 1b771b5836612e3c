"""The teacher: LLM essays with sentence repair, the computed reference writer, the fact sheet."""
