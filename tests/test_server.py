"""The fake LLM server, driven by the real openai and anthropic SDKs over real HTTP."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pydantic
import pytest

from llm_memo.testing import FakeLLMServer

MODEL = "gpt-4o-mini"
# Not a real model name: the SDK warns (an error under `filterwarnings = error`) on deprecated ones.
CLAUDE = "claude-test-model"


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(latency=0.0) as srv:
        yield srv


@pytest.fixture
def srv(server: FakeLLMServer) -> FakeLLMServer:
    server.reset()
    server.latency = 0.0
    return server


@pytest.fixture
def oai(srv: FakeLLMServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=srv.openai_base_url, api_key="test-key", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(srv: FakeLLMServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=srv.anthropic_base_url, api_key="test-key", max_retries=0) as client:
        yield client


def async_oai(srv: FakeLLMServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key="test-key", max_retries=0)


def async_claude(srv: FakeLLMServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=srv.anthropic_base_url, api_key="test-key", max_retries=0)


# --------------------------------------------------------------------------- chat completions


def test_chat_create_is_deterministic_but_ids_differ(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    first = oai.chat.completions.create(model=MODEL, messages=user("hello there"))
    second = oai.chat.completions.create(model=MODEL, messages=user("hello there"))
    other = oai.chat.completions.create(model=MODEL, messages=user("something else"))
    assert first.object == "chat.completion" and first.model == MODEL
    assert first.choices[0].message.role == "assistant"
    assert first.choices[0].finish_reason == "stop"
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.choices[0].message.content != other.choices[0].message.content
    assert first.id.startswith("chatcmpl-") and first.id != second.id
    assert first.usage is not None and first.usage.prompt_tokens == 2
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    assert srv.count("/chat/completions") == 3


def test_chat_request_id_header(oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(model=MODEL, messages=user("hi"))
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.parse().choices[0].message.content


def test_chat_n_choices(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model=MODEL, messages=user("pick two"), n=2)
    assert [c.index for c in completion.choices] == [0, 1]
    assert completion.choices[0].message.content != completion.choices[1].message.content


def test_chat_stream_matches_plain_answer(oai: openai.OpenAI) -> None:
    plain = oai.chat.completions.create(model=MODEL, messages=user("stream me"))
    chunks = list(oai.chat.completions.create(model=MODEL, messages=user("stream me"), stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.object == "chat.completion.chunk" and c.usage is None for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == plain.choices[0].message.content
    assert len(chunks) > 4


def test_chat_stream_include_usage(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model=MODEL, messages=user("count me"), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_chat_stream_helper(oai: openai.OpenAI) -> None:
    with oai.chat.completions.stream(model=MODEL, messages=user("helper")) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == final.choices[0].message.content
    assert final.choices[0].finish_reason == "stop"


class Person(pydantic.BaseModel):
    name: str
    age: int
    height: float
    active: bool


def test_chat_parse_pydantic(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    completion = oai.chat.completions.parse(model=MODEL, messages=user("who?"), response_format=Person)
    person = completion.choices[0].message.parsed
    assert isinstance(person, Person)
    assert isinstance(person.name, str) and isinstance(person.age, int)
    assert srv.requests[-1].body["response_format"]["type"] == "json_schema"


def test_chat_async_create_and_stream(srv: FakeLLMServer) -> None:
    async def run() -> tuple[str | None, str]:
        async with async_oai(srv) as client:
            plain = await client.chat.completions.create(model=MODEL, messages=user("async"))
            stream = await client.chat.completions.create(model=MODEL, messages=user("async"), stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream])
            return plain.choices[0].message.content, text

    plain, streamed = asyncio.run(run())
    assert plain == streamed
    assert srv.requests[-1].headers["x-stainless-async"].startswith("async")


# --------------------------------------------------------------------------- triggers


@pytest.mark.parametrize(("trigger", "reason"), [("[length]", "length"), ("[filter]", "content_filter")])
def test_chat_finish_reason_triggers(oai: openai.OpenAI, trigger: str, reason: str) -> None:
    completion = oai.chat.completions.create(model=MODEL, messages=user(f"go {trigger}"))
    assert completion.choices[0].finish_reason == reason


def test_chat_json_trigger(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model=MODEL, messages=user("answer [json]"))
    payload = json.loads(completion.choices[0].message.content or "")
    assert set(payload) == {"answer", "confidence"} and payload["confidence"] == 0.9


def test_chat_tool_trigger(oai: openai.OpenAI) -> None:
    tool: Any = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    completion = oai.chat.completions.create(model=MODEL, messages=user("weather? [tool]"), tools=[tool])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call: Any = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and call.function.arguments == "{}"

    with oai.chat.completions.stream(model=MODEL, messages=user("weather? [tool]"), tools=[tool]) as stream:
        final = stream.get_final_completion()
    streamed_call: Any = (final.choices[0].message.tool_calls or [])[0]
    assert streamed_call.function.name == "get_weather"


def test_error500_trigger(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    with pytest.raises(openai.InternalServerError) as oai_err:
        oai.chat.completions.create(model=MODEL, messages=user("fail [error500]"))
    assert oai_err.value.status_code == 500
    with pytest.raises(openai.InternalServerError):
        oai.responses.create(model=MODEL, input="fail [error500]")
    with pytest.raises(anthropic.InternalServerError) as claude_err:
        claude.messages.create(model=CLAUDE, max_tokens=50, messages=user("fail [error500]"))
    assert claude_err.value.status_code == 500


def test_stream_error_trigger(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    received: list[Any] = []
    with pytest.raises(openai.APIError, match="boom"):
        for chunk in oai.chat.completions.create(model=MODEL, messages=user("[stream-error]"), stream=True):
            received.append(chunk)
    assert len(received) == 2
    with pytest.raises(anthropic.APIStatusError, match="boom"):
        for _ in claude.messages.create(
            model=CLAUDE, max_tokens=50, messages=user("[stream-error]"), stream=True
        ):
            pass


def test_unknown_endpoint_is_json_404(srv: FakeLLMServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{srv.url}/v1/nope", timeout=5)
    assert err.value.code == 404
    assert "error" in json.loads(err.value.read())
    assert srv.count("/nope") == 1 and srv.requests[-1].method == "GET"


# --------------------------------------------------------------------------- legacy completions, embeddings


def test_legacy_completions(oai: openai.OpenAI) -> None:
    plain = oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon a time")
    assert plain.object == "text_completion" and plain.choices[0].finish_reason == "stop"
    stream = oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon a time", stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks) == plain.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_embeddings_default_base64_equals_float(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    default = oai.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert srv.requests[-1].body["encoding_format"] == "base64"  # the SDK's silent default
    floats = oai.embeddings.create(
        model="text-embedding-3-small", input=["alpha", "beta"], encoding_format="float"
    )
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    assert len(default.data) == 2 and len(default.data[0].embedding) == 8
    assert default.data[0].embedding != default.data[1].embedding
    assert abs(sum(v * v for v in default.data[0].embedding) - 1.0) < 1e-5

    single = oai.embeddings.create(model="text-embedding-3-small", input="alpha", dimensions=16)
    assert len(single.data) == 1 and len(single.data[0].embedding) == 16


# --------------------------------------------------------------------------- responses


def test_responses_create(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model=MODEL, input="tell me something")
    assert response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text and response.usage is not None
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    again = oai.responses.create(model=MODEL, input=user("tell me something"))
    assert again.output_text.endswith("tell me something")  # message-list input works too


def test_responses_streamed(oai: openai.OpenAI) -> None:
    plain = oai.responses.create(model=MODEL, input="stream it")
    events = list(oai.responses.create(model=MODEL, input="stream it", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 2 and "".join(deltas) == plain.output_text


def test_responses_stream_helper_sync_and_async(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    with oai.responses.stream(model=MODEL, input="helper") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text

    async def run() -> str:
        async with async_oai(srv) as client, client.responses.stream(model=MODEL, input="helper") as astream:
            return (await astream.get_final_response()).output_text

    assert asyncio.run(run()) == final.output_text


def test_responses_incomplete_and_background(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model=MODEL, input="long [incomplete]")
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    events = list(oai.responses.create(model=MODEL, input="long [incomplete]", stream=True))
    assert events[-1].type == "response.incomplete"
    assert oai.responses.create(model=MODEL, input="later", background=True).status == "queued"


# --------------------------------------------------------------------------- anthropic


def test_anthropic_messages_create(claude: anthropic.Anthropic, srv: FakeLLMServer) -> None:
    message = claude.messages.create(model=CLAUDE, max_tokens=100, messages=user("hi claude"))
    assert message.id.startswith("msg_") and message.model == CLAUDE
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.content[0].type == "text" and message.content[0].text
    assert message.usage.input_tokens == 2 and message.usage.output_tokens > 0
    assert message._request_id is not None and message._request_id.startswith("req_")
    assert srv.requests[-1].path == "/v1/messages"
    truncated = claude.messages.create(model=CLAUDE, max_tokens=5, messages=user("hi [length]"))
    assert truncated.stop_reason == "max_tokens"


def test_anthropic_streamed(claude: anthropic.Anthropic) -> None:
    plain = claude.messages.create(model=CLAUDE, max_tokens=100, messages=user("stream claude"))
    events = list(
        claude.messages.create(model=CLAUDE, max_tokens=100, messages=user("stream claude"), stream=True)
    )
    kinds = [e.type for e in events]  # the SDK drops `ping`
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert plain.content[0].type == "text" and text == plain.content[0].text


def test_anthropic_stream_helper_sync_and_async(claude: anthropic.Anthropic, srv: FakeLLMServer) -> None:
    with claude.messages.stream(model=CLAUDE, max_tokens=100, messages=user("helper")) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 2
    assert final.content[0].type == "text" and final.content[0].text == "".join(pieces)
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == len(pieces)

    async def run() -> str:
        async with (
            async_claude(srv) as client,
            client.messages.stream(model=CLAUDE, max_tokens=100, messages=user("helper")) as astream,
        ):
            return "".join([t async for t in astream.text_stream])

    assert asyncio.run(run()) == "".join(pieces)


def test_anthropic_beta_messages(claude: anthropic.Anthropic, srv: FakeLLMServer) -> None:
    plain = claude.messages.create(model=CLAUDE, max_tokens=100, messages=user("beta"))
    beta = claude.beta.messages.create(model=CLAUDE, max_tokens=100, messages=user("beta"))
    assert beta.content[0].type == "text" and plain.content[0].type == "text"
    assert beta.content[0].text == plain.content[0].text
    # Older SDKs send the beta resource to /v1/messages?beta=true; make sure that URL works too.
    flagged = claude.beta.messages.create(
        model=CLAUDE, max_tokens=100, messages=user("beta"), extra_query={"beta": "true"}
    )
    assert srv.requests[-1].query == {"beta": "true"} and flagged.id.startswith("msg_")
    assert srv.count("/v1/messages") == 3


# --------------------------------------------------------------------------- accounting, latency, lifecycle


def test_request_records_and_reset(
    oai: openai.OpenAI, claude: anthropic.Anthropic, srv: FakeLLMServer
) -> None:
    oai.chat.completions.create(model=MODEL, messages=user("one"), extra_query={"trace": "1"})
    claude.messages.create(model=CLAUDE, max_tokens=10, messages=user("two"))
    assert srv.count() == 2 and srv.count("/chat/completions") == 1 and srv.count("/messages") == 1
    record = srv.requests[0]
    assert (record.method, record.path, record.query) == ("POST", "/v1/chat/completions", {"trace": "1"})
    assert record.headers["authorization"] == "Bearer test-key"
    assert record.body == {"model": MODEL, "messages": user("one")}
    srv.reset()
    assert srv.count() == 0 and srv.requests == []


def test_keep_alive_requests_are_fast(oai: openai.OpenAI) -> None:
    oai.chat.completions.create(model=MODEL, messages=user("warm up"))
    start = time.perf_counter()
    for _ in range(30):
        oai.chat.completions.create(model=MODEL, messages=user("quick"))
    # Without TCP_NODELAY each call costs ~40 ms (Nagle + delayed ACK): over 1.2 s here.
    assert time.perf_counter() - start < 1.0


def test_latency_is_settable(oai: openai.OpenAI, srv: FakeLLMServer) -> None:
    srv.latency = 0.15
    start = time.perf_counter()
    oai.chat.completions.create(model=MODEL, messages=user("slow"))
    assert time.perf_counter() - start >= 0.15
    start = time.perf_counter()
    chunks = list(oai.chat.completions.create(model=MODEL, messages=user("slow"), stream=True))
    assert 0.15 <= time.perf_counter() - start < 1.0 and len(chunks) > 3


def test_concurrent_requests_overlap_and_are_all_counted(srv: FakeLLMServer) -> None:
    srv.latency = 0.2

    async def run() -> list[str]:
        async with async_oai(srv) as client:
            calls = [client.chat.completions.create(model=MODEL, messages=user(f"q{i}")) for i in range(8)]
            return [c.id for c in await asyncio.gather(*calls)]

    start = time.perf_counter()
    ids = asyncio.run(run())
    assert time.perf_counter() - start < 1.0  # served in parallel threads, not 8 x 0.2 s
    assert len(set(ids)) == 8 and srv.count("/chat/completions") == 8


def test_stop_closes_kept_alive_connections() -> None:
    srv = FakeLLMServer().start()
    with openai.OpenAI(base_url=srv.openai_base_url, api_key="test-key", max_retries=0) as client:
        client.chat.completions.create(model=MODEL, messages=user("hi"))
        srv.stop()
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model=MODEL, messages=user("hi"))
    with pytest.raises(RuntimeError):
        _ = srv.url


def test_main_runs_in_foreground() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_memo.testing", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split()[4]
        assert url.startswith("http://127.0.0.1:")
        with openai.OpenAI(base_url=f"{url}/v1", api_key="test-key", max_retries=0) as client:
            assert client.chat.completions.create(model=MODEL, messages=user("cli")).choices
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
