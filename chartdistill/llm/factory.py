"""Pick the backend an LLMParams section asks for: a server by URL, or the embedded model."""

from __future__ import annotations

from chartdistill.llm.types import ChatBackend, LLMParams


def make_backend(params: LLMParams) -> ChatBackend:
    """OpenAIBackend when params.base_url is set, else the in-process EmbeddedBackend."""
    if params.base_url:
        from chartdistill.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(params)
    from chartdistill.llm.embedded import EmbeddedBackend

    return EmbeddedBackend(params.embedded)
