"""Modes (decorator, environment, ``with llm_memo.mode``), with_options, cache_if and samples."""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import llm_memo
from llm_memo import CacheInfo, CacheMiss, llm_cached
from llm_memo._core import Memo

KINDS = ["sync", "async", "gen", "agen"]


def memo_of(f: Any) -> Memo:
    """The memo behind a cached function (its counters, registries and backend)."""
    memo: Memo = f._self_memo
    return memo


class Fn:
    """A cached function of one kind whose every underlying call returns a new value."""

    def __init__(self, kind: str, **options: Any) -> None:
        self.kind = kind
        self.calls = 0
        options.setdefault("namespace", f"tests.modes.{kind}")
        if kind == "sync":

            def ask(prompt: str) -> str:
                self.calls += 1
                return f"{prompt}#{self.calls}"

        elif kind == "async":

            async def ask(prompt: str) -> str:  # type: ignore[misc]
                self.calls += 1
                await asyncio.sleep(0)
                return f"{prompt}#{self.calls}"

        elif kind == "gen":

            def ask(prompt: str) -> Iterator[str]:  # type: ignore[misc]
                self.calls += 1
                n = self.calls
                yield f"{prompt}#{n}"
                yield "end"

        else:

            async def ask(prompt: str) -> AsyncIterator[str]:  # type: ignore[misc]
                self.calls += 1
                n = self.calls
                await asyncio.sleep(0)
                yield f"{prompt}#{n}"
                yield "end"

        self.f = llm_cached(**options)(ask)

    async def __call__(self, prompt: str = "p", f: Any = None) -> str:
        """Call (through ``f``, a variant, if given) and return the answer text."""
        f = self.f if f is None else f
        if self.kind == "sync":
            return str(f(prompt))
        if self.kind == "async":
            return str(await f(prompt))
        items = list(f(prompt)) if self.kind == "gen" else [x async for x in f(prompt)]
        assert items[1] == "end"
        return str(items[0])

    def variant(self, **options: Any) -> Any:
        return self.f.with_options(**options)

    def entries(self) -> int:
        memo = memo_of(self.f)
        return sum(1 for _ in memo.backend.entries(memo.namespace))


# ------------------------------------------------------------------ each mode, each kind


@pytest.mark.parametrize("kind", KINDS)
async def test_readwrite_is_the_default(kind: str) -> None:
    fn = Fn(kind)
    assert await fn() == "p#1"
    assert await fn() == "p#1"
    assert fn.calls == 1
    assert fn.f.cache_info() == CacheInfo(hits=1, misses=1, coalesced=0, stores=1, skipped=0, errors=0)


