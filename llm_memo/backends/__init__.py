"""Storage backends, and the URL forms that name them.

=====================  =======================================================
``"memory"``           the process-wide in-memory LRU
``"disk"``             diskcache in the default directory (``$LLM_MEMO_DIR/disk``)
``"disk:<path>"``      diskcache in ``<path>``
``"sqlite"``           one SQLite file (``$LLM_MEMO_DIR/cache.sqlite3``)
``"sqlite:<path>"``    one SQLite file at ``<path>``
``"redis://..."``      Redis (also ``rediss://``, ``unix://``, ``redis+cluster://``)
``"cassette:<path>"``  a reviewable JSON file (for recorded test suites)
=====================  =======================================================

A URL names one shared instance: every function configured with ``"disk"`` uses
the same store and connections. A tuple or list of these names tiers (see
:mod:`llm_memo.backends.tiered`); any other object with ``get``/``set``/``delete``/
``clear`` is wrapped to the full interface (see :mod:`llm_memo.backends._adapter`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._adapter import REQUIRED_METHODS, ObjectBackend, missing_methods
from .base import MISS, Backend, Miss, StoredEntry

__all__ = [
    "MISS",
    "Backend",
    "Miss",
    "StoredEntry",
    "check_store",
    "check_url",
    "default_directory",
    "default_path",
    "from_url",
    "register_scheme",
    "resolve_backend",
]

_instances: dict[str, Backend] = {}
_lock = threading.Lock()

# scheme -> "module:factory"; a factory takes (url, rest-after-the-colon).
_schemes: dict[str, str | Callable[[str, str], Backend]] = {
    "memory": "llm_memo.backends.memory:_from_url",
    "disk": "llm_memo.backends.disk:_from_url",
    "sqlite": "llm_memo.backends.sqlite:_from_url",
    "cassette": "llm_memo.backends.cassette:_from_url",
    "redis": "llm_memo.backends.redis:_from_url",
    "rediss": "llm_memo.backends.redis:_from_url",
    "unix": "llm_memo.backends.redis:_from_url",
    "redis+cluster": "llm_memo.backends.redis:_from_url",
    "rediss+cluster": "llm_memo.backends.redis:_from_url",
}


def default_directory() -> Path:
    """``$LLM_MEMO_DIR``, else ``$XDG_CACHE_HOME/llm-memo``, else ``~/.cache/llm-memo``."""
    configured = os.environ.get("LLM_MEMO_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llm-memo"


_DEFAULT_NAMES = {"disk": "disk", "sqlite": "cache.sqlite3"}


def default_path(scheme: str) -> Path:
    """Where a ``disk`` or ``sqlite`` URL that names no path keeps its store."""
    return default_directory() / _DEFAULT_NAMES[scheme]


def register_scheme(scheme: str, factory: Callable[[str, str], Backend]) -> None:
    """Make ``"<scheme>:..."`` URLs build backends with ``factory(url, rest)``."""
    _schemes[scheme] = factory


_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix", "redis+cluster", "rediss+cluster"})


def check_url(url: str) -> str:
    """``url`` if it names a backend (see the module docstring), else a one-line ``ValueError``.

    Nothing is opened or imported: this checks the form, so a typo fails where the
    URL is given (a decorator, ``configure()``, ``llm-memo --backend``), not at the
    first call.
    """
    if not isinstance(url, str):
        raise TypeError(f"backend={url!r}: expected a URL string like 'disk' or 'redis://...'")
    scheme, sep, rest = url.partition(":")
    factory = _schemes.get(scheme)
    if factory is None:
        raise ValueError(
            f"backend={url!r}: unknown backend; use memory, disk, disk:<dir>, sqlite, sqlite:<file>, "
            f"cassette:<file>, redis://host:port/db or redis+cluster://host:port"
            + (f" (or {', '.join(sorted(_custom_schemes()))})" if _custom_schemes() else "")
        )
    if not isinstance(factory, str):
        return url  # a registered scheme: its factory judges the rest
    if scheme == "memory" and sep:
        raise ValueError(f"backend={url!r}: the memory backend takes no path; use 'memory'")
    if scheme == "cassette" and not rest:
        raise ValueError(f"backend={url!r}: name the cassette file, e.g. 'cassette:tests/cassettes/x.json'")
    if scheme in _REDIS_SCHEMES:
        if not rest.startswith("//"):
            raise ValueError(f"backend={url!r}: a Redis URL looks like {scheme}://host:port/db")
        try:
            urlsplit(url).port  # noqa: B018 - parsing it is the check
        except ValueError:
            raise ValueError(f"backend={url!r}: the port is not a number from 0 to 65535") from None
    return url


def _custom_schemes() -> list[str]:
    return [name for name, factory in _schemes.items() if not isinstance(factory, str)]


def from_url(url: str) -> Backend:
    """The shared backend instance a URL names (see the module docstring)."""
    scheme, sep, rest = url.partition(":")
    if not sep:
        rest = ""
    factory = _schemes.get(scheme)
    if factory is None:
        known = ", ".join(sorted(_schemes))
        raise ValueError(f"backend={url!r}: unknown backend; use one of {known}, or a Backend instance")
    key = _normalise(scheme, rest, url)
    with _lock:
        backend = _instances.get(key)
        if backend is None:
            if isinstance(factory, str):
                from .._extras import import_for

                module_name, _, attr = factory.partition(":")
                # Named by scheme only: the URL may hold a password.
                factory = getattr(import_for(f"the {scheme}:// backend", module_name), attr)
            assert callable(factory)
            backend = _instances[key] = factory(url, rest)
        return backend


def resolve_backend(spec: Any) -> Backend:
    """The backend ``spec`` names: a Backend, a URL, a tuple of tiers, or a duck-typed store."""
    if isinstance(spec, Backend):
        return spec
    if isinstance(spec, str):
        return from_url(spec)
    if isinstance(spec, tuple | list):
        from .tiered import TieredBackend

        return TieredBackend([resolve_backend(s) for s in spec])
    return ObjectBackend(check_store(spec))


def check_store(spec: Any) -> Any:
    """``spec`` if it has the methods of a store, else a ``TypeError`` naming what it lacks."""
    missing = missing_methods(spec)
    if len(missing) == len(REQUIRED_METHODS):
        raise TypeError(f"backend={spec!r}: expected a URL string like 'disk' or 'redis://...', or a Backend")
    if missing:
        raise TypeError(
            f"backend={spec!r}: not a backend: it has no {', '.join(m + '()' for m in missing)} "
            f"(a store needs {', '.join(m + '()' for m in REQUIRED_METHODS)})"
        )
    return spec


def _normalise(scheme: str, rest: str, url: str) -> str:
    if scheme == "cassette":
        return f"cassette:{Path(rest).expanduser().resolve()}"
    if scheme in ("disk", "sqlite"):
        # The default location is read now, so a changed LLM_MEMO_DIR gets its own
        # store; "disk" and "disk:<its default dir>" name the same instance.
        return f"{scheme}:{Path(rest).expanduser().resolve() if rest else default_path(scheme).resolve()}"
    return url


def _reset_for_tests() -> None:
    with _lock:
        for backend in _instances.values():
            backend.close()
        _instances.clear()
