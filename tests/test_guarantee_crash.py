"""Guarantees 3 and 5: crash consistency, and only complete successes are stored.

3. A writer process is killed with SIGKILL at random moments, many times over (fresh
   stores too, so creating the file and table is interrupted as well). After each
   kill the store opens, passes ``PRAGMA integrity_check``, holds no torn entry, and
   every hit is exactly the value that was computed for its call.
5. Exceptions, ``KeyboardInterrupt``, ``SystemExit``, cancelled tasks, streams
   stopped at any point and answers cut short store nothing, in every backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from _fault_helpers import (
    BACKEND_KINDS,
    CRASH_WRITER,
    TESTS_DIR,
    crash_value_size,
    deterministic_answer,
    integrity_check,
    open_backend,
    seeded_random,
    stress,
)
from _internals import memo_of

from llm_memo import CacheMiss, llm_cached
from llm_memo.backends.disk import DiskBackend
from llm_memo.backends.sqlite import SQLiteBackend
from llm_memo.errors import CorruptEntry
from llm_memo.serialize import read_entry

KEYS = 40


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    return seeded_random(request)


# --------------------------------------------------------------------------- guarantee 3


def _spec(kind: str, store: Path) -> str:
    return f"disk:{store}" if kind == "disk" else f"sqlite:{store}"


def _db_file(kind: str, store: Path) -> Path:
    return store / "cache.db" if kind == "disk" else store


def _start_writer(spec: str, seed: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, spec, str(KEYS), str(seed), str(TESTS_DIR)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"the writer did not start: {line!r}\n{err}")
    return proc


def _verify_store(kind: str, store: Path) -> dict[str, int]:
    """Open the store as a fresh process would and check everything it holds."""
    db = _db_file(kind, store)
    if db.exists():
        assert integrity_check(db) == "ok"
    backend = DiskBackend(store) if kind == "disk" else SQLiteBackend(store)
    try:
        torn = 0
        for entry in backend.entries("crash"):
            try:
                read_entry(entry.value)  # checksum, lengths, inflation
            except CorruptEntry:
                torn += 1

        @llm_cached(backend=backend, namespace="crash", mode="replay", version=1)
        def answer(i: int) -> dict[str, Any]:
            raise AssertionError("replay mode never calls")

        hits = 0
        for i in range(KEYS):
            try:
                got = answer(i)
            except CacheMiss:
                continue
            assert got == deterministic_answer(i, crash_value_size(i)), f"key {i}: a wrong value was served"
            hits += 1
        assert answer.cache_info().errors == 0

        @llm_cached(backend=backend, namespace="crash-after")
        def after(i: int) -> int:
            return i

        probe = time.time_ns()  # the store takes new writes after the crash
        after(probe)
        assert after(probe) == probe and after.cache_info().hits == 1 and after.cache_info().errors == 0
        return {"torn": torn, "hits": hits}
    finally:
        backend.close()


def _kill_rounds(
    kind: str, root: Path, rng: random.Random, rounds: int, writers: int
) -> list[dict[str, int]]:
    results = []
    target = root
    for n in range(rounds):
        if n % 4 == 0:  # from scratch: the kill may land while the store is being created
            target = root / (f"store-{n}" if kind == "disk" else f"store-{n}.sqlite3")
        procs = [_start_writer(_spec(kind, target), rng.randrange(2**32)) for _ in range(writers)]
        try:
            time.sleep(rng.uniform(0.0, 0.02) if n % 4 == 0 else rng.uniform(0.05, 0.4))
            for proc in procs:
                proc.send_signal(signal.SIGKILL)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.communicate(timeout=30)
                assert proc.returncode == -signal.SIGKILL, proc.returncode
        results.append(_verify_store(kind, target))
    return results


@pytest.mark.parametrize("kind", ["disk", "sqlite"])
def test_a_writer_killed_at_random_moments_never_leaves_a_torn_entry(
    kind: str, tmp_path: Path, rng: random.Random
) -> None:
    results = _kill_rounds(kind, tmp_path, rng, rounds=6, writers=1)
    assert sum(r["torn"] for r in results) == 0, results
    assert sum(r["hits"] for r in results) > 0, "the writers never got to store anything"


@stress
@pytest.mark.parametrize("kind", ["disk", "sqlite"])
def test_stress_writers_killed_many_times(kind: str, tmp_path: Path, rng: random.Random) -> None:
    results = _kill_rounds(kind, tmp_path, rng, rounds=60, writers=3)
    assert sum(r["torn"] for r in results) == 0, results


# --------------------------------------------------------------------------- guarantee 5


@pytest.fixture(params=BACKEND_KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with open_backend(request.param, tmp_path, request, prefix="complete") as b:
        yield b


def _stored(backend: Any, namespace: str) -> list[Any]:
    return list(backend.entries(namespace))


class Boom(Exception):
    pass


@pytest.mark.parametrize("raised", [Boom, KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError])
def test_a_call_that_raises_stores_nothing(backend: Any, raised: type[BaseException]) -> None:
    calls: list[int] = []

    @llm_cached(backend=backend, namespace="raises")
    def ask(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise raised("interrupted")
        return x * 2

    with pytest.raises(raised):
        ask(1)
    assert _stored(backend, "raises") == []
    assert len(memo_of(ask).flights) == 0
    assert ask(1) == 2 and calls == [1, 1]  # computed again, then stored
    assert ask(1) == 2 and calls == [1, 1]


async def test_a_cancelled_call_stores_nothing(backend: Any) -> None:
    started = asyncio.Event()
    calls: list[int] = []

    @llm_cached(backend=backend, namespace="cancelled")
    async def ask(x: int) -> int:
        calls.append(x)
        started.set()
        await asyncio.sleep(30)
        return x

    task = asyncio.create_task(ask(1))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)  # anything still running in a worker thread finishes
    assert _stored(backend, "cancelled") == []
    assert len(memo_of(ask).aflights) == 0


@contextlib.contextmanager
def _collect_only_what_the_test_makes() -> Iterator[None]:
    """Make ``gc.collect()`` walk only the objects created inside the block.

    A full collection visits every object the process tracks: late in a whole run
    that is most of a second per call. Objects that existed before the block (the
    backend, the modules) cannot be garbage the test creates, so freezing them
    leaves ``gc.collect()`` the same verdict on the streams the test abandons.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def test_a_generator_stopped_at_any_point_stores_nothing(backend: Any, rng: random.Random) -> None:
    with _collect_only_what_the_test_makes():
        _stop_generators_at_every_point(backend, rng)