@pytest.mark.parametrize("kind", KINDS)
async def test_readonly_serves_hits_and_never_writes(kind: str) -> None:
    fn = Fn(kind)
    ro = fn.variant(mode="readonly")
    assert await fn(f=ro) == "p#1"  # a miss is called through...
    assert fn.entries() == 0  # ...and never stored
    assert await fn(f=ro) == "p#2"
    assert await fn() == "p#3"  # readwrite stores
    assert await fn(f=ro) == "p#3"  # readonly serves the hit
    assert fn.calls == 3
    assert ro.cache_info().stores == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_refresh_always_calls_and_overwrites(kind: str) -> None:
    fn = Fn(kind)
    assert await fn() == "p#1"
    with llm_memo.mode("refresh"):
        assert await fn() == "p#2"
        assert await fn() == "p#3"
    assert await fn() == "p#3"  # the last refresh is what is stored now
    assert fn.calls == 3 and fn.entries() == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_replay_serves_hits_and_a_miss_raises_without_calling(kind: str) -> None:
    fn = Fn(kind, mode="replay")
    with pytest.raises(CacheMiss) as info:
        await fn("unseen")
    assert fn.calls == 0
    assert info.value.function == "test_modes.Fn.__init__.<locals>.ask"
    assert info.value.namespace == f"tests.modes.{kind}"
    assert info.value.key == fn.f.cache_key("unseen")
    assert info.value.function in str(info.value) and info.value.key in str(info.value)
    with llm_memo.mode("readwrite"):
        assert await fn() == "p#1"
    assert await fn() == "p#1"
    assert fn.calls == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_off_bypasses_reads_writes_and_counters(kind: str) -> None:
    fn = Fn(kind)
    assert await fn() == "p#1"
    before = fn.f.cache_info()
    with llm_memo.mode("off"):
        assert await fn() == "p#2"
        assert await fn() == "p#3"
    assert fn.f.cache_info() == before
    assert await fn() == "p#1"  # the entry was neither read nor replaced
    assert fn.entries() == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_environment_mode_applies_to_every_cached_function(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fn, other = Fn(kind), Fn(kind, namespace="tests.modes.other", mode="refresh")
    monkeypatch.setenv("LLM_MEMO_MODE", "replay")
    with pytest.raises(CacheMiss):
        await fn()
    with pytest.raises(CacheMiss):  # the environment wins over the decorator's mode
        await other()
    assert fn.calls == other.calls == 0
    monkeypatch.setenv("LLM_MEMO_MODE", "off")
    assert await fn() == "p#1" and await fn() == "p#2"


async def test_invalid_environment_mode_warns_and_is_ignored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fn = Fn("sync")
    monkeypatch.setenv("LLM_MEMO_MODE", "sometimes")
    assert await fn() == "p#1" and await fn() == "p#1"  # readwrite, the default
    warnings = [r.getMessage() for r in caplog.records if "LLM_MEMO_MODE" in r.getMessage()]
    assert len(warnings) == 1 and "readwrite, readonly" in warnings[0]


def test_invalid_mode_names_are_rejected_up_front() -> None:
    with pytest.raises(ValueError, match="mode"):
        llm_cached(mode="sometimes")(lambda: 1)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="mode"), llm_memo.mode("sometimes"):  # type: ignore[arg-type]
        pass  # pragma: no cover


# ------------------------------------------------------------------ precedence


async def test_precedence_block_then_environment_then_decorator_then_configure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fn = Fn("sync")
    declared = Fn("sync", namespace="tests.modes.declared", mode="off")

    llm_memo.configure(mode="replay")
    with pytest.raises(CacheMiss):  # configure() applies where the decorator says nothing
        await fn()
    assert await declared() == "p#1"  # the decorator's mode wins over configure()
    assert await declared() == "p#2"

    monkeypatch.setenv("LLM_MEMO_MODE", "readwrite")  # the environment wins over both
    assert await fn() == "p#1" and await fn() == "p#1"
    assert await declared() == "p#3" and await declared() == "p#3"

    with llm_memo.mode("refresh"):  # a block wins over everything
        assert await fn() == "p#2"
        assert await declared() == "p#4"
        with llm_memo.mode("replay"), pytest.raises(CacheMiss):  # nested: the innermost wins
            await fn("unseen")
        assert await fn() == "p#3"  # and the outer one is back after it
    assert await fn() == "p#3"


# ------------------------------------------------------------------ the block across threads and tasks


def test_block_does_not_leak_into_threads_already_running() -> None:
    fn = Fn("sync")
    asyncio.run(fn())  # stored: p#1
    inside, checked = threading.Event(), threading.Event()
    seen: list[str] = []

    def worker() -> None:
        inside.wait(10)
        seen.append(asyncio.run(fn()))  # the main thread is in a refresh block right now
        checked.set()

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    with llm_memo.mode("refresh"):
        inside.set()
        assert checked.wait(10)
    t.join(10)
    assert seen == ["p#1"] and fn.calls == 1


