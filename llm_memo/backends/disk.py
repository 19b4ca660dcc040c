"""A process-safe store on diskcache, holding bytes only: it never unpickles."""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskcache
from diskcache.core import MODE_RAW, UNKNOWN

from ..errors import CorruptEntry
from ._files import ensure_private_dir, touch_private_file
from .base import MISS, Backend, Miss, StoredEntry

__all__ = ["DiskBackend"]


class _BytesOnlyDisk(diskcache.Disk):  # type: ignore[misc]
    """diskcache's serialiser, cut down to raw bytes kept inside the database row.

    diskcache pickles any value that is not bytes/str/int/float and unpickles what
    it finds, so a writable cache directory would mean code execution. Here every
    read of a pickled row, a text file or a value file raises instead: an entry
    planted with diskcache's pickle mode is a miss, never a ``pickle.load``. Values
    stay in the row (no separate value files), so the store is one 0600 database.
    """

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is not str:
            raise TypeError("llm_memo disk keys are strings")
        return key, True

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise CorruptEntry("refusing a pickled key in the disk store")
        return key

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[int, int, None, Any]:
        if type(value) is not bytes:
            raise TypeError("llm_memo disk values are bytes")
        return 0, MODE_RAW, None, sqlite3.Binary(value)

    def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> bytes:
        if mode != MODE_RAW or filename is not None or type(value) is not bytes:
            raise CorruptEntry("refusing a disk entry that is not raw bytes (pickle or file mode)")
        return value


def _close_all(connections: dict[int, sqlite3.Connection]) -> None:
    # A copy: a slot collected meanwhile (in this very thread) removes its own entry.
    for key, con in connections.copy().items():
        con.close()
        connections.pop(key, None)


class _ThreadConnection:
    """One thread's slot: its SQLite connection, closed when the slot is dropped.

    The owning thread's ``threading.local`` holds the slot, and Python drops it when
    the thread ends: the connection is closed then, instead of being left to the
    garbage collector (``ResourceWarning: unclosed database`` on Python 3.13, an
    error for suites that turn warnings into errors). The connection is also
    registered in ``connections``, which its cache's finalizer holds: so it is never
    itself garbage the collector could finalize before the slot closes it.
    """

    __slots__ = ("con", "connections", "generation", "pid")

    def __init__(self, con: sqlite3.Connection, connections: dict[int, sqlite3.Connection], generation: int):
        self.con = con
        self.connections = connections
        self.generation = generation
        self.pid = os.getpid()
        connections[id(self)] = con

    def __del__(self) -> None:
        self.connections.pop(id(self), None)
        self.con.close()


