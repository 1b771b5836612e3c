"""Pick the backend an LLMParams section asks for: a server by URL, or the embedded model."""

from __future__ import annotations

import logging

from chartdistill.llm.types import ChatBackend, LLMParams

log = logging.getLogger(__name__)


def make_backend(params: LLMParams) -> ChatBackend:
    """OpenAIBackend when params.base_url is set (OpenAIBatchBackend with `batch: true`),
    else the in-process EmbeddedBackend."""
    if params.base_url and params.batch:
        from chartdistill.llm.batch import OpenAIBatchBackend

        return OpenAIBatchBackend(params)
    if params.base_url:
        from chartdistill.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(params)
    if params.batch:
        log.warning("llm.batch is for a server (base_url); the embedded model runs in process")
    from chartdistill.llm.embedded import EmbeddedBackend

    return EmbeddedBackend(params.embedded)
