"""Student generation batches: similar inputs together, split evenly (student/generation.py)."""

from __future__ import annotations

from chartdistill.student.generation import batch_plan


def test_batch_plan_sorts_by_size_and_splits_evenly() -> None:
    sizes = [(100, 5), (10, 1), (100, 2), (10, 9), (50, 3), (10, 1), (100, 1), (50, 1), (10, 2)]
    batches = batch_plan(sizes, 8)
    assert [len(b) for b in batches] == [5, 4]  # 9 items at batch 8: 5 + 4, not 8 + 1
    assert sorted(i for b in batches for i in b) == list(range(9))
    flat = [sizes[i] for b in batches for i in b]
    assert flat == sorted(flat)
    assert batch_plan(sizes, 1) == [[i] for i in sorted(range(9), key=lambda i: (sizes[i], i))]
    assert batch_plan(sizes, 32) == [sorted(range(9), key=lambda i: (sizes[i], i))]
    assert batch_plan([], 4) == []
