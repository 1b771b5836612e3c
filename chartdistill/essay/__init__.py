"""Essay text: the four sections and both variants, parsing, checks, numeric grounding."""