def _stop_generators_at_every_point(backend: Any, rng: random.Random) -> None:
    n = 6
    produced: list[int] = []

    @llm_cached(backend=backend, namespace="stream")
    def stream(x: int) -> Generator[str, None, None]:
        for i in range(n):
            produced.append(i)
            if x == -1 and i == 3:
                raise Boom("the source failed")
            yield f"token-{i}"

    for stop in range(n):  # closed, or abandoned (garbage collected), after `stop` of n items
        how = rng.choice(["close", "gc"])
        gen = stream(stop)
        for _ in range(stop):
            next(gen)
        if how == "close":
            gen.close()
        del gen
        gc.collect()
        assert _stored(backend, "stream") == [], (stop, how)
    with pytest.raises(Boom):
        list(stream(-1))
    assert _stored(backend, "stream") == []
    assert list(stream(100)) == [f"token-{i}" for i in range(n)]
    assert len(_stored(backend, "stream")) == 1  # only the complete stream


async def test_an_async_stream_stopped_at_any_point_stores_nothing(backend: Any) -> None:
    with _collect_only_what_the_test_makes():
        await _stop_async_streams_at_every_point(backend)


async def _stop_async_streams_at_every_point(backend: Any) -> None:
    n = 5

    @llm_cached(backend=backend, namespace="astream")
    async def stream(x: int) -> AsyncGenerator[str, None]:
        for i in range(n):
            await asyncio.sleep(0)
            yield f"token-{i}"

    for stop in range(n):
        gen = stream(stop)  # closed by the consumer after `stop` items
        for _ in range(stop):
            await anext(gen)
        await gen.aclose()

        reached = asyncio.Event()

        async def consume(x: int, stop: int = stop, reached: asyncio.Event = reached) -> None:
            seen = 0
            async for _ in stream(x):
                seen += 1
                if seen >= stop:
                    reached.set()
                    await asyncio.sleep(30)  # cancelled here, mid-stream

        task = asyncio.create_task(consume(1000 + stop))
        if stop:
            await asyncio.wait_for(reached.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gc.collect()
        await asyncio.sleep(0.01)
        assert _stored(backend, "astream") == [], stop
    assert [item async for item in stream(99)] == [f"token-{i}" for i in range(n)]
    assert [e.key for e in _stored(backend, "astream")] == [stream.cache_key(99)]


def test_answers_cut_short_are_not_stored(backend: Any, llm_server: Any) -> None:
    """An SDK answer that stopped at max_tokens, was filtered, or whose stream broke."""
    memo_openai = pytest.importorskip("llm_memo.integrations.openai")
    import openai
    from openai.types.chat import ChatCompletionMessageParam

    memo_openai.patch_openai(backend=backend)
    try:
        with openai.OpenAI(api_key="sk-test", base_url=llm_server.openai_base_url, max_retries=0) as client:
            for trigger in ("[length]", "[filter]"):
                messages: list[ChatCompletionMessageParam] = [
                    {"role": "user", "content": f"say more {trigger}"}
                ]
                client.chat.completions.create(model="m", messages=messages)
                list(client.chat.completions.create(model="m", messages=messages, stream=True))
            broken: list[ChatCompletionMessageParam] = [{"role": "user", "content": "stream [stream-error]"}]
            with pytest.raises(openai.APIError):
                list(client.chat.completions.create(model="m", messages=broken, stream=True))
            stream = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "stop me early please"}], stream=True
            )
            next(iter(stream))
            stream.close()
            assert _stored(backend, "openai.chat.completions.create") == []
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "fine"}])
            assert len(_stored(backend, "openai.chat.completions.create")) == 1
    finally:
        memo_openai.unpatch_openai()