def test_block_reaches_threads_that_carry_the_context() -> None:
    fn = Fn("sync")
    asyncio.run(fn())  # stored: p#1
    results: list[str] = []
    with llm_memo.mode("replay"):
        # A plain Thread (and a ThreadPoolExecutor) starts with an empty context on
        # Python < 3.14: it does not see the block...
        t = threading.Thread(target=lambda: results.append(asyncio.run(fn("unseen"))), daemon=True)
        t.start()
        t.join(10)
        with ThreadPoolExecutor(1) as pool:
            results.append(pool.submit(lambda: asyncio.run(fn("unseen2"))).result(10))
        # ...a thread run in a copy of the caller's context does.
        ctx = contextvars.copy_context()
        errors: list[BaseException] = []

        def carried() -> None:
            try:
                ctx.run(lambda: asyncio.run(fn("unseen3")))
            except CacheMiss as exc:
                errors.append(exc)

        t = threading.Thread(target=carried, daemon=True)
        t.start()
        t.join(10)
    assert results == ["unseen#2", "unseen2#3"]
    assert len(errors) == 1 and fn.calls == 3


async def test_block_follows_asyncio_tasks_and_to_thread() -> None:
    fn = Fn("sync")
    await fn()  # stored: p#1
    entered, done = asyncio.Event(), asyncio.Event()

    async def outsider() -> str:
        await entered.wait()  # runs while the other task is inside its block
        try:
            return await fn()
        finally:
            done.set()

    async def insider() -> tuple[str, str, str]:
        with llm_memo.mode("refresh"):
            entered.set()
            await done.wait()
            child = await asyncio.create_task(fn())  # a task started inside inherits the block
            threaded = await asyncio.to_thread(fn.f, "p")  # to_thread copies the context
            own = await fn()
        return child, threaded, own

    other, (child, threaded, own) = await asyncio.gather(outsider(), insider())
    assert other == "p#1"  # not affected by the other task's block
    assert (child, threaded, own) == ("p#2", "p#3", "p#4")
    assert await fn() == "p#4"


# ------------------------------------------------------------------ with_options


@pytest.mark.parametrize("kind", KINDS)
async def test_with_options_mode_for_one_call_site(kind: str) -> None:
    fn = Fn(kind)
    refresh = fn.variant(mode="refresh")
    assert refresh.cache_key("p") == fn.f.cache_key("p")  # same namespace, same entries
    assert await fn() == "p#1"
    assert await fn(f=refresh) == "p#2"
    assert await fn() == "p#2"
    assert fn.f.cache_parameters()["mode"] is None  # the original is unchanged
    assert refresh.cache_parameters()["mode"] == "refresh"


async def test_with_options_ttl_for_one_call_site(clock: Any) -> None:
    fn = Fn("sync", clock=clock)
    short = fn.variant(ttl=10)
    assert short.cache_parameters()["ttl"] == 10.0 and fn.f.cache_parameters()["ttl"] is None
    assert await fn(f=short) == "p#1"
    clock.advance(9)
    assert await fn() == "p#1"
    clock.advance(2)
    assert await fn() == "p#2"  # the variant's entry expired; the original stores without expiry
    clock.advance(10**6)
    assert await fn() == "p#2"


def test_with_options_works_on_methods() -> None:
    class Bot:
        calls = 0

        def __llm_memo_key__(self) -> str:
            return "bot"

        @llm_cached
        def ask(self, q: str) -> str:
            Bot.calls += 1
            return f"{q}#{Bot.calls}"

    bot: Any = Bot()
    assert bot.ask("q") == "q#1"
    assert bot.ask.with_options(mode="refresh")("q") == "q#2"
    assert bot.ask("q") == "q#2"


# ------------------------------------------------------------------ cache_if


@pytest.mark.parametrize("kind", KINDS)
async def test_cache_if_decides_what_is_stored(kind: str) -> None:
    judged: list[Any] = []

    def keep(result: Any) -> bool:
        judged.append(result)
        text = result if isinstance(result, str) else result[0]
        return not text.startswith("bad")

    fn = Fn(kind, cache_if=keep)
    assert await fn("bad") == "bad#1"
    assert await fn("bad") == "bad#2"  # refused: not stored, called again
    assert await fn("good") == "good#3"
    assert await fn("good") == "good#3"
    assert fn.calls == 3
    info = fn.f.cache_info()
    assert (info.stores, info.skipped) == (1, 2)
    expected = "good#3" if kind in ("sync", "async") else ["good#3", "end"]
    assert judged[-1] == expected  # the predicate sees the result (a stream: its list of items)


