"""The embedded teacher and judge, before vs after prefix reuse, and fp32 vs bf16 per stage.

    .venv/bin/python -m bench.llm_stages

Each case runs in a fresh process (bench.student_step.run_isolated) on the bundled SmolLM2-135M
with BENCH_THREADS torch threads (default 1: on a shared 2-core machine 2 OpenMP threads run far
slower). "Before" is the path as it was: every request prefills its whole prompt
(`reuse_prefix: false`), teacher batch 8, judge replies generated and parsed (`verdict: reply`).
"After" is the default profile's params.yaml: shared prefixes prefilled once, its batch size, the
judge's constrained verdict.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: keep the output readable

import logging  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

log = logging.getLogger("bench.llm_stages")

ROOT = Path(__file__).resolve().parents[1]
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
TEACHER_TYPES = ("bar", "line")
TEACHER_CHARTS_PER_TYPE = int(os.environ.get("BENCH_TEACHER_CHARTS", "3"))  # per type
JUDGE_PAIRS = 2
BEFORE_BATCH = 8
PROBE_TOKENS = 128  # a prompt of this many tokens + PROBE_NEW generated, fp32 vs bf16
PROBE_NEW = 8


def _charts(types: tuple[str, ...], per_type: int, seed: int = 11) -> list[Any]:
    from chartdistill.data.synthetic import make_chart

    rng = random.Random(seed)
    return [make_chart(rng, t, f"{t}{i}") for t in types for i in range(per_type)]  # type: ignore[arg-type]


def _embedded(section: Any, **changes: Any) -> Any:
    """The section's llm params with embedded fields changed (threads: BENCH_THREADS)."""
    embedded = section.llm.embedded.model_copy(update={"threads": THREADS, **changes})
    return section.model_copy(update={"llm": section.llm.model_copy(update={"embedded": embedded})})


def teacher_case(after: bool) -> dict[str, Any]:
    """Stepwise essays (one attempt, 4 section calls each) for TEACHER_TYPES x per-type charts."""
    from chartdistill.config import load_paths, load_section
    from chartdistill.llm.cache import CachedClient, ResponseCache
    from chartdistill.llm.factory import make_backend
    from chartdistill.teacher.writer import TeacherParams, run_teacher

    os.chdir(ROOT)
    paths = load_paths()
    params = load_section("teacher", TeacherParams).model_copy(
        update={"max_attempts": 1, "mode": "stepwise"}
    )
    changes = {} if after else {"reuse_prefix": False, "batch_size": BEFORE_BATCH}
    params = _embedded(params, **changes)
    charts = _charts(TEACHER_TYPES, TEACHER_CHARTS_PER_TYPE)
    with tempfile.TemporaryDirectory(prefix="bench_teacher_") as tmp:
        backend = make_backend(params.llm)
        backend.load()  # type: ignore[attr-defined]  # loading is not the teacher's speed
        client = CachedClient(backend, ResponseCache(Path(tmp)))
        began = time.perf_counter()
        essays, metrics = run_teacher(charts, params, client, paths.prompts, Path(tmp))
        seconds = time.perf_counter() - began
    n = len(essays)
    return {
        "case": "after" if after else "before",
        "batch_size": params.llm.embedded.batch_size,
        "reuse_prefix": params.llm.embedded.reuse_prefix,
        "dtype": backend.dtype,  # type: ignore[attr-defined]
        "essays": n,
        "seconds": round(seconds, 1),
        "essays_per_min": round(n / seconds * 60, 2),
        "prompt_tokens_per_essay": round(metrics["prompt_tokens"] / n),
        "prefill_tokens_per_essay": round(metrics["prefill_tokens"] / n),
        "completion_tokens_per_essay": round(metrics["completion_tokens"] / n),
    }


def judge_case(after: bool) -> dict[str, Any]:
    """JUDGE_PAIRS charts judged in both orders (reference, baseline and fine-tuned essays)."""
    from chartdistill.config import load_paths, load_section
    from chartdistill.evaluation.judge import JudgeParams, judge_backend, judge_pairs
    from chartdistill.llm.cache import CachedClient, ResponseCache

    os.chdir(ROOT)
    paths = load_paths()
    params = load_section("judge", JudgeParams)
    if not after:
        params = _embedded(params, reuse_prefix=False).model_copy(update={"verdict": "reply"})
    else:
        params = _embedded(params)
    charts = _charts(("bar",), JUDGE_PAIRS, seed=5)
    reference = {
        c.id: f"The chart shows {c.title}. "
        + " ".join(f"{c.title} is described." for _ in range(8))
        for c in charts
    }
    baseline = {c.id: f"This chart is about {c.title}. It has bars." for c in charts}
    finetuned = {c.id: f"The bar chart compares {c.title}; the values differ." for c in charts}
    with tempfile.TemporaryDirectory(prefix="bench_judge_") as tmp:
        backend = judge_backend(params, paths.prompts)
        inner = getattr(backend, "embedded", backend)
        inner.load()
        client = CachedClient(backend, ResponseCache(Path(tmp)))
        began = time.perf_counter()
        judge_pairs(charts, reference, baseline, finetuned, params, client, paths.prompts)
        seconds = time.perf_counter() - began
    counts = client.stats.token_counts()
    return {
        "case": "after" if after else "before",
        "verdict": params.verdict,
        "reuse_prefix": params.llm.embedded.reuse_prefix,
        "pairs": len(charts),
        "seconds": round(seconds, 1),
        "seconds_per_pair": round(seconds / len(charts), 2),
        "prompt_tokens_per_pair": round(counts["prompt_tokens"] / len(charts)),
        "prefill_tokens_per_pair": round(counts["prefill_tokens"] / len(charts)),
    }


def dtype_probe(dtype: str) -> dict[str, Any]:
    """One PROBE_TOKENS-token prompt + PROBE_NEW greedy tokens on the bundled model."""
    import torch

    from chartdistill.bundled import load_bundled

    torch.set_num_threads(THREADS)
    tokenizer, model = load_bundled(dtype)
    ids = torch.tensor([[(7 * i) % 1000 + 100 for i in range(PROBE_TOKENS)]])
    with torch.inference_mode():
        model.generate(ids[:, :16], max_new_tokens=2, do_sample=False)  # warm-up
        began = time.perf_counter()
        model.generate(
            ids, max_new_tokens=PROBE_NEW, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
        seconds = time.perf_counter() - began
    return {"case": f"LLM probe {dtype}", "seconds": round(seconds, 2)}


def auto_dtype() -> str:
    from chartdistill.device import resolve_dtype_name

    return resolve_dtype_name("auto")


CASES = {
    "teacher": [(teacher_case, False), (teacher_case, True)],
    "judge": [(judge_case, False), (judge_case, True)],
    "dtype": [(dtype_probe, "float32"), (dtype_probe, "bfloat16")],
}


def main() -> None:
    """`python -m bench.llm_stages [teacher] [judge] [dtype]` (default: all); each row is printed
    as soon as its case ends."""
    import sys

    from bench.student_step import run_isolated, table

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    chosen = sys.argv[1:] or list(CASES)
    print(f"auto -> {run_isolated(auto_dtype)}", flush=True)  # noqa: T201 - the report is stdout
    rows = []
    for name in chosen:
        for fn, arg in CASES[name]:
            rows.append(run_isolated(fn, arg))
            print(rows[-1], flush=True)  # noqa: T201
    print(table(rows))  # noqa: T201


if __name__ == "__main__":
    main()
