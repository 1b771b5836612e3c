"""Prompt rendering; each role module names the prompt files it reads."""
