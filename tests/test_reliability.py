"""Reliability: a faulty teacher/judge server, kill -9 mid-stage, and bad inputs end to end.

The stage tests run `dvc repro` or `python -m stages.<name>` in a throwaway repo on the tiny
profile, with the LLM on tests/stub_server.StubServer (fault injection on loopback). Requests are
matched to cache entries by their cache key, recomputed from the bodies the stub received.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from chartdistill.data import chart2text
from chartdistill.data.chart2text import Chart2TextParams, import_chart2text, load_png
from chartdistill.llm.types import ChatRequest
from chartdistill.student.training import checkpoint_step, last_checkpoint
from harness.fake_teacher import _table, _user_text, reply
from harness.stub_server import Fault, FaultPlan, RecordedRequest, StubServer
from tests import c2t_fixture
from tests.conftest import BIN, Project

SECTIONS_PER_CHART = 4
ENTRY = re.compile(r"^[0-9a-f]{64}\.json$")

# Every fault the stub knows, with waits scaled to the small timeouts below.
ALL_FAULTS: list[Fault | str] = [
    Fault("429", retry_after_s=0.1),
    Fault("503", retry_after_s=None),
    "500",
    "reset",
    "close",
    Fault("slow", delay_s=1.5),
    "malformed",
    "truncated",
    "empty",
    "no_choices",
]
FAST_LLM = {
    "model": "stub",
    "concurrency": 4,
    "timeout_s": 0.5,
    "max_retries": 2,
    "backoff_base_s": 0.01,
    "backoff_max_s": 0.05,
}


# ------------------------------------------------------------------------------ helpers


def request_key(request: RecordedRequest) -> str:
    """The CachedClient key of a request, recomputed from the body the server received."""
    body = request.body
    chat = ChatRequest(
        messages=body["messages"],
        max_tokens=body["max_tokens"],
        temperature=body["temperature"],
        top_p=body["top_p"],
        seed=body.get("seed"),
    )
    return chat.cache_key(body["model"])


def request_title(request: RecordedRequest) -> str:
    return _table(_user_text(request.body))[0]


def cache_entries(root: Path) -> dict[str, Path]:
    """key -> file of every cache entry; each must be complete JSON naming its own key.
    Temp files left by a kill (.<name>.<random>.tmp) are not entries."""
    entries: dict[str, Path] = {}
    if not root.exists():
        return entries
    for path in root.rglob("*"):
        if path.is_file() and ENTRY.match(path.name):
            entry = json.loads(path.read_text(encoding="utf-8"))  # a half-written file fails
            assert entry["key"] == path.stem, path
            assert entry["result"]["text"], path
            entries[path.stem] = path
        elif path.is_file():
            assert path.name.endswith(".tmp") and path.name.startswith("."), path
    return entries


def poisoned(titles: set[str]) -> Callable[[dict[str, Any]], str]:
    """The fake teacher/judge, except that a request about one of `titles` fails (stub: 500)."""

    def answer(body: dict[str, Any]) -> str:
        if _table(_user_text(body))[0] in titles:
            raise RuntimeError("poisoned chart")
        return reply(body)

    return answer


def use_stub(project: Project, stub: StubServer, **llm: Any) -> None:
    settings = {**FAST_LLM, **llm, "base_url": stub.base_url}
    project.set_params(
        {"teacher": {"llm": settings, "mode": "stepwise"}, "judge": {"llm": settings}}
    )


def judge_on_stub(project: Project, stub: StubServer, **llm: Any) -> None:
    """Only the judge moves to `stub`: the teacher's params, and so its essays, stay as run.
    The stub is asked whatever its known-answer audit says (judge.gate.llm_when_unreliable):
    these tests are about the requests, and the stub is no judge that passes the audit."""
    project.set_params(
        {
            "judge": {
                "llm": {**FAST_LLM, **llm, "base_url": stub.base_url},
                "gate": {"llm_when_unreliable": True},
            }
        }
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def metrics(project: Project, name: str) -> dict[str, Any]:
    return json.loads((project.root / "metrics" / f"{name}.json").read_text())


def charts(project: Project) -> list[dict[str, Any]]:
    return read_jsonl(project.root / "data/charts/charts.jsonl")


def start_stage(project: Project, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """`python -m stages.<...>` in its own process group, output to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(BIN / "python"), "-m", *args],
            cwd=project.root,
            env=project.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_when(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], log: Path, limit_s: float
) -> None:
    """SIGKILL the process group as soon as `ready()` holds (fails if the process ends first)."""
    deadline = time.monotonic() + limit_s
    while not ready():
        if process.poll() is not None:
            raise AssertionError(f"stage ended before the kill point:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(
                f"kill point not reached in {limit_s}s:\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def no_temp_outputs(root: Path) -> None:
    """Outputs written through chartdistill.io are whole or absent: no file is half JSON."""
    for path in root.rglob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))
    for path in root.rglob("*.jsonl"):
        read_jsonl(path)


