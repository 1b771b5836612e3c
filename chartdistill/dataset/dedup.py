"""Exact and near-duplicate detection for essays: normalised hashes, then MinHash LSH.

Near duplicates are pairs whose word-shingle Jaccard similarity reaches a threshold. MinHash
signatures with banding find the candidate pairs in roughly linear time; every candidate is then
checked with the exact Jaccard similarity, so the reported pairs have no false positives.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from itertools import combinations

import numpy as np

_PRIME = np.uint64((1 << 61) - 1)
_WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")


def normalise(text: str) -> str:
    """Lowercase words and numbers only: two essays that differ in spacing or case match."""
    return " ".join(_WORD.findall(text.lower()))


def exact_key(text: str) -> str:
    return hashlib.sha256(normalise(text).encode()).hexdigest()


def shingles(text: str, size: int) -> set[str]:
    words = normalise(text).split()
    if len(words) <= size:
        return {" ".join(words)}
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _signature(items: set[str], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    hashes = (
        np.array(
            [
                int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little")
                for s in items
            ],
            dtype=np.uint64,
        )
        % _PRIME
    )
    # (a*x + b) mod p per permutation; uint64 wraps on overflow, which keeps it a hash family.
    return ((np.outer(a, hashes) + b[:, None]) % _PRIME).min(axis=1)


def near_duplicate_pairs(
    texts: list[str], threshold: float, shingle_size: int = 5, bands: int = 32, rows: int = 4
) -> list[tuple[int, int, float]]:
    """Index pairs (i < j) with shingle Jaccard >= threshold, and their similarity."""
    rng = np.random.default_rng(0)
    a = rng.integers(1, int(_PRIME), size=bands * rows, dtype=np.uint64)
    b = rng.integers(0, int(_PRIME), size=bands * rows, dtype=np.uint64)
    sets = [shingles(t, shingle_size) for t in texts]
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for index, items in enumerate(sets):
        signature = _signature(items, a, b)
        for band in range(bands):
            buckets[(band, signature[band * rows : (band + 1) * rows].tobytes())].append(index)
    candidates = {pair for members in buckets.values() for pair in combinations(members, 2)}
    pairs = []
    for i, j in sorted(candidates):
        similarity = jaccard(sets[i], sets[j])
        if similarity >= threshold:
            pairs.append((i, j, round(similarity, 4)))
    return pairs
