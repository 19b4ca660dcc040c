"""Any object with the four store methods, given the whole :class:`Backend` interface.

Users may pass their own store (``backend=MyStore()``) without subclassing
:class:`Backend`. The front relies on the full interface (``url`` in fault
messages, the async twins, ``add`` for leases), so such an object is wrapped
once, when the backend is resolved, rather than probed with ``getattr`` on every
call. What it lacks comes from :class:`Backend`'s defaults: the async twins run
its sync methods in a worker thread (unless it says ``blocking = False``), and
``add`` is the best-effort emulation unless it has its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .base import Backend, Miss, StoredEntry

__all__ = ["REQUIRED_METHODS", "ObjectBackend", "missing_methods"]

#: What an object needs to be usable as a backend.
REQUIRED_METHODS = ("get", "set", "delete", "clear")


def missing_methods(obj: Any) -> list[str]:
    """The required store methods ``obj`` does not have."""
    return [name for name in REQUIRED_METHODS if not callable(getattr(obj, name, None))]


class ObjectBackend(Backend):
    """A duck-typed store behind the :class:`Backend` interface (checked by ``resolve_backend``)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        url = getattr(store, "url", None)
        self.url = url if isinstance(url, str) else f"<{type(store).__name__}>"
        # Class attributes on Backend; these follow what the wrapped store declares.
        vars(self)["blocking"] = bool(getattr(store, "blocking", True))
        own_add = callable(getattr(store, "add", None))
        vars(self)["atomic_add"] = bool(getattr(store, "atomic_add", own_add))

    def get(self, namespace: str, key: str) -> bytes | Miss:
        value: bytes | Miss = self.store.get(namespace, key)
        return value

    def set(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        self.store.set(namespace, key, value, ttl)

    def delete(self, namespace: str, key: str) -> bool:
        return bool(self.store.delete(namespace, key))

    def clear(self, namespace: str | None = None) -> int:
        return int(self.store.clear(namespace))

    def add(self, namespace: str, key: str, value: bytes, ttl: float | None) -> bool:
        add = getattr(self.store, "add", None)
        if callable(add):
            return bool(add(namespace, key, value, ttl))
        return super().add(namespace, key, value, ttl)

    def entries(self, namespace: str | None = None) -> Iterator[StoredEntry]:
        entries = getattr(self.store, "entries", None)
        if not callable(entries):
            raise TypeError(
                f"{self.url} cannot list its entries: {type(self.store).__name__} has no entries()"
            )
        for ns, key, value in entries(namespace):
            yield StoredEntry(ns, key, value)

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if callable(close):
            close()