# ------------------------------------------------------------------------------ unit level


def test_huge_image_is_rejected_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "imgs" / "7.png"
    path.parent.mkdir()
    Image.new("1", (10_000, 10_000)).save(path, optimize=True)  # 100 MP, ~12 kB on disk
    began = time.perf_counter()
    with pytest.raises(chart2text._ItemError) as caught:
        load_png(path)
    assert time.perf_counter() - began < 1.0  # header only: decoding takes far longer
    assert caught.value.reason == "image_too_large"
    assert "imgs/7.png" in caught.value.detail and "10000x10000" in caught.value.detail
    side = int(chart2text.MAX_IMAGE_PIXELS**0.5)
    Image.new("1", (side, side)).save(path)
    assert load_png(path).startswith(b"\x89PNG")  # at the limit: kept


def test_last_checkpoint_skips_one_cut_off_while_saving(tmp_path: Path) -> None:
    for step in (2, 4, 6):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"weights")
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoint-6" / "trainer_state.json").write_text('{"global_step": 6, "lo')
    (tmp_path / "checkpoint-8").mkdir()  # killed before its state file was written
    found = last_checkpoint(tmp_path)
    assert found == tmp_path / "checkpoint-4" and checkpoint_step(found) == 4
    assert not (tmp_path / "checkpoint-6").exists() and not (tmp_path / "checkpoint-8").exists()
    assert (tmp_path / "checkpoint-2").exists()


# ------------------------------------------------------------------------------ faults


@pytest.mark.slow
def test_teach_survives_every_fault_and_rerun_requests_only_failures(
    tiny_project: Project,
) -> None:
    plan = FaultPlan.random(rate=0.3, seed=7, kinds=ALL_FAULTS)
    with StubServer(reply=reply, faults=plan) as stub:
        use_stub(tiny_project, stub)
        tiny_project.commit("teacher on a faulty stub")
        tiny_project.run("dvc", "repro", "charts")
        victim = charts(tiny_project)[0]
        stub.reply = poisoned({victim["title"]})
        tiny_project.run("dvc", "repro", "teach")  # exits 0: some essays were accepted

        first = metrics(tiny_project, "teacher")
        essays = {e["id"]: e for e in read_jsonl(tiny_project.root / "data/essays/essays.jsonl")}
        assert len(essays) == first["charts"] == 6
        status = Counter(e["status"] for e in essays.values())
        assert (first["accepted"], first["rejected"], first["failed"]) == (
            status["accepted"],
            status["rejected"],
            status["failed"],
        )
        assert 1 <= first["accepted"] <= 5
        for essay in essays.values():
            assert essay["status"] in ("accepted", "rejected", "failed")
            if essay["status"] == "failed":
                assert essay["error"], essay["id"]
            if essay["status"] == "rejected":
                assert essay["reasons"], essay["id"]
        assert essays[victim["id"]]["status"] == "failed"
        # Its last attempt met the poison (http_500) or, when the concurrent requests arrived in
        # another order, one of the plan's injected faults: either way a counted request error.
        assert essays[victim["id"]]["error"] in first["request_errors"]
        assert first["request_errors"].get("http_500", 0) >= 1
        assert first["requests"] == len({request_key(r) for r in stub.chat_requests})
        assert len(set(plan.injected)) >= 5, plan.injected

        cached = cache_entries(tiny_project.root / "data/teacher_cache")
        sent_keys = {request_key(r) for r in stub.chat_requests}
        assert cached and set(cached) <= sent_keys  # the recomputed keys name the entries
        first_try = {
            i for i, e in essays.items() if e["status"] == "accepted" and e["attempts"] == 1
        }
        titles = {c["title"]: c["id"] for c in charts(tiny_project)}

        # The outage is over: the user raises the timeout (not an output-changing param, so it
        # reruns nothing) and forces the rerun.
        stub.faults = FaultPlan.none()
        stub.reply = reply
        stub.reset_log()
        use_stub(tiny_project, stub, timeout_s=5.0)
        tiny_project.run("dvc", "repro", "--force", "teach")
        again = stub.chat_requests
        keys = [request_key(r) for r in again]
        assert len(keys) == len(set(keys))  # nothing asked twice
        assert not set(keys) & set(cached)  # no cached success asked again
        asked = {titles[request_title(r)] for r in again}
        assert victim["id"] in asked
        assert not asked & first_try  # charts done at the first try: answered from the cache
        second = metrics(tiny_project, "teacher")
        assert second["accepted"] == 6 and second["failed"] == 0
        assert second["requests"] == len(again)
        assert second["cache_hits"] >= len(first_try) * SECTIONS_PER_CHART


