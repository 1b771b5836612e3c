"""Prefix reuse (chartdistill.llm.prefix): grouping, cache layout, and the same greedy text with
and without it (tiny random model here; the bundled SmolLM2 teacher and judge in the slow test)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from chartdistill.llm.prefix import shared_prefix_lengths
from chartdistill.llm.types import ChatRequest, EmbeddedParams
from harness.tiny_llm import BASE_WORDS, embedded_backend, tiny_word_llama

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"


def test_shared_prefix_lengths_groups_by_the_longest_useful_prefix() -> None:
    system = list(range(100, 140))  # 40 tokens every sequence shares
    bar, line = list(range(200, 300)), list(range(300, 400))  # 100 more per group
    seqs = [
        system + bar + [1, 2, 3],
        system + line + [4, 5],
        system + bar + [6],
        system + line + [7, 8, 9, 10],
        system + bar + [11, 12],
        [9, 9, 9, 9],  # shares nothing
    ]
    lengths = shared_prefix_lengths(seqs, min_tokens=32)
    # Each group's 140 tokens are prefilled once: 2x140 + 1x140 saved beats 5x40 for one group.
    assert lengths == [140, 140, 140, 140, 140, 0]
    # One sequence shares nothing: no prefix; a prefix always leaves a token to prefill.
    assert shared_prefix_lengths([system], min_tokens=32) == [0]
    assert shared_prefix_lengths([system, system], min_tokens=32) == [39, 39]
    # Below the minimum, no prefix at all.
    assert shared_prefix_lengths([system + [1], system + [2]], min_tokens=64) == [0, 0]


def test_shared_prefix_lengths_keeps_a_wide_group_when_it_saves_more() -> None:
    common = list(range(1000, 1100))  # 100 shared by 6
    seqs = [common + [i, i + 1] + [7] * 3 for i in range(0, 12, 2)]
    seqs += [common + [50, 51, 52, 53, 1], common + [50, 51, 52, 53, 2]]
    # The pair shares 104, but one group of 8 at 100 saves 700 > 5x100 + 104 kept apart.
    assert shared_prefix_lengths(seqs, min_tokens=32) == [100] * 8


# A tiny Llama with a word-level tokenizer, built in memory (context long enough for prefixes).
WORDS = BASE_WORDS + [f"w{i}" for i in range(40)]


@pytest.fixture(scope="module")
def tiny_backend():
    tokenizer, model = tiny_word_llama(
        WORDS, hidden_size=32, num_attention_heads=4, num_key_value_heads=2
    )
    return lambda **params: embedded_backend(tokenizer, model, **params)


def _words(rng: random.Random, n: int) -> str:
    return " ".join(f"w{rng.randrange(40)}" for _ in range(n))


def _requests(**sampling: object) -> list[ChatRequest]:
    rng = random.Random(7)
    system = _words(rng, 20)
    shots = {g: [_words(rng, 25), _words(rng, 15)] for g in ("a", "b")}
    requests = []
    for group in ("a", "b", "a", "b", "a"):
        user, assistant = shots[group]
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
            {"role": "assistant", "content": assistant},
            {"role": "user", "content": _words(rng, rng.randrange(3, 12))},
        ]
        requests.append(ChatRequest(messages=messages, max_tokens=12, **sampling))  # type: ignore[arg-type]
    requests.append(
        ChatRequest(messages=[{"role": "user", "content": _words(rng, 6)}], max_tokens=12)
    )
    return requests


@pytest.mark.parametrize("sampling", [{}, {"temperature": 0.8, "top_p": 0.9, "seed": 3}])
def test_prefix_reuse_gives_the_same_text_and_counts_what_it_skipped(tiny_backend, sampling):
    requests = _requests(**sampling)
    reused = tiny_backend(batch_size=4).complete_all(requests, lambda i, r: None)
    plain = tiny_backend(batch_size=4, reuse_prefix=False).complete_all(requests, lambda i, r: None)
    assert [r.text for r in reused] == [r.text for r in plain]
    assert [r.prompt_tokens for r in reused] == [r.prompt_tokens for r in plain]
    assert all(r.cached_tokens == 0 for r in plain)
    # Two groups (a: 3 requests, b: 2) each prefill their shared prefix once; the loner none.
    cached = [r.cached_tokens for r in reused]
    assert cached[5] == 0
    assert sorted(c > 0 for c in cached[:5]) == [False, False, True, True, True]
    prefix_a = max(cached[i] for i in (0, 2, 4))
    assert prefix_a >= 3 + 20 + 25 + 15  # system, shot turn and reply, and the template tokens
    assert all(r.cached_tokens < r.prompt_tokens for r in reused)


def test_prefix_cache_survives_batches_and_is_not_mutated(tiny_backend) -> None:
    requests = _requests()
    backend = tiny_backend(batch_size=1)
    one_by_one = backend.complete_all(requests, lambda i, r: None)
    batched = tiny_backend(batch_size=6).complete_all(requests, lambda i, r: None)
    assert [r.text for r in one_by_one] == [r.text for r in batched]
    assert len(backend.prefix_store._entries) == 0  # cleared after the call


@pytest.mark.slow
def test_bundled_fp32_greedy_teacher_and_judge_text_is_the_same_with_prefix_reuse() -> None:
    """The 'done when' check: greedy fp32 on the bundled SmolLM2-135M, teacher section requests
    of two chart types (shared system + few-shot turns) and judge requests of one pair in both
    orders, with and without prefix reuse."""
    from chartdistill.data.synthetic import make_chart
    from chartdistill.llm.embedded import EmbeddedBackend
    from chartdistill.prompts.judge import render_judge_messages
    from chartdistill.teacher.prompts import render_teacher_messages

    rng = random.Random(3)
    charts = [make_chart(rng, t, f"{t}{i}") for t in ("bar", "line") for i in range(2)]
    requests = [
        ChatRequest(
            messages=render_teacher_messages(PROMPTS, chart, mode="stepwise", section="overview"),
            max_tokens=24,
        )
        for chart in charts
    ]
    reference, one, two = (
        "The chart shows sales in four regions; North sold the most at 40 units.",
        "Sales were highest in the North and lowest in the West.",
        "The bar chart compares regions. Overall the North led.",
    )
    for essay_a, essay_b in ((one, two), (two, one)):
        messages = render_judge_messages(PROMPTS, charts[0], reference, essay_a, essay_b)
        requests.append(ChatRequest(messages=messages, max_tokens=24))
    texts = {}
    for reuse in (True, False):
        backend = EmbeddedBackend(
            EmbeddedParams(dtype="float32", batch_size=8, threads=1, reuse_prefix=reuse)
        )
        results = backend.complete_all(requests, lambda i, r: None)
        texts[reuse] = [r.text for r in results]
        if reuse:
            assert sum(r.cached_tokens for r in results) > 0
    assert texts[True] == texts[False]
