"""patch_openai(): the real openai SDK, over real HTTP, to the local fake server.

Hits are proven by the server's request count; nothing inside the SDK is mocked.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import secrets
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import wrapt
from openai.resources.chat.completions.completions import AsyncCompletions, Completions
from openai.resources.completions import Completions as LegacyCompletions
from openai.resources.responses.responses import AsyncResponses, Responses
from pydantic import BaseModel

import llm_memo
from llm_memo import CacheMiss, MemoryBackend
from llm_memo.integrations import openai as memo_openai
from llm_memo.integrations._sdk import SDKPatch
from llm_memo.integrations.openai import patch_openai, unpatch_openai
from llm_memo.testing import FakeLLMServer

MSG: list[Any] = [{"role": "user", "content": "Tell me about caches"}]
CHAT: dict[str, Any] = {"model": "gpt-test", "messages": MSG}


class Answer(BaseModel):
    name: str
    score: int


@pytest.fixture
def store() -> MemoryBackend:
    """A private memory backend, so a test can read every byte stored."""
    return MemoryBackend()


@pytest.fixture
def patched(store: MemoryBackend) -> Iterator[MemoryBackend]:
    patch_openai(backend=store)
    yield store
    unpatch_openai()


@pytest.fixture
def client(llm_server: FakeLLMServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key="sk-test-key", base_url=llm_server.openai_base_url) as c:
        yield c


@pytest.fixture
async def aclient(llm_server: FakeLLMServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(api_key="sk-test-key", base_url=llm_server.openai_base_url) as c:
        yield c


def chat_count(server: FakeLLMServer) -> int:
    return server.count("/chat/completions")


# --------------------------------------------------------------------------- plain hits


def test_hit_is_the_live_object(llm_server: FakeLLMServer, client: openai.OpenAI, patched: Any) -> None:
    live = client.chat.completions.create(**CHAT)
    hit = client.chat.completions.create(**CHAT)
    assert chat_count(llm_server) == 1
    assert type(hit) is type(live) is openai.types.chat.ChatCompletion
    assert hit == live
    assert hit.to_dict() == live.to_dict()
    assert hit._request_id == live._request_id == "req_" + live.id.rsplit("-", 1)[1]
    assert hit is not live  # a fresh object each time: mutating one never changes the next hit
    create: Any = client.chat.completions.create
    assert create.cache_info().hits == 1  # the helpers are reachable from the bound method


async def test_async_hit_is_the_live_object(
    llm_server: FakeLLMServer, aclient: openai.AsyncOpenAI, client: openai.OpenAI, patched: Any
) -> None:
    live = await aclient.chat.completions.create(**CHAT)
    hit = await aclient.chat.completions.create(**CHAT)
    sync_hit = client.chat.completions.create(**CHAT)  # sync and async share entries
    assert chat_count(llm_server) == 1
    assert hit == live == sync_hit and hit.to_dict() == live.to_dict()
    assert hit._request_id == live._request_id


async def test_concurrent_identical_async_calls_make_one_request(
    llm_server: FakeLLMServer, aclient: openai.AsyncOpenAI, patched: Any
) -> None:
    llm_server.latency = 0.2
    results = await asyncio.gather(*(aclient.chat.completions.create(**CHAT) for _ in range(4)))
    assert chat_count(llm_server) == 1
    assert all(r == results[0] for r in results)


def test_every_covered_endpoint_hits(llm_server: FakeLLMServer, client: openai.OpenAI, patched: Any) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: client.responses.create(model="gpt-test", input="hello"),
        lambda: client.embeddings.create(model="emb-test", input=["a", "b"]),
        lambda: client.embeddings.create(model="emb-test", input="a", encoding_format="float"),
        lambda: client.completions.create(model="legacy-test", prompt="Say hi"),
    ]
    for call in calls:
        before = llm_server.count()
        live, hit = call(), call()
        assert llm_server.count() == before + 1
        assert type(hit) is type(live) and hit == live and hit.to_dict() == live.to_dict()
        assert hit._request_id == live._request_id


async def test_every_covered_endpoint_hits_async(
    llm_server: FakeLLMServer, aclient: openai.AsyncOpenAI, patched: Any
) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: aclient.responses.create(model="gpt-test", input="hello"),
        lambda: aclient.embeddings.create(model="emb-test", input=["a", "b"]),
        lambda: aclient.completions.create(model="legacy-test", prompt="Say hi"),
    ]
    for call in calls:
        before = llm_server.count()
        live, hit = await call(), await call()
        assert llm_server.count() == before + 1
        assert type(hit) is type(live) and hit == live and hit._request_id == live._request_id


# --------------------------------------------------------------------------- streams


def consume(stream: Any, style: str) -> list[Any]:
    if style == "for":
        return [chunk for chunk in stream]
    if style == "next":
        out = []
        while True:
            try:
                out.append(next(stream))
            except StopIteration:
                return out
    with stream as s:  # "with"
        return list(s)


@pytest.mark.parametrize("style", ["for", "next", "with"])
def test_stream_hit_replays_a_real_stream(
    llm_server: FakeLLMServer, client: openai.OpenAI, patched: Any, style: str
) -> None:
    live_stream = client.chat.completions.create(**CHAT, stream=True)
    live = consume(live_stream, style)
    hit_stream = client.chat.completions.create(**CHAT, stream=True)
    assert type(hit_stream) is type(live_stream) and isinstance(hit_stream, openai.Stream)
    hit = consume(hit_stream, style)
    assert chat_count(llm_server) == 1
    assert hit == live and [c.to_dict() for c in hit] == [c.to_dict() for c in live]
    assert len(live) > 3
    request_id = live_stream.response.headers["x-request-id"]
    assert hit_stream.response.headers["x-request-id"] == request_id
    assert hit_stream.response.is_closed


def test_stream_helpers_share_the_create_entry(
    llm_server: FakeLLMServer, client: openai.OpenAI, patched: Any
) -> None:
    raw = list(client.chat.completions.create(**CHAT, stream=True))
    with client.chat.completions.stream(**CHAT) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_completion()
    assert chat_count(llm_server) == 1
    assert "content.done" in events
    assert final.choices[0].message.content == "".join(c.choices[0].delta.content or "" for c in raw)

    with client.responses.stream(model="gpt-test", input="hello") as rs:
        live_events = list(rs)
        live_final = rs.get_final_response()
    with client.responses.stream(model="gpt-test", input="hello") as rs:
        hit_events = list(rs)
        hit_final = rs.get_final_response()
    direct = list(client.responses.create(model="gpt-test", input="hello", stream=True))
    assert llm_server.count("/responses") == 1
    assert [e.type for e in hit_events] == [e.type for e in live_events]
    assert hit_final.output_text == live_final.output_text and hit_final.id == live_final.id
    assert direct[-1].type == "response.completed"


def test_legacy_and_usage_streams(llm_server: FakeLLMServer, client: openai.OpenAI, patched: Any) -> None:
    legacy = [
        list(client.completions.create(model="legacy-test", prompt="hi", stream=True)) for _ in range(2)
    ]
    assert legacy[0] == legacy[1] and llm_server.count("/completions") == 1
    with_usage = [
        list(client.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True}))
        for _ in range(2)
    ]
    assert with_usage[0] == with_usage[1] and with_usage[0][-1].usage is not None
    assert chat_count(llm_server) == 1  # include_usage is in the key: a stream of its own


async def test_async_stream_hits(
    llm_server: FakeLLMServer, aclient: openai.AsyncOpenAI, patched: Any
) -> None:
    live_stream = await aclient.chat.completions.create(**CHAT, stream=True)
    live = [chunk async for chunk in live_stream]
    hit_stream = await aclient.chat.completions.create(**CHAT, stream=True)
    assert type(hit_stream) is type(live_stream) and isinstance(hit_stream, openai.AsyncStream)
    async with hit_stream as s:
        first = await s.__anext__()
        rest = [chunk async for chunk in s]
    assert [first, *rest] == live
    assert hit_stream.response.headers["x-request-id"] == live_stream.response.headers["x-request-id"]
    async with aclient.chat.completions.stream(**CHAT) as helper:
        async for _ in helper:
            pass
        final = await helper.get_final_completion()
    assert final.choices[0].message.content
    async with aclient.responses.stream(model="gpt-test", input="hello") as rs:
        async for _ in rs:
            pass
    async with aclient.responses.stream(model="gpt-test", input="hello") as rs:
        events = [event async for event in rs]
    assert chat_count(llm_server) == 1 and llm_server.count("/responses") == 1
    assert events[-1].type == "response.completed"


def test_only_complete_streams_are_stored(
    llm_server: FakeLLMServer, client: openai.OpenAI, patched: Any
) -> None:
    partial = client.chat.completions.create(**CHAT, stream=True)
    next(partial)
    partial.close()
    with client.chat.completions.create(**CHAT, stream=True) as stream:
        for _ in stream:
            break
    assert chat_count(llm_server) == 2  # nothing was stored: the second call went out too

    broken: list[Any] = [{"role": "user", "content": "[stream-error] please"}]
    for _ in range(2):
        with pytest.raises(openai.APIError):
            list(client.chat.completions.create(model="gpt-test", messages=broken, stream=True))
    assert chat_count(llm_server) == 4
    assert patched.entries is not None and not list(patched.entries())


async def test_async_partial_stream_stores_nothing(
    llm_server: FakeLLMServer, aclient: openai.AsyncOpenAI, patched: Any
) -> None:
    stream = await aclient.chat.completions.create(**CHAT, stream=True)
    await stream.__anext__()
    await stream.close()
    await aclient.chat.completions.create(**CHAT, stream=True)
    assert chat_count(llm_server) == 2
    broken: list[Any] = [{"role": "user", "content": "[stream-error]"}]
    with pytest.raises(openai.APIError):
        async for _ in await aclient.chat.completions.create(model="gpt-test", messages=broken, stream=True):
            pass
    assert not list(patched.entries())


# --------------------------------------------------------------------------- parse()


def test_parse_hit_carries_the_parsed_object(
    llm_server: FakeLLMServer, client: openai.OpenAI, patched: Any
) -> None:
    live = client.chat.completions.parse(**CHAT, response_format=Answer)
    hit = client.chat.completions.parse(**CHAT, response_format=Answer)
    assert chat_count(llm_server) == 1
    assert type(hit) is type(live) and hit == live
    assert isinstance(hit.choices[0].message.parsed, Answer)
    assert hit.choices[0].message.parsed == live.choices[0].message.parsed
    assert hit._request_id == live._request_id

    class Other(BaseModel):
        label: str

    other = client.chat.completions.parse(**CHAT, response_format=Other)  # the schema is in the key
    assert isinstance(other.choices[0].message.parsed, Other) and chat_count(llm_server) == 2

    rlive = client.responses.parse(model="gpt-test", input="q", text_format=Answer)
    rhit = client.responses.parse(model="gpt-test", input="q", text_format=Answer)
    assert llm_server.count("/responses") == 1
    assert isinstance(rhit.output_parsed, Answer) and rhit.output_parsed == rlive.output_parsed
    assert rhit._request_id == rlive._request_id


async def test_async_parse_hit(llm_server: FakeLLMServer, aclient: openai.AsyncOpenAI, patched: Any) -> None:
    live = await aclient.chat.completions.parse(**CHAT, response_format=Answer)
    hit = await aclient.chat.completions.parse(**CHAT, response_format=Answer)
    rhit = [await aclient.responses.parse(model="gpt-test", input="q", text_format=Answer) for _ in range(2)]
    assert chat_count(llm_server) == 1 and llm_server.count("/responses") == 1
    assert hit == live and isinstance(hit.choices[0].message.parsed, Answer)
    assert rhit[0].output_parsed == rhit[1].output_parsed


def test_parse_of_a_truncated_answer_raises_and_stores_nothing(
    llm_server: FakeLLMServer, client: openai.OpenAI
) -> None:
    patch_openai(cache_if=lambda answer: True)  # even when truncated answers may be stored
    try:
        cut: list[Any] = [{"role": "user", "content": "[length] go on"}]
        for _ in range(2):
            with pytest.raises(openai.LengthFinishReasonError):
                client.chat.completions.parse(model="gpt-test", messages=cut, response_format=Answer)
        assert chat_count(llm_server) == 2
    finally:
        unpatch_openai()


# --------------------------------------------------------------------------- bypass


def test_raw_and_streaming_responses_bypass_the_cache(
    llm_server: FakeLLMServer, client: openai.OpenAI, patched: Any
) -> None:
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(**CHAT)
        assert raw.headers["x-request-id"] and raw.parse().choices
        assert client.with_raw_response.chat.completions.create(**CHAT).parse().choices
        with client.chat.completions.with_streaming_response.create(**CHAT) as response:
            assert json.loads(response.read())["choices"]
    assert chat_count(llm_server) == 6
    client.chat.completions.create(**CHAT)
    client.chat.completions.create(**CHAT)
    assert chat_count(llm_server) == 7


async def test_async_raw_response_bypasses(
    llm_server: FakeLLMServer, aclient: openai.AsyncOpenAI, patched: Any
) -> None:
    for _ in range(2):
        raw = await aclient.chat.completions.with_raw_response.create(**CHAT)
        assert raw.parse().choices
    assert chat_count(llm_server) == 2


def test_background_and_conversation_requests_bypass(
    llm_server: FakeLLMServer, client: openai.OpenAI, patched: Any
) -> None:
    for _ in range(2):
        queued = client.responses.create(model="gpt-test", input="long job", background=True)
        assert queued.status == "queued"
        client.responses.create(model="gpt-test", input="hi", conversation="conv_123")
    assert llm_server.count("/responses") == 4 and not list(patched.entries())


# --------------------------------------------------------------------------- what is not stored


@pytest.mark.parametrize("trigger", ["[length]", "[filter]"])
def test_cut_short_or_filtered_answers_are_not_stored(
    llm_server: FakeLLMServer, client: openai.OpenAI, patched: Any, trigger: str
) -> None:
    messages: list[Any] = [{"role": "user", "content": f"{trigger} talk"}]
    for _ in range(2):
        client.chat.completions.create(model="gpt-test", messages=messages)
        list(client.chat.completions.create(model="gpt-test", messages=messages, stream=True))
    assert chat_count(llm_server) == 4
    create: Any = client.chat.completions.create
    assert create.cache_info().skipped == 4


def test_incomplete_responses_are_not_stored_unless_asked(
    llm_server: FakeLLMServer, client: openai.OpenAI, store: MemoryBackend
) -> None:
    patch_openai(backend=store)
    try:
        for _ in range(2):
            assert client.responses.create(model="gpt-test", input="[incomplete] x").status == "incomplete"
            list(client.responses.create(model="gpt-test", input="[incomplete] x", stream=True))
            client.completions.create(model="legacy-test", prompt="[length] x")
        assert llm_server.count() == 6
        patch_openai(backend=store, cache_if=lambda answer: True)  # patching again: new options
        for _ in range(2):
            client.responses.create(model="gpt-test", input="[incomplete] x")
        assert llm_server.count() == 7
    finally:
        unpatch_openai()


# --------------------------------------------------------------------------- keys


def counts_as_new(server: FakeLLMServer, call: Any) -> bool:
    before = server.count()
    call()
    return server.count() > before


def test_key_normalisation(llm_server: FakeLLMServer, client: openai.OpenAI, patched: Any) -> None:
    create = client.chat.completions.create
    create(**CHAT)
    same: list[dict[str, Any]] = [
        {"extra_body": None},
        {"extra_body": {}},
        {"extra_query": None},
        {"extra_query": {}},
        {"stream": False},
        {"temperature": openai.NOT_GIVEN},
        {"temperature": openai.not_given},
        {"seed": openai.omit},
        {"timeout": 7},
        {"extra_headers": {"X-Trace": "abc", "X-Stainless-Helper-Method": "x"}},
        {"user": "alice"},
        {"metadata": {"run": "1"}},
        {"service_tier": "flex"},
        {"safety_identifier": "s"},
        {"prompt_cache_key": "k"},
        {"prompt_cache_retention": "24h"},
        {"messages": iter(MSG)},  # a one-shot iterator is read once, and still sent
    ]
    for variation in same:
        assert not counts_as_new(llm_server, lambda v=variation: create(**{**CHAT, **v})), variation
    assert llm_server.requests[-1].body["messages"] == MSG

    list(create(**CHAT, stream=True, stream_options={"include_obfuscation": False}))
    assert not counts_as_new(llm_server, lambda: list(create(**CHAT, stream=True)))


def test_every_semantic_kwarg_changes_the_key(
    llm_server: FakeLLMServer, client: openai.OpenAI, patched: Any
) -> None:
    create = client.chat.completions.create
    create(**CHAT)
    different: list[dict[str, Any]] = [
        {"model": "gpt-other"},
        {"messages": [{"role": "user", "content": "Tell me about caches!"}]},
        {"temperature": 0.5},
        {"top_p": 0.9},
        {"max_tokens": 10},
        {"max_completion_tokens": 11},
        {"seed": 1},
        {"stop": ["\n"]},
        {"n": 2},
        {"presence_penalty": 0.1},
        {"frequency_penalty": 0.1},
        {"logit_bias": {"1": 1}},
        {"response_format": {"type": "json_object"}},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
        {"reasoning_effort": "low"},
        {"extra_body": {"future_param": 1}},  # unknown future kwargs are in the key
        {"extra_query": {"q": "1"}},
        {"extra_headers": {"OpenAI-Beta": "assistants=v2"}},
    ]
    for variation in different:
        assert counts_as_new(llm_server, lambda v=variation: create(**{**CHAT, **v})), variation


def test_client_identity_is_in_the_key(llm_server: FakeLLMServer, patched: Any) -> None:
    base = llm_server.openai_base_url
    make = openai.OpenAI
    first = make(api_key="sk-a", base_url=base)
    first.chat.completions.create(**CHAT)
    twins = [
        make(api_key="sk-another-key", base_url=base),  # credentials shared by default
        first.with_options(timeout=5, max_retries=1),
        make(api_key="sk-a", base_url=base + "/"),
        make(api_key="sk-a", base_url=base, default_headers={"X-App": "1", "Authorization": "Bearer x"}),
    ]
    for twin in twins:
        assert not counts_as_new(llm_server, lambda t=twin: t.chat.completions.create(**CHAT))
    others = [
        make(api_key="sk-a", base_url=base.replace("127.0.0.1", "localhost")),
        make(api_key="sk-a", base_url=base, organization="org-1"),
        make(api_key="sk-a", base_url=base, project="proj-1"),
        make(api_key="sk-a", base_url=base, default_query={"tenant": "t1"}),
        make(api_key="sk-a", base_url=base, default_query={"author": "a1"}),
        make(api_key="sk-a", base_url=base, default_headers={"OpenAI-Beta": "x"}),
    ]
    for other in others:
        assert counts_as_new(llm_server, lambda o=other: o.chat.completions.create(**CHAT))
    for c in (first, *twins, *others):
        c.close()


def test_isolate_credentials(llm_server: FakeLLMServer, store: MemoryBackend) -> None:
    patch_openai(backend=store, isolate_credentials=True)
    try:
        base = llm_server.openai_base_url
        with (
            openai.OpenAI(api_key="sk-one", base_url=base) as one,
            openai.OpenAI(api_key="sk-two", base_url=base) as two,
        ):
            one.chat.completions.create(**CHAT)
            assert counts_as_new(llm_server, lambda: two.chat.completions.create(**CHAT))
            assert not counts_as_new(
                llm_server, lambda: one.with_options(timeout=3).chat.completions.create(**CHAT)
            )
    finally:
        unpatch_openai()


# --------------------------------------------------------------------------- secrets


def test_secrets_never_reach_keys_store_or_logs(
    llm_server: FakeLLMServer,
    store: MemoryBackend,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG, logger="llm_memo")
    key, env_key, header_key, url_secret, query_key = (f"sk-{secrets.token_hex(16)}" for _ in range(5))
    host = llm_server.openai_base_url.split("//", 1)[1]
    monkeypatch.setenv("OPENAI_API_KEY", env_key)
    for isolate in (False, True):
        patch_openai(backend=store, isolate_credentials=isolate, mode="refresh")
        clients = [
            openai.OpenAI(api_key=key, base_url=llm_server.openai_base_url),
            openai.OpenAI(base_url=llm_server.openai_base_url),  # from the environment
            openai.OpenAI(
                base_url=f"http://user:{url_secret}@{host}",
                default_headers={"Authorization": header_key},
                default_query={"api-key": query_key},
            ),
        ]
        try:
            for c in clients:
                c.chat.completions.create(**CHAT)
                list(c.chat.completions.create(**CHAT, stream=True))
                c.chat.completions.parse(**CHAT, response_format=Answer)
                c.embeddings.create(model="emb", input="x")
                create: Any = c.chat.completions.create
                material = create.endpoint.material(c, CHAT)
                assert not any(
                    s in json.dumps(material) for s in (key, env_key, header_key, url_secret, query_key)
                )
        finally:
            unpatch_openai()
            for c in clients:
                c.close()
    stored = b"".join(entry.value for entry in store.entries())
    assert len(list(store.entries())) >= 8
    for secret in (key, env_key, header_key, url_secret, query_key):
        assert secret.encode() not in stored
        assert secret not in caplog.text


# --------------------------------------------------------------------------- patching


def test_patch_is_idempotent_and_unpatch_restores_the_original_functions() -> None:
    originals = {
        (cls, name): vars(cls)[name]
        for cls in (Completions, AsyncCompletions, Responses, AsyncResponses, LegacyCompletions)
        for name in ("create", "parse")
        if name in vars(cls)
    }
    coroutine = {k: inspect.iscoroutinefunction(getattr(k[0], k[1])) for k in originals}
    patch_openai()
    patch_openai(ttl="1h")
    try:
        for (cls, name), original in originals.items():
            installed = vars(cls)[name]
            assert isinstance(installed, SDKPatch) and installed.__wrapped__ is original  # one layer
            assert inspect.iscoroutinefunction(getattr(cls, name)) == coroutine[cls, name]
        assert vars(Completions)["create"].endpoint.memo.ttl == 3600.0  # the new options apply
    finally:
        unpatch_openai()
    for (cls, name), original in originals.items():
        assert vars(cls)[name] is original
    unpatch_openai()  # unpatching twice is harmless


def test_unpatch_under_another_wrapt_wrapper(llm_server: FakeLLMServer, client: openai.OpenAI) -> None:
    original = vars(Completions)["create"]
    patch_openai()
    seen: list[str] = []

    def tracer(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        seen.append("traced")
        return wrapped(*args, **kwargs)

    outer = wrapt.wrap_function_wrapper(Completions, "create", tracer)
    unpatch_openai()  # ours is spliced out from under the other instrumentation
    assert vars(Completions)["create"] is outer and outer.__wrapped__ is original
    client.chat.completions.create(**CHAT)
    assert seen == ["traced"]
    wrapt.unwrap_object(Completions, "create", outer)
    assert vars(Completions)["create"] is original


def test_clients_from_before_and_after_patching_module_and_azure(
    llm_server: FakeLLMServer, patched: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = llm_server.openai_base_url
    before = openai.OpenAI(api_key="sk-before", base_url=base)
    unpatch_openai()
    patch_openai(backend=patched)  # `before` was made before this patch
    after = openai.OpenAI(api_key="sk-after", base_url=base)
    before.chat.completions.create(**CHAT)
    after.chat.completions.create(**CHAT)
    after.with_options(timeout=9).chat.completions.create(**CHAT)
    assert chat_count(llm_server) == 1

    monkeypatch.setattr(openai, "api_key", "sk-module")
    monkeypatch.setattr(openai, "base_url", base + "/")
    monkeypatch.setattr(openai, "_client", None)
    assert openai.chat.completions.create(**CHAT) == after.chat.completions.create(**CHAT)
    assert chat_count(llm_server) == 1

    def to_local(request: Any) -> None:
        # Azure's /openai/deployments/<name>/chat/completions -> the fake server's /v1/chat/completions
        tail = request.url.path.split("/deployments/", 1)[-1].split("/", 1)[-1]
        request.url = request.url.copy_with(path="/v1/" + tail)

    http = openai.DefaultHttpxClient(event_hooks={"request": [to_local]})
    azure = [
        openai.AzureOpenAI(
            api_key="az", azure_endpoint=llm_server.url, azure_deployment=dep, api_version=v, http_client=http
        )
        for dep, v in (
            ("dep1", "2024-06-01"),
            ("dep1", "2024-06-01"),
            ("dep2", "2024-06-01"),
            ("dep1", "2025-01-01"),
        )
    ]
    answers = [c.chat.completions.create(**CHAT) for c in azure]
    assert chat_count(llm_server) == 1 + 3  # deployment and api-version are part of the client identity
    assert answers[0] == answers[1] and llm_server.requests[-1].query == {"api-version": "2025-01-01"}
    for c in (before, after, *azure):
        c.close()


def test_errors_propagate_and_are_not_cached(llm_server: FakeLLMServer, patched: Any) -> None:
    failing: list[Any] = [{"role": "user", "content": "[error500]"}]
    with openai.OpenAI(api_key="sk-x", base_url=llm_server.openai_base_url, max_retries=0) as c:
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                c.chat.completions.create(model="gpt-test", messages=failing)
    assert chat_count(llm_server) == 2 and not list(patched.entries())


def test_modes(llm_server: FakeLLMServer, client: openai.OpenAI, patched: Any) -> None:
    with llm_memo.mode("replay"), pytest.raises(CacheMiss, match=r"openai\.chat\.completions\.create"):
        client.chat.completions.create(**CHAT)
    with llm_memo.mode("replay"), pytest.raises(CacheMiss):
        client.chat.completions.create(**CHAT, stream=True)
    with llm_memo.mode("readonly"):
        client.chat.completions.create(**CHAT)
    with llm_memo.mode("off"):
        list(client.chat.completions.create(**CHAT, stream=True))
    assert not list(patched.entries()) and chat_count(llm_server) == 2
    client.chat.completions.create(**CHAT)
    with llm_memo.mode("replay"):
        client.chat.completions.create(**CHAT)
    with llm_memo.mode("refresh"):
        client.chat.completions.create(**CHAT)
    assert chat_count(llm_server) == 4
    assert memo_openai.cache_info()["openai.chat.completions.create"].hits == 1


# --------------------------------------------------------------------------- without the SDK imported


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=60
    )


def test_deferred_patching_applies_when_openai_is_imported(llm_server: FakeLLMServer) -> None:
    done = run_python(
        """
        import sys
        import llm_memo.integrations as integrations
        integrations.patch_openai()
        assert "openai" not in sys.modules
        import openai
        client = openai.OpenAI(api_key="sk-x", base_url=sys.argv[1])
        msg = [{"role": "user", "content": "deferred"}]
        a = client.chat.completions.create(model="m", messages=msg)
        b = client.chat.completions.create(model="m", messages=msg)
        assert a == b and a._request_id == b._request_id
        print("ok")
        """,
        llm_server.openai_base_url,
    )
    assert done.stdout.strip() == "ok", done.stderr
    assert chat_count(llm_server) == 1


def test_missing_sdk(tmp_path: Path) -> None:
    done = run_python(
        """
        import sys
        sys.modules["openai"] = None  # as if it were not installed
        from llm_memo.integrations import patch_openai, unpatch_openai
        patch_openai()  # deferred: fine without the SDK
        unpatch_openai()
        try:
            patch_openai(defer=False)
        except ImportError as exc:
            print(exc)
        """
    )
    assert "pip install 'llm-memo[openai]'" in done.stdout, done.stderr
