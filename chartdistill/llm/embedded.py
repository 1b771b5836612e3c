"""In-process backend: transformers `generate` on the bundled SmolLM2-135M (or a local model).

Why in process rather than `transformers serve`: serve runs requests one at a time unless
continuous batching is on, which then costs GBs of RAM and fixes the sampling settings for the
server's life, and its per-request seed is not reproducible under concurrency (measured).
Here requests are sorted by prompt length and batched with left padding; each row samples from
its own seeded torch.Generator, so a request's text does not depend on the RNG state of its
batch mates, and the same requests give the same texts.

The bundled model is located, dequantised and cached by chartdistill.bundled; ``dtype: auto``
resolves per machine (chartdistill.device).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from chartdistill.bundled import BUNDLED_GGUF, load_bundled
from chartdistill.device import resolve_dtype, resolve_dtype_name
from chartdistill.llm.prefix import (
    PrefixStore,
    batch_cache,
    prefixed_inputs,
    shared_prefix_lengths,
)
from chartdistill.llm.types import (
    ChatRequest,
    ChatResult,
    EmbeddedParams,
    OnResult,
    has_image_parts,
    message_text,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


class SeededRowSampler:
    """A logits processor that samples each row with its own generator (temperature, top-p),
    then masks every other token so generate()'s greedy step picks the sampled one.
    Rows with temperature 0 are left untouched (greedy)."""

    def __init__(
        self, temperatures: Sequence[float], top_ps: Sequence[float], seeds: Sequence[int]
    ):
        import torch

        self.temperatures = list(temperatures)
        self.top_ps = list(top_ps)
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        out = scores.clone()
        for row, (temperature, top_p) in enumerate(
            zip(self.temperatures, self.top_ps, strict=True)
        ):
            if temperature <= 0:
                continue
            logits = scores[row].float() / temperature
            probs = torch.softmax(logits, dim=-1)
            if top_p < 1.0:
                sorted_probs, order = torch.sort(probs, descending=True)
                cumulative = torch.cumsum(sorted_probs, dim=-1)
                drop = cumulative - sorted_probs > top_p  # keep the smallest set reaching top_p
                sorted_probs[drop] = 0.0
                probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
            token = torch.multinomial(probs, 1, generator=self.generators[row])
            out[row] = float("-inf")
            out[row, token] = 0.0
        return out


def request_seed(request: ChatRequest, model_id: str) -> int:
    """The request's seed, or one derived from its content so unseeded runs repeat too."""
    if request.seed is not None:
        return int(request.seed)
    return int(request.cache_key(model_id)[:15], 16)


