"""The provider's Batch API behind the ChatBackend interface: half the price, resumable.

`OpenAIBatchBackend.complete_all` writes the requests it gets (CachedClient gives it only the
cache misses) as one JSONL file with `custom_id` = the cache key, uploads it
(`files.create(purpose="batch")`), submits it (`batches.create`) and polls it
(`batches.retrieve`); results come back through `on_result` as live replies do, so the
response cache and every check after it are the same. Works with OpenAI and the servers that
copy its Batch API (vLLM's batch runner, kluster, ...).

What makes it resumable: each batch's state (input file, batch id, cache keys) is written
atomically to `state_dir` (beside the response cache, which DVC keeps across reruns) the moment
the provider answers, and removed only after its results are delivered (stored). A later run
asking for any of those keys polls that batch instead of submitting again. Rules:
- `batch_wait: true` polls every `batch_poll_interval_s` with a progress line; false raises
  `BatchPending` (a SystemExit: the stage exits non-zero, DVC records nothing, rerun collects);
- completed: each output line is parsed like a live reply (finish reason, reasoning, usage);
  per-item errors (error file, non-200 lines) become failed results naming the reason;
- expired or cancelled (or a completed batch missing items, e.g. a malformed output line): what
  finished is delivered and only the items without a result are submitted again, at most
  `MAX_SUBMISSIONS` times each; failed (the whole batch rejected): every item fails with the
  provider's reason;
- a run killed between upload and submission finds its uploaded file and submits it, and one
  killed right after submission finds the batch by its input file (`batches.list`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from chartdistill.io import atomic_write_text
from chartdistill.llm.openai_backend import (
    REJECTED_FORMAT_STATUS,
    _Attempt,
    _parse_completion,
    attempt_result,
    request_body,
)
from chartdistill.llm.types import ChatRequest, ChatResult, LLMParams, OnResult

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
MAX_SUBMISSIONS = 3  # an item in this many expired or cancelled batches in a row fails
MAX_POLL_FAILURES = 5  # waiting: polls in a row that fail (after the client's retries)
MAX_BATCH_REQUESTS = 50_000  # OpenAI's limits per input file; bigger rounds are split
MAX_BATCH_BYTES = 190 * 2**20  # (200 MB)
FILE_TIMEOUT_S = 600.0  # uploads and downloads take longer than a chat call
TRANSIENT = (
    openai.APIConnectionError,  # timeouts included
    openai.InternalServerError,
    openai.RateLimitError,
)
UNFINISHED_CODES = frozenset({"batch_expired", "batch_cancelled"})  # error-file lines to resend
STATE_FORMAT = 1


class BatchStopped(SystemExit):
    """The stage stops here with one line (non-zero, so DVC records nothing); open batches
    stay in the state folder and results already delivered are in the response cache, so
    the next run goes on where this one stopped. Raised when the batch endpoint fails past
    the client's retries (an upload that times out, a server that is down, a bad key)."""


class BatchPending(BatchStopped):
    """Batches submitted or still running and `batch_wait` is false: the next run collects."""


@dataclass
class BatchState:
    """One uploaded or submitted batch, as persisted in the state folder."""

    job: str  # sha256 of the sorted keys and the submission number: the state file's name
    model: str
    base_url: str
    keys: list[str]
    input_file_id: str
    submission: int = 1  # 2, 3: the items again after an expired or cancelled batch
    structured: bool = True  # its lines carry their requests' response_format
    batch_id: str | None = None
    status: str = "uploaded"
    submitted_at: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps({"format": STATE_FORMAT, **asdict(self)}, indent=1, sort_keys=True)


