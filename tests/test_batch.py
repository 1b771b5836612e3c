"""The Batch API path (chartdistill.llm.batch) against the stub's /v1/files and /v1/batches,
with its batch faults: held, expired, per-item errors, a failed upload, a malformed line."""

from __future__ import annotations

import io
import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from chartdistill.llm import batch as batch_module
from chartdistill.llm.batch import (
    BatchPending,
    BatchState,
    BatchStopped,
    BatchStore,
    OpenAIBatchBackend,
    batch_input,
    job_id,
    parse_result_line,
    split_lines,
)
from chartdistill.llm.cache import BATCH_STATE_DIR, CachedClient, ClientStats, ResponseCache
from chartdistill.llm.cost import PriceTable, cost_summary
from chartdistill.llm.factory import make_backend
from chartdistill.llm.openai_backend import OpenAIBackend
from chartdistill.llm.types import ChatRequest, LLMParams
from harness.fake_teacher import reply
from harness.stub_server import StubServer
from tests.conftest import Project

KEY_ENV = "CHARTDISTILL_TEST_BATCH_KEY"
SENTINEL = f"sk-batch-sentinel-{secrets.token_hex(12)}"  # made at run time: in no file


def params_for(stub: StubServer, **overrides: object) -> LLMParams:
    values: dict[str, object] = {
        "base_url": stub.base_url,
        "model": "stub-model",
        "api_key_env": KEY_ENV,
        "timeout_s": 5.0,
        "max_retries": 2,
        "batch": True,
        "batch_poll_interval_s": 0.01,
    }
    values.update(overrides)
    return LLMParams.model_validate(values)


def request(n: int) -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "user", "content": f"chart {n}"}], max_tokens=64, temperature=0.0
    )


def client_for(stub: StubServer, cache: Path, **overrides: object) -> CachedClient:
    """A fresh client, as a new stage process would build it."""
    return CachedClient(make_backend(params_for(stub, **overrides)), ResponseCache(cache))


def submitted_keys(stub: StubServer) -> list[list[str]]:
    """The custom_ids of each batch the stub received, in order of creation."""
    return [[item["custom_id"] for item in b.items] for b in stub.batches.values()]


def states(cache: Path) -> list[BatchState]:
    return BatchStore(cache / BATCH_STATE_DIR).load()


@pytest.fixture
def stub(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SENTINEL)
    with StubServer() as server:
        yield server
    assert not server.errors, server.errors


# ------------------------------------------------------------------------------ unit level


def test_make_backend_picks_the_batch_backend_for_a_server_only(stub: StubServer) -> None:
    assert isinstance(make_backend(params_for(stub)), OpenAIBatchBackend)
    assert isinstance(make_backend(params_for(stub, batch=False)), OpenAIBackend)
    params = LLMParams.model_validate({"model": "m", "batch": True})
    assert not isinstance(make_backend(params), OpenAIBatchBackend)  # embedded runs in process


def test_input_lines_are_live_bodies_keyed_by_cache_key() -> None:
    reqs = {request(i).cache_key("m"): request(i) for i in range(2)}
    lines = [json.loads(line) for line in batch_input("m", reqs).decode().splitlines()]
    assert [line["custom_id"] for line in lines] == list(reqs)
    assert lines[0]["method"] == "POST" and lines[0]["url"] == "/v1/chat/completions"
    assert lines[0]["body"] == {
        "model": "m",
        "messages": [{"role": "user", "content": "chart 0"}],
        "max_tokens": 64,
        "temperature": 0.0,
        "top_p": 1.0,
    }
    assert job_id(["b", "a"], 1) == job_id(["a", "b"], 1) != job_id(["a", "b"], 2)


