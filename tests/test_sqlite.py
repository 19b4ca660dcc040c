"""The SQLite backend: file layout, permissions, versioning, purging, locking, forks."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FakeClock

import llm_memo
from llm_memo.backends import MISS, default_directory, from_url
from llm_memo.backends.sqlite import SCHEMA_VERSION, SQLiteBackend


def k(i: object) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


@pytest.fixture
def db(tmp_path: Path, clock: FakeClock) -> Iterator[SQLiteBackend]:
    backend = SQLiteBackend(tmp_path / "cache.sqlite3", clock=clock)
    yield backend
    backend.close()


def test_table_is_documented_and_readable(db: SQLiteBackend, clock: FakeClock) -> None:
    db.set("app.ask", k(1), b"entry", 60)
    with sqlite3.connect(db.path) as con:
        columns = [row[1] for row in con.execute("PRAGMA table_info(llm_memo_entries)")]
        assert columns == ["key", "namespace", "value", "created", "expires"]
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        row = con.execute("SELECT key, namespace, value, created, expires FROM llm_memo_entries").fetchone()
        assert row == (k(1), "app.ask", b"entry", clock.now, clock.now + 60)
    con.close()
    doc = sys.modules[SQLiteBackend.__module__].__doc__ or ""
    assert all(f"    {name} " in doc for name in columns)  # the documented layout is the real one


def test_nothing_opened_until_used(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "later" / "c.db")
    assert not (tmp_path / "later").exists()
    assert backend.get("ns", k(1)) is MISS
    assert (tmp_path / "later" / "c.db").exists()
    backend.close()


def test_private_file_and_created_dirs_but_existing_dir_untouched(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    backend = SQLiteBackend(shared / "new" / "c.db")
    backend.set("ns", k(1), b"v", None)
    backend.close()
    assert stat.S_IMODE((shared / "new").stat().st_mode) == 0o700
    assert stat.S_IMODE((shared / "new" / "c.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # not ours to change
    existing = SQLiteBackend(shared / "c.db")
    existing.set("ns", k(1), b"v", None)
    existing.close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    assert stat.S_IMODE((shared / "c.db").stat().st_mode) == 0o600


def test_newer_format_is_bypassed_never_written(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE llm_memo_entries (key TEXT PRIMARY KEY, whatever BLOB)")
        con.execute("INSERT INTO llm_memo_entries VALUES (?, ?)", (k(1), b"future"))
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    before = path.read_bytes()
    backend = SQLiteBackend(path)
    with caplog.at_level(logging.WARNING, logger="llm_memo"):
        assert backend.get("ns", k(1)) is MISS
        backend.set("ns", k(2), b"v", None)
        assert backend.get("ns", k(2)) is MISS
        assert backend.delete("ns", k(1)) is False
        assert backend.clear() == 0
        assert list(backend.entries()) == []
    backend.close()
    assert path.read_bytes() == before
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "newer" in warnings[0].getMessage()


def test_expired_rows_are_purged_on_writes(db: SQLiteBackend, clock: FakeClock) -> None:
    db.set("ns", k(1), b"a", 10)
    db.set("ns", k(2), b"b", 10)
    db.set("ns", k(3), b"c", None)
    clock.advance(11)
    assert db.get("ns", k(1)) is MISS
    assert len(db) == 3  # reads never write
    db.set("ns", k(4), b"d", 5)  # within the purge interval of the first write: no purge yet
    assert len(db) == 4
    clock.advance(db.purge_interval)
    db.set("ns", k(5), b"e", None)
    assert len(db) == 2  # k1, k2 and the now-expired k4 are gone
    assert {e.key for e in db.entries()} == {k(3), k(5)}


def test_purge_now(db: SQLiteBackend, clock: FakeClock) -> None:
    for i in range(5):
        db.set("ns", k(i), b"x", i + 1)
    clock.advance(3)
    assert db.purge() == 3
    assert len(db) == 2


def test_one_connection_per_thread(db: SQLiteBackend) -> None:
    main = db._conn()
    assert db._conn() is main
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(db._conn()))
    thread.start()
    thread.join()
    assert seen[0] is not None and seen[0] is not main
    db.close()
    assert db._conn() is not main  # closed connections are replaced, lazily


def test_waits_for_a_writer_instead_of_failing(db: SQLiteBackend) -> None:
    db.set("ns", k(0), b"init", None)
    blocker = sqlite3.connect(db.path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, lambda: blocker.execute("COMMIT"))
    release.start()
    try:
        db.set("ns", k(1), b"v", None)  # waits for the lock inside busy_timeout
    finally:
        release.join()
        blocker.close()
    assert db.get("ns", k(1)) == b"v"


def test_lock_timeout_never_reaches_the_caller(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "c.db", timeout=0.05)
    backend.set("ns", k(0), b"init", None)
    blocker = sqlite3.connect(backend.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            backend.set("ns", k(1), b"v", None)

        @llm_memo.llm_cached(backend=backend)
        def f(x: int) -> int:
            return x + 1

        assert f(1) == 2  # the store failed, the call did not
        assert f.cache_info().errors == 1
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        backend.close()


def test_async_does_not_block_the_loop(db: SQLiteBackend) -> None:
    blocker = sqlite3.connect(db.path, isolation_level=None)
    db.set("ns", k(0), b"init", None)
    blocker.execute("BEGIN IMMEDIATE")

    async def scenario() -> int:
        ticks = 0
        write = asyncio.ensure_future(db.aset("ns", k(1), b"v", None))
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, lambda: blocker.execute("COMMIT"))
        while not write.done():
            ticks += 1
            await asyncio.sleep(0.01)
        await write
        return ticks

    try:
        assert asyncio.run(scenario()) >= 5  # the loop kept running while the write waited
    finally:
        blocker.close()
    assert db.get("ns", k(1)) == b"v"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_reopens_in_the_child(db: SQLiteBackend) -> None:
    db.set("ns", k("parent"), b"p", None)
    parent_conn = db._conn()
    pid = os.fork()
    if pid == 0:  # the child: must not reuse the parent's connection
        code = 1
        try:
            if db._conn() is not parent_conn and db.get("ns", k("parent")) == b"p":
                db.set("ns", k("child"), b"c", None)
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert db._conn() is parent_conn
    assert db.get("ns", k("child")) == b"c"


def test_url_forms(tmp_path: Path) -> None:
    default = from_url("sqlite")
    assert isinstance(default, SQLiteBackend)
    assert default.path == default_directory() / "cache.sqlite3"
    explicit = from_url(f"sqlite:{tmp_path / 'x.db'}")
    assert isinstance(explicit, SQLiteBackend) and explicit.path == tmp_path / "x.db"
    with pytest.raises(ValueError, match="memory"):
        SQLiteBackend(":memory:")


def test_decorator_hits_across_processes(tmp_path: Path) -> None:
    """Two real interpreters share one SQLite file through @llm_cached."""
    script = textwrap.dedent(
        """
        import sys
        import llm_memo

        @llm_memo.llm_cached(backend="sqlite:" + sys.argv[1], namespace="e2e.ask")
        def ask(prompt: str) -> dict:
            print("computed", end=" ")
            return {"answer": prompt[::-1], "tokens": [1, 2, 3]}

        print(ask("hello"), ask.cache_info().hits)
        """
    )
    path = str(tmp_path / "shared.sqlite3")
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    outs = [
        subprocess.run(
            [sys.executable, "-c", script, path],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=True,
        ).stdout.strip()
        for _ in range(2)
    ]
    assert outs[0] == "computed {'answer': 'olleh', 'tokens': [1, 2, 3]} 0"
    assert outs[1] == "{'answer': 'olleh', 'tokens': [1, 2, 3]} 1"