class BatchStore:
    """state_dir/<job>.json, one per batch not yet collected; atomic writes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, state: BatchState) -> Path:
        return self.root / f"{state.job}.json"

    def load(self) -> list[BatchState]:
        states = []
        for path in sorted(self.root.glob("*.json")) if self.root.is_dir() else []:
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                raw.pop("format", None)
                states.append(BatchState(**raw))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("batch state %s is unreadable (%s); ignored", path, exc)
        return states

    def save(self, state: BatchState) -> None:
        atomic_write_text(self.path(state), state.to_json() + "\n")

    def remove(self, state: BatchState) -> None:
        self.path(state).unlink(missing_ok=True)


def job_id(keys: list[str], submission: int) -> str:
    digest = hashlib.sha256(f"{submission}:{','.join(sorted(keys))}".encode()).hexdigest()
    return f"batch-{digest[:24]}"


def batch_line(model: str, key: str, request: ChatRequest, structured: bool = True) -> bytes:
    """One line of a JSONL input file: a chat completion request, custom_id = cache key
    (`structured=False`: without its response_format)."""
    line = {
        "custom_id": key,
        "method": "POST",
        "url": ENDPOINT,
        "body": request_body(model, request, structured),
    }
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def batch_input(model: str, requests: dict[str, ChatRequest]) -> bytes:
    """The JSONL input file of `requests` (cache key -> request)."""
    return b"".join(batch_line(model, key, r) for key, r in requests.items())


def split_lines(
    lines: list[tuple[str, bytes]],
    max_requests: int | None = None,
    max_bytes: int | None = None,
) -> list[list[tuple[str, bytes]]]:
    """(key, line) pairs in order, cut into input files within the provider's limits
    (MAX_BATCH_REQUESTS, MAX_BATCH_BYTES unless given)."""
    max_requests = max_requests or MAX_BATCH_REQUESTS
    max_bytes = max_bytes or MAX_BATCH_BYTES
    chunks: list[list[tuple[str, bytes]]] = [[]]
    size = 0
    for key, line in lines:
        if chunks[-1] and (len(chunks[-1]) >= max_requests or size + len(line) > max_bytes):
            chunks.append([])
            size = 0
        chunks[-1].append((key, line))
        size += len(line)
    return chunks


def _item_error(item: dict[str, Any]) -> tuple[str, str]:
    """(code, message) of a failed line: its `error`, or a non-200 response's error body."""
    error = item.get("error")
    if isinstance(error, dict):
        return str(error.get("code") or "batch_error"), str(error.get("message") or "")
    response = item.get("response") if isinstance(item.get("response"), dict) else {}
    body = response.get("body") if isinstance(response.get("body"), dict) else {}
    detail = body.get("error") if isinstance(body.get("error"), dict) else {}
    status = response.get("status_code")
    return f"http_{status}", str(detail.get("message") or detail.get("code") or "")


