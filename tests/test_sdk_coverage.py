"""What the SDK patches cover: the real openai and anthropic SDKs over real HTTP.

Every check counts the local server's requests; nothing inside the SDKs is mocked.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

import llm_memo
from llm_memo import CacheMiss, MemoryBackend
from llm_memo.integrations.anthropic import patch_anthropic, unpatch_anthropic
from llm_memo.integrations.openai import patch_openai, unpatch_openai

MSG: list[Any] = [{"role": "user", "content": "Tell me about caches"}]
CHAT: dict[str, Any] = {"model": "gpt-test", "messages": MSG}
pytest_plugins = ["pytester"]

RESPONSE: dict[str, Any] = {"model": "gpt-test", "input": "Tell me about caches"}
ASK: dict[str, Any] = {"model": "claude-test", "max_tokens": 100, "messages": MSG}


@pytest.fixture
def store() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def patched(store: MemoryBackend) -> Iterator[MemoryBackend]:
    patch_openai(backend=store)
    patch_anthropic(backend=store)
    yield store
    unpatch_openai()
    unpatch_anthropic()


@pytest.fixture
def client(llm_server: Any) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key="sk-test-key", base_url=llm_server.openai_base_url) as c:
        yield c


@pytest.fixture
def aclient(llm_server: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="sk-test-key", base_url=llm_server.openai_base_url)


@pytest.fixture
def claude(llm_server: Any) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key="sk-ant-test", base_url=llm_server.anthropic_base_url) as c:
        yield c


# --------------------------------------------------------------------------- store


@pytest.mark.parametrize("endpoint", ["responses", "chat"])
def test_store_is_in_the_key(llm_server: Any, client: openai.OpenAI, patched: Any, endpoint: str) -> None:
    if endpoint == "responses":

        def call(**extra: Any) -> Any:
            return client.responses.create(**RESPONSE, **extra)

    else:

        def call(**extra: Any) -> Any:
            return client.chat.completions.create(**CHAT, **extra)

    call(store=False)
    call(store=True)  # a store=False answer's id cannot be used later: never served here
    assert llm_server.count() == 2
    call(store=True)
    call(store=False)
    assert llm_server.count() == 2


# --------------------------------------------------------------------------- streams left at their end


def until(stream: Any, done: Any) -> list[Any]:
    """Read ``stream`` up to and including the first item ``done`` holds for, then stop."""
    seen = []
    with stream:
        for item in stream:
            seen.append(item)
            if done(item):
                break
    return seen


def finished(chunk: Any) -> bool:
    return any(c.finish_reason for c in chunk.choices)


def whole(stream: Any) -> list[Any]:
    with stream:
        return list(stream)


@pytest.mark.parametrize("usage", [False, True])
def test_chat_stream_left_at_finish_reason_is_stored_whole(
    llm_server: Any, client: openai.OpenAI, patched: Any, usage: bool
) -> None:
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if usage else {}
    create = client.chat.completions.create
    seen = until(create(**CHAT, stream=True, **extra), finished)
    assert llm_server.count() == 1
    replayed = whole(create(**CHAT, stream=True, **extra))
    assert llm_server.count() == 1
    assert replayed[: len(seen)] == seen
    # The hit is the whole stream: with include_usage, the usage chunk after the finish.
    assert (replayed[-1].usage is not None) is usage


def test_responses_stream_left_at_completed_is_stored(
    llm_server: Any, client: openai.OpenAI, patched: Any
) -> None:
    until(client.responses.create(**RESPONSE, stream=True), lambda e: e.type == "response.completed")
    events = whole(client.responses.create(**RESPONSE, stream=True))
    assert llm_server.count() == 1
    assert events[-1].type == "response.completed"
    # The helper that agent loops use, left at the same event, hits too.
    with client.responses.stream(**RESPONSE) as stream:
        for event in stream:
            if event.type == "response.completed":
                break
    assert llm_server.count() == 1


async def test_async_streams_left_at_their_end_are_stored(
    llm_server: Any, aclient: openai.AsyncOpenAI, patched: Any
) -> None:
    async with aclient:
        for _ in range(2):
            stream = await aclient.responses.create(**RESPONSE, stream=True)
            async for event in stream:
                if event.type == "response.completed":
                    break
            await stream.close()
            stream = await aclient.chat.completions.create(
                **CHAT, stream=True, stream_options={"include_usage": True}
            )
            async for chunk in stream:
                if finished(chunk):
                    break
            await stream.close()
    assert llm_server.count() == 2


def test_anthropic_stream_left_at_message_stop_is_stored(
    llm_server: Any, claude: anthropic.Anthropic, patched: Any
) -> None:
    until(claude.messages.create(**ASK, stream=True), lambda e: e.type == "message_stop")
    events = whole(claude.messages.create(**ASK, stream=True))
    assert llm_server.count() == 1
    assert events[-1].type == "message_stop"
    with claude.messages.stream(**ASK) as stream:
        for event in stream:
            if event.type == "message_stop":
                break
    with claude.messages.stream(**ASK) as stream:
        text = stream.get_final_text()
    assert text
    assert llm_server.count() == 2  # stream() entries are their own: one request for both


def test_streams_stopped_before_their_end_or_over_the_budget_store_nothing(
    llm_server: Any, client: openai.OpenAI, patched: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    create = client.chat.completions.create
    until(create(**CHAT, stream=True), lambda chunk: not finished(chunk))  # the first chunk
    until(create(**CHAT, stream=True), lambda chunk: not finished(chunk))
    assert llm_server.count() == 2
    # A rest larger than the budget is not read ahead: stopping at the finish stores nothing...
    from llm_memo.integrations import _sdk

    monkeypatch.setattr(_sdk, "DRAIN_BYTES", 0)
    usage: dict[str, Any] = {"stream_options": {"include_usage": True}}
    until(create(**CHAT, stream=True, **usage), finished)
    until(create(**CHAT, stream=True, **usage), finished)
    assert llm_server.count() == 4
    # ...and reading on to the end does.
    assert whole(create(**CHAT, stream=True, **usage))[-1].usage is not None
    whole(create(**CHAT, stream=True, **usage))
    assert llm_server.count() == 5


# ------------------------------------------------------------------ methods bound before patching


def test_methods_bound_before_patching_are_cached(
    llm_server: Any, client: openai.OpenAI, claude: anthropic.Anthropic, store: MemoryBackend
) -> None:
    create = client.chat.completions.create  # as instructor.from_openai(client) keeps it
    respond = client.responses.create
    embed = client.embeddings.create
    parse = client.chat.completions.parse
    ask = claude.messages.create
    ask_beta = claude.beta.messages.create
    patch_openai(backend=store)
    patch_anthropic(backend=store)
    try:
        for _ in range(3):
            first = create(**CHAT)
            whole(create(**CHAT, stream=True))
            respond(**RESPONSE)
            embed(model="emb", input="x")
            # A plain response_format, not a model class: parse() takes it at run time too.
            parsed = parse(**CHAT, response_format={"type": "json_object"})  # type: ignore[arg-type]
            ask(**ASK)
            ask_beta(**ASK)
            whole(ask(**ASK, stream=True))
        assert llm_server.count() == 8
        assert first._request_id is not None
        assert parsed.choices[0].message.parsed is None  # parsed by the SDK's own parser on a hit
        # Keys differ with the request, as for patched methods.
        create(**CHAT, temperature=0.5)
        ask_beta(**ASK, betas=["b1"])
        assert llm_server.count() == 10
    finally:
        unpatch_openai()
        unpatch_anthropic()
    create(**CHAT)  # unpatched: live again
    assert llm_server.count() == 11


async def test_async_methods_bound_before_patching_are_cached(
    llm_server: Any, aclient: openai.AsyncOpenAI, store: MemoryBackend
) -> None:
    async with aclient:
        create = aclient.chat.completions.create
        patch_openai(backend=store)
        try:
            for _ in range(3):
                await create(**CHAT)
                async with await create(**CHAT, stream=True) as stream:
                    async for _chunk in stream:
                        pass
        finally:
            unpatch_openai()
    assert llm_server.count() == 2


# --------------------------------------------------------------------------- replay never calls out


def test_replay_refuses_every_call_it_does_not_cache(
    llm_server: Any, client: openai.OpenAI, claude: anthropic.Anthropic, store: MemoryBackend
) -> None:
    before = llm_memo.stats().uncached
    patch_openai(backend=store, mode="replay")
    patch_anthropic(backend=store, mode="replay")
    try:
        calls: list[tuple[str, Any]] = [
            ("/chat/completions", lambda: client.chat.completions.with_raw_response.create(**CHAT)),
            (
                "/chat/completions",
                lambda: whole(client.chat.completions.with_streaming_response.create(**CHAT)),
            ),
            ("/responses", lambda: client.responses.create(**RESPONSE, background=True)),
            ("/responses", lambda: client.responses.create(**RESPONSE, conversation="conv_1")),
            ("/moderations", lambda: client.moderations.create(input="x")),
            ("/models", lambda: client.models.list()),
            ("/v1/messages", lambda: claude.messages.with_raw_response.create(**ASK)),
            ("/v1/messages/count_tokens", lambda: claude.messages.count_tokens(model="c", messages=MSG)),
        ]
        for path, call in calls:
            with pytest.raises(CacheMiss, match=f"{path} is not cached"):
                call()
    finally:
        unpatch_openai()
        unpatch_anthropic()
    assert llm_server.count() == 0
    assert llm_memo.stats().uncached == before + len(calls)


def test_readwrite_counts_and_logs_uncached_calls_once_per_endpoint(
    llm_server: Any, client: openai.OpenAI, patched: Any, caplog: pytest.LogCaptureFixture
) -> None:
    before = llm_memo.stats().uncached
    with caplog.at_level(logging.WARNING, logger="llm_memo"):
        for _ in range(2):
            client.chat.completions.with_raw_response.create(**CHAT).parse()
            with contextlib.suppress(openai.NotFoundError):  # the local server has no such endpoint
                client.moderations.create(input="x")
    assert llm_server.count() == 4
    assert llm_memo.stats().uncached == before + 4
    logged = [r.getMessage() for r in caplog.records if "is not cached" in r.getMessage()]
    assert len(logged) == 2
    assert any("openai POST /moderations" in m for m in logged)
    assert any("with_raw_response" in m for m in logged)


UNCACHEABLE_TESTS = """
import os

import openai
import pytest


def test_raw_response():
    client = openai.OpenAI(api_key="sk-test", base_url=os.environ["LLM_MEMO_TEST_OPENAI_URL"])
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "raw"}]
    )
    assert raw.parse().choices
"""


def test_pytest_summary_counts_uncached_calls(
    pytester: pytest.Pytester, llm_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_MEMO_TEST_OPENAI_URL", llm_server.openai_base_url)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_raw=UNCACHEABLE_TESTS)
    recorded = pytester.runpytest(
        "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--llm-memo=readwrite"
    )
    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines(
        [
            "readwrite: 0 calls replayed, 0 recorded, 0 not found in a cassette, "
            "1 not cacheable (sent to the API; see the log)"
        ]
    )
    replayed = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--llm-memo=replay")
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(
        [
            "*CacheMiss*openai POST /chat/completions is not cached*",
            "replay: 0 calls replayed, 0 recorded, 0 not found in a cassette, "
            "1 not cacheable (refused; see the log)",
        ]
    )
    assert llm_server.count() == 1
