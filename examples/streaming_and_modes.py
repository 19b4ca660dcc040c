"""Streaming and cache modes, offline: a fake slow LLM, cached, replayed.

Run: ``python examples/streaming_and_modes.py``. Nothing leaves the machine; the
cache lives in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import llm_memo
from llm_memo import CacheMiss, DiskBackend, llm_cached

CALLS = {"stream": 0, "astream": 0}


def fake_tokens(prompt: str) -> list[str]:
    return [f"{word.upper()} " for word in prompt.split()] + ["[done]"]


def main(store: DiskBackend) -> None:
    @llm_cached(backend=store, ttl="7d")
    def stream(prompt: str) -> Generator[str, None, None]:
        """A slow model that streams one token at a time."""
        CALLS["stream"] += 1
        for token in fake_tokens(prompt):
            time.sleep(0.05)  # network latency per token
            yield token

    def timed(label: str, prompt: str) -> None:
        start = time.perf_counter()
        text = "".join(stream(prompt))  # items pass through as they arrive
        print(f"{label:<28} {time.perf_counter() - start:6.3f}s  {text!r}")

    timed("first call (model)", "hello streaming world")
    timed("second call (replayed)", "hello streaming world")

    # Stopping early stores nothing: the next call streams from the model again.
    partial = stream("stop early please")
    print("took one token, then stopped:", next(partial))
    partial.close()
    timed("after an early stop (model)", "stop early please")

    # replay: hits are served, a miss raises instead of calling the model (offline CI).
    with llm_memo.mode("replay"):
        timed("replay mode, recorded", "hello streaming world")
        try:
            list(stream("never recorded"))
        except CacheMiss as exc:
            print("replay mode, not recorded:  CacheMiss:", exc)

    # refresh: always call the model and overwrite the entry.
    with llm_memo.mode("refresh"):
        timed("refresh mode (model)", "hello streaming world")

    # A variant for one call site; LLM_MEMO_MODE=... in the environment applies everywhere.
    fresh = stream.with_options(mode="refresh")
    print("with_options(mode='refresh'):", "".join(fresh("hello streaming world")))
    print("model calls:", CALLS["stream"], "|", stream.cache_info())

    # Async generators work the same way, replayed as async generators.
    @llm_cached(backend=store)
    async def astream(prompt: str) -> AsyncIterator[str]:
        CALLS["astream"] += 1
        for token in fake_tokens(prompt):
            await asyncio.sleep(0.05)
            yield token

    async def both() -> None:
        first = [t async for t in astream("async tokens")]
        again = [t async for t in astream("async tokens")]
        assert first == again
        print("async stream:", "".join(again), "| model calls:", CALLS["astream"])

    asyncio.run(both())


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        store = DiskBackend(Path(tmp) / "cache")
        try:
            main(store)
        finally:
            store.close()
