"""One SQLite file (stdlib ``sqlite3``), shared safely by threads and processes.

The file holds one table, readable with the ``sqlite3`` shell::

    CREATE TABLE llm_memo_entries (
        key       TEXT PRIMARY KEY,  -- 64-hex SHA-256 of the call's key material
        namespace TEXT NOT NULL,     -- the cached function (module.qualname) or a chosen name
        value     BLOB NOT NULL,     -- the entry bytes (see llm_memo.serialize)
        created   REAL NOT NULL,     -- unix seconds when stored
        expires   REAL               -- unix seconds; NULL means never
    );
    CREATE INDEX llm_memo_entries_namespace ON llm_memo_entries (namespace);
    CREATE INDEX llm_memo_entries_expires ON llm_memo_entries (expires) WHERE expires IS NOT NULL;

    -- e.g.: SELECT namespace, count(*), sum(length(value)) FROM llm_memo_entries GROUP BY 1;

``PRAGMA user_version`` is the layout version (1). A file with a newer version is
never written to: the backend bypasses it (every read a miss) and logs a warning.

Concurrency: WAL mode, so readers never wait for a writer; every write is one
short ``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so two
writers queue in the busy handler instead of failing on a lock upgrade), and an
upsert, so two processes storing the same key both succeed. Waits are bounded by
``timeout``. Expired rows are purged in batches alongside writes, at most once per
``purge_interval`` seconds per process.

Connections are opened lazily, one per thread, and reopened in a forked child
(a connection must never cross a fork); nothing is opened at import time.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

from .._log import log
from ._files import check_own_file, check_shared_dir, ensure_private_dir, touch_private_file
from .base import MISS, Backend, Miss, StoredEntry

__all__ = ["SCHEMA_VERSION", "SQLiteBackend"]

#: The table layout version, kept in ``PRAGMA user_version``.
SCHEMA_VERSION = 1

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS llm_memo_entries (
        key       TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        value     BLOB NOT NULL,
        created   REAL NOT NULL,
        expires   REAL
    )""",
    "CREATE INDEX IF NOT EXISTS llm_memo_entries_namespace ON llm_memo_entries (namespace)",
    "CREATE INDEX IF NOT EXISTS llm_memo_entries_expires ON llm_memo_entries (expires)"
    " WHERE expires IS NOT NULL",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

# The hit path: one statement, prepared once per connection (sqlite3's statement cache).
_GET = "SELECT value, expires FROM llm_memo_entries WHERE key = ?"
_SET = (
    "INSERT INTO llm_memo_entries (key, namespace, value, created, expires) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET namespace = excluded.namespace, value = excluded.value,"
    " created = excluded.created, expires = excluded.expires"
)
# Bounded, so one write never pays for purging a huge backlog at once.
# Set-if-absent (a lease): an expired row under the key is removed first, in the same transaction.
_ADD_EXPIRED = "DELETE FROM llm_memo_entries WHERE key = ? AND expires IS NOT NULL AND expires <= ?"
_ADD = (
    "INSERT INTO llm_memo_entries (key, namespace, value, created, expires) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (key) DO NOTHING"
)
_PURGE = (
    "DELETE FROM llm_memo_entries WHERE rowid IN"
    " (SELECT rowid FROM llm_memo_entries WHERE expires <= ? LIMIT ?)"
)
_PURGE_BATCH = 1000
_MMAP_SIZE = 256 * 1024 * 1024
_PAGE = 256
# Listing checks each row's types in SQLite, so a row written by hand (a number
# where the entry bytes belong, a huge text) is never loaded: NULL comes back instead.
_MAX_FIELD = 1 << 30
_ENTRIES = (
    "SELECT rowid,"
    " CASE WHEN typeof(namespace) = 'text' AND length(namespace) <= 65536 THEN namespace END,"
    " CASE WHEN typeof(key) = 'text' AND length(key) <= 256 THEN key END,"
    f" CASE WHEN typeof(value) = 'blob' AND length(value) <= {_MAX_FIELD} THEN value END"
    " FROM llm_memo_entries WHERE rowid > ?"
)

# Connections inherited through fork(): closing them in the child could release the
# parent's locks or checkpoint under it, so they are kept referenced, never closed.
_inherited: list[sqlite3.Connection] = []


# This process's id, refreshed in a forked child: os.getpid() is a system call on
# every hit otherwise.
_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork)


