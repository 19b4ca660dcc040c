"""The backend interface: a dumb store of bytes with a TTL.

Everything clever (keys, serialisation, entry checks, expiry against the caller's
clock, stats, the fault policy) lives once, in front of the backend. A backend
only keeps bytes under ``(namespace, key)`` and can forget a whole namespace.

``key`` is always the 64-hex digest of the key material. ``namespace`` is the
cached function's namespace; it is part of that material too, so a key is unique
across namespaces, and the backend needs it only to clear one function's entries.

Backends raise whatever their driver raises: the front turns faults into misses
(or :class:`~llm_memo.errors.BackendError` in strict mode).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Final, NamedTuple, TypeVar

from .._sentinel import Sentinel

__all__ = ["MISS", "Backend", "Miss", "StoredEntry"]


class Miss(Sentinel, name="MISS"):
    """The type of :data:`MISS`. ``None`` is a value that can be cached; MISS is not."""


#: Returned by ``get`` when there is no entry.
MISS: Final = Miss()


_T = TypeVar("_T")


async def _in_thread(fn: Callable[..., _T], *args: Any) -> _T:
    import asyncio  # on first async use only: `import llm_memo` stays fast for sync code

    return await asyncio.to_thread(fn, *args)


class StoredEntry(NamedTuple):
    """One raw entry, as listed by :meth:`Backend.entries` (for tools and copying)."""

    namespace: str
    key: str
    value: bytes


class Backend(abc.ABC):
    """A store of bytes. Subclasses implement the four abstract sync methods and ``entries``.

    ``add`` (set-if-absent) and ``close`` have defaults; a store that can do
    ``add`` atomically overrides it.

    The async methods have one implementation here: a blocking backend (disk,
    SQLite) runs the sync method in a worker thread so the event loop never waits
    on I/O; a non-blocking one (memory) is called directly; a backend with a
    native async client (Redis) overrides them.
    """

    #: Whether the sync methods may block on I/O (then the async side uses a thread).
    blocking: ClassVar[bool] = True

    #: Whether :meth:`add` is atomic. The default emulation is not: a lease on such
    #: a backend is best-effort (two processes may occasionally both take it).
    atomic_add: ClassVar[bool] = False

    #: A short description for logs and errors: never holds credentials.
    url: str = "<backend>"

    @abc.abstractmethod
    def get(self, namespace: str, key: str) -> bytes | Miss:
        """The stored bytes, or :data:`MISS`."""

    @abc.abstractmethod
    def set(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value``; ``ttl`` in seconds, ``None`` for no expiry."""

    @abc.abstractmethod
    def delete(self, namespace: str, key: str) -> bool:
        """Forget one entry; True if it existed."""

    @abc.abstractmethod
    def clear(self, namespace: str | None = None) -> int:
        """Forget one namespace's entries (all entries when ``None``); returns how many."""

    @abc.abstractmethod
    def entries(self, namespace: str | None = None) -> Iterator[StoredEntry]:
        """Iterate over stored entries (expired ones may be included)."""

    def add(self, namespace: str, key: str, value: bytes, ttl: float | None) -> bool:
        """Store ``value`` only if there is no live entry (set-if-absent); True if stored.

        Leases coordinate processes through this. The emulation here (read, write,
        read back) can let two writers both win in a narrow race; stores that can
        do it atomically override it and set :attr:`atomic_add`.
        """
        if self.get(namespace, key) is not MISS:
            return False
        self.set(namespace, key, value, ttl)
        return self.get(namespace, key) == value

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections and files. The backend reopens lazily if used again."""

    async def aget(self, namespace: str, key: str) -> bytes | Miss:
        if not self.blocking:
            return self.get(namespace, key)
        return await _in_thread(self.get, namespace, key)

    async def aset(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        if not self.blocking:
            return self.set(namespace, key, value, ttl)
        return await _in_thread(self.set, namespace, key, value, ttl)

    async def aadd(self, namespace: str, key: str, value: bytes, ttl: float | None) -> bool:
        if not self.blocking:
            return self.add(namespace, key, value, ttl)
        return await _in_thread(self.add, namespace, key, value, ttl)

    async def adelete(self, namespace: str, key: str) -> bool:
        if not self.blocking:
            return self.delete(namespace, key)
        return await _in_thread(self.delete, namespace, key)

    async def aclear(self, namespace: str | None = None) -> int:
        if not self.blocking:
            return self.clear(namespace)
        return await _in_thread(self.clear, namespace)

    async def aclose(self) -> None:
        if not self.blocking:
            return self.close()
        return await _in_thread(self.close)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"
