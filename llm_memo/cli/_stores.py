"""Opening the store ``--backend`` names, and reading its entries as rows.

A KEY argument is a key or a unique prefix of one (:data:`MIN_PREFIX` hex digits
or more).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..backends import Backend, StoredEntry, check_url, default_path, from_url
from ..errors import CorruptEntry
from ..keys import short_key
from ..serialize import EntryHeader, read_entry
from ._output import CLIError, Progress, iso, printable

__all__ = ["MIN_PREFIX", "Row", "delete", "entry_json", "open_store", "probe", "resolve", "scan", "store_url"]

#: Shortest key prefix accepted for KEY arguments.
MIN_PREFIX = 6
_HEX = re.compile(r"[0-9a-f]+\Z")
_GLOB = re.compile(r"[*?\[]")


def store_url(args: argparse.Namespace) -> str:
    given = getattr(args, "backend", None)
    if given is not None and not given.strip():
        # Not the default store: an empty value is a mistake (an unset variable in a script).
        raise CLIError("--backend is empty: give a store URL (disk, sqlite:<file>, redis://...)", code=2)
    url: str = given or os.environ.get("LLM_MEMO_BACKEND") or "disk"
    return url.strip()


def open_store(args: argparse.Namespace, *, create: bool = False) -> Backend:
    """The backend ``--backend`` names; a disk or SQLite store must exist unless ``create``."""
    url = store_url(args)
    scheme, _, rest = url.partition(":")
    if scheme in ("disk", "sqlite") and not create:
        # Reading must not create an empty store where the user mistyped a path.
        path = Path(rest).expanduser() if rest else default_path(scheme)
        if scheme == "disk" and not (path / "cache.db").is_file():
            if path.exists() and not path.is_dir():
                raise CLIError(f"{path} is a file, not a disk store (did you mean sqlite:{path}?)")
            raise CLIError(f"no disk store at {path} (nothing has been cached there yet)")
        if scheme == "sqlite" and not path.is_file():
            if path.is_dir():
                raise CLIError(f"{path} is a directory, not a SQLite file (did you mean disk:{path}?)")
            raise CLIError(f"no SQLite store at {path}: file not found")
    try:
        backend = from_url(check_url(url))
    except ImportError as exc:
        raise CLIError(str(exc)) from None  # MissingExtra: names the pip install command
    except ValueError as exc:
        raise CLIError(str(exc), code=2) from None
    args.store = backend.url  # for error messages: backend URLs never hold credentials
    return backend


def probe(backend: Backend) -> None:
    """One cheap read, so an unreachable store fails before any file is touched."""
    backend.get("llm-memo-cli", "0" * 64)


@dataclass
class Row:
    """One stored value, read (``header`` is None when it is not a valid entry)."""

    namespace: str
    key: str
    size: int
    header: EntryHeader | None

    @property
    def created(self) -> float | None:
        return self.header.created if self.header else None

    @property
    def expires(self) -> float | None:
        return self.header.expires if self.header else None

    def expired(self, now: float) -> bool:
        return self.expires is not None and self.expires <= now

    def material(self) -> Any:
        if self.header is None or self.header.material is None:
            return None
        try:
            return orjson.loads(self.header.material)
        except orjson.JSONDecodeError:
            return None


def scan(backend: Backend, function: str | None = None) -> Iterator[Row]:
    """Every stored value (of one function, or of those a glob like ``app.*`` matches)."""
    glob = function is not None and _GLOB.search(function) is not None
    for stored in backend.entries(None if glob else function):
        if glob and not fnmatch.fnmatchcase(stored.namespace, function or ""):
            continue
        yield _row(stored)


def _row(stored: StoredEntry) -> Row:
    try:
        header: EntryHeader | None = read_entry(stored.value)
    except CorruptEntry:
        header = None
    return Row(stored.namespace, stored.key, len(stored.value), header)


def resolve(backend: Backend, prefix: str) -> Row:
    """The one entry whose key starts with ``prefix``, or a CLIError."""
    text = prefix.strip().lower()
    if not _HEX.match(text) or len(text) > 64:
        raise CLIError(f"{prefix!r} is not a key: expected hex digits (a key or a prefix of one)", code=2)
    if len(text) < MIN_PREFIX:
        raise CLIError(f"key prefix {prefix!r} is too short: give at least {MIN_PREFIX} hex digits", code=2)
    found = [_row(stored) for stored in backend.entries() if stored.key.startswith(text)]
    if not found:
        raise CLIError(f"no entry with a key starting {text} in {backend.url}")
    if len(found) > 1:
        shown = ", ".join(f"{short_key(r.key)} ({printable(r.namespace)})" for r in found[:8])
        more = f" and {len(found) - 8} more" if len(found) > 8 else ""
        raise CLIError(f"key prefix {text} is ambiguous: it matches {shown}{more}; give more digits")
    return found[0]


def delete(backend: Backend, rows: list[Row], now: float, progress: Progress | None = None) -> set[str]:
    """Remove entries; returns the keys that were there (expired disk entries included)."""
    removed: set[str] = set()
    stuck: list[Row] = []
    for n, row in enumerate(rows, start=1):
        if backend.delete(row.namespace, row.key):
            removed.add(row.key)
        elif row.expired(now):
            stuck.append(row)
        if progress is not None:
            progress.update(n)
    from ..backends.disk import DiskBackend

    if stuck and isinstance(backend, DiskBackend):
        # diskcache's delete() skips a row past its expiry time; expire() removes those.
        backend.cache.expire(retry=False)
        remaining = {r.key for r in scan(backend)}
        removed.update(r.key for r in stuck if r.key not in remaining)
    return removed


def entry_json(row: Row, now: float) -> dict[str, Any]:
    return {
        "key": row.key,
        "function": row.namespace,
        "size": row.size,
        "created": iso(row.created),
        "created_ts": row.created,
        "expires": iso(row.expires),
        "expires_ts": row.expires,
        "expired": row.expired(now),
        "age_seconds": None if row.created is None else max(now - row.created, 0.0),
        "cost_seconds": row.header.cost if row.header else None,
        "valid": row.header is not None,
    }
