"""Moving entries: between two backends, or out to and back from a JSON Lines file.

>>> from llm_memo.transfer import copy_entries
>>> copy_entries("disk", "redis://cache.internal:6379/0")  # doctest: +SKIP

Every entry keeps its expiry: an expired entry is skipped and a live one is stored
with its remaining lifetime. Only verified llm_memo entries are moved.

An export file has one JSON object per line, readable in review::

    {"namespace": "app.ask", "key": "9f86...", "created": 1718000000.0, "expires": null,
     "value": {...the cached result, as stored...}, "entry": "<base64 of the entry bytes>"}

``value`` is for people; ``entry`` is what an import stores, byte for byte, after
checking it (envelope checksum, 64-hex key, that ``value`` and ``expires`` say
what the entry holds, and, when the entry carries its key material, that the key
and namespace are the ones that material hashes to).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import orjson

from ._log import log
from .backends import Backend, from_url
from .errors import CorruptEntry
from .keys import digest, fingerprint
from .serialize import EntryHeader, read_entry, unpack_entry

__all__ = ["copy_entries", "export_entries", "import_entries"]

_KEY = re.compile(r"[0-9a-f]{64}\Z")


def _backend(spec: Backend | str) -> Backend:
    return from_url(spec) if isinstance(spec, str) else spec


def _remaining(expires: float | None, now: float) -> tuple[bool, float | None]:
    """(still live, TTL to store with)."""
    if expires is None:
        return True, None
    return expires > now, expires - now


def copy_entries(
    src: Backend | str,
    dst: Backend | str,
    *,
    namespace: str | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """Copy every live entry (of one ``namespace``, or all) from ``src`` to ``dst``.

    Returns how many were copied. Bytes that are not an llm_memo entry are skipped
    (and counted in a log line): their lifetime cannot be known.
    """
    source, target = _backend(src), _backend(dst)
    copied = skipped = 0
    for entry in source.entries(namespace):
        try:
            expires = read_entry(entry.value).expires
        except CorruptEntry:
            skipped += 1
            continue
        live, ttl = _remaining(expires, clock())
        if live:
            target.set(entry.namespace, entry.key, entry.value, ttl)
            copied += 1
    if skipped:
        log.warning("llm_memo: skipped %d values in %s that are not valid entries", skipped, source.url)
    return copied


@contextmanager
def _open(file: str | os.PathLike[str] | IO[str], mode: str) -> Iterator[IO[str]]:
    if not isinstance(file, str | os.PathLike):
        yield file
        return
    if mode == "w":
        # Cached answers may be private: the export is as private as the store (0600).
        fd = os.open(Path(file), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8", newline="\n") as fh:
            yield fh
    else:
        with open(file, encoding="utf-8") as fh:
            yield fh


def _readable(entry: EntryHeader) -> Any:
    """The value section as plain JSON (tags like ``{"$tuple": [...]}`` left as they are)."""
    try:
        return orjson.loads(entry.value)
    except orjson.JSONDecodeError:
        return None


def _same_json(a: Any, b: Any) -> bool:
    # Compared as JSON text, not with ==: in Python True == 1 == 1.0, in a review they differ.
    try:
        return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return False


def export_entries(
    backend: Backend | str,
    file: str | os.PathLike[str] | IO[str],
    *,
    namespace: str | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """Write every live entry to ``file`` (a path, created 0600, or a text stream) as JSON Lines.

    Returns how many lines were written. Values that are not valid entries are skipped.
    """
    source = _backend(backend)
    written = 0
    with _open(file, "w") as out:
        for stored in source.entries(namespace):
            try:
                entry = read_entry(stored.value)
            except CorruptEntry:
                continue
            if not _remaining(entry.expires, clock())[0]:
                continue
            line = {
                "namespace": stored.namespace,
                "key": stored.key,
                "created": entry.created,
                "expires": entry.expires,
                "value": _readable(entry),
                "entry": base64.b64encode(stored.value).decode("ascii"),
            }
            out.write(orjson.dumps(line).decode("utf-8") + "\n")
            written += 1
    return written


def _parse_line(text: str) -> tuple[str, str, bytes, float | None]:
    """Check one export line; returns (namespace, key, entry bytes, expires) or raises ValueError."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    namespace, key, encoded = obj.get("namespace"), obj.get("key"), obj.get("entry")
    if not isinstance(namespace, str):
        raise ValueError("'namespace' must be a string")
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError("'key' must be 64 lowercase hex digits")
    if not isinstance(encoded, str):
        raise ValueError("'entry' must be a base64 string")
    try:
        data = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"'entry' is not valid base64: {exc}") from None
    try:
        entry = read_entry(data)
    except CorruptEntry as exc:
        raise ValueError(f"'entry' is not a valid llm_memo entry: {exc}") from None
    if "expires" in obj and obj["expires"] != entry.expires:
        raise ValueError("'expires' does not match the entry (edit the entry, not the summary)")
    if "value" in obj and not _same_json(obj["value"], _readable(entry)):
        # A reviewer reads `value`; what gets stored is `entry`: they must be one answer.
        raise ValueError("'value' does not match the entry (edit the entry, not the summary)")
    if entry.material is not None:
        # The entry names the call it answers: the line must file it under that call.
        try:
            unpack_entry(data, fingerprint(entry.material))
            stated = orjson.loads(entry.material).get("ns")
        except (CorruptEntry, orjson.JSONDecodeError, AttributeError):
            raise ValueError("the entry's key material does not match its fingerprint") from None
        if digest(entry.material) != key:
            raise ValueError("'key' is not the hash of the entry's key material")
        if stated != namespace:
            raise ValueError(f"'namespace' is {namespace!r} but the entry belongs to {stated!r}")
    return namespace, key, data, entry.expires


def import_entries(
    file: str | os.PathLike[str] | IO[str],
    backend: Backend | str,
    *,
    clock: Callable[[], float] = time.time,
) -> int:
    """Store the entries of a file written by :func:`export_entries`; returns how many.

    Each line is checked before it is stored; a bad line raises ValueError naming
    its line number (lines before it are already imported, nothing of it is).
    Expired entries are skipped.
    """
    target = _backend(backend)
    imported = 0
    with _open(file, "r") as source:
        for number, text in enumerate(source, start=1):
            if not text.strip():
                continue
            try:
                namespace, key, data, expires = _parse_line(text)
            except ValueError as exc:
                raise ValueError(f"line {number}: {exc}") from None
            live, ttl = _remaining(expires, clock())
            if live:
                target.set(namespace, key, data, ttl)
                imported += 1
    return imported