@pytest.mark.slow
def test_judge_survives_faults_and_rerun_requests_only_failures(tiny_run: Project) -> None:
    with StubServer(reply=reply) as stub:
        judge_on_stub(tiny_run, stub)
        tiny_run.commit("judge on the stub")
        # judge_check (known-answer pairs from the training essays) runs before the faults; the
        # predictions come from the session's finished run
        tiny_run.run("dvc", "repro", "judge_check")
        predictions = read_jsonl(tiny_run.root / "data/predictions/baseline.jsonl")
        tests = [c for c in charts(tiny_run) if c["id"] in {p["id"] for p in predictions}]
        assert len(tests) == 4  # two with a teacher essay, two held out
        victim = tests[0]
        stub.reply = poisoned({victim["title"]})
        stub.faults = FaultPlan.random(rate=0.3, seed=3, kinds=ALL_FAULTS)
        stub.reset_log()
        out = tiny_run.run("dvc", "repro", "judge@structured").stdout  # never crashes
        assert "Running stage 'judge@structured'" in out
        assert {request_title(r) for r in stub.chat_requests} <= {c["title"] for c in tests}

        summary = metrics(tiny_run, "eval_structured")
        judged = {
            j["id"]: j for j in read_jsonl(tiny_run.root / "data/judgements/structured.jsonl")
        }
        assert set(judged) == {c["id"] for c in tests}
        assert "http_500" in (judged[victim["id"]]["error"] or "")
        assert summary["judge_failures"] >= 1
        assert summary["n"] + summary["judge_failures"] == len(tests)
        cached = cache_entries(tiny_run.root / "data/judge_cache/structured")

        stub.faults = FaultPlan.none()
        stub.reply = reply
        stub.reset_log()
        # A timeout is not an output-changing param (it reruns nothing): force the rerun, of
        # the judge alone (--force alone would also rerun every stage before it).
        tiny_run.set_params({"judge": {"llm": {"timeout_s": 5.0}}})
        tiny_run.run("dvc", "repro", "--force", "--single-item", "judge@structured")
        keys = [request_key(r) for r in stub.chat_requests]
        assert keys and len(keys) == len(set(keys))
        assert not set(keys) & set(cached)
        assert metrics(tiny_run, "eval_structured")["judge_failures"] == 0


# ------------------------------------------------------------------------------ kill -9


@pytest.mark.slow
def test_teach_killed_mid_run_resumes_without_repeating_work(tiny_project: Project) -> None:
    with StubServer(reply=reply, latency_s=0.3) as stub:
        use_stub(tiny_project, stub, concurrency=2, timeout_s=10.0)
        tiny_project.commit("teacher on a slow stub")
        tiny_project.run("dvc", "repro", "charts")
        cache = tiny_project.root / "data/teacher_cache"
        log = tiny_project.root.parent / "teach.log"
        process = start_stage(tiny_project, "stages.teach", log=log)
        kill_when(process, lambda: len(cache_entries(cache)) >= 5, log, limit_s=120)

        done = cache_entries(cache)  # every entry parses: none half-written
        assert 5 <= len(done) < 6 * SECTIONS_PER_CHART
        assert not (tiny_project.root / "metrics/teacher.json").exists()
        stub.reset_log()
        tiny_project.run("dvc", "repro", "teach")
        keys = [request_key(r) for r in stub.chat_requests]
        assert len(keys) == len(set(keys)) == 6 * SECTIONS_PER_CHART - len(done)
        assert not set(keys) & set(done)
        teacher = metrics(tiny_project, "teacher")
        assert teacher["accepted"] == 6
        assert teacher["cache_hits"] == len(done) and teacher["requests"] == len(keys)
        assert len(cache_entries(cache)) == 6 * SECTIONS_PER_CHART
        no_temp_outputs(tiny_project.root / "data/essays")


