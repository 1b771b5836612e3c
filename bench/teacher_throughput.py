"""Teacher client throughput: `python -m bench.teacher_throughput`.

1. OpenAIBackend against the stub server with a fixed 200 ms latency at concurrency
   1, 4, 16, 64: the ideal is concurrency / latency requests per second. Each level runs
   max(16c, 64) requests (16 waves at c >= 4), so the ~0.1-0.4 s fixed cost of one
   complete_all call (client start, first connections) is small beside the waves. The stub
   runs in its own process, as a real server would. The `cached` row runs c=16 through
   CachedClient, whose fsync'd cache writes happen in on_result.
2. EmbeddedBackend on the bundled SmolLM2-135M: generated tokens per second at batch size
   1, 4 and 8 on 8 short prompts (greedy; about a minute on 2 cores). BENCH_THREADS sets torch
   threads (default 1: with other jobs on the 2 cores, 2 OpenMP threads run ~10x slower).
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: keep the tables readable

import contextlib  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from multiprocessing.connection import Connection  # noqa: E402
from pathlib import Path  # noqa: E402

from chartdistill.llm.cache import CachedClient, ResponseCache
from chartdistill.llm.types import ChatRequest, ChatResult, EmbeddedParams, LLMParams
from harness.stub_server import StubServer  # noqa: E402

LATENCY_S = 0.2
CONCURRENCY = (1, 4, 16, 64)
CACHED_CONCURRENCY = 16
BATCH_SIZES = (1, 4, 8)
EMBEDDED_MAX_TOKENS = 32
EMBEDDED_THREADS = int(os.environ.get("BENCH_THREADS", "1"))
EMBEDDED_PROMPTS = (
    "Describe a bar chart of car sales in three countries.",
    "What does a pie chart show?",
    "Summarise a line graph of rainfall from 2000 to 2020.",
    "Write one sentence about a table of university enrolments.",
    "Explain what the y-axis of a chart is.",
    "Describe the overall trend in smartphone ownership.",
    "Compare coffee and tea consumption in two sentences.",
    "What is an IELTS Task 1 overview?",
)


@dataclass
class Level:
    label: str
    concurrency: int
    requests: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def ideal(self) -> float:
        return self.concurrency / LATENCY_S

    @property
    def ratio(self) -> float:
        return self.rate / self.ideal


def _request(n: int, max_tokens: int = 64) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": f"chart {n}"}], max_tokens=max_tokens)


def _run_level(base_url: str, concurrency: int, cache_root: Path | None) -> Level:
    from chartdistill.llm.openai_backend import OpenAIBackend

    count = max(16 * concurrency, 64)
    params = LLMParams(base_url=base_url, model="stub-model", concurrency=concurrency, timeout_s=30)
    requests = [_request(i) for i in range(count)]
    start = time.perf_counter()
    if cache_root is None:
        results = OpenAIBackend(params).complete_all(requests, lambda i, r: None)
    else:
        client = CachedClient(OpenAIBackend(params), ResponseCache(cache_root))
        results: list[ChatResult] = client.complete_all(requests, desc="bench")
    seconds = time.perf_counter() - start
    failed = sum(not r.ok for r in results)
    if failed:
        raise RuntimeError(f"concurrency {concurrency}: {failed} requests failed")
    label = f"{concurrency}" if cache_root is None else f"{concurrency} cached"
    return Level(label, concurrency, count, seconds)


def _serve(conn: Connection, latency_s: float) -> None:
    """Child process: run the stub until the parent says stop."""
    with StubServer(latency_s=latency_s) as stub:
        conn.send(stub.base_url)
        conn.recv()


@contextlib.contextmanager
def stub_process(latency_s: float) -> Iterator[str]:
    """The stub in its own process, as a real server would be: its handler threads then do
    not share this process's GIL with the client's event loop. Yields the base URL."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve, args=(child, latency_s), daemon=True)
    process.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(timeout=10)


def bench_openai(separate_process: bool = True) -> list[Level]:
    with contextlib.ExitStack() as stack:
        if separate_process:
            base_url = stack.enter_context(stub_process(LATENCY_S))
        else:
            base_url = stack.enter_context(StubServer(latency_s=LATENCY_S)).base_url
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        _run_level(base_url, 1, None)  # warm-up: lazy imports inside openai/httpx
        levels = [_run_level(base_url, c, None) for c in CONCURRENCY]
        levels.append(_run_level(base_url, CACHED_CONCURRENCY, tmp))
    return levels


def bench_embedded() -> tuple[float, list[tuple[int, int, float, float]]]:
    from chartdistill.llm.embedded import EmbeddedBackend

    requests = [
        ChatRequest(messages=[{"role": "user", "content": p}], max_tokens=EMBEDDED_MAX_TOKENS)
        for p in EMBEDDED_PROMPTS
    ]
    first = EmbeddedBackend(EmbeddedParams(batch_size=1, threads=EMBEDDED_THREADS))
    start = time.perf_counter()
    first.load()
    load_s = time.perf_counter() - start
    first.complete_all(requests[:1], lambda i, r: None)  # warm-up
    rows = []
    for batch_size in BATCH_SIZES:
        backend = EmbeddedBackend(EmbeddedParams(batch_size=batch_size, threads=EMBEDDED_THREADS))
        backend._tokenizer, backend._model = first._tokenizer, first._model  # one load for all
        start = time.perf_counter()
        results = backend.complete_all(requests, lambda i, r: None)
        seconds = time.perf_counter() - start
        tokens = sum(r.completion_tokens for r in results)
        rows.append((batch_size, tokens, seconds, tokens / seconds))
    return load_s, rows


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    print(f"OpenAIBackend vs stub server, fixed latency {LATENCY_S * 1000:.0f} ms")
    header = ("concurrency", "requests", "seconds", "req/s", "ideal c/L", "ratio")
    print("{:>11} {:>8} {:>8} {:>7} {:>9} {:>6}".format(*header))
    for level in bench_openai():
        print(
            f"{level.label:>11} {level.requests:>8} {level.seconds:>8.2f} {level.rate:>7.1f} "
            f"{level.ideal:>9.1f} {level.ratio:>6.2f}"
        )
    print()
    load_s, rows = bench_embedded()
    print(
        f"EmbeddedBackend (bundled SmolLM2-135M, bf16, greedy, {len(EMBEDDED_PROMPTS)} prompts, "
        f"max_tokens {EMBEDDED_MAX_TOKENS}, torch threads {EMBEDDED_THREADS}; "
        f"load {load_s:.1f}s incl. imports)"
    )
    print(f"{'batch':>5} {'tokens':>6} {'seconds':>8} {'tok/s':>6}")
    for batch_size, tokens, seconds, rate in rows:
        print(f"{batch_size:>5} {tokens:>6} {seconds:>8.2f} {rate:>6.1f}")


if __name__ == "__main__":
    main()
