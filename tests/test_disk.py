"""The diskcache backend: private files, bytes only, shared across processes, bounded waits."""

from __future__ import annotations

import os
import pickle
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from llm_memo import DiskBackend, llm_cached
from llm_memo.backends import MISS
from llm_memo.errors import CorruptEntry


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_directory_and_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        backend = DiskBackend(tmp_path / "store")
        backend.set("ns", "k" * 64, b"v" * 100_000, None)
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "store") == 0o700
    files = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert files, "the store wrote nothing"
    assert {p.name: mode_of(p) for p in files} == {p.name: 0o600 for p in files}
    assert backend.get("ns", "k" * 64) == b"v" * 100_000
    backend.close()


class Pwn:
    def __reduce__(self) -> Any:
        return (os.system, ("touch pwned-by-llm-memo",))


def test_a_pickled_entry_planted_with_diskcache_never_executes(tmp_path: Path) -> None:
    import diskcache

    @llm_cached(backend=f"disk:{tmp_path / 'store'}")
    def ask(q: str) -> str:
        return f"answer:{q}"

    ask("warm")  # creates the store
    key = ask.cache_key("q")
    ask.cache_clear()
    # An attacker with write access plants a pickle under the exact key, with
    # diskcache's own (pickling) serializer.
    with diskcache.Cache(str(tmp_path / "store")) as planted:
        planted.set(key, Pwn(), tag="x")
        planted.set(key + "x", {"not": "bytes"})
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert ask("q") == "answer:q"
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "pwned-by-llm-memo").exists()
    assert ask.cache_info().hits == 0


def test_entries_survive_across_processes(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, sys
        from llm_memo import llm_cached
        calls = []

        @llm_cached(backend={str("disk:" + str(tmp_path / "store"))!r}, namespace="ask")
        def ask(q: str) -> dict:
            calls.append(q)
            return {{"answer": q, "pid_independent": [1, 2.5, None]}}

        result = ask("same question")
        print(json.dumps({{"result": result, "calls": len(calls)}}))
        """
    )
    outputs = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    import json

    first, second = (json.loads(o) for o in outputs)
    assert first["calls"] == 1 and second["calls"] == 0
    assert first["result"] == second["result"]


def test_a_locked_database_costs_a_bounded_wait_not_an_error(tmp_path: Path) -> None:
    backend = DiskBackend(tmp_path / "store", timeout=0.2)

    @llm_cached(backend=backend)
    def ask(q: str) -> str:
        return q * 2

    assert ask("a") == "aa"
    # Another process holds an exclusive lock on the database.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sqlite3, sys, time
                con = sqlite3.connect({str(tmp_path / "store" / "cache.db")!r}, isolation_level=None)
                con.execute("BEGIN EXCLUSIVE")
                print("locked", flush=True)
                time.sleep(30)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        assert ask("b") == "bb"  # the write is dropped, the caller still gets its answer
        assert ask("a") == "aa"
        assert time.monotonic() - start < 5
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert ask.cache_info().errors >= 1
    assert ask("c") == "cc" and ask("c") == "cc"  # recovered once the lock is gone
    assert ask.cache_info().hits >= 1
    backend.close()


def test_a_file_that_is_not_a_database_is_a_miss(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    (store / "cache.db").write_bytes(b"this is not a database" * 100)

    @llm_cached(backend=f"disk:{store}")
    def ask(q: str) -> str:
        return q

    assert ask("x") == "x" and ask("x") == "x"
    assert ask.cache_info().errors >= 1


def test_a_store_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to chown")
    store = tmp_path / "foreign"
    store.mkdir(mode=0o700)
    os.chown(store, 12345, 12345)

    @llm_cached(backend=f"disk:{store}")
    def ask(q: str) -> str:
        return q

    assert ask("x") == "x"
    assert ask.cache_info().errors >= 1
    assert not (store / "cache.db").exists()


def test_expiry_and_size_limit(tmp_path: Path) -> None:
    backend = DiskBackend(tmp_path / "store", size_limit=2_000_000)
    backend.set("ns", "a" * 64, b"x", 0.05)
    time.sleep(0.1)
    assert backend.get("ns", "a" * 64) is MISS
    for i in range(200):
        backend.set("ns", f"{i:064d}", os.urandom(50_000), None)
    assert backend.cache.volume() < 3_000_000  # culled near the limit, not 10 MB
    backend.close()


def test_entries_lists_only_raw_bytes(tmp_path: Path) -> None:
    backend = DiskBackend(tmp_path / "store")
    backend.set("one", "1" * 64, b"a", None)
    backend.set("two", "2" * 64, b"b", None)
    assert sorted((e.namespace, e.value) for e in backend.entries()) == [("one", b"a"), ("two", b"b")]
    assert [e.key for e in backend.entries("two")] == ["2" * 64]
    con = sqlite3.connect(tmp_path / "store" / "cache.db")
    con.execute("UPDATE Cache SET value = ?, mode = 4 WHERE key = ?", (pickle.dumps(Pwn()), "1" * 64))
    con.commit()
    con.close()
    assert [e.key for e in backend.entries()] == ["2" * 64]
    with pytest.raises(CorruptEntry, match="not raw bytes"):
        backend.get("one", "1" * 64)  # the front turns this into a logged miss
    backend.close()