def test_result_lines_parse_like_live_replies() -> None:
    completion = {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "<think>hm</think>An essay."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }
    ok = {"custom_id": "k1", "response": {"status_code": 200, "body": completion}}
    key, result = parse_result_line(json.dumps(ok))
    assert key == "k1" and result is not None and result.ok
    assert (result.text, result.reasoning, result.prompt_tokens) == ("An essay.", "hm", 7)

    cut = json.loads(json.dumps(ok))
    cut["response"]["body"]["choices"][0]["finish_reason"] = "length"
    assert parse_result_line(json.dumps(cut))[1].error == "truncated"  # type: ignore[union-attr]

    failed = {
        "custom_id": "k2",
        "response": {"status_code": 400, "body": {"error": {"message": "bad   request"}}},
    }
    assert parse_result_line(json.dumps(failed))[1].error == "http_400: bad request"  # type: ignore[union-attr]
    expired = {"custom_id": "k3", "response": None, "error": {"code": "batch_expired"}}
    assert parse_result_line(json.dumps(expired)) == ("k3", None)  # asked again, not failed
    with pytest.raises(ValueError, match="custom_id"):
        parse_result_line('{"custom_id": "k4", "resp')


def test_cost_puts_the_batch_price_beside_the_live_price() -> None:
    stats = ClientStats(
        prompt_tokens=3_000_000,
        completion_tokens=1_000_000,
        batch_prompt_tokens=2_000_000,
        batch_completion_tokens=1_000_000,
    )
    prices = PriceTable(input_per_mtok=1.0, output_per_mtok=4.0, batch_discount=0.5)
    cost = cost_summary(stats, prices)
    assert cost["cost_live_usd"] == 7.0  # 3 + 4
    assert cost["cost_usd"] == 4.0  # 1 live + (2 + 4) at half price
    assert cost["batch_prompt_tokens"] == 2_000_000


# ------------------------------------------------------------------------------ against the stub


def test_batch_round_trip_caches_every_result_and_a_rerun_sends_nothing(
    stub: StubServer, tmp_path: Path
) -> None:
    reqs = [request(i) for i in range(5)]
    client = client_for(stub, tmp_path)
    results = client.complete_all(reqs, desc="t")
    assert [r.text for r in results] == [f"stub reply to: chart {i}" for i in range(5)]
    assert submitted_keys(stub) == [sorted(r.cache_key("stub-model") for r in reqs)]
    assert stub.chat_requests == []  # nothing went live
    assert states(tmp_path) == []  # collected: no open batch left
    assert client.stats.batch_completion_tokens == client.stats.completion_tokens == 25
    # Every call to the provider carried the key; nothing on disk does.
    assert {r.headers.get("authorization") for r in stub.requests} == {f"Bearer {SENTINEL}"}
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and SENTINEL in p.read_text()]

    stub.reset_log()
    again = client_for(stub, tmp_path)
    assert [r.text for r in again.complete_all(reqs, desc="t")] == [r.text for r in results]
    assert stub.requests == [] and again.cache_hits == 5


def test_no_wait_exits_then_resumes_the_same_batch_across_runs(
    stub: StubServer, tmp_path: Path
) -> None:
    stub.batch_faults.hold = True
    reqs = [request(i) for i in range(4)]
    with pytest.raises(BatchPending, match="rerun `dvc repro` to collect") as first:
        client_for(stub, tmp_path, batch_wait=False).complete_all(reqs, desc="t")
    batch_id = next(iter(stub.batches))
    assert batch_id in str(first.value) and first.value.code != 0
    assert [s.batch_id for s in states(tmp_path)] == [batch_id]

    with pytest.raises(BatchPending, match="in_progress"):  # still running: polled, not resent
        client_for(stub, tmp_path, batch_wait=False).complete_all(reqs, desc="t")
    assert len(stub.batch_creates) == 1

    stub.batch_faults.hold = False
    results = client_for(stub, tmp_path, batch_wait=False).complete_all(reqs, desc="t")
    assert all(r.ok for r in results) and len(stub.batch_creates) == 1
    assert states(tmp_path) == []


def test_expired_batch_resubmits_exactly_the_missing_items(
    stub: StubServer, tmp_path: Path
) -> None:
    stub.batch_faults.expire_next = 1
    reqs = [request(i) for i in range(6)]
    results = client_for(stub, tmp_path).complete_all(reqs, desc="t")
    assert all(r.ok for r in results)
    first, second = submitted_keys(stub)
    assert len(first) == 6 and sorted(second) == sorted(first[3:])  # the half not done
    assert len(list(tmp_path.rglob("*.json"))) == 6  # every result cached, no state left


