"""patch_anthropic(): the real anthropic SDK, over real HTTP, to the local fake server."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import pytest
from anthropic.resources.beta.messages.messages import Messages as BetaMessages
from anthropic.resources.messages.messages import AsyncMessages, Messages
from pydantic import BaseModel

from llm_memo import MemoryBackend
from llm_memo.integrations.anthropic import patch_anthropic, unpatch_anthropic
from llm_memo.testing import FakeLLMServer

# anthropic warns (DeprecationWarning) about retired model names: use a neutral one.
ASK: dict[str, Any] = {
    "model": "claude-test-model",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "Tell me about caches"}],
}


class Answer(BaseModel):
    name: str


@pytest.fixture
def store() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def patched(store: MemoryBackend) -> Iterator[MemoryBackend]:
    patch_anthropic(backend=store)
    yield store
    unpatch_anthropic()


@pytest.fixture
def client(llm_server: FakeLLMServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key="sk-ant-test", base_url=llm_server.anthropic_base_url) as c:
        yield c


@pytest.fixture
async def aclient(llm_server: FakeLLMServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=llm_server.anthropic_base_url) as c:
        yield c


def messages_count(server: FakeLLMServer) -> int:
    return server.count("/v1/messages")


def test_create_hit_is_the_live_object(
    llm_server: FakeLLMServer, client: anthropic.Anthropic, patched: Any
) -> None:
    live = client.messages.create(**ASK)
    hit = client.messages.create(**ASK)
    assert messages_count(llm_server) == 1
    assert type(hit) is type(live) and hit == live and hit.to_dict() == live.to_dict()
    assert hit._request_id == live._request_id and hit._request_id
    assert hit._workspace_id == live._workspace_id


async def test_async_create_hit(
    llm_server: FakeLLMServer, aclient: anthropic.AsyncAnthropic, client: anthropic.Anthropic, patched: Any
) -> None:
    live = await aclient.messages.create(**ASK)
    hit = await aclient.messages.create(**ASK)
    assert hit == live == client.messages.create(**ASK) and hit._request_id == live._request_id
    assert messages_count(llm_server) == 1


def test_streams_and_the_stream_helper(
    llm_server: FakeLLMServer, client: anthropic.Anthropic, patched: Any
) -> None:
    live_stream = client.messages.create(**ASK, stream=True)
    live = list(live_stream)
    with client.messages.create(**ASK, stream=True) as hit_stream:
        hit = [next(hit_stream), *hit_stream]
    assert type(hit_stream) is type(live_stream) and isinstance(hit_stream, anthropic.Stream)
    assert (
        hit == live
        and hit_stream.response.headers["request-id"] == live_stream.response.headers["request-id"]
    )
    assert messages_count(llm_server) == 1

    texts, finals = [], []
    for _ in range(2):
        with client.messages.stream(**ASK) as stream:
            texts.append("".join(stream.text_stream))
            finals.append(stream.get_final_message())
    assert messages_count(llm_server) == 2  # stream() has entries of its own
    assert texts[0] == texts[1] and finals[0] == finals[1]
    assert finals[0].content[0].text == texts[0]  # type: ignore[union-attr]


async def test_async_streams_and_the_stream_helper(
    llm_server: FakeLLMServer, aclient: anthropic.AsyncAnthropic, patched: Any
) -> None:
    streams, events = [], []
    for _ in range(2):  # one after the other: a stream is stored once read to its end
        streams.append(await aclient.messages.create(**ASK, stream=True))
        events.append([event async for event in streams[-1]])
    assert type(streams[1]) is type(streams[0]) and events[0] == events[1]
    texts = []
    for _ in range(2):
        async with aclient.messages.stream(**ASK) as stream:
            texts.append("".join([text async for text in stream.text_stream]))
            final = await stream.get_final_message()
    assert texts[0] == texts[1] and final.content
    assert messages_count(llm_server) == 2


def test_beta_messages(llm_server: FakeLLMServer, client: anthropic.Anthropic, patched: Any) -> None:
    live = client.beta.messages.create(**ASK, betas=["beta-1"])
    hit = client.beta.messages.create(**ASK, betas=["beta-1"])
    assert hit == live and type(hit).__name__ == "BetaMessage" and messages_count(llm_server) == 1
    client.beta.messages.create(**ASK, betas=["beta-2"])  # betas are in the key
    assert messages_count(llm_server) == 2
    texts = []
    for _ in range(2):
        with client.beta.messages.stream(**ASK) as stream:
            texts.append("".join(stream.text_stream))
    assert texts[0] == texts[1] and messages_count(llm_server) == 3


def test_parse_hit_carries_the_parsed_output(
    llm_server: FakeLLMServer, client: anthropic.Anthropic, patched: Any
) -> None:
    live = client.messages.parse(**ASK, output_format=Answer)
    hit = client.messages.parse(**ASK, output_format=Answer)
    assert messages_count(llm_server) == 1
    assert type(hit) is type(live) and hit == live
    assert isinstance(hit.parsed_output, Answer) and hit.parsed_output == live.parsed_output
    assert hit._request_id == live._request_id


def test_not_stored_when_cut_short_or_broken(
    llm_server: FakeLLMServer, client: anthropic.Anthropic, patched: Any
) -> None:
    cut = {**ASK, "messages": [{"role": "user", "content": "[length] go"}]}
    broken = {**ASK, "messages": [{"role": "user", "content": "[stream-error] go"}]}
    for _ in range(2):
        assert client.messages.create(**cut).stop_reason == "max_tokens"
        list(client.messages.create(**cut, stream=True))
        with pytest.raises(anthropic.APIStatusError):
            list(client.messages.create(**broken, stream=True))
        partial = client.messages.create(**ASK, stream=True)
        next(partial)
        partial.close()
    assert messages_count(llm_server) == 8 and not list(patched.entries())


def test_key_rules(llm_server: FakeLLMServer, client: anthropic.Anthropic, patched: Any) -> None:
    def new(**variation: Any) -> bool:
        before = messages_count(llm_server)
        client.messages.create(**{**ASK, **variation})
        return messages_count(llm_server) > before

    client.messages.create(**ASK)
    assert not new(metadata={"user_id": "u1"})
    assert not new(user_profile_id="p1")
    assert not new(timeout=30)
    assert not new(extra_headers={"X-Trace": "1"})
    assert not new(extra_body=None, extra_query={})
    assert not new(stop_sequences=anthropic.NOT_GIVEN, thinking=anthropic.omit)
    assert new(workspace_id="ws-1")
    assert new(extra_headers={"anthropic-beta": "x"})
    assert new(stop_sequences=["END"])
    assert new(system="Be brief")
    assert new(extra_body={"future_param": True})
    with anthropic.Anthropic(api_key="another", base_url=llm_server.anthropic_base_url) as other:
        other.messages.create(**ASK)
    assert messages_count(llm_server) == 6  # a different API key shares answers by default


def test_raw_responses_bypass(llm_server: FakeLLMServer, client: anthropic.Anthropic, patched: Any) -> None:
    for _ in range(2):
        assert client.messages.with_raw_response.create(**ASK).parse().content
        with client.messages.with_streaming_response.create(**ASK) as response:
            assert json.loads(response.read())["content"]
    assert messages_count(llm_server) == 4


def test_secrets_never_stored_or_logged(
    llm_server: FakeLLMServer, store: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="llm_memo")
    key, token = f"sk-ant-{secrets.token_hex(16)}", secrets.token_hex(16)
    patch_anthropic(backend=store, isolate_credentials=True)
    try:
        with anthropic.Anthropic(
            api_key=key, base_url=llm_server.anthropic_base_url, default_headers={"x-api-key": token}
        ) as c:
            c.messages.create(**ASK)
            list(c.messages.create(**ASK, stream=True))
            with c.messages.stream(**ASK) as stream:
                stream.until_done()
    finally:
        unpatch_anthropic()
    stored = b"".join(e.value for e in store.entries())
    assert len(list(store.entries())) == 3
    assert key.encode() not in stored and token.encode() not in stored
    assert key not in caplog.text and token not in caplog.text


def test_unpatch_restores_the_original_functions() -> None:
    targets = [
        (cls, name)
        for cls in (Messages, AsyncMessages, BetaMessages)
        for name in ("create", "stream", "parse")
    ]
    originals = {t: vars(t[0])[t[1]] for t in targets}
    patch_anthropic()
    patch_anthropic()
    try:
        assert all(vars(c)[n].__wrapped__ is originals[c, n] for c, n in targets)  # one layer
    finally:
        unpatch_anthropic()
    assert all(vars(c)[n] is originals[c, n] for c, n in targets)
