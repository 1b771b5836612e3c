"""Structured output: `response_format` reaches a server that takes it (live and batch), and a
server that rejects it (as `transformers serve` does) is asked without it, once per run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from chartdistill.evaluation.judge import JudgeParams, judge_pairs, verdict_response_format
from chartdistill.llm.batch import batch_input
from chartdistill.llm.cache import CachedClient, ResponseCache
from chartdistill.llm.openai_backend import OpenAIBackend
from chartdistill.llm.types import ChatRequest, LLMParams
from harness.stub_server import StubServer
from tests.test_judge import BASELINE, FINETUNED, PROMPTS, chart, prefers_figures

FORMAT = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}


def params_for(stub: StubServer) -> LLMParams:
    return LLMParams(base_url=stub.base_url, model="stub", concurrency=4, max_retries=0)


def request(n: int, response_format: dict | None = FORMAT) -> ChatRequest:
    messages = [{"role": "user", "content": f"chart {n}"}]
    return ChatRequest(messages=messages, max_tokens=32, response_format=response_format)


@pytest.fixture
def stub():
    with StubServer() as server:
        yield server
    assert not server.errors, server.errors


def test_response_format_is_keyed_only_when_asked_for() -> None:
    plain = request(0, None)
    assert "response_format" not in plain.sampling()  # older cache keys unchanged
    assert request(0).cache_key("m") != plain.cache_key("m")
    line = json.loads(batch_input("m", {"k": request(0)}))
    assert line["body"]["response_format"] == FORMAT  # batch lines carry it too
    with pytest.raises(ValueError, match="type"):
        request(0, {"json_schema": {}})


def test_a_server_that_takes_it_gets_it(stub: StubServer, tmp_path: Path) -> None:
    client = CachedClient(OpenAIBackend(params_for(stub)), ResponseCache(tmp_path))
    assert all(r.ok for r in client.complete_all([request(0), request(1)], desc="t"))
    assert [r.body.get("response_format") for r in stub.chat_requests] == [FORMAT, FORMAT]


def test_a_server_that_rejects_it_is_asked_without_once_per_run(
    stub: StubServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stub.reject_response_format = True
    backend = OpenAIBackend(params_for(stub))
    client = CachedClient(backend, ResponseCache(tmp_path))
    with caplog.at_level(logging.WARNING):
        results = client.complete_all([request(i) for i in range(4)], desc="t")
        assert all(r.ok for r in results)
        stub.reset_log()
        assert client.complete_all([request(9)], desc="t")[0].ok
    assert "response_format" not in stub.chat_requests[0].body  # not tried again this run
    warnings = [r for r in caplog.records if "rejected response_format" in r.message]
    assert len(warnings) == 1 and "http_400" in warnings[0].message


def test_judge_asks_a_server_for_the_verdict_schema(stub: StubServer, tmp_path: Path) -> None:
    stub.reply = prefers_figures
    judge = JudgeParams(llm=params_for(stub), structured_output=True, verdict="reply")
    client = CachedClient(OpenAIBackend(judge.llm), ResponseCache(tmp_path))
    one = chart(1)
    pair = ({one.id: "Reference."}, {one.id: BASELINE}, {one.id: FINETUNED})
    judged = judge_pairs([one], *pair, judge, client, PROMPTS)
    assert judged[0].outcome == "finetuned" and judged[0].error is None
    formats = {json.dumps(r.body.get("response_format")) for r in stub.chat_requests}
    assert formats == {json.dumps(verdict_response_format())}
    schema = verdict_response_format()["json_schema"]["schema"]
    assert schema["properties"]["winner"]["enum"] == ["A", "B", "tie"]
