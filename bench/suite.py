"""The benchmark suite: one command, one table of (name, value, goal, pass/fail).

    .venv/bin/python -m bench.suite            # everything but the default-profile cold run
    .venv/bin/python -m bench.suite --full     # + the default profile's cold `dvc repro`
    .venv/bin/python -m bench.suite --tests    # + the test suite (`python -m pytest`), timed
    .venv/bin/python -m bench.suite --write    # + the table, date and machine to BENCHMARKS.md

With --write, BENCHMARKS.md also keeps one dated row per machine kind (CPU model and the flags
that decide fp32 against bf16): this run's cold `dvc repro` and test-suite minutes replace that
kind's row, and every other kind's row stays.

What it measures:
- teacher client throughput at concurrency 16 against the stub server (200 ms latency, in its
  own process) as a ratio to the ideal c/L (bench.teacher_throughput);
- requests sent by the pipeline on the tiny profile with the teacher on the stub: a no-op
  `dvc repro` (goal 0), a one-type prompt edit (goal: charts of that type x sections) and the
  rerun after `python -m stages.teach` was SIGKILLed mid-run (goal: requests not yet cached);
- the no-op `dvc repro` time of the pipeline as a ratio to a bare DVC no-op (a one-stage DVC
  project in a temp dir), and with --full the default profile's cold `dvc repro` wall time;
- the embedded student's LoRA step time fp32 vs bf16 autocast and its batched vs batch-1
  generation throughput (bench.student_step, each case in a fresh process).
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: keep the output readable

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from chartdistill.essay.sections import SECTIONS  # noqa: E402

log = logging.getLogger("bench.suite")

ROOT = Path(__file__).resolve().parents[1]
NOOP_REPEATS = 3
CRASH_AFTER_ENTRIES = 5
FULL_GOAL_S = 720.0  # issue 23: the default profile cold in 12 minutes on 2 cores
TESTS_GOAL_S = 1500.0  # issue 23: the test suite in 25 minutes on 2 cores
NOTES_HEADING = "## Notes"
KINDS_HEADING = "## Per machine kind"
KIND_COLUMNS = ("machine kind", "date", "commit", "dtype auto", "cold dvc repro", "test suite")
COLD_ROW = "default profile cold dvc repro"
TESTS_ROW = "test suite (python -m pytest)"


@dataclass
class Row:
    name: str
    value: float | int
    unit: str
    goal: str
    ok: bool

    def cells(self) -> list[str]:
        value = f"{self.value:.2f}" if isinstance(self.value, float) else str(self.value)
        return [self.name, f"{value} {self.unit}".strip(), self.goal, "pass" if self.ok else "FAIL"]


def render(rows: list[Row]) -> str:
    """A markdown table (also readable as plain text)."""
    lines = [["benchmark", "value", "goal", "result"], *[row.cells() for row in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(lines[0], widths, strict=True)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
        for line in lines[1:]
    ]
    return "\n".join(out)


# ------------------------------------------------------------------------------ machine


SPEED_FLAGS = ("amx_bf16", "avx2", "avx512_bf16", "avx512f")  # what decides fp32 vs bf16 here


def machine() -> dict[str, str]:
    """CPU model and the flags that decide its speed, core count, RAM and load average."""
    from chartdistill.device import cpu_flags

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    present = cpu_flags()
    flags = " ".join(f for f in SPEED_FLAGS if f in present) or "none of " + ", ".join(SPEED_FLAGS)
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "flags": flags, "ram": ram, "load": load}


# ------------------------------------------------------------------------------ teacher client


def teacher_throughput() -> Row:
    from bench.teacher_throughput import CACHED_CONCURRENCY, LATENCY_S, _run_level, stub_process

    with stub_process(LATENCY_S) as base_url:
        _run_level(base_url, 1, None)  # warm-up: lazy imports inside openai/httpx
        level = _run_level(base_url, CACHED_CONCURRENCY, None)
    return Row(
        f"teacher throughput c={level.concurrency} / ideal c/L",
        round(level.ratio, 3),
        f"({level.rate:.1f} of {level.ideal:.0f} req/s)",
        ">= 0.9",
        level.ratio >= 0.9,
    )


# ------------------------------------------------------------------------------ pipeline


def timed(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def bare_dvc_noop(tmp: Path) -> float:
    """Median no-op `dvc repro` of a trivial one-stage DVC project."""
    from harness.project import Project

    folder = tmp / "bare"
    folder.mkdir()
    project = Project(folder)
    project.run("git", "init", "-q")
    project.run("dvc", "init", "-q")
    (folder / "dvc.yaml").write_text(
        "stages:\n  hello:\n    cmd: echo hello > out.txt\n    outs:\n      - out.txt\n"
    )
    project.run("dvc", "repro")
    return statistics.median(
        timed(lambda: project.run("dvc", "repro")) for _ in range(NOOP_REPEATS)
    )


def _cache_entries(root: Path) -> int:
    return sum(1 for p in root.rglob("*.json") if not p.name.startswith("."))


def _kill_teach_mid_run(project: object, cache: Path, entries: int) -> int:
    """Start `python -m stages.teach`, SIGKILL its group once `entries` new answers are
    cached; returns how many new answers were cached when it died."""
    from harness.project import BIN

    before = _cache_entries(cache)
    process = subprocess.Popen(
        [str(BIN / "python"), "-m", "stages.teach"],
        cwd=project.root,  # type: ignore[attr-defined]
        env=project.env,  # type: ignore[attr-defined]
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    try:
        while _cache_entries(cache) - before < entries:
            if process.poll() is not None:
                raise RuntimeError("stages.teach ended before the kill point")
            if time.monotonic() > deadline:
                raise RuntimeError("stages.teach did not reach the kill point in 300 s")
            time.sleep(0.02)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    return _cache_entries(cache) - before


def pipeline_requests(tmp: Path) -> list[Row]:
    """Requests sent by reruns on the tiny profile, teacher and judge on the stub."""
    from harness.fake_teacher import reply
    from harness.project import TINY_PROFILE, copy_project, point_llms_at
    from harness.stub_server import StubServer

    project = copy_project(tmp / "tiny")
    project.set_params(TINY_PROFILE)
    sections = len(SECTIONS)
    counts = TINY_PROFILE["charts"]["counts"]
    charts = sum(counts.values())
    rows = []
    with StubServer(reply=reply) as stub:
        point_llms_at(project, stub, concurrency=2, timeout_s=30)  # the teacher section by section
        project.commit("tiny profile, LLM on the stub")
        cold = timed(lambda: project.run("dvc", "repro"))
        log.info("tiny profile cold dvc repro: %.1f s", cold)

        stub.reset_log()
        noop = [timed(lambda: project.run("dvc", "repro")) for _ in range(NOOP_REPEATS)]
        sent = len(stub.chat_requests)
        rows.append(Row("requests: no-op dvc repro", sent, "", "0", sent == 0))

        stub.reset_log()
        prompt = project.root / "prompts/pie.yaml"
        prompt.write_text(prompt.read_text().replace("  - title: ", "  - title: Revised ", 1))
        project.run("dvc", "repro", "teach")
        sent, goal = len(stub.chat_requests), counts["pie"] * sections
        rows.append(
            Row("requests: pie prompt edit (dvc repro teach)", sent, "", f"{goal}", sent == goal)
        )

        # A new teacher seed makes every answer new; kill the stage mid-run and rerun it.
        project.set_params({"teacher": {"seed": 1}})
        stub.latency_s = 0.2
        cache = project.root / "data/teacher_cache"
        done = _kill_teach_mid_run(project, cache, CRASH_AFTER_ENTRIES)
        stub.latency_s = 0.0
        stub.reset_log()
        project.run("dvc", "repro", "teach")
        sent, goal = len(stub.chat_requests), charts * sections - done
        rows.append(Row("requests: teach rerun after kill -9", sent, "", f"{goal}", sent == goal))
    seconds = statistics.median(noop)
    rows.append(Row("no-op dvc repro (absolute, median of 3)", round(seconds, 2), "s", "", True))
    return rows


_RUNNING = re.compile(r"Running stage '([^']+)'")


def timed_repro(project: Any) -> tuple[float, dict[str, float]]:
    """One `dvc repro`, its wall time and each stage's share (from the moment DVC announces a
    stage to the next announcement or the end)."""
    began = time.perf_counter()
    process = subprocess.Popen(
        ["dvc", "repro"],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    marks: list[tuple[str, float]] = []
    tail: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        tail = [*tail[-40:], line]
        if match := _RUNNING.search(line):
            marks.append((match.group(1), time.perf_counter()))
    if process.wait() != 0:
        raise RuntimeError("dvc repro failed:\n" + "".join(tail))
    ended = time.perf_counter()
    stages = {
        name: round((marks[i + 1][1] if i + 1 < len(marks) else ended) - start, 1)
        for i, (name, start) in enumerate(marks)
    }
    return ended - began, stages


def full_cold_repro(tmp: Path) -> list[Row]:
    """The default profile (embedded teacher, judge and student) from nothing, split by stage."""
    from harness.project import copy_project

    project = copy_project(tmp / "default")
    project.commit("default profile")
    return cold_repro_rows(project)


def cold_repro_rows(project: Any) -> list[Row]:
    """A cold `dvc repro` of a project: its wall time, each stage's, and the tokens of each."""
    seconds, stages = timed_repro(project)
    log.info("default profile cold repro: %.0f s, stages %s", seconds, stages)
    rows = [
        Row(
            f"{COLD_ROW} ({os.cpu_count()} cores)",
            round(seconds / 60, 2),
            "min",
            f"<= {FULL_GOAL_S / 60:.0f} min",
            seconds <= FULL_GOAL_S,
        )
    ]
    for name, value in stages.items():
        tokens = stage_tokens(project.root, name)
        unit = f"s ({tokens[0]:,} tokens prefilled, {tokens[1]:,} generated)" if tokens else "s"
        rows.append(Row(f"  stage {name}", value, unit, "", True))
    return rows