@pytest.mark.slow
def test_training_killed_after_a_checkpoint_resumes(tiny_project: Project) -> None:
    with StubServer(reply=reply) as stub:
        use_stub(tiny_project, stub)
        tiny_project.set_params(
            {"train": {"max_steps": 20, "save_steps": 2, "eval_steps": 2, "logging_steps": 5}}
        )
        tiny_project.commit("longer training")
        tiny_project.run("dvc", "repro", "datasets", "base_student")
    checkpoints = tiny_project.root / "checkpoints/structured"
    log = tiny_project.root.parent / "train.log"
    process = start_stage(tiny_project, "stages.train", "structured", log=log)

    def saved() -> bool:
        return any((p / "trainer_state.json").exists() for p in checkpoints.glob("checkpoint-*"))

    kill_when(process, saved, log, limit_s=120)
    assert not (tiny_project.root / "models/structured/adapter_config.json").exists()
    tiny_project.run("dvc", "repro", "train@structured")
    train = metrics(tiny_project, "train_structured")
    assert train["resumed_from_step"] > 0 and train["steps"] == 20
    assert (tiny_project.root / "models/structured/adapter_config.json").exists()


@pytest.mark.slow
def test_judge_killed_mid_run_resumes_without_repeating_work(tiny_run: Project) -> None:
    cache = tiny_run.root / "data/judge_cache/structured"
    shutil.rmtree(cache)  # the session run's answers: only this judge's entries are counted
    with StubServer(reply=reply) as stub:
        judge_on_stub(tiny_run, stub, concurrency=1, timeout_s=10.0)
        tiny_run.commit("judge on the stub")
        tiny_run.run("dvc", "repro", "judge_check")  # the predictions are the session run's
        stub.latency_s = 0.5
        log = tiny_run.root.parent / "judge.log"
        process = start_stage(tiny_run, "stages.judge", "structured", log=log)
        kill_when(process, lambda: len(cache_entries(cache)) >= 1, log, limit_s=120)

        done = cache_entries(cache)
        assert len(done) >= 1
        stub.latency_s = 0.0
        stub.reset_log()
        tiny_run.run("dvc", "repro", "judge@structured")
        keys = [request_key(r) for r in stub.chat_requests]
        after = cache_entries(cache)
        assert set(done) < set(after)  # the kill came before the last answer
        assert len(keys) == len(set(keys)) == len(after) - len(done)
        assert not set(keys) & set(done)
        assert metrics(tiny_run, "eval_structured")["judge_failures"] == 0


# ------------------------------------------------------------------------------ bad inputs


def _huge_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


GOOD_TABLES = {
    20: (
        "Cinema tickets sold in Town Q by year",
        "line",
        "Year,Tickets\n2016,40\n2017,55\n2018,61\n2019,72\n",
    ),
    21: (
        "Share of commuters by mode of transport",
        "pie",
        "Mode,Share\nCar,45%\nBus,30%\nBike,25%\n",
    ),
    22: (
        "Fruit exports of Country R by type",
        "bar",
        "Fruit,Tonnes\nApples,320\nPears,210\nPlums,95\n",
    ),
}
# file number -> (title, metadata chart type, data, image, expected reject reason)
BAD_ITEMS: dict[int, tuple[str | bytes, str, str, bytes | None, str]] = {
    30: (
        "Corrupt image",
        "bar",
        "A,B\nx,1\ny,2\n",
        b"\x89PNG\r\n\x1a\nnot really",
        "unreadable_image",
    ),
    31: ("Truncated image", "bar", "A,B\nx,1\ny,2\n", None, "unreadable_image"),
    32: ("Huge image", "bar", "A,B\nx,1\ny,2\n", b"huge", "image_too_large"),
    33: ("Empty table", "bar", "", None, "empty_table"),
    34: ("Words only", "bar", "Year,Value\n2019,high\n2020,low\n", None, "non_numeric_table"),
    35: ("Caf\xe9 sales".encode("latin-1"), "bar", "A,B\nx,1\ny,2\n", None, "non_utf8"),
    36: ("Height against weight", "scatter", "H,W\n150,50\n160,60\n", None, "unknown_chart_type"),
}


