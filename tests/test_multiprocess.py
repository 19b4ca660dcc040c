"""Eight processes on one disk store and one SQLite file at once: no errors, nothing lost.

The workers start together on stores that do not exist yet, so creating the
file, the WAL and the table races too.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import random
import traceback
from pathlib import Path
from typing import Any

import pytest

from llm_memo.backends.base import Backend

PROCESSES = 8
KEYS = 400


def _key(worker: int, i: int) -> str:
    return hashlib.sha256(f"{worker}:{i}".encode()).hexdigest()


def _value(worker: int, i: int) -> bytes:
    return f"{worker}:{i}:".encode() * (1 + i % 50)


def _open(kind: str, path: str) -> Backend:
    if kind == "disk":
        from llm_memo.backends.disk import DiskBackend

        return DiskBackend(path)
    from llm_memo.backends.sqlite import SQLiteBackend

    return SQLiteBackend(path)


def _worker(kind: str, path: str, worker: int, start: Any, results: Any) -> None:
    """Write own keys, read everyone's, rewrite a shared key; report the errors seen."""
    errors: list[str] = []
    rng = random.Random(worker)
    start.wait(timeout=60)
    backend = _open(kind, path)  # opened by all at once: creating the store races too
    try:
        for i in range(KEYS):
            try:
                backend.set(f"ns{worker % 3}", _key(worker, i), _value(worker, i), None)
                backend.set("shared", _key(-1, 0), f"{worker}".encode(), None)
                other, j = rng.randrange(PROCESSES), rng.randrange(KEYS)
                got = backend.get(f"ns{other % 3}", _key(other, j))
                if got and got != _value(other, j):
                    errors.append(f"wrong value for {other}:{j}")
            except Exception:
                errors.append(traceback.format_exc())
    finally:
        backend.close()
        results.put((worker, errors))


@pytest.mark.parametrize("kind", ["disk", "sqlite"])
def test_eight_processes_one_store(kind: str, tmp_path: Path) -> None:
    path = str(tmp_path / ("disk" if kind == "disk" else "shared.sqlite3"))
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(kind, path, w, start, results)) for w in range(PROCESSES)]
    for proc in procs:
        proc.start()
    try:
        reports = dict(results.get(timeout=120) for _ in procs)
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()
            proc.close()
        results.close()
        results.join_thread()
    assert sorted(reports) == list(range(PROCESSES))
    assert [e for errors in reports.values() for e in errors] == []
    backend = _open(kind, path)
    try:
        for worker in range(PROCESSES):
            for i in range(KEYS):
                assert backend.get(f"ns{worker % 3}", _key(worker, i)) == _value(worker, i)
        assert backend.get("shared", _key(-1, 0)) in {str(w).encode() for w in range(PROCESSES)}
        assert sum(1 for _ in backend.entries()) == PROCESSES * KEYS + 1
    finally:
        backend.close()