def stage_tokens(root: Path, stage: str) -> tuple[int, int] | None:
    """(prefilled, generated) tokens of a stage that runs a language model, from what it wrote:
    the teacher's and the judges' LLM counters, the student's per-essay counts."""
    name, _, item = stage.partition("@")

    def metrics(file: str) -> dict[str, Any]:
        return json.loads((root / "metrics" / file).read_text())

    if name == "teach":
        counts = metrics("teacher.json")
    elif name == "judge_check":
        counts = metrics("judge.json")["judge_tokens"]
    elif name == "judge":
        counts = metrics(f"eval_{item}.json")["judge_tokens"]
    elif name in ("predict", "predict_baseline"):
        lines = (root / f"data/predictions/{item or 'baseline'}.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
        return sum(r["prompt_tokens"] for r in rows), sum(r["new_tokens"] for r in rows)
    else:
        return None
    return counts.get("prefill_tokens", 0), counts.get("completion_tokens", 0)


# ------------------------------------------------------------------------------ LLM stages


def llm_stages() -> list[Row]:
    """Embedded teacher and judge before vs after prefix reuse; fp32 vs bf16 (bench.llm_stages)."""
    from bench.llm_stages import auto_dtype, dtype_probe, judge_case, teacher_case
    from bench.student_step import run_isolated

    fp32 = run_isolated(dtype_probe, "float32")
    bf16 = run_isolated(dtype_probe, "bfloat16")
    auto = run_isolated(auto_dtype)
    before, after = (run_isolated(teacher_case, flag) for flag in (False, True))
    judge_before, judge_after = (run_isolated(judge_case, flag) for flag in (False, True))
    log.info("llm cases: %s", [fp32, bf16, before, after, judge_before, judge_after])
    gain = after["essays_per_min"] / before["essays_per_min"]
    judge_gain = judge_before["seconds_per_pair"] / judge_after["seconds_per_pair"]
    return [
        Row(
            "LLM probe bf16 / fp32 time (auto chose " + auto + ")",
            round(bf16["seconds"] / fp32["seconds"], 2),
            f"x ({bf16['seconds']:.2f} s vs {fp32['seconds']:.2f} s)",
            "auto = the faster",
            (auto == "float32") == (fp32["seconds"] <= bf16["seconds"]),
        ),
        Row(
            "embedded teacher essays/min after / before",
            round(gain, 2),
            f"x ({after['essays_per_min']:.2f} vs {before['essays_per_min']:.2f})",
            ">= 4.0",
            gain >= 4.0,
        ),
        Row(
            "  prefilled prompt tokens per essay after / before",
            after["prefill_tokens_per_essay"],
            f"vs {before['prefill_tokens_per_essay']} (prompt {after['prompt_tokens_per_essay']})",
            "",
            True,
        ),
        Row(
            "embedded judge seconds per pair before / after",
            round(judge_gain, 2),
            f"x ({judge_before['seconds_per_pair']:.1f} s"
            f" vs {judge_after['seconds_per_pair']:.1f} s)",
            "> 1.0",
            judge_gain > 1.0,
        ),
    ]


# ------------------------------------------------------------------------------ student


def student(tmp: Path) -> list[Row]:
    from bench.student_step import GEN_ITEMS, base_dir, generate_case, run_isolated, step_case

    base = str(base_dir(tmp))
    fp32 = run_isolated(step_case, base, False)
    bf16 = run_isolated(step_case, base, True)
    single = run_isolated(generate_case, base, 1)
    batched = run_isolated(generate_case, base, GEN_ITEMS)
    log.info("student cases: %s", [fp32, bf16, single, batched])
    speedup = fp32["step_s"] / bf16["step_s"]
    gain = batched["tokens_per_s"] / single["tokens_per_s"]
    return [
        Row(
            "student LoRA step fp32 / bf16",
            round(speedup, 2),
            f"x ({fp32['step_s']:.2f} s vs {bf16['step_s']:.2f} s)",
            "> 1.0",
            speedup > 1.0,
        ),
        Row(
            f"student generation batch {GEN_ITEMS} / batch 1",
            round(gain, 2),
            f"x ({batched['tokens_per_s']:.1f} vs {single['tokens_per_s']:.1f} tok/s)",
            ">= 3.0",
            gain >= 3.0,
        ),
    ]


# ------------------------------------------------------------------------------ test suite


_PASSED = re.compile(r"=+ (.*\bpassed\b.*) in [0-9.]+s")


def timed_test_suite() -> Row:
    """The whole test suite (`python -m pytest`, the README's test command) in this checkout."""
    began = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - began
    summary = _PASSED.search(result.stdout)
    last_line = (result.stdout.strip().splitlines() or [f"exit {result.returncode}"])[-1]
    outcome = summary.group(1) if summary else last_line
    return Row(
        TESTS_ROW,
        round(seconds / 60, 2),
        f"min ({outcome})",
        f"<= {TESTS_GOAL_S / 60:.0f} min",
        result.returncode == 0 and seconds <= TESTS_GOAL_S,
    )


# ------------------------------------------------------------------------------ report


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench_suite_") as tmp:
        yield Path(tmp)


def run_suite(full: bool, tests: bool) -> list[Row]:
    rows = [timed_test_suite()] if tests else []
    rows.append(teacher_throughput())
    with workspace() as tmp:
        rows += pipeline_requests(tmp)
    if full:
        with workspace() as tmp:
            rows += full_cold_repro(tmp)
    rows += llm_stages()
    with workspace() as tmp:
        rows += student(tmp)
    return rows


def machine_kind(info: dict[str, str]) -> str:
    return f"{info['cpu']}, {info['nproc']} cores, {info['flags']}"


def kind_rows(text: str) -> dict[str, list[str]]:
    """The per-machine-kind table of a BENCHMARKS.md text, by machine kind (empty if none)."""
    if KINDS_HEADING not in text:
        return {}
    section = text[text.index(KINDS_HEADING) + len(KINDS_HEADING) :].split("\n## ")[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ")
    ]
    return {
        cells[0]: cells
        for cells in rows
        if len(cells) == len(KIND_COLUMNS) and cells[0] != KIND_COLUMNS[0]
    }


def kinds_table(old: str, rows: list[Row], info: dict[str, str], commit: str) -> str:
    """The per-machine-kind section: `old`'s rows with this machine kind's replaced by this
    run's (a figure this run did not measure keeps the old row's value)."""
    from chartdistill.device import resolve_dtype_name

    table = kind_rows(old)
    kind = machine_kind(info)
    previous = table.get(kind, [""] * len(KIND_COLUMNS))

    def measured(name: str, kept: str) -> str:
        return next((f"{r.value:.2f} min" for r in rows if r.name.startswith(name)), kept)

    table[kind] = [
        kind,
        datetime.now(UTC).strftime("%Y-%m-%d"),
        commit,
        resolve_dtype_name("auto"),
        measured(COLD_ROW, previous[4]),
        measured(TESTS_ROW, previous[5]),
    ]
    lines = [
        KINDS_HEADING,
        "",
        "One row per machine kind, replaced by each `--write` on that kind (2 cores unless named).",
        "",
        "| " + " | ".join(KIND_COLUMNS) + " |",
        "|" + "|".join("---" for _ in KIND_COLUMNS) + "|",
        *("| " + " | ".join(cells) + " |" for _, cells in sorted(table.items())),
        "",
        "",
    ]
    return "\n".join(lines)


def report(rows: list[Row], info: dict[str, str], before: str, full: bool, tests: bool) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    flags = (" --full" if full else "") + (" --tests" if tests else "")
    lines = [
        "# Benchmarks",
        "",
        f"`.venv/bin/python -m bench.suite{flags} --write`, {stamp}.",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}; flags {info['flags']}), {info['ram']} RAM. "
        f"Load average (1, 5, 15 min) before: {before}; after: {info['load']} "
        "(a shared machine: other jobs ran beside the suite).",
        "",
        render(rows),
        "",
        "",
    ]
    if not full:
        lines += ["The default profile's cold `dvc repro` is measured with `--full`.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="also the default profile cold run")
    parser.add_argument("--tests", action="store_true", help="also time the test suite")
    parser.add_argument("--write", action="store_true", help="write the table to BENCHMARKS.md")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "httpx2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # one line per request otherwise
    before = machine()["load"]
    rows = run_suite(args.full, args.tests)
    print(render(rows))  # noqa: T201 - a benchmark's report is its stdout
    if args.write:
        from chartdistill.io import atomic_write_text
        from chartdistill.student.training import git_commit

        target = ROOT / "BENCHMARKS.md"
        old = target.read_text(encoding="utf-8") if target.exists() else ""
        # hand-written notes below NOTES_HEADING survive a rewrite of the table
        kept = old[old.index(NOTES_HEADING) :] if NOTES_HEADING in old else ""
        info = machine()
        kinds = kinds_table(old, rows, info, git_commit()[:7])
        atomic_write_text(target, report(rows, info, before, args.full, args.tests) + kinds + kept)


if __name__ == "__main__":
    main()
