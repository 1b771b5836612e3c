"""OpenAI-compatible backend: asyncio + openai.AsyncOpenAI with our own retry loop.

Works with any server that speaks POST /v1/chat/completions (OpenAI, MiniMax, vLLM, Ollama,
llama.cpp, `transformers serve`) by URL. The client's built-in retries are off
(max_retries=0) so that every attempt, backoff and Retry-After is ours and counted.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import openai
from tqdm import tqdm

from chartdistill.llm.types import ChatRequest, ChatResult, LLMParams, OnResult, finish_error

log = logging.getLogger(__name__)

MAX_BAD_RESPONSE_RETRIES = 2  # malformed / empty responses: retried at most this many times
MAX_RETRY_AFTER_S = 600.0  # a server asking for longer than this is capped (and logged)
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
# A request the server refuses as malformed: with response_format set, asked again without it.
REJECTED_FIELD_STATUS = frozenset({"http_400", "http_422"})
# Reasoning a server leaves in the content: leading <think>/<thinking>/<reasoning> blocks, or
# a bare closing tag when the chat template opened the block in the prompt.
_THINK_BLOCK = re.compile(r"^\s*<(think|thinking|reasoning)>(.*?)</\1\s*>", re.DOTALL | re.I)
_THINK_CLOSE = re.compile(r"^(.*?)</(?:think|thinking|reasoning)\s*>", re.DOTALL | re.I)
_THINK_OPEN = re.compile(r"<(?:think|thinking|reasoning)>", re.I)


def split_reasoning(content: str) -> tuple[str, str]:
    """(reasoning, answer): leading <think> blocks, or all text before a bare closing tag when
    the chat template opened the block in the prompt, are reasoning, never part of the answer."""
    parts: list[str] = []
    while match := _THINK_BLOCK.match(content):
        parts.append(match.group(2).strip())
        content = content[match.end() :]
    close = _THINK_CLOSE.match(content)
    if close and not _THINK_OPEN.search(close.group(1)):
        parts.append(close.group(1).strip())
        content = content[close.end() :]
    return "\n\n".join(p for p in parts if p), content.strip()


@dataclass
class _Attempt:
    """The outcome of one HTTP attempt."""

    text: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    reasoning: str = ""
    logprobs: list[dict[str, Any]] | None = None
    error: str | None = None
    retryable: bool = False
    retry_after_s: float | None = None
    detail: str = ""


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` / `retry-after` (seconds or an HTTP date)."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(retry: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Full jitter: uniform(0, min(max_s, base_s * 2**(retry-1))) for retry = 1, 2, ..."""
    return rng.uniform(0.0, min(max_s, base_s * (2 ** max(0, retry - 1))))


def _server_reasoning(message: Any) -> str:
    """Reasoning a server returns beside the content (`reasoning_content`: DeepSeek, vLLM,
    transformers serve; `reasoning`: OpenRouter, Ollama)."""
    for name in ("reasoning_content", "reasoning"):
        value = getattr(message, name, None)
        if value is None:
            value = (getattr(message, "model_extra", None) or {}).get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _parse_completion(completion: Any) -> _Attempt:
    """Text, reasoning, usage and finish reason of a completion.

    Malformed or empty replies are retryable errors. A reply that did not end with a normal
    stop (cut by max_tokens, filtered, a tool call, no finish reason) is an error named by
    `finish_error` ("truncated", ...) that keeps its text: not retried here (the same request
    would end the same way), never cached, and the caller may ask again with more tokens.
    """
    try:
        choices = completion.choices
        choice = choices[0]
        message = choice.message
        content = message.content
        finish = choice.finish_reason
    except (AttributeError, IndexError, KeyError, TypeError) as exc:
        return _Attempt(error="malformed_response", retryable=True, detail=repr(exc))
    usage = getattr(completion, "usage", None)
    prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    if content is not None and not isinstance(content, str):
        return _Attempt(error="malformed_response", retryable=True, detail="content not a string")
    reasoning, content = split_reasoning(content or "")
    reasoning = "\n\n".join(r for r in (_server_reasoning(message), reasoning) if r)
    stopped = finish_error(finish)
    if stopped is not None:
        return _Attempt(
            text=content or None,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=finish,
            reasoning=reasoning,
            error=stopped,
            detail=f"finish_reason={finish}",
        )
    if not content:
        return _Attempt(
            error="empty_content",
            retryable=True,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            detail=f"finish_reason={finish}",
        )
    return _Attempt(
        text=content,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        finish_reason=finish,
        reasoning=reasoning,
        logprobs=_token_logprobs(choice),
    )