def build_bad_tree(root: Path) -> None:
    """A Statista-layout tree with only the good and bad items above (fixture helpers)."""
    folder = root / "statista_dataset" / "dataset"
    truncated = c2t_fixture.png_bytes((9, 9, 9), (64, 64))[:70]
    meta = []
    for number, (title, kind, data) in GOOD_TABLES.items():
        c2t_fixture._item(
            folder,
            number,
            title=title,
            data=data,
            image=c2t_fixture.png_bytes((number, 80, 160), (224, 168)),
        )
        meta.append((number, kind))
    for number, (title, kind, data, image, _) in BAD_ITEMS.items():
        if image == b"huge":
            image = _huge_png()
        elif image is None and number == 31:
            image = truncated
        c2t_fixture._item(folder, number, title=title, data=data, image=image)
        meta.append((number, kind))
    rows = [
        {"id": str(n), "chartType": kind, "imgPath": f"imgs/{n}.png", "dataPath": f"data/{n}.csv"}
        for n, kind in meta
    ]
    c2t_fixture._metadata(folder / "metadata.csv", c2t_fixture.STATISTA_META, rows)


def test_bad_items_are_rejected_by_the_importer(tmp_path: Path) -> None:
    build_bad_tree(tmp_path / "c2t")
    params = Chart2TextParams(root=tmp_path / "c2t", datasets=["statista"])
    records, rejects = import_chart2text(params, tmp_path / "out")
    assert sorted(r.id for r in records) == [f"statista-{n}" for n in sorted(GOOD_TABLES)]
    reasons = {r.item: r.reason for r in rejects}
    assert reasons == {f"statista/{n}": item[-1] for n, item in BAD_ITEMS.items()}


@pytest.mark.slow
def test_bad_inputs_flow_through_the_pipeline(tiny_project: Project) -> None:
    root = tiny_project.root.parent / "c2t"
    build_bad_tree(root)
    with StubServer(reply=reply) as stub:
        use_stub(tiny_project, stub)
        tiny_project.set_params(
            {
                "charts": {
                    "source": "chart2text",
                    "chart2text": {"root": str(root), "datasets": ["statista"]},
                },
                "datasets": {"use_source_split": False, "split_salt": "bad-inputs"},
                # The fixture's images carry no text: this test is about the importer's rejects.
                "ocr": {"check": {"min_title_recall": 0.0, "min_label_recall": 0.0}},
            }
        )
        tiny_project.commit("bad Chart-to-text inputs")
        tiny_project.run("dvc", "repro", "datasets")

    rejects = read_jsonl(tiny_project.root / "data/charts/rejects.jsonl")
    by_item = {r["item"]: r for r in rejects}
    assert set(by_item) == {f"statista/{n}" for n in BAD_ITEMS}
    for number, item in BAD_ITEMS.items():
        reject = by_item[f"statista/{number}"]
        assert reject["reason"] == item[-1] and reject["detail"], reject
    assert "10000x10000" in by_item["statista/32"]["detail"]
    good = {f"statista-{n}" for n in GOOD_TABLES}
    assert {c["id"] for c in charts(tiny_project)} == good
    assert metrics(tiny_project, "charts")["rejected"] == len(BAD_ITEMS)
    essays = read_jsonl(tiny_project.root / "data/essays/essays.jsonl")
    assert {e["id"] for e in essays if e["status"] == "accepted"} == good
    assert metrics(tiny_project, "datasets")["kept"] == len(GOOD_TABLES)
    images = tiny_project.root / "data/charts/images"
    assert sorted(p.stem for p in images.iterdir()) == sorted(good)