async def test_cache_if_that_raises_does_not_store_and_does_not_fail_the_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(result: Any) -> bool:
        raise RuntimeError("bad predicate")

    fn = Fn("async", cache_if=broken)
    assert await fn() == "p#1"
    assert await fn() == "p#2"
    assert fn.f.cache_info().skipped == 2 and fn.entries() == 0
    assert "cache_if raised" in caplog.text


def test_cache_if_is_not_consulted_in_readonly_mode() -> None:
    judged: list[Any] = []

    def keep(result: Any) -> bool:
        judged.append(result)
        return True

    fn = Fn("sync", cache_if=keep, mode="readonly")
    asyncio.run(fn())
    assert judged == [] and fn.entries() == 0


# ------------------------------------------------------------------ samples


@pytest.mark.parametrize("kind", KINDS)
async def test_samples_the_ith_call_gets_sample_i_mod_n(kind: str) -> None:
    fn = Fn(kind, samples=3)
    got = [await fn() for _ in range(7)]
    assert got == ["p#1", "p#2", "p#3", "p#1", "p#2", "p#3", "p#1"]
    assert fn.calls == 3 and fn.entries() == 3
    assert [await fn("q") for _ in range(4)] == ["q#4", "q#5", "q#6", "q#4"]  # per key


async def test_samples_rerun_with_a_fresh_wrapper_reproduces_the_same_order(tmp_path: Path) -> None:
    store = f"disk:{tmp_path / 'store'}"
    first = Fn("async", samples=3, backend=store)
    run1 = [await first(p) for p in ("a", "b", "a", "a", "b", "a")]
    assert run1 == ["a#1", "b#2", "a#3", "a#4", "b#5", "a#1"]
    second = Fn("async", samples=3, backend=store)  # a new process would start here
    run2 = [await second(p) for p in ("a", "b", "a", "a", "b", "a")]
    assert run2 == run1
    assert second.calls == 0


def test_samples_rerun_in_a_fresh_process_reproduces_the_same_order(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import json, sys, uuid
        from llm_memo import llm_cached

        calls = []

        @llm_cached(backend=sys.argv[1], samples=3, namespace="eval.sampled")
        def sample(prompt: str) -> str:
            calls.append(prompt)
            return f"{prompt}:{uuid.uuid4().hex}"  # a sampled, non-deterministic answer

        answers = [sample(p) for p in ["x", "y", "x", "x", "y", "x", "x"]]
        print(json.dumps({"answers": answers, "calls": len(calls)}))
        """
    )
    store = f"disk:{tmp_path / 'store'}"

    def run() -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-c", script, store], capture_output=True, text=True, timeout=60, check=True
        )
        import json

        return dict(json.loads(out.stdout))

    one, two = run(), run()
    assert one["calls"] == 5 and two["calls"] == 0
    assert two["answers"] == one["answers"]
    a = one["answers"]
    assert a[0] == a[5] != a[2] != a[3] != a[0]  # x takes slots 0,1,2,0,1 in turn
    assert a[1] != a[4]


@pytest.mark.parametrize("kind", KINDS)
async def test_cache_invalidate_removes_every_sample(kind: str) -> None:
    fn = Fn(kind, samples=3, backend="disk")
    for _ in range(3):
        await fn()
    await fn("other")
    assert fn.entries() == 4
    assert fn.f.cache_invalidate("p") is True
    assert fn.entries() == 1  # the other key's sample is still there
    assert fn.f.cache_invalidate("p") is False
    assert [await fn() for _ in range(3)] == ["p#5", "p#6", "p#7"]


def test_samples_must_be_a_positive_int() -> None:
    bad: Any
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="samples"):
            llm_cached(samples=bad)(lambda x: x)