def parse_result_line(line: str, latency_s: float = 0.0) -> tuple[str, ChatResult | None]:
    """(custom_id, result) of one output or error file line; result None for an item the
    provider did not finish (expired, cancelled): it is asked again. ValueError for a line
    that is not JSON with a custom_id (its item is then missing, and asked again)."""
    try:
        item = json.loads(line)
        key = item["custom_id"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a JSON line with a custom_id ({exc}): {line[:120]!r}") from exc
    if not isinstance(key, str):
        raise ValueError(f"custom_id is not a string: {line[:120]!r}")
    response = item.get("response")
    if item.get("error") or not isinstance(response, dict) or response.get("status_code") != 200:
        code, message = _item_error(item)
        if code in UNFINISHED_CODES:
            return key, None
        reason = f"{code}: {' '.join(message.split())[:200]}" if message else code
        return key, ChatResult(text=None, error=reason, latency_s=latency_s)
    body = response.get("body")
    if not isinstance(body, dict):
        attempt = _Attempt(error="malformed_response", detail="response body is not an object")
    else:
        attempt = _parse_completion(ChatCompletion.construct(**body))
    return key, attempt_result(attempt, tries=1, latency_s=latency_s)


def _counts(batch: Any) -> str:
    counts = getattr(batch, "request_counts", None)
    total = getattr(counts, "total", None)
    if total is None:
        return "counts unknown"
    return f"{counts.completed}/{total} done, {counts.failed} failed"


class OpenAIBatchBackend:
    """ChatBackend over an OpenAI-compatible Batch API; see the module docstring."""

    deterministic = False
    batch = True  # results are billed at the batch price (chartdistill.llm.cost)

    def __init__(
        self,
        params: LLMParams,
        state_dir: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not params.base_url:
            raise ValueError("OpenAIBatchBackend: params.base_url is not set")
        self.params = params
        self.model_id = params.model
        self.store = BatchStore(state_dir) if state_dir is not None else None
        self._sleep = sleep
        self.structured = True  # False once the server rejected a response_format

    def use_state_dir(self, path: Path) -> None:
        """Where batch ids are kept (CachedClient: `<cache>/batches`, kept across reruns)."""
        self.store = BatchStore(path)

    def _client(self) -> openai.OpenAI:
        # Control calls (upload, create, retrieve, download) use the client's own retries.
        key = os.environ.get(self.params.api_key_env) or "not-needed"
        return openai.OpenAI(
            base_url=self.params.base_url,
            api_key=key,
            max_retries=self.params.max_retries,
            timeout=self.params.timeout_s,
        )

    def complete_all(self, requests: list[ChatRequest], on_result: OnResult) -> list[ChatResult]:
        if not requests:
            return []
        if self.store is None:
            raise RuntimeError("OpenAIBatchBackend: no state folder (use it through CachedClient)")
        wanted = {r.cache_key(self.model_id): i for i, r in enumerate(requests)}
        if len(wanted) != len(requests):
            raise ValueError("OpenAIBatchBackend: duplicate requests (CachedClient sends one)")
        with self._client() as client:
            return _BatchRun(self, client, requests, wanted, on_result).run()


class _BatchRun:
    """One complete_all call: poll what is open, collect what ended, submit what is missing."""

    def __init__(
        self,
        backend: OpenAIBatchBackend,
        client: openai.OpenAI,
        requests: list[ChatRequest],
        wanted: dict[str, int],
        on_result: OnResult,
    ) -> None:
        self.backend = backend
        self.params = backend.params
        self.store: BatchStore = backend.store  # type: ignore[assignment]
        self.client = client
        self.requests = requests
        self.wanted = wanted
        self.on_result = on_result
        self.results: list[ChatResult | None] = [None] * len(requests)
        self.prior: dict[str, int] = {}  # key -> submissions that ended without its result

    def remaining(self) -> set[str]:
        return {k for k, i in self.wanted.items() if self.results[i] is None}

    def deliver(self, key: str, result: ChatResult) -> None:
        index = self.wanted[key]
        if self.results[index] is None:
            self.results[index] = result
            self.on_result(index, result)

    def run(self) -> list[ChatResult]:
        failures = 0
        while True:
            try:
                open_states = self.step()
                failures = 0
            except openai.APIError as exc:
                failures += 1
                retry = isinstance(exc, TRANSIENT) and self.params.batch_wait
                if not retry or failures >= MAX_POLL_FAILURES:
                    raise BatchStopped(self.stopped_message(exc)) from exc
                log.warning("%s (poll %d of %d)", _short(exc), failures, MAX_POLL_FAILURES)
            else:
                if not self.remaining():
                    return [r for r in self.results if r is not None]
                if not self.params.batch_wait:
                    raise BatchPending(self.pending_message(open_states))
            self.backend._sleep(self.params.batch_poll_interval_s)

    def step(self) -> list[BatchState]:
        """Poll the batches holding wanted items, collect the ended ones, submit the items no
        open batch holds; the batches still open."""
        base_url = str(self.params.base_url)
        states = [
            s
            for s in self.store.load()
            if s.model == self.backend.model_id and s.base_url == base_url
        ]
        relevant = [s for s in states if set(s.keys) & self.remaining()]
        open_states, collected = [], []
        for state in relevant:
            batch = self.refresh(state)
            if batch is None:
                continue  # unknown to the server: forgotten, its items are submitted again
            if state.status in TERMINAL:
                self.collect(state, batch)
                collected.append(state)
            else:
                open_states.append(state)
        covered = {k for s in open_states for k in s.keys}
        missing = self.remaining() - covered
        if missing:
            open_states += self.submit(missing)
        for state in collected:  # only now: their unfinished items are in a new batch
            self.store.remove(state)
        return open_states

    # -- one batch --------------------------------------------------------------------------

    def refresh(self, state: BatchState) -> Any:
        """The batch, retrieved (submitted first when a kill left it uploaded only)."""
        if state.batch_id is None:
            found = self.find_by_input(state.input_file_id)
            if found is None:
                return self.create(state)
            state.batch_id = found.id
        try:
            batch = self.client.batches.retrieve(state.batch_id)
        except openai.NotFoundError:
            log.warning(
                "batch %s is unknown to %s (deleted, or another server); forgotten: its %d "
                "requests are submitted again",
                state.batch_id,
                self.params.base_url,
                len(state.keys),
            )
            self.store.remove(state)
            return None
        if batch.status != state.status:
            state.status = batch.status
            self.store.save(state)
        log.info(
            "batch %s (%d requests): %s, %s, %s elapsed",
            state.batch_id,
            len(state.keys),
            batch.status,
            _counts(batch),
            _elapsed(time.time() - state.submitted_at),
        )
        return batch

    def find_by_input(self, input_file_id: str) -> Any:
        """A batch already created from this file (a run killed right after creating it)."""
        try:
            for batch in self.client.batches.list(limit=100).data:  # the newest page only
                if batch.input_file_id == input_file_id:
                    return batch
        except openai.APIStatusError as exc:
            log.debug("batches.list unavailable (%s); submitting %s", exc, input_file_id)
        return None

    def create(self, state: BatchState) -> Any:
        batch = self.client.batches.create(
            input_file_id=state.input_file_id,
            endpoint=ENDPOINT,
            completion_window=self.params.batch_completion_window,  # type: ignore[arg-type]
            metadata={"chartdistill_job": state.job},
        )
        state.batch_id, state.status = batch.id, batch.status
        state.submitted_at = time.time()
        self.store.save(state)
        log.info(
            "batch %s submitted: %d requests to %s (submission %d, window %s)",
            batch.id,
            len(state.keys),
            self.backend.model_id,
            state.submission,
            self.params.batch_completion_window,
        )
        return batch

    def submit(self, keys: set[str]) -> list[BatchState]:
        """Upload the requests of `keys` and create their batches (one per input file within
        the provider's limits); items already sent MAX_SUBMISSIONS times without a result
        fail instead."""
        tried_out = {k for k in keys if self.prior.get(k, 0) >= MAX_SUBMISSIONS}
        for key in sorted(tried_out):
            log.error("item %s: no result after %d batches; failed", key[:12], MAX_SUBMISSIONS)
            self.deliver(key, ChatResult(text=None, error="batch_expired"))
        model = self.backend.model_id
        lines = [
            (k, batch_line(model, k, self.requests[self.wanted[k]], self.backend.structured))
            for k in sorted(keys - tried_out)
        ]
        states = []
        for chunk in split_lines(lines) if lines else []:
            chunk_keys = [k for k, _ in chunk]
            upload = self.client.files.create(
                file=("chartdistill-batch.jsonl", b"".join(line for _, line in chunk)),
                purpose="batch",
                timeout=max(self.params.timeout_s, FILE_TIMEOUT_S),
            )
            submission = 1 + max(self.prior.get(k, 0) for k in chunk_keys)
            state = BatchState(
                job=job_id(chunk_keys, submission),
                model=model,
                base_url=str(self.params.base_url),
                keys=chunk_keys,
                input_file_id=upload.id,
                submission=submission,
                structured=self.backend.structured,
            )
            self.store.save(state)  # a kill from here on re-uses the upload
            self.create(state)
            states.append(state)
        return states

    def collect(self, state: BatchState, batch: Any) -> None:
        """Deliver the results of an ended batch; note the items it left without one."""
        latency = float((getattr(batch, "completed_at", None) or time.time()) - state.submitted_at)
        found: dict[str, ChatResult | None] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                found.update(self.read_results(state, file_id, max(latency, 0.0)))
        wanted = set(state.keys) & self.remaining()
        if batch.status == "failed" and not found:
            errors = getattr(getattr(batch, "errors", None), "data", None) or []
            first = errors[0] if errors else None
            message = getattr(first, "message", None) or "the provider rejected the batch"
            for key in sorted(wanted):
                log.error("item %s: batch %s failed: %s", key[:12], state.batch_id, message)
                self.deliver(key, ChatResult(text=None, error=f"batch_failed: {message[:200]}"))
            return
        failed = 0
        for key in sorted(wanted):
            result = found.get(key)
            if result is None:
                self.prior[key] = max(self.prior.get(key, 0), state.submission)
                continue
            if self.rejects_format(state, key, result):
                found[key] = None  # submitted again at once, without response_format
                continue
            if not result.ok:
                failed += 1
                log.warning("item %s: batch %s: %s", key[:12], state.batch_id, result.error)
            self.deliver(key, result)
        unfinished = len(wanted) - sum(1 for k in wanted if found.get(k) is not None)
        log.info(
            "batch %s %s: %d results collected (%d failed), %d to submit again",
            state.batch_id,
            batch.status,
            len(wanted) - unfinished,
            failed,
            unfinished,
        )

    def rejects_format(self, state: BatchState, key: str, result: ChatResult) -> bool:
        """An item refused with a client error because of its response_format: the server
        does not take it. Lines go without it for the rest of the run (one warning)."""
        request = self.requests[self.wanted[key]]
        status = (result.error or "").split(":")[0]
        if not state.structured or request.response_format is None:
            return False
        if status not in REJECTED_FORMAT_STATUS:
            return False
        if self.backend.structured:
            self.backend.structured = False
            log.warning(
                "%s: the batch endpoint rejected response_format (%s); lines go without it "
                "for the rest of this run",
                self.backend.model_id,
                result.error,
            )
        return True

    def read_results(
        self, state: BatchState, file_id: str, latency_s: float
    ) -> dict[str, ChatResult | None]:
        try:
            content = self.client.files.content(
                file_id, timeout=max(self.params.timeout_s, FILE_TIMEOUT_S)
            )
        except openai.NotFoundError:
            log.warning(
                "batch %s: file %s is gone; its items are asked again", state.batch_id, file_id
            )
            return {}
        text = content.text
        out: dict[str, ChatResult | None] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                key, result = parse_result_line(line, latency_s)
            except ValueError as exc:
                log.warning(
                    "batch %s: file %s line %d: %s; its item is asked again",
                    state.batch_id,
                    file_id,
                    number,
                    exc,
                )
                continue
            if key in out and out[key] is not None:
                continue  # a result already read for this item wins over a later line
            out[key] = result
        return out

    def stopped_message(self, exc: openai.APIError) -> str:
        return (
            f"{self.backend.model_id}: the batch endpoint at {self.params.base_url} failed: "
            f"{_short(exc)}; open batches are kept: rerun `dvc repro` to go on"
        )

    def pending_message(self, states: list[BatchState]) -> str:
        running = [s for s in states if s.batch_id]
        ids = ", ".join(f"{s.batch_id} ({s.status}, {len(s.keys)} requests)" for s in running)
        return (
            f"{self.backend.model_id}: batch {ids} submitted; nothing recorded yet: rerun "
            "`dvc repro` to collect (llm.batch_wait: false)"
        )


def _short(exc: openai.APIError) -> str:
    status = getattr(exc, "status_code", None)
    text = " ".join(str(exc).split())[:200]
    name = type(exc).__name__
    return f"{name} (http {status}): {text}" if status else f"{name}: {text}"


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(max(seconds, 0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
