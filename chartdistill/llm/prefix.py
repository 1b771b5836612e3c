"""Prefill a shared prompt prefix once: find the prefixes a batch of prompts shares, keep their
KV caches, and build the batch cache that `generate` (or a plain forward) continues from.

The teacher's requests of one section share the system message and the few-shot turns of their
chart type (~700 tokens); the judge's two orders of one pair share the chart and the reference.
Without reuse every request prefills them again. Here each distinct shared prefix is run once
(batch 1) and its per-layer keys/values are stacked, left-padded, under the rows that use it:

    row i:  [pad .. pad][prefix of row i][pad .. pad][rest of row i's prompt]
             \\____ cached (past_key_values) ____/  \\____ prefilled now _____/

The attention mask is 0 on every pad, and position ids come from the mask's cumulative sum
(transformers' generate does this), so each row sees exactly its own prompt at its own
positions: the same computation as without reuse, up to floating-point summation order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Shorter shared prefixes are not worth a separate forward pass and the extra padding.
MIN_PREFIX_TOKENS = 32


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def shared_prefix_lengths(
    sequences: Sequence[Sequence[int]], min_tokens: int = MIN_PREFIX_TOKENS
) -> list[int]:
    """For each token sequence, the length of the prefix to compute once and reuse (0: none).

    Sequences are grouped so that the prefill tokens saved, sum over groups of
    (members - 1) x prefix length, is largest: sorted sequences form a tree of common prefixes
    (neighbours' common-prefix lengths), and each subtree is kept whole or split where its
    shortest common prefix lies, whichever saves more. A prefix always leaves at least one
    token of each sequence to prefill (the step that yields the first logits)."""
    n = len(sequences)
    lengths = [0] * n
    if n < 2:
        return lengths
    order = sorted(range(n), key=lambda i: list(sequences[i]))
    neighbour = [
        common_prefix_length(sequences[order[k - 1]], sequences[order[k]]) for k in range(1, n)
    ]

    def best(lo: int, hi: int) -> tuple[int, list[tuple[int, int, int]]]:
        """(tokens saved, [(lo, hi, prefix)]) for the sorted members lo..hi-1."""
        if hi - lo < 2:
            return 0, []
        links = neighbour[lo : hi - 1]
        floor = min(links)
        shortest = min(len(sequences[order[k]]) for k in range(lo, hi))
        prefix = min(floor, shortest - 1)
        whole = (hi - lo - 1) * prefix if prefix >= min_tokens else 0
        split_saved, split_groups = 0, []
        if max(links) > floor:  # a deeper common prefix inside: try the parts
            start = lo
            for k in range(lo, hi - 1):
                if neighbour[k] == floor:
                    saved, groups = best(start, k + 1)
                    split_saved, split_groups = split_saved + saved, split_groups + groups
                    start = k + 1
            saved, groups = best(start, hi)
            split_saved, split_groups = split_saved + saved, split_groups + groups
        if split_saved > whole:
            return split_saved, split_groups
        return (whole, [(lo, hi, prefix)]) if whole > 0 else (0, [])

    for lo, hi, prefix in best(0, n)[1]:
        for k in range(lo, hi):
            lengths[order[k]] = prefix
    return lengths


@dataclass(frozen=True)
class PrefixKV:
    """The keys and values of one token prefix, batch 1: per layer ([1, heads, P, dim]) x 2."""

    tokens: tuple[int, ...]
    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]

    def __len__(self) -> int:
        return len(self.tokens)

    def expand(self, batch_size: int, model_config: Any = None) -> Any:
        """A fresh DynamicCache holding this prefix for `batch_size` identical rows."""
        return batch_cache([self] * batch_size, model_config)


class PrefixStore:
    """Computed prefix caches of one model, keyed by their token ids (least recently used go
    first once more than `max_entries` are held: a 700-token prefix of SmolLM2-135M in fp32 is
    ~32 MB). `computed_tokens` counts the prefix tokens actually prefilled."""

    def __init__(self, model: Any, max_entries: int = 16) -> None:
        self.model = model
        self.max_entries = max_entries
        self._entries: dict[tuple[int, ...], PrefixKV] = {}
        self.computed_tokens = 0

    def get(self, tokens: Sequence[int]) -> tuple[PrefixKV, bool]:
        """(the prefix's cache, whether it was computed by this call)."""
        key = tuple(int(t) for t in tokens)
        entry = self._entries.pop(key, None)
        computed = entry is None
        if entry is None:
            entry = compute_prefix(self.model, key)
            self.computed_tokens += len(key)
        self._entries[key] = entry
        while len(self._entries) > self.max_entries:
            self._entries.pop(next(iter(self._entries)))
        return entry, computed

    def clear(self) -> None:
        self._entries.clear()


def compute_prefix(model: Any, tokens: Sequence[int]) -> PrefixKV:
    """Run the model once over `tokens` (batch 1) and keep every layer's keys and values."""
    import torch
    from transformers import DynamicCache

    ids = torch.tensor([list(tokens)], dtype=torch.long, device=model.device)
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    layers = tuple((layer.keys, layer.values) for layer in cache.layers)
    return PrefixKV(tokens=tuple(int(t) for t in tokens), layers=layers)


def batch_cache(prefixes: Sequence[PrefixKV | None], model_config: Any = None) -> Any:
    """A DynamicCache whose row i holds prefixes[i] (None: no prefix), left-padded with zeros
    to the longest one (pad positions must be 0 in the attention mask)."""
    import torch
    from transformers import DynamicCache

    present = [p for p in prefixes if p is not None]
    if not present:
        raise ValueError("batch_cache needs at least one prefix")
    width = max(len(p) for p in present)
    data = []
    for layer in range(len(present[0].layers)):
        per_kind = []
        for kind in (0, 1):
            rows = []
            for prefix in prefixes:
                like = present[0].layers[layer][kind]
                tensor = like[:, :, :0] if prefix is None else prefix.layers[layer][kind]
                pad = width - tensor.shape[2]
                if pad:
                    zeros = like.new_zeros(*like.shape[:2], pad, like.shape[3])
                    tensor = torch.cat([zeros, tensor], dim=2)
                rows.append(tensor)
            per_kind.append(torch.cat(rows, dim=0))
        data.append((per_kind[0], per_kind[1]))
    return DynamicCache(data, config=model_config)


def prefixed_inputs(
    prompts: Sequence[Sequence[int]], prefix_lengths: Sequence[int], pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(input_ids, attention_mask, cached width) for rows laid out as
    [pad][prefix][pad][rest]: the first `cached width` columns are what the batch cache holds."""
    import torch

    width = max(prefix_lengths)
    rest = max(len(p) - k for p, k in zip(prompts, prefix_lengths, strict=True))
    ids = torch.full((len(prompts), width + rest), pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, (prompt, k) in enumerate(zip(prompts, prefix_lengths, strict=True)):
        tail = len(prompt) - k
        if k:
            ids[row, width - k : width] = torch.tensor(prompt[:k])
            mask[row, width - k : width] = 1
        ids[row, width + rest - tail :] = torch.tensor(prompt[k:])
        mask[row, width + rest - tail :] = 1
    return ids, mask, width
