"""Teacher client throughput: `python -m bench.teacher_throughput`.

1. OpenAIBackend against the stub server with a fixed 200 ms latency at concurrency
   1, 4, 16, 64: the ideal is concurrency / latency requests per second.
2. EmbeddedBackend on the bundled SmolLM2-135M: generated tokens per second at batch size
   1, 4 and 8 on 8 short prompts (greedy; about a minute on 2 cores).
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: keep the tables readable

import logging  # noqa: E402
import time  # noqa: E402

from chartdistill.llm import ChatRequest, EmbeddedParams, LLMParams  # noqa: E402
from tests.stub_server import StubServer  # noqa: E402

LATENCY_S = 0.2
CONCURRENCY = (1, 4, 16, 64)
BATCH_SIZES = (1, 4, 8)
EMBEDDED_MAX_TOKENS = 32
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


def _request(n: int, max_tokens: int = 64) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": f"chart {n}"}], max_tokens=max_tokens)


def bench_openai() -> list[tuple[int, int, float, float, float, float]]:
    from chartdistill.llm_openai import OpenAIBackend

    rows = []
    with StubServer(latency_s=LATENCY_S) as stub:
        for concurrency in CONCURRENCY:
            count = max(4 * concurrency, 32)
            params = LLMParams(
                base_url=stub.base_url, model="stub-model", concurrency=concurrency, timeout_s=30
            )
            backend = OpenAIBackend(params)
            requests = [_request(i) for i in range(count)]
            stub.reset_log()
            start = time.perf_counter()
            results = backend.complete_all(requests, lambda i, r: None)
            seconds = time.perf_counter() - start
            failed = sum(not r.ok for r in results)
            if failed:
                raise RuntimeError(f"concurrency {concurrency}: {failed} requests failed")
            rate = count / seconds
            ideal = concurrency / LATENCY_S
            rows.append((concurrency, count, seconds, rate, ideal, rate / ideal))
    return rows


def bench_embedded() -> tuple[float, list[tuple[int, int, float, float]]]:
    from chartdistill.llm_embedded import EmbeddedBackend

    requests = [
        ChatRequest(messages=[{"role": "user", "content": p}], max_tokens=EMBEDDED_MAX_TOKENS)
        for p in EMBEDDED_PROMPTS
    ]
    first = EmbeddedBackend(EmbeddedParams(batch_size=1))
    start = time.perf_counter()
    first.load()
    load_s = time.perf_counter() - start
    first.complete_all(requests[:1], lambda i, r: None)  # warm-up
    rows = []
    for batch_size in BATCH_SIZES:
        backend = EmbeddedBackend(EmbeddedParams(batch_size=batch_size))
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
    print(
        f"{'concurrency':>11} {'requests':>8} {'seconds':>8} {'req/s':>7} {'ideal c/L':>9} "
        f"{'ratio':>6}"
    )
    for concurrency, count, seconds, rate, ideal, ratio in bench_openai():
        print(
            f"{concurrency:>11} {count:>8} {seconds:>8.2f} {rate:>7.1f} {ideal:>9.1f} {ratio:>6.2f}"
        )
    print()
    load_s, rows = bench_embedded()
    threads = __import__("torch").get_num_threads()
    print(
        f"EmbeddedBackend (bundled SmolLM2-135M, bf16, greedy, {len(EMBEDDED_PROMPTS)} prompts, "
        f"max_tokens {EMBEDDED_MAX_TOKENS}, {threads} threads; load {load_s:.1f}s)"
    )
    print(f"{'batch':>5} {'tokens':>6} {'seconds':>8} {'tok/s':>6}")
    for batch_size, tokens, seconds, rate in rows:
        print(f"{batch_size:>5} {tokens:>6} {seconds:>8.2f} {rate:>6.1f}")


if __name__ == "__main__":
    main()
