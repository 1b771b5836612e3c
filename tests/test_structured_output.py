"""Structured output: `response_format` reaches a server that takes it (live and batch), and a
server that rejects it (as `transformers serve` does) is asked without it, once per run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from chartdistill.essay.sections import SECTIONS
from chartdistill.essay.structured import essay_from_json, essay_response_format
from chartdistill.essay.text import parse_sections
from chartdistill.evaluation.judge import JudgeParams, judge_pairs, verdict_response_format
from chartdistill.llm.batch import batch_input
from chartdistill.llm.cache import CachedClient, ResponseCache
from chartdistill.llm.factory import make_backend
from chartdistill.llm.openai_backend import OpenAIBackend
from chartdistill.llm.types import ChatRequest, LLMParams
from harness.fake_teacher import _table, _user_text, paragraphs, teacher_reply
from harness.stub_server import StubServer
from tests.test_judge import BASELINE, FINETUNED, PROMPTS, chart, prefers_figures
from tests.test_teacher import _charts, _params, _run

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


def json_essay(body: dict) -> str:
    """The fake teacher's essay as the schema's JSON object when the request asks for it."""
    if "response_format" not in body:
        return teacher_reply(body)
    sections = paragraphs(*_table(_user_text(body)))
    return json.dumps({"analysis": "The first row is the largest.", **sections})


def test_essay_json_becomes_the_marked_text_parse_sections_reads() -> None:
    sections = {name: f"The {name} paragraph." for name in SECTIONS}
    parsed = parse_sections(essay_from_json(json.dumps({"analysis": "plan", **sections})))
    assert parsed.sections == sections and parsed.reasoning == "plan"
    assert essay_from_json("Introduction:\nText") == "Introduction:\nText"  # not JSON
    assert essay_from_json('{"introduction": 1}') == '{"introduction": 1}'  # not the schema
    schema = essay_response_format()["json_schema"]["schema"]
    assert schema["required"] == ["analysis", *SECTIONS]


@pytest.mark.parametrize("rejects", [False, True], ids=["supported", "rejected"])
def test_single_mode_essays_through_the_schema_or_the_fallback(
    tmp_path: Path, rejects: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with StubServer(reply=json_essay) as stub:
        stub.reject_response_format = rejects
        params = _params(stub, mode="single", max_tokens=700, structured_output=True)
        essays, _ = _run(stub, params, _charts(2), tmp_path)
        sent = [r for r in stub.chat_requests if "response_format" in r.body]
    assert [e.status for e in essays] == ["accepted", "accepted"], [e.reasons for e in essays]
    assert all(set(e.sections or {}) == set(SECTIONS) for e in essays)
    if rejects:  # asked with the schema once, then without it for the rest of the run
        assert caplog.text.count("rejected response_format") == 1
        assert len(stub.chat_requests) >= 3
    else:
        assert len(sent) == len(stub.chat_requests) == 2
        assert all(e.reasoning == "The first row is the largest." for e in essays)
        assert sent[0].body["response_format"] == essay_response_format()


def test_a_batch_endpoint_that_rejects_it_gets_the_items_again_without(
    stub: StubServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stub.reject_response_format = True
    params = LLMParams(base_url=stub.base_url, model="stub", batch=True, batch_poll_interval_s=0.01)
    client = CachedClient(make_backend(params), ResponseCache(tmp_path))
    with caplog.at_level(logging.WARNING):
        results = client.complete_all([request(i) for i in range(3)] + [request(9, None)], "t")
    assert all(r.ok for r in results)
    first, second = stub.batches.values()
    assert sum("response_format" in item["body"] for item in first.items) == 3
    assert len(second.items) == 3 and all("response_format" not in i["body"] for i in second.items)
    assert caplog.text.count("rejected response_format") == 1