class EmbeddedBackend:
    """ChatBackend running a causal LM in this process; loads it on the first real request."""

    deterministic = True  # sorted batches, per-row seeded sampling (module docstring)

    def __init__(self, params: EmbeddedParams) -> None:
        self.params = params
        name = BUNDLED_GGUF if params.model == "bundled" else params.model
        penalty = f"{params.repetition_penalty:g}"
        self.dtype = resolve_dtype_name(params.dtype)  # 'auto' -> what this machine runs natively
        self.model_id = f"embedded:{name}:{self.dtype}:rp{penalty}"
        self._tokenizer: Any = None
        self._model: Any = None
        self._warned_images = False
        self._prefixes: PrefixStore | None = None

    # -- loading ------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def tokenizer_and_model(self) -> tuple[Any, Any]:
        """The loaded (tokenizer, model), loading them on first use (for constrained scoring)."""
        self.load()
        return self._tokenizer, self._model

    def load(self) -> None:
        if self._model is not None:
            return
        import torch

        if self.params.threads:
            torch.set_num_threads(self.params.threads)
        start = time.perf_counter()
        if self.params.model == "bundled":
            tokenizer, model = load_bundled(self.dtype)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.params.model)
            model = AutoModelForCausalLM.from_pretrained(
                self.params.model, dtype=resolve_dtype(self.dtype)
            )
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if not tokenizer.chat_template:
            raise ValueError(f"{self.params.model}: the tokenizer has no chat template")
        model.eval()
        self._tokenizer, self._model = tokenizer, model
        log.info("%s loaded in %.1fs", self.model_id, time.perf_counter() - start)

    # -- generation ---------------------------------------------------------------------------

    def prompt(self, request: ChatRequest) -> str:
        """The chat-templated prompt; image parts are dropped (text-only model)."""
        if has_image_parts(request.messages) and not self._warned_images:
            log.warning("%s is text-only: image parts in messages are dropped", self.model_id)
            self._warned_images = True
        messages = [
            {"role": m["role"], "content": message_text(m["content"])} for m in request.messages
        ]
        return self._tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )

    def encode(self, request: ChatRequest) -> list[int]:
        """The request's chat-templated prompt as token ids (loads the model if needed)."""
        self.load()
        return list(self._tokenizer(self.prompt(request), add_special_tokens=False).input_ids)

    @property
    def prefix_store(self) -> PrefixStore:
        """Computed prefix KV caches of this model (chartdistill.llm.prefix), for reuse."""
        self.load()
        if self._prefixes is None:
            self._prefixes = PrefixStore(self._model)
        return self._prefixes

    def complete_all(self, requests: list[ChatRequest], on_result: OnResult) -> list[ChatResult]:
        if not requests:
            return []
        self.load()
        prompts = [self.encode(r) for r in requests]
        lengths = [len(p) for p in prompts]
        limit = int(getattr(self._model.config, "max_position_embeddings", 0) or 0)
        results: list[ChatResult | None] = [None] * len(requests)
        todo: list[int] = []
        for index, request in enumerate(requests):
            if limit and lengths[index] + request.max_tokens > limit:
                results[index] = ChatResult(
                    text=None, prompt_tokens=lengths[index], error="prompt_too_long"
                )
                log.warning(
                    "request %d: %d prompt + %d new tokens exceed the context of %d",
                    index,
                    lengths[index],
                    request.max_tokens,
                    limit,
                )
                on_result(index, results[index])  # type: ignore[arg-type]
            else:
                todo.append(index)
        shared = [0] * len(requests)
        if self.params.reuse_prefix:
            for index, length in zip(
                todo, shared_prefix_lengths([prompts[i] for i in todo]), strict=True
            ):
                shared[index] = length
        # What is left to prefill decides the padding: batch rows of similar remaining length.
        todo.sort(key=lambda i: (lengths[i] - shared[i], shared[i], i))
        size = self.params.batch_size
        try:
            with tqdm(total=len(todo), desc=self.model_id, unit="req") as bar:
                for start in range(0, len(todo), size):
                    batch = todo[start : start + size]
                    outcome = self._run_batch(batch, requests, prompts, shared)
                    for index, result in zip(batch, outcome, strict=True):
                        results[index] = result
                        on_result(index, result)
                    bar.update(len(batch))
        finally:
            if self._prefixes is not None:
                self._prefixes.clear()  # a call's prefixes rarely recur; keep RAM for the next
        return [r for r in results if r is not None]

    def _run_batch(
        self,
        batch: list[int],
        requests: list[ChatRequest],
        prompts: list[list[int]],
        shared: list[int],
    ) -> list[ChatResult]:
        start = time.perf_counter()
        try:
            outputs = self._generate(
                [requests[i] for i in batch],
                [prompts[i] for i in batch],
                [shared[i] for i in batch],
            )
        except (RuntimeError, ValueError) as exc:
            log.exception("%s: generation failed for a batch of %d", self.model_id, len(batch))
            error = f"generation_error: {type(exc).__name__}"
            return [ChatResult(text=None, error=error) for _ in batch]
        latency = time.perf_counter() - start
        return [
            ChatResult(
                text=text if text.strip() else None,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cached_tokens=cached_tokens,
                latency_s=latency,
                finish_reason=finish,
                error=None if text.strip() else "empty_content",
            )
            for text, prompt_tokens, completion_tokens, cached_tokens, finish in outputs
        ]

    def _generate(
        self, batch: list[ChatRequest], prompts: list[list[int]], shared: list[int]
    ) -> list[tuple[str, int, int, int, str]]:
        """(text, prompt tokens, completion tokens, cached prompt tokens, finish reason) per
        request. Rows with a shared prefix continue from its cached keys/values; the row that
        caused a prefix to be computed counts it as prefilled (cached 0), the others as cached."""
        import torch
        from transformers import (
            GenerationConfig,
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
        )

        tokenizer, model = self._tokenizer, self._model
        input_ids, attention_mask, cached_width = prefixed_inputs(
            prompts, shared, tokenizer.pad_token_id
        )
        cached = [0] * len(batch)
        inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if cached_width:
            store = self.prefix_store
            rows = []
            for row, (prompt, k) in enumerate(zip(prompts, shared, strict=True)):
                if not k:
                    rows.append(None)
                    continue
                entry, computed = store.get(prompt[:k])
                cached[row] = 0 if computed else k
                rows.append(entry)
            inputs["past_key_values"] = batch_cache(rows, model.config)
        width = input_ids.shape[1]
        processors = LogitsProcessorList()
        if self.params.repetition_penalty != 1.0:
            processors.append(
                RepetitionPenaltyLogitsProcessor(
                    self.params.repetition_penalty, prompt_ignore_length=width
                )
            )
        if any(r.temperature > 0 for r in batch):
            processors.append(
                SeededRowSampler(
                    [r.temperature for r in batch],
                    [r.top_p for r in batch],
                    [request_seed(r, self.model_id) for r in batch],
                )
            )
        eos = tokenizer.eos_token_id
        config = GenerationConfig(
            max_new_tokens=max(r.max_tokens for r in batch),
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos,
        )
        with torch.inference_mode():
            generated = model.generate(
                **inputs, generation_config=config, logits_processor=processors
            )
        new_tokens = generated[:, width:]
        outputs = []
        for row, request in enumerate(batch):
            ids = new_tokens[row, : request.max_tokens].tolist()
            finish = "length"
            if eos in ids:
                ids = ids[: ids.index(eos)]
                finish = "stop"
            text = tokenizer.decode(ids, skip_special_tokens=True).strip()
            outputs.append((text, len(prompts[row]), len(ids), cached[row], finish))
        return outputs
