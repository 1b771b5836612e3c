"""Constrained choice by token probabilities: score a fixed set of answers, generate nothing.

A small judge asked for a JSON verdict rarely writes one (the embedded 135M model returned no
parseable verdict at all). Reading the model's next-token distribution at the verdict position
instead always gives an answer: the chat prompt is followed by the start of the assistant's
reply up to the verdict (an `answer_prefix` such as `{"winner": "`), one forward pass computes
the logits at the next position, and the probabilities of the options' first tokens
("A", "B", "tie") are renormalised over the options. `mass` keeps how much of the full
distribution the options held, so a model that wanted to say something else is visible.

`ScoringBackend` wraps an `EmbeddedBackend` behind the same `ChatBackend` interface: each result
is a JSON text `{"<field>": best option, "probabilities": {...}, "mass": m}`, so the response
cache and the judge's reply parser handle it like any other reply. Prompts sharing a prefix
(the judge's two orders of one pair share the chart and the reference) prefill it once
(chartdistill.llm.prefix).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from chartdistill.llm.embedded import EmbeddedBackend
from chartdistill.llm.types import ChatRequest, ChatResult, OnResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChoiceScores:
    """The options' probabilities renormalised over the options, and their share of the
    model's full next-token distribution."""

    probabilities: dict[str, float]
    mass: float

    @property
    def best(self) -> str:
        return max(self.probabilities, key=lambda k: self.probabilities[k])

    def to_text(self, field: str) -> str:
        return json.dumps(
            {
                field: self.best,
                "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
                "mass": round(self.mass, 6),
            }
        )


def option_token_ids(tokenizer: Any, context: str, options: Sequence[str]) -> list[int]:
    """The first token of each option as it is tokenised right after `context`.

    Raises ValueError when two options start with the same token (first-token scoring could
    not tell them apart) or when an option does not extend the context's tokens.
    """
    base = tokenizer(context, add_special_tokens=False).input_ids
    ids = []
    for option in options:
        if not option:
            raise ValueError("an option is empty")
        full = tokenizer(context + option, add_special_tokens=False).input_ids
        if full[: len(base)] != base or len(full) == len(base):
            raise ValueError(f"option {option!r} does not tokenise as a continuation")
        ids.append(int(full[len(base)]))
    if len(set(ids)) != len(ids):
        raise ValueError(f"options {list(options)} share a first token: {ids}")
    return ids


def choice_scores(logits: Any, token_ids: Sequence[int], options: Sequence[str]) -> ChoiceScores:
    """Softmax over the full vocabulary, then the options' share renormalised."""
    import torch

    log_probs = torch.log_softmax(logits.float(), dim=-1)
    picked = [float(log_probs[i]) for i in token_ids]
    top = max(picked)
    weights = [math.exp(v - top) for v in picked]
    total = sum(weights)
    mass = sum(math.exp(v) for v in picked)
    return ChoiceScores(
        probabilities={o: w / total for o, w in zip(options, weights, strict=True)},
        mass=min(1.0, mass),
    )