def _token_logprobs(choice: Any) -> list[dict[str, Any]] | None:
    """Per generated token {"token", "top": {alternative: logprob}} from a choice's `logprobs`
    (None when the server sent none or something else)."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not isinstance(content, list):
        return None
    out = []
    for item in content:
        token, logprob = getattr(item, "token", None), getattr(item, "logprob", None)
        if not isinstance(token, str) or not isinstance(logprob, int | float):
            return None
        top = {token: float(logprob)}
        for alt in getattr(item, "top_logprobs", None) or []:
            alt_token, alt_lp = getattr(alt, "token", None), getattr(alt, "logprob", None)
            if isinstance(alt_token, str) and isinstance(alt_lp, int | float):
                top.setdefault(alt_token, float(alt_lp))
        out.append({"token": token, "top": top})
    return out


def _classify(exc: Exception) -> _Attempt:
    """Map an exception from one attempt to an error name and whether to retry."""
    if isinstance(exc, openai.APITimeoutError):
        return _Attempt(error="timeout", retryable=True, detail=str(exc))
    if isinstance(exc, openai.APIConnectionError):
        return _Attempt(error="connection_error", retryable=True, detail=str(exc))
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        headers = exc.response.headers if exc.response is not None else None
        return _Attempt(
            error=f"http_{status}",
            retryable=status >= 500 or status in RETRYABLE_STATUS,
            retry_after_s=parse_retry_after(headers),
            detail=str(exc)[:300],
        )
    if isinstance(exc, openai.APIResponseValidationError | ValueError | TypeError):
        # JSON that does not decode (malformed or truncated body) or does not fit the schema.
        return _Attempt(error="malformed_response", retryable=True, detail=repr(exc)[:300])
    if isinstance(exc, asyncio.TimeoutError):
        return _Attempt(error="timeout", retryable=True, detail="asyncio timeout")
    if isinstance(exc, OSError):
        return _Attempt(error="connection_error", retryable=True, detail=repr(exc))
    return _Attempt(error=f"client_error:{type(exc).__name__}", detail=repr(exc)[:300])


class OpenAIBackend:
    """ChatBackend over an OpenAI-compatible HTTP server."""

    deterministic = False  # a server may batch, sample or change under the same name

    def __init__(self, params: LLMParams) -> None:
        if not params.base_url:
            raise ValueError("OpenAIBackend: params.base_url is not set (None means embedded)")
        self.params = params
        self.model_id = params.model
        self._rng = random.Random()  # backoff jitter only

    def _api_key(self) -> str:
        return os.environ.get(self.params.api_key_env) or "not-needed"

    def complete_all(self, requests: list[ChatRequest], on_result: OnResult) -> list[ChatResult]:
        """All requests, `concurrency` at a time. on_result runs in a worker thread, one call
        at a time and in completion order; an exception from it cancels the rest and
        propagates (results already delivered stay delivered)."""
        if not requests:
            return []
        return asyncio.run(self._run_all(requests, on_result))

    async def _run_all(self, requests: list[ChatRequest], on_result: OnResult) -> list[ChatResult]:
        params = self.params
        client = openai.AsyncOpenAI(
            base_url=params.base_url,
            api_key=self._api_key(),
            max_retries=0,
            timeout=params.timeout_s,
        )
        semaphore = asyncio.Semaphore(params.concurrency)
        results: list[ChatResult | None] = [None] * len(requests)

        async def one(index: int) -> tuple[int, ChatResult]:
            async with semaphore:
                return index, await self._complete(client, requests[index])

        tasks = [asyncio.create_task(one(i)) for i in range(len(requests))]
        try:
            with tqdm(total=len(requests), desc=self.model_id, unit="req") as bar:
                for finished in asyncio.as_completed(tasks):
                    index, result = await finished
                    results[index] = result
                    bar.update(1)
                    # In a worker thread, one call at a time: callers persist each result
                    # (an fsync'd cache write is ~8 ms here), which would otherwise stall
                    # every request in flight on this event loop.
                    await asyncio.to_thread(on_result, index, result)
        finally:
            pending = [task for task in tasks if not task.done()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await client.close()
        return [r for r in results if r is not None]

    async def _complete(self, client: openai.AsyncOpenAI, request: ChatRequest) -> ChatResult:
        """One request with retries; never raises for the request's own failure."""
        params = self.params
        start = time.perf_counter()
        tries = 0
        bad_responses = 0
        while True:
            tries += 1
            attempt = await self._attempt(client, request)
            if request.response_format is not None and attempt.error in REJECTED_FIELD_STATUS:
                # The server rejects `response_format` (or something else in the request):
                # ask once more without it, as before the field existed.
                log.info(
                    "%s: %s with response_format; asking without it", self.model_id, attempt.error
                )
                request = replace(request, response_format=None)
                continue
            if attempt.error is None:
                return ChatResult(
                    text=attempt.text,
                    prompt_tokens=attempt.prompt_tokens,
                    completion_tokens=attempt.completion_tokens,
                    latency_s=time.perf_counter() - start,
                    finish_reason=attempt.finish_reason,
                    error=None,
                    tries=tries,
                    reasoning=attempt.reasoning,
                    logprobs=attempt.logprobs,
                )
            bad = attempt.error in ("malformed_response", "empty_content")
            bad_responses += bad
            give_up = (
                not attempt.retryable
                or tries > params.max_retries
                or (bad and bad_responses > MAX_BAD_RESPONSE_RETRIES)
            )
            if give_up:
                log.warning(
                    "%s: request failed after %d tries: %s %s",
                    self.model_id,
                    tries,
                    attempt.error,
                    attempt.detail,
                )
                return ChatResult(
                    text=attempt.text,  # a truncated or filtered reply keeps what came back
                    prompt_tokens=attempt.prompt_tokens,
                    completion_tokens=attempt.completion_tokens,
                    latency_s=time.perf_counter() - start,
                    finish_reason=attempt.finish_reason,
                    error=attempt.error,
                    tries=tries,
                    reasoning=attempt.reasoning,
                )
            delay = self._delay(tries, attempt)
            log.debug("%s: %s, retry %d in %.2fs", self.model_id, attempt.error, tries, delay)
            await asyncio.sleep(delay)

    def _delay(self, retry: int, attempt: _Attempt) -> float:
        if attempt.retry_after_s is not None:
            if attempt.retry_after_s > MAX_RETRY_AFTER_S:
                log.warning(
                    "server asked to wait %.0fs; waiting %.0fs",
                    attempt.retry_after_s,
                    MAX_RETRY_AFTER_S,
                )
            return min(attempt.retry_after_s, MAX_RETRY_AFTER_S)
        p = self.params
        return backoff_delay(retry, p.backoff_base_s, p.backoff_max_s, self._rng)

    async def _attempt(self, client: openai.AsyncOpenAI, request: ChatRequest) -> _Attempt:
        kwargs: dict[str, Any] = {
            "model": self.params.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.top_logprobs is not None:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = request.top_logprobs
        if request.response_format is not None:
            kwargs["response_format"] = {"type": request.response_format}
        try:
            completion = await client.chat.completions.create(**kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a classified result
            return _classify(exc)
        return _parse_completion(completion)