def test_cancelled_batch_resubmits_its_items(stub: StubServer, tmp_path: Path) -> None:
    stub.batch_faults.hold = True
    reqs = [request(i) for i in range(3)]
    with pytest.raises(BatchPending):
        client_for(stub, tmp_path, batch_wait=False).complete_all(reqs, desc="t")
    with openai.OpenAI(base_url=stub.base_url, api_key="x") as user:  # cancelled by hand
        assert user.batches.cancel(next(iter(stub.batches))).status == "cancelled"
    stub.batch_faults.hold = False
    results = client_for(stub, tmp_path).complete_all(reqs, desc="t")
    assert all(r.ok for r in results)
    first, second = submitted_keys(stub)
    assert sorted(second) == sorted(first)


def test_item_errors_fail_with_reasons_and_only_they_are_asked_again(
    stub: StubServer, tmp_path: Path
) -> None:
    stub.batch_faults.item_errors = 2
    reqs = [request(i) for i in range(5)]
    client = client_for(stub, tmp_path)
    results = client.complete_all(reqs, desc="t")
    failed = [i for i, r in enumerate(results) if not r.ok]
    assert len(failed) == 2
    assert {results[i].error for i in failed} == {"http_500: injected item failure"}
    assert client.stats.errors == {"http_500: injected item failure": 2}
    again = client_for(stub, tmp_path)
    assert all(r.ok for r in again.complete_all(reqs, desc="t"))
    asked_again = sorted(reqs[i].cache_key("stub-model") for i in failed)
    assert sorted(submitted_keys(stub)[1]) == asked_again


def test_a_batch_failed_as_a_whole_fails_each_item_with_the_reason(
    stub: StubServer, tmp_path: Path
) -> None:
    stub.batch_faults.fail_next = 1
    reqs = [request(i) for i in range(3)]
    results = client_for(stub, tmp_path).complete_all(reqs, desc="t")
    assert {r.error for r in results} == {"batch_failed: injected: bad input"}
    assert states(tmp_path) == [] and len(stub.batch_creates) == 1
    assert all(r.ok for r in client_for(stub, tmp_path).complete_all(reqs, desc="t"))


def test_a_failed_upload_is_retried(stub: StubServer, tmp_path: Path) -> None:
    stub.batch_faults.upload_failures = 1
    results = client_for(stub, tmp_path).complete_all([request(0), request(1)], desc="t")
    assert all(r.ok for r in results)
    uploads = [r for r in stub.requests if r.path == "/v1/files"]
    assert len(uploads) == 2 and len(stub.batch_creates) == 1


def test_a_malformed_result_line_is_asked_again(stub: StubServer, tmp_path: Path) -> None:
    stub.batch_faults.malformed_lines = 1
    reqs = [request(i) for i in range(3)]
    results = client_for(stub, tmp_path).complete_all(reqs, desc="t")
    assert all(r.ok for r in results)
    first, second = submitted_keys(stub)
    assert second == first[:1]  # only the item whose line was cut


def test_a_run_killed_after_upload_or_after_create_never_submits_twice(
    stub: StubServer, tmp_path: Path
) -> None:
    """State written before the batch existed (a kill between upload and create, or between
    create and the state update): the next run creates it once, or finds it by its file."""
    store = BatchStore(tmp_path / BATCH_STATE_DIR)
    user = openai.OpenAI(base_url=stub.base_url, api_key="x")
    for created in (False, True):
        reqs = [request(10 * created + i) for i in range(2)]
        keys = sorted(r.cache_key("stub-model") for r in reqs)
        data = batch_input("stub-model", {k: r for r in reqs for k in [r.cache_key("stub-model")]})
        upload = user.files.create(file=("x.jsonl", io.BytesIO(data)), purpose="batch")
        if created:
            user.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        store.save(
            BatchState(
                job=job_id(keys, 1),
                model="stub-model",
                base_url=stub.base_url,
                keys=keys,
                input_file_id=upload.id,
            )
        )
        creates = len(stub.batch_creates)
        results = client_for(stub, tmp_path).complete_all(reqs, desc="t")
        assert all(r.ok for r in results)
        assert len(stub.batch_creates) == creates + (not created)
        assert [r.path for r in stub.requests].count("/v1/files") == 1 + created
    user.close()