class ScoringBackend:
    """A ChatBackend that answers each request with the scores of `options` after
    `answer_prefix` (JSON text, see ChoiceScores.to_text); nothing is generated."""

    deterministic = True

    def __init__(
        self,
        embedded: EmbeddedBackend,
        options: Sequence[str],
        answer_prefix: str,
        field: str,
    ) -> None:
        if len(options) < 2:
            raise ValueError("constrained choice needs at least two options")
        self.embedded = embedded
        self.dtype = embedded.dtype
        self.options = tuple(options)
        self.answer_prefix = answer_prefix
        self.field = field
        shown = "|".join(self.options)
        self.model_id = f"{embedded.model_id}:choice[{shown}]@{json.dumps(answer_prefix)}"
        self._token_ids: list[int] | None = None

    def _loaded(self) -> tuple[Any, Any]:
        """(tokenizer, model) of the embedded backend, loading it on first use."""
        return self.embedded.tokenizer_and_model()

    def prompt(self, request: ChatRequest) -> str:
        """The chat-templated prompt with the assistant's reply started up to the choice."""
        return self.embedded.prompt(request) + self.answer_prefix

    def complete_all(self, requests: list[ChatRequest], on_result: OnResult) -> list[ChatResult]:
        if not requests:
            return []
        tokenizer, model = self._loaded()
        prompts = [self.prompt(r) for r in requests]
        if self._token_ids is None:
            self._token_ids = option_token_ids(tokenizer, prompts[0], self.options)
        encoded = [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
        limit = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        results: list[ChatResult | None] = [None] * len(requests)
        todo = []
        for index, ids in enumerate(encoded):
            if limit and len(ids) > limit:
                results[index] = ChatResult(
                    text=None, prompt_tokens=len(ids), error="prompt_too_long"
                )
                on_result(index, results[index])  # type: ignore[arg-type]
            else:
                todo.append(index)
        # Sorted by content, so prompts sharing a prefix (both orders of a pair) share a batch.
        todo.sort(key=lambda i: encoded[i])
        size = self.embedded.params.batch_size
        with tqdm(total=len(todo), desc=self.model_id[:40], unit="req") as bar:
            for start in range(0, len(todo), size):
                batch = todo[start : start + size]
                began = time.perf_counter()
                try:
                    scores = self._score([encoded[i] for i in batch])
                except (RuntimeError, ValueError) as exc:
                    log.exception("%s: scoring failed for a batch of %d", self.model_id, len(batch))
                    error = f"scoring_error: {type(exc).__name__}"
                    scores: list[tuple[ChoiceScores, int] | None] = [None] * len(batch)
                    for index in batch:
                        results[index] = ChatResult(text=None, error=error)
                latency = time.perf_counter() - began
                for index, scored in zip(batch, scores, strict=True):
                    if scored is not None:
                        score, served = scored
                        results[index] = ChatResult(
                            text=score.to_text(self.field),
                            prompt_tokens=len(encoded[index]),
                            completion_tokens=0,
                            latency_s=latency,
                            finish_reason="scored",
                            cached_tokens=served,
                        )
                    on_result(index, results[index])  # type: ignore[arg-type]
                bar.update(len(batch))
        self.embedded.prefix_store.clear()  # these prefixes do not recur; free their memory
        return [r for r in results if r is not None]

    def _score(self, batch: list[list[int]]) -> list[tuple[ChoiceScores, int]]:
        """One forward pass over the batch (shared prefixes prefilled once); the logits at each
        row's last position scored over the options, with the prompt tokens each row took from
        a prefix computed before (the row that caused a prefix's computation counts it as its
        own prefill)."""
        import torch

        from chartdistill.llm.prefix import (
            batch_cache,
            prefixed_inputs,
            shared_prefix_lengths,
        )

        tokenizer, model = self._loaded()
        pad = tokenizer.pad_token_id
        reuse = getattr(self.embedded.params, "reuse_prefix", True)
        lengths = shared_prefix_lengths(batch) if reuse else [0] * len(batch)
        kwargs: dict[str, Any] = {}
        served = [0] * len(batch)  # prompt tokens of each row taken from a prefix computed before
        if any(lengths):
            store = self.embedded.prefix_store
            prefixes = []
            for row, (tokens, k) in enumerate(zip(batch, lengths, strict=True)):
                if not k:
                    prefixes.append(None)
                    continue
                prefix, computed = store.get(tokens[:k])
                prefixes.append(prefix)
                served[row] = 0 if computed else k
            ids, mask, cached = prefixed_inputs(batch, lengths, pad)
            kwargs["past_key_values"] = batch_cache(prefixes, model.config)
            new = ids[:, cached:]
        else:
            width = max(len(r) for r in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, tokens in enumerate(batch):
                ids[row, width - len(tokens) :] = torch.tensor(tokens)
                mask[row, width - len(tokens) :] = 1
            new = ids
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)[:, -new.shape[1] :]
        with torch.inference_mode():
            out = model(
                input_ids=new.to(model.device),
                attention_mask=mask.to(model.device),
                position_ids=positions.to(model.device),
                use_cache=bool(kwargs),
                logits_to_keep=1,
                **kwargs,
            )
        last = out.logits[:, -1, :]
        assert self._token_ids is not None
        return [
            (choice_scores(last[row], self._token_ids, self.options), served[row])
            for row in range(len(batch))
        ]
