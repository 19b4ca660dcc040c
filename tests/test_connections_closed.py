"""The disk and SQLite backends close every connection they open.

Both open one SQLite connection per thread, and every ``async def`` call reaches the
store from a worker thread. A connection left to the garbage collector warns
``ResourceWarning: unclosed database`` on Python 3.13 (an error in suites that turn
warnings into errors); one left open holds file descriptors.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import warnings
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from llm_memo import llm_cached
from llm_memo.backends.disk import DiskBackend
from llm_memo.backends.sqlite import SQLiteBackend

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")


def _open_files(directory: Path) -> list[str]:
    """This process's open files inside ``directory`` (the database, its WAL and SHM)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (listdir's own descriptor)
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


def test_close_closes_the_connections_of_every_thread(tmp_path: Path) -> None:
    backend = DiskBackend(tmp_path / "store")
    backend.set("ns", "k", b"v", None)
    ready = threading.Barrier(3)

    def use(_: int) -> bytes:
        ready.wait(10)  # three live threads, three connections
        return backend.get("ns", "k")  # type: ignore[return-value]

    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(use, range(3))) == [b"v"] * 3
        assert _open_files(tmp_path / "store")
        backend.close()  # the workers are still alive, holding their connections
        assert _open_files(tmp_path / "store") == []
        assert list(pool.map(lambda _: backend.get("ns", "k"), range(3))) == [b"v"] * 3  # reopens
    backend.close()
    assert _open_files(tmp_path / "store") == []


def test_async_calls_leave_no_unclosed_database(tmp_path: Path) -> None:
    backend = DiskBackend(tmp_path / "store")
    computed: list[int] = []

    @llm_cached(backend=backend)
    async def ask(i: int) -> int:
        computed.append(i)
        return i * 2

    async def main() -> list[int]:
        return await asyncio.gather(*(ask(i % 4) for i in range(20)))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # asyncio.run() shuts its executor down: the worker threads end here.
        assert asyncio.run(main()) == [i % 4 * 2 for i in range(20)]
        gc.collect()
        backend.close()
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert _open_files(tmp_path / "store") == []
    assert sorted(set(computed)) == [0, 1, 2, 3]


def _open_backend(kind: str, where: Path) -> Any:
    return DiskBackend(where) if kind == "disk" else SQLiteBackend(where / "c.sqlite3")


@pytest.mark.parametrize("kind", ["disk", "sqlite"])
def test_a_backend_dropped_without_close_closes_its_connections(kind: str, tmp_path: Path) -> None:
    backend = _open_backend(kind, tmp_path / "store")

    @llm_cached(backend=backend)
    async def ask(i: int) -> int:
        return i * 2

    async def main(ask: Callable[[int], Awaitable[int]]) -> list[int]:
        return await asyncio.gather(*(ask(i % 4) for i in range(20)))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert asyncio.run(main(ask)) == [i % 4 * 2 for i in range(20)]  # worker threads, ended
        backend.set("ns", "k", b"v", None)  # and from this thread, which goes on
        ask.self_reference = ask  # type: ignore[attr-defined]  # a cycle: only the GC frees it
        del backend, ask
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert _open_files(tmp_path / "store") == []
