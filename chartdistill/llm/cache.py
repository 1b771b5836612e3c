"""A content-addressed response cache in front of any ChatBackend.

`CachedClient` answers hits locally, sends misses to the backend and stores every success the
moment it arrives, so a rerun sends only what is missing and a killed run loses nothing.

What is cached decides what a rerun repeats:
- a complete reply (it ended with a normal stop) is stored, whatever its text: a well-formed
  reply that later fails validation is a deterministic outcome and is replayed, not re-asked;
- a transient failure is never stored, so the next run asks again: network errors, 429/5xx,
  malformed or empty bodies, and replies that did not stop on their own (cut by max_tokens:
  "truncated"; "content_filter", "tool_call", "no_finish_reason"). An entry written before
  this rule that holds such a reply is read as a miss;
- except a reply cut by max_tokens from a deterministic backend (`deterministic = True`, the
  embedded one): the same request is cut the same way every time, so it is stored as a final
  failure and replayed (a retry that wants more asks with more tokens: another key).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from chartdistill.io import atomic_write_text
from chartdistill.llm.types import (
    ChatBackend,
    ChatRequest,
    ChatResult,
    OnResult,
    finish_error,
    summarise_messages,
)

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
BATCH_STATE_DIR = "batches"  # <cache root>/batches/: a Batch API backend's open batches


_RESULT_FIELDS = (
    "text",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
    "finish_reason",
    "reasoning",
    "logprobs",
)

# A failure a deterministic backend gives again for the same request: stored and replayed.
REPLAYED_FAILURES = frozenset({"truncated"})


class ResponseCache:
    """Content-addressed store: root/<key[:2]>/<key>.json, one successful result per file.

    Files hold the request (inline images reduced to a digest) and the result fields; never
    an API key (requests carry none). Writes are atomic, so a kill never leaves half a file.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # DVC declares each cache an output: it must exist even when nothing was asked (the
        # judge when the gate decided every pair, the teacher when it computes its essays).
        self.root.mkdir(parents=True, exist_ok=True)

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
                error=finish_error(stored["finish_reason"]),
                tries=int(stored.get("tries", 1)),
                cached=True,
                reasoning=str(stored.get("reasoning") or ""),
                logprobs=stored.get("logprobs"),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("cache entry %s is unreadable (%s); treating it as a miss", path, exc)
            return None
        final = entry.get("final_failure") is True and result.error in REPLAYED_FAILURES
        if entry.get("key") != key or not (result.ok or final):
            log.warning(
                "cache entry %s does not match its key, holds no text or an incomplete reply "
                "(%s); a miss",
                path,
                result.error,
            )
            return None
        return result

    def put(self, key: str, model: str, request: ChatRequest, result: ChatResult) -> Path:
        """Store a success, or a failure in REPLAYED_FAILURES (the caller decides it is final:
        CachedClient does so for a deterministic backend only)."""
        final_failure = not result.ok
        if final_failure and result.error not in REPLAYED_FAILURES:
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
        if final_failure:
            entry["final_failure"] = True
        path = self.path(key)
        text = json.dumps(entry, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        atomic_write_text(path, text)
        return path

    def __contains__(self, key: str) -> bool:
        return self.path(key).exists()


def complete_or_failed(result: ChatResult) -> ChatResult:
    """The result, or a failure when it did not end with a normal stop (any backend)."""
    if result.error is None and (error := finish_error(result.finish_reason)) is not None:
        return replace(result, error=error)
    return result


@dataclass
class ClientStats:
    """Counters over the life of a CachedClient (fresh requests only for tokens)."""

    requests_sent: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens a backend served from a computed prefix
    # Of the fresh tokens, those of requests sent through a Batch API (billed at its price).
    batch_prompt_tokens: int = 0
    batch_completion_tokens: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def token_counts(self) -> dict[str, int]:
        """Prompt tokens asked for, those actually prefilled (the rest came from a reused
        prefix), and generated tokens: for the stage metrics."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "prefill_tokens": self.prompt_tokens - self.cached_tokens,
            "cached_prompt_tokens": self.cached_tokens,
            "completion_tokens": self.completion_tokens,
        }


class CachedClient:
    """A backend behind a ResponseCache: hits are answered locally, misses go to the backend,
    and every success (and a deterministic backend's truncation) is stored as it arrives."""

    def __init__(self, backend: ChatBackend, cache: ResponseCache) -> None:
        self.backend = backend
        self.cache = cache
        self.stats = ClientStats()
        self.deterministic = bool(getattr(backend, "deterministic", False))
        self.batch = bool(getattr(backend, "batch", False))
        if hasattr(backend, "use_state_dir"):
            # A Batch API backend keeps its batch ids here: kept with the cache across reruns.
            backend.use_state_dir(cache.root / BATCH_STATE_DIR)

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
            result = complete_or_failed(result)
            self._count(result)
            if result.ok or (self.deterministic and result.error in REPLAYED_FAILURES):
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
        self.stats.prompt_tokens += result.prompt_tokens
        self.stats.completion_tokens += result.completion_tokens
        self.stats.cached_tokens += result.cached_tokens
        if self.batch:
            self.stats.batch_prompt_tokens += result.prompt_tokens
            self.stats.batch_completion_tokens += result.completion_tokens
        if not result.ok:
            reason = result.error or "empty_content"
            self.stats.errors[reason] = self.stats.errors.get(reason, 0) + 1