class _ClosingCache(diskcache.Cache):  # type: ignore[misc]
    """A ``diskcache.Cache`` whose connections are all closed: by ``close()``, at thread
    end, and when the cache is collected without ``close()``.

    diskcache opens one connection per thread (every ``async def`` call reaches the
    store from a worker thread) and its ``close()`` closes only the calling
    thread's. Here ``close()`` closes every one, from whichever thread calls it; a
    thread that uses the cache afterwards opens a fresh connection, as with diskcache.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Before diskcache's __init__, which already queries the database.
        self._connections: dict[int, sqlite3.Connection] = {}
        self._generation = 0  # bumped by close(): every thread's slot is then stale
        weakref.finalize(self, _close_all, self._connections)
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            self.close()  # a damaged database fails here, with this thread's connection open
            raise

    @property
    def _con(self) -> sqlite3.Connection:
        slot: _ThreadConnection | None = getattr(self._local, "slot", None)
        # A new process (after fork) or a closed cache: a new connection for this thread.
        if slot is None or slot.generation != self._generation or slot.pid != os.getpid():
            slot = self._connect()
        return slot.con

    def _connect(self) -> _ThreadConnection:
        # check_same_thread=False only so that close() and a thread's end may close a
        # connection from another thread; each connection is used by its own thread.
        con = sqlite3.connect(
            os.path.join(self._directory, diskcache.core.DBNAME),
            timeout=self._timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        slot = self._local.slot = _ThreadConnection(con, self._connections, self._generation)
        # Pragmas are per connection: re-apply the ones the store was created with
        # (reset() reaches the database through _con, which now finds this slot).
        try:
            settings = con.execute("SELECT key, value FROM Settings").fetchall()
        except sqlite3.OperationalError:  # a store being created: no table yet
            settings = []
        for key, value in settings:
            if key.startswith("sqlite_"):
                self.reset(key, value, update=False)
        return slot

    def close(self) -> None:
        self._generation += 1
        _close_all(self._connections)


class DiskBackend(Backend):
    """Entries in a diskcache ``Cache`` directory (SQLite in WAL mode underneath).

    Safe across threads and processes; each thread has its own connection, reopened
    after a fork and closed when the thread ends or the backend closes. Waits on a
    locked database are bounded by ``timeout``, after which the operation fails and
    the front treats it as a miss. The store is culled to ``size_limit`` bytes,
    oldest-stored first.
    """

    atomic_add = True  # diskcache's Cache.add: one transaction

    def __init__(self, directory: str | Path, *, size_limit: int = 2**30, timeout: float = 2.0) -> None:
        self.directory = Path(directory).expanduser()
        self.size_limit = size_limit
        self.timeout = timeout
        self.url = f"disk:{self.directory}"
        self._cache: Any = None
        self._lock = threading.Lock()

    @property
    def cache(self) -> Any:
        """The underlying ``diskcache.Cache``, opened on first use (never at import)."""
        cache = self._cache
        if cache is None:
            with self._lock:
                if self._cache is None:
                    ensure_private_dir(self.directory)
                    touch_private_file(self.directory / "cache.db")
                    self._cache = _ClosingCache(
                        str(self.directory),
                        disk=_BytesOnlyDisk,
                        timeout=self.timeout,
                        size_limit=self.size_limit,
                        # Reads must not write: LRU would update a row on every hit.
                        eviction_policy="least-recently-stored",
                        tag_index=True,
                        statistics=False,
                    )
                cache = self._cache
        return cache

    def _run(self, op: Any) -> Any:
        """``op(cache)``; a damaged database (not a lock, not a full disk) is reopened on
        the next call, so a store an operator deleted or replaced is picked up."""
        try:
            return op(self.cache)
        except sqlite3.DatabaseError as exc:
            if not isinstance(exc, sqlite3.OperationalError):
                self.close()
            raise

    def get(self, namespace: str, key: str) -> bytes | Miss:
        value = self._run(lambda c: c.get(key, default=MISS, retry=False))
        return value if type(value) is bytes else MISS

    def set(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        self._run(lambda c: c.set(key, value, expire=ttl, tag=namespace, retry=False))

    def add(self, namespace: str, key: str, value: bytes, ttl: float | None) -> bool:
        """Store ``value`` only if no live entry is there (set-if-absent); True if stored.

        Atomic across threads and processes (diskcache's ``Cache.add``: one transaction).
        """
        return bool(self._run(lambda c: c.add(key, value, expire=ttl, tag=namespace, retry=False)))

    def delete(self, namespace: str, key: str) -> bool:
        # diskcache's delete() skips rows past their expiry; ours removes them too.
        # Values live in the row (no files to unlink) and triggers keep the counts.
        with self.cache.transact():
            return bool(self.cache._sql("DELETE FROM Cache WHERE key = ?", (key,)).rowcount)

    def clear(self, namespace: str | None = None) -> int:
        if namespace is None:
            return int(self._run(lambda c: c.clear(retry=False)))
        return int(self._run(lambda c: c.evict(namespace, retry=False)))

    def entries(self, namespace: str | None = None) -> Iterator[StoredEntry]:
        con = self.cache._sql  # read straight from the table: no per-row get() round trips
        query = "SELECT key, tag, value, mode, raw FROM Cache"
        params: tuple[Any, ...] = ()
        if namespace is not None:
            query += " WHERE tag = ?"
            params = (namespace,)
        for key, tag, value, mode, raw in con(query, params).fetchall():
            if raw and mode == MODE_RAW and type(key) is str and type(value) is bytes:
                yield StoredEntry(str(tag or ""), key, value)

    def close(self) -> None:
        with self._lock:
            if self._cache is not None:
                self._cache.close()
                self._cache = None


def _from_url(url: str, rest: str) -> DiskBackend:
    from . import default_path

    return DiskBackend(Path(rest) if rest else default_path("disk"))