def _close_when_collected(conns: list[sqlite3.Connection], pid: int) -> None:
    """A backend dropped without close(): close its connections now, as close() would.

    Left to the garbage collector, each one warns ``unclosed database`` on Python 3.13
    (an error for suites that turn warnings into errors).
    """
    if os.getpid() != pid:
        _inherited.extend(conns)
    else:
        for conn in conns:
            conn.close()
    conns.clear()


class _Local(threading.local):
    pid = -1
    generation = -1
    conn: sqlite3.Connection | None = None


class SQLiteBackend(Backend):
    """Entries in one SQLite file (see the module docstring for the layout).

    ``timeout`` bounds every wait for another writer (seconds); ``clock`` (unix
    seconds) decides expiry and purging, so tests can move time instead of sleeping.
    """

    atomic_add = True  # one write transaction

    def __init__(
        self,
        path: str | Path,
        *,
        timeout: float = 5.0,
        purge_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if str(path) == ":memory:":
            raise ValueError("an in-memory SQLite database is per connection; use backend='memory'")
        self.path = Path(path).expanduser()
        self.timeout = timeout
        self.purge_interval = purge_interval
        self.clock = clock
        self.url = f"sqlite:{self.path}"
        self._local = _Local()
        self._lock = threading.Lock()
        self._generation = 0  # bumped by close(): every thread's connection is then stale
        self._conns: list[sqlite3.Connection] = []
        weakref.finalize(self, _close_when_collected, self._conns, os.getpid())
        self._ready_pid = -1  # the process that has checked the schema
        self._bypassed = False
        self._next_purge = float("-inf")

    # ---------------------------------------------------------------- connections

    def _conn(self) -> sqlite3.Connection | None:
        """This thread's connection, or None when the file is bypassed (newer format)."""
        local = self._local
        if local.pid == _pid and local.generation == self._generation:
            return local.conn
        return self._connect()

    def _connect(self) -> sqlite3.Connection | None:
        local = self._local
        pid = _pid
        with self._lock:
            if self._ready_pid != pid:
                if self._conns:  # we are a forked child: drop, never close, the parent's
                    _inherited.extend(self._conns)
                    self._conns = []
                self._next_purge = float("-inf")
                self._bypassed = not self._prepare_file()
                self._ready_pid = pid
            conn = None
            if not self._bypassed:
                conn = self._open()
                self._conns.append(conn)
            local.pid, local.generation, local.conn = pid, self._generation, conn
        return conn

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions, so reads are plain autocommit
        # statements and every write transaction is our explicit BEGIN IMMEDIATE.
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        try:
            # In WAL, NORMAL only risks the last commits on power loss: fine for a cache.
            conn.execute("PRAGMA synchronous = NORMAL")
            # Reads through a memory map skip a copy per page (a hit is mostly page reads);
            # address space only, shared with the page cache, nothing is written through it.
            conn.execute(f"PRAGMA mmap_size = {_MMAP_SIZE}")
        except BaseException:
            conn.close()  # a damaged file fails here: never leave the connection to the GC
            raise
        return conn

    def _prepare_file(self) -> bool:
        """Create the file and table if needed; False when the file's format is newer.

        Switching a new file to WAL takes an exclusive lock, and SQLite answers BUSY
        at once (without its busy handler) while another process is opening the same
        new file: retry that for up to ``timeout`` seconds.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return self._prepare_file_once()
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01 + random.random() * 0.02)

    def _prepare_file_once(self) -> bool:
        if not self.path.parent.exists():
            ensure_private_dir(self.path.parent)  # only directories we create are made private
        else:
            check_shared_dir(self.path.parent)  # -wal and -shm files are created there too
        touch_private_file(self.path)
        check_own_file(self.path)
        conn = self._open()
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                log.warning(
                    "llm_memo: %s has table layout version %d, newer than this llm_memo (%d); "
                    "leaving it untouched and running uncached: upgrade llm_memo to use it",
                    self.path,
                    version,
                    SCHEMA_VERSION,
                )
                return False
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
            if version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # Checked again under the write lock: another process may have won.
                    if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                        for statement in _SCHEMA:
                            conn.execute(statement)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            return True
        finally:
            conn.close()

    # ---------------------------------------------------------------- operations

    def get(self, namespace: str, key: str) -> bytes | Miss:
        local = self._local  # inlined _conn(): this is the hit path
        conn = local.conn
        if local.pid != _pid or local.generation != self._generation:
            conn = self._connect()
        if conn is None:
            return MISS
        try:
            row = conn.execute(_GET, (key,)).fetchone()
        except sqlite3.DatabaseError as exc:
            self._forget_if_corrupt(exc)
            raise
        if row is None:
            return MISS
        value, expires = row
        if expires is not None and expires <= self.clock():
            return MISS
        return value  # type: ignore[no-any-return]

    def set(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        conn = self._conn()
        if conn is None:
            return
        now = self.clock()
        expires = None if ttl is None else now + ttl
        purge = now >= self._next_purge
        with self._transaction(conn):
            conn.execute(_SET, (key, namespace, value, now, expires))
            if purge:
                conn.execute(_PURGE, (now, _PURGE_BATCH))
        if purge:
            self._next_purge = now + self.purge_interval

    def add(self, namespace: str, key: str, value: bytes, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` holds no live entry; True if it was stored."""
        conn = self._conn()
        if conn is None:
            return False
        now = self.clock()
        expires = None if ttl is None else now + ttl
        with self._transaction(conn):
            conn.execute(_ADD_EXPIRED, (key, now))
            added = conn.execute(_ADD, (key, namespace, value, now, expires)).rowcount == 1
        return added

    @contextlib.contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        """One write transaction: ``BEGIN IMMEDIATE`` takes the write lock up front (waiting
        at most ``timeout``), so two writers never deadlock upgrading a read lock."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:  # SQLite already rolled back on FULL, IOERR, CORRUPT...
                conn.execute("ROLLBACK")
            self._forget_if_corrupt(exc)
            raise

    def _forget_if_corrupt(self, exc: BaseException) -> None:
        """A damaged file (not a lock, not a full disk): reopen the path on the next call,
        so a store an operator deleted or replaced is picked up without a restart."""
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            with self._lock:
                self._ready_pid = -1
            self.close()

    def _write(self, sql: str, params: tuple[object, ...] = ()) -> int:
        conn = self._conn()
        if conn is None:
            return 0
        with self._transaction(conn):
            count: int = conn.execute(sql, params).rowcount
        return count

    def delete(self, namespace: str, key: str) -> bool:
        return self._write("DELETE FROM llm_memo_entries WHERE key = ?", (key,)) > 0

    def clear(self, namespace: str | None = None) -> int:
        if namespace is None:
            return self._write("DELETE FROM llm_memo_entries")
        return self._write("DELETE FROM llm_memo_entries WHERE namespace = ?", (namespace,))

    def purge(self) -> int:
        """Delete every expired row now; returns how many."""
        return self._write("DELETE FROM llm_memo_entries WHERE expires <= ?", (self.clock(),))

    def entries(self, namespace: str | None = None) -> Iterator[StoredEntry]:
        # Pages by rowid: no statement stays open between pages, so an unfinished
        # iteration holds no read snapshot and the caller may write in between.
        # Expired rows are listed too (like the disk store's): `llm-memo prune` and
        # `ls --expired` must see them, and every entry carries its own expiry.
        conn = self._conn()
        if conn is None:
            return
        query = _ENTRIES + (" AND namespace = ?" if namespace is not None else "")
        query += f" ORDER BY rowid LIMIT {_PAGE}"
        last = -1
        while True:
            params: tuple[object, ...] = (last,)
            if namespace is not None:
                params += (namespace,)
            rows = self._conn_or_raise().execute(query, params).fetchall()
            for rowid, ns, key, value in rows:
                last = rowid
                if type(ns) is str and type(key) is str and type(value) is bytes:
                    yield StoredEntry(ns, key, value)
                else:  # a row llm_memo did not write: listed as unreadable, never loaded
                    yield StoredEntry(ns if type(ns) is str else "?", key if type(key) is str else "?", b"")
            if len(rows) < _PAGE:
                return

    def _conn_or_raise(self) -> sqlite3.Connection:
        conn = self._conn()
        if conn is None:
            raise sqlite3.OperationalError(f"{self.path} is bypassed (newer table layout)")
        return conn

    def __len__(self) -> int:
        conn = self._conn()
        return 0 if conn is None else int(conn.execute("SELECT count(*) FROM llm_memo_entries").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._generation += 1
            conns = self._conns[:]
            self._conns.clear()  # the same list: the finalizer above holds it
            if self._ready_pid != _pid:
                _inherited.extend(conns)  # a forked child's copies: see _inherited
                return
            for conn in conns:
                conn.close()


def _from_url(url: str, rest: str) -> SQLiteBackend:
    from . import default_path

    return SQLiteBackend(Path(rest) if rest else default_path("sqlite"))
