"""An in-process LRU store, bounded by entries and bytes."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

from .base import MISS, Backend, Miss, StoredEntry

__all__ = ["MemoryBackend"]


class MemoryBackend(Backend):
    """Thread-safe LRU of bytes with per-entry expiry on a monotonic clock.

    Bounded by default (10,000 entries and 256 MiB), so a long agent loop cannot
    grow it without limit. Values are bytes, so a hit always decodes a fresh
    object: mutating a result never changes the next hit.
    """

    blocking = False
    atomic_add = True

    def __init__(
        self,
        max_entries: int | None = 10_000,
        max_bytes: int | None = 256 * 1024 * 1024,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self.url = "memory"
        self._data: OrderedDict[tuple[str, str], tuple[bytes, float | None]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, namespace: str, key: str) -> bytes | Miss:
        k = (namespace, key)
        with self._lock:
            item = self._data.get(k)
            if item is None:
                return MISS
            value, deadline = item
            if deadline is not None and self.clock() >= deadline:
                self._pop(k)
                return MISS
            self._data.move_to_end(k)
            return value

    def set(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        if self.max_bytes is not None and len(value) > self.max_bytes:
            return  # could never fit: storing it would only evict everything else
        deadline = None if ttl is None else self.clock() + ttl
        k = (namespace, key)
        with self._lock:
            self._pop(k)
            self._data[k] = (value, deadline)
            self._bytes += len(value)
            while (self.max_entries is not None and len(self._data) > self.max_entries) or (
                self.max_bytes is not None and self._bytes > self.max_bytes
            ):
                _, (old_value, _) = self._data.popitem(last=False)
                self._bytes -= len(old_value)

    def add(self, namespace: str, key: str, value: bytes, ttl: float | None) -> bool:
        """Store ``value`` only if no live entry is there (set-if-absent); True if stored.

        Atomic under the lock: of concurrent ``add`` calls for one key, one wins.
        """
        if self.max_bytes is not None and len(value) > self.max_bytes:
            return False
        k = (namespace, key)
        with self._lock:
            now = self.clock()
            item = self._data.get(k)
            if item is not None and (item[1] is None or now < item[1]):
                return False
            self._pop(k)
            self._data[k] = (value, None if ttl is None else now + ttl)
            self._bytes += len(value)
            while (self.max_entries is not None and len(self._data) > self.max_entries) or (
                self.max_bytes is not None and self._bytes > self.max_bytes
            ):
                _, (old_value, _) = self._data.popitem(last=False)
                self._bytes -= len(old_value)
            return True

    def _pop(self, k: tuple[str, str]) -> bool:
        item = self._data.pop(k, None)
        if item is None:
            return False
        self._bytes -= len(item[0])
        return True

    def delete(self, namespace: str, key: str) -> bool:
        with self._lock:
            return self._pop((namespace, key))

    def clear(self, namespace: str | None = None) -> int:
        with self._lock:
            if namespace is None:
                count = len(self._data)
                self._data.clear()
                self._bytes = 0
                return count
            doomed = [k for k in self._data if k[0] == namespace]
            for k in doomed:
                self._pop(k)
            return len(doomed)

    def entries(self, namespace: str | None = None) -> Iterator[StoredEntry]:
        with self._lock:
            items = [(k, v) for k, (v, _) in self._data.items() if namespace is None or k[0] == namespace]
        for (ns, key), value in items:
            yield StoredEntry(ns, key, value)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def nbytes(self) -> int:
        """Bytes currently held."""
        return self._bytes


def _from_url(url: str, rest: str) -> MemoryBackend:
    if rest:
        raise ValueError(f"backend={url!r}: the memory backend takes no path; use 'memory'")
    return MemoryBackend()