def test_rounds_over_the_providers_limits_are_split(
    stub: StubServer, tmp_path: Path, monkeypatch
) -> None:
    lines = [(str(i), b"x" * 10) for i in range(5)]
    assert [len(c) for c in split_lines(lines, max_requests=2)] == [2, 2, 1]
    assert [len(c) for c in split_lines(lines, max_bytes=35)] == [3, 2]
    monkeypatch.setattr(batch_module, "MAX_BATCH_REQUESTS", 2)
    results = client_for(stub, tmp_path).complete_all([request(i) for i in range(5)], desc="t")
    assert all(r.ok for r in results)
    assert [len(keys) for keys in submitted_keys(stub)] == [2, 2, 1]


def test_a_batch_the_server_does_not_know_is_forgotten_and_resubmitted(
    stub: StubServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reqs = [request(0)]
    keys = [reqs[0].cache_key("stub-model")]
    BatchStore(tmp_path / BATCH_STATE_DIR).save(
        BatchState(
            job=job_id(keys, 1),
            model="stub-model",
            base_url=stub.base_url,
            keys=keys,
            input_file_id="file-gone",
            batch_id="batch_gone",
        )
    )
    assert client_for(stub, tmp_path).complete_all(reqs, desc="t")[0].ok
    assert "batch_gone is unknown" in caplog.text and len(stub.batch_creates) == 1


def test_an_unreachable_endpoint_stops_the_stage_with_one_line(
    stub: StubServer, tmp_path: Path
) -> None:
    port = stub.port
    stub.stop()  # nothing listens there now
    params = LLMParams.model_validate(
        {"base_url": f"http://127.0.0.1:{port}/v1", "model": "m", "batch": True, "max_retries": 0}
    )
    slept: list[float] = []
    backend = OpenAIBatchBackend(params, sleep=slept.append)
    client = CachedClient(backend, ResponseCache(tmp_path))
    with pytest.raises(BatchStopped, match=r"failed: APIConnectionError.*rerun `dvc repro`"):
        client.complete_all([request(0)], desc="t")
    assert len(slept) == batch_module.MAX_POLL_FAILURES - 1  # waited between failed polls


# ------------------------------------------------------------------------------ through DVC


def _read_state(cache: Path) -> list[dict[str, Any]]:
    folder = cache / BATCH_STATE_DIR
    return [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.is_dir() else []


@pytest.mark.slow
def test_teach_batch_killed_mid_wait_resumes_on_dvc_repro(tiny_project: Project) -> None:
    """`dvc repro teach` with a held batch is killed while it waits; the next `dvc repro`
    polls the same batch (no second submission of any item) and every chart ends accepted,
    rejected or failed, the counts adding up, with the batch cost beside the live cost."""
    tiny_project.env[KEY_ENV] = SENTINEL
    with StubServer(reply=reply) as stub:
        stub.batch_faults.hold = True
        stub.batch_faults.item_errors = 1  # one section fails: that chart fails with a reason
        llm = {
            "base_url": stub.base_url,
            "model": "stub",
            "api_key_env": KEY_ENV,
            "batch": True,
            "batch_poll_interval_s": 0.05,
            "max_retries": 1,
        }
        prices = {"input_per_mtok": 2.0, "output_per_mtok": 8.0, "batch_discount": 0.5}
        teacher = {"llm": llm, "prices": prices, "max_attempts": 1, "mode": "stepwise"}
        tiny_project.set_params({"teacher": teacher})
        tiny_project.commit("teacher through the Batch API")
        tiny_project.run("dvc", "repro", "charts")
        cache = tiny_project.root / "data/teacher_cache"
        log = tiny_project.root.parent / "teach.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["dvc", "repro", "teach"],
                cwd=tiny_project.root,
                env=tiny_project.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while not any(s.get("batch_id") for s in _read_state(cache)):
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        time.sleep(0.3)  # it is polling now
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        assert "in_progress" in log.read_text()  # the progress line
        assert len(stub.batch_creates) == 1
        held, seen = next(iter(stub.batches)), len(stub.requests)

        stub.batch_faults.hold = False
        tiny_project.run("dvc", "repro", "teach")
        keys = [k for batch in submitted_keys(stub) for k in batch]
        assert len(keys) == len(set(keys))  # no item submitted twice
        assert any(r.path == f"/v1/batches/{held}" for r in stub.requests[seen:])  # polled
        assert stub.chat_requests == []

    teacher = json.loads((tiny_project.root / "metrics/teacher.json").read_text())
    assert teacher["charts"] == teacher["accepted"] + teacher["rejected"] + teacher["failed"]
    assert teacher["failed"] == 1 and teacher["failed_by_error"] == {"http_500": 1}
    assert teacher["accepted"] >= 1
    assert teacher["batch_completion_tokens"] == teacher["completion_tokens"] > 0
    assert teacher["cost_usd"] == pytest.approx(teacher["cost_live_usd"] / 2, abs=1e-6)
    assert _read_state(cache) == []
    essays = tiny_project.root / "data/essays/essays.jsonl"
    failed = [json.loads(line) for line in essays.read_text().splitlines()]
    assert [e["error"] for e in failed if e["status"] == "failed"] == [
        "http_500: injected item failure"
    ]
    found = [p for p in tiny_project.root.rglob("*") if p.is_file() and ".git" not in p.parts]
    assert not [p for p in found if SENTINEL.encode() in p.read_bytes()]


@pytest.mark.slow
def test_teach_batch_without_waiting_is_collected_by_later_dvc_repros(
    tiny_project: Project,
) -> None:
    """`batch_wait: false`: each `dvc repro` submits or checks, exits non-zero with one line
    and records nothing; a batch still in progress stays the same batch across runs; once the
    provider finishes, each rerun collects one round (stepwise: one batch per section)."""
    with StubServer(reply=reply) as stub:
        stub.batch_faults.hold = True
        llm = {"base_url": stub.base_url, "model": "stub", "batch": True, "batch_wait": False}
        tiny_project.set_params({"teacher": {"llm": llm, "max_attempts": 1, "mode": "stepwise"}})
        tiny_project.commit("teacher through the Batch API, without waiting")
        tiny_project.run("dvc", "repro", "charts")
        for _ in range(2):  # in progress across two stage runs
            result = tiny_project.run("dvc", "repro", "teach", check=False)
            output = result.stdout + result.stderr
            assert result.returncode != 0 and "Traceback" not in output
            assert "rerun `dvc repro` to collect" in output, output[-2000:]
            assert not (tiny_project.root / "metrics/teacher.json").exists()
        assert len(stub.batch_creates) == 1

        stub.batch_faults.hold = False
        runs = 0
        while tiny_project.run("dvc", "repro", "teach", check=False).returncode != 0:
            runs += 1
            assert runs < 10
        keys = [k for batch in submitted_keys(stub) for k in batch]
        assert len(keys) == len(set(keys)) == 6 * 4  # six charts, four sections, once each
        assert runs + 1 == len(stub.batches) == 4  # one run per section round
    teacher = json.loads((tiny_project.root / "metrics/teacher.json").read_text())
    assert teacher["accepted"] + teacher["rejected"] + teacher["failed"] == teacher["charts"] == 6
    # The last run collected the last round; the rounds before are replayed from the cache
    # (their tokens were counted by the runs that collected them).
    assert teacher["requests"] == 6 and teacher["cache_hits"] == 18
    assert tiny_project.run("dvc", "status", "teach").stdout.strip().endswith("up to date.")
