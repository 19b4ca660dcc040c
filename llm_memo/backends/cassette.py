"""A cassette: the entries of one test module in one reviewable, diffable JSON file.

Made for committing recorded LLM answers next to the tests that use them (the
pytest plugin keeps one cassette per test module), and usable as any backend:
``CassetteBackend("tests/cassettes/test_chat.json")`` or the URL
``"cassette:tests/cassettes/test_chat.json"``.

The file is pretty-printed JSON (two-space indent, one field per line, so a
diff shows the prompt or answer that changed), entries sorted by namespace and
key, so recording the same calls twice gives byte-identical files::

    {
      "llm_memo_cassette": 1,
      "entries": [
        {
          "namespace": "openai.chat.completions.create",
          "key": "3f2a9c0d81e4...",
          "call": {"a": {"material": {"client": {...}, "endpoint": "...", "kwargs": {...}}}, ...},
          "value": {"$model": ["openai.types.chat.chat_completion:ChatCompletion", {...}, {...}]}
        }
      ]
    }

``call`` is the entry's key material (what the key is the SHA-256 of: never an
API key or a request header), ``value`` the cached answer in llm_memo's
data-only value format (see :mod:`llm_memo.serialize`). A read re-packs the
entry from these two fields, so editing ``value`` by hand changes the answer a
test gets; ``call`` and ``key`` belong together (an edited ``call`` no longer
matches its key, and the entry then reads as a miss with a warning: record it
again instead). Bytes that are not an llm_memo entry are kept as
``"bytes": "<base64>"``.

What a cassette leaves out, so that it only changes when an answer does: the
creation time, the call's duration (a hit from a cassette reports no time
saved) and the request id the server sent with the answer (its
``x-request-id``/``request-id`` header, new on every call), which a hit from a
cassette therefore does not have (``_request_id`` is None). An expiry is kept
(``"expires"``, unix seconds) when the entry has one; the pytest plugin records
without expiry.

Writes go straight to the file (read, merge, write a temporary file, rename),
under an advisory lock on the directory, so concurrent writers (``pytest -n``)
merge rather than overwrite each other, and a reader never sees a torn file.
The file is created with the usual permissions (0644 under the common umask),
not 0600 like the private stores: it is meant to be committed and shared.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..errors import CorruptEntry
from ..keys import fingerprint, material_bytes
from ..serialize import entry_fingerprint, pack_entry, read_entry
from .base import MISS, Backend, Miss, StoredEntry

try:  # POSIX only; elsewhere concurrent writers are not merged (one process per file)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["CASSETTE_FORMAT", "CassetteBackend", "CassetteRouter"]

#: The ``llm_memo_cassette`` version written at the top of each file.
CASSETTE_FORMAT = 1

_FORMAT_FIELD = "llm_memo_cassette"
_Signature = tuple[int, int, int] | None


@dataclass(frozen=True)
class _Record:
    """One entry: its document in the file, and the bytes a read returns."""

    doc: dict[str, Any]
    data: bytes
    expires: float | None


def _bytes_record(namespace: str, key: str, value: bytes, expires: float | None) -> _Record:
    doc: dict[str, Any] = {"namespace": namespace, "key": key, "bytes": base64.b64encode(value).decode()}
    if expires is not None:
        doc["expires"] = expires
    return _Record(doc, value, expires)


def _record_from_bytes(namespace: str, key: str, value: bytes, deadline: float | None) -> _Record:
    """What ``set`` stores: an llm_memo entry as readable fields, anything else as base64."""
    try:
        entry = read_entry(value)
        tree = _without_request_id(orjson.loads(entry.value))
        call: Any = orjson.loads(entry.material) if entry.material is not None else None
    except (CorruptEntry, orjson.JSONDecodeError):
        return _bytes_record(namespace, key, value, deadline)
    stored_fp = entry_fingerprint(value)
    if entry.material is not None and (
        material_bytes(call) != entry.material or fingerprint(entry.material) != stored_fp
    ):
        return _bytes_record(namespace, key, value, deadline)  # not re-packable exactly: keep it whole
    expires = entry.expires
    if deadline is not None:
        expires = deadline if expires is None else min(expires, deadline)
    doc: dict[str, Any] = {"namespace": namespace, "key": key}
    if call is not None:
        doc["call"] = call
    else:
        doc["fingerprint"] = stored_fp.hex()
    if expires is not None:
        doc["expires"] = expires
    doc["value"] = tree
    return _record_from_doc(doc)


def _without_request_id(tree: Any) -> Any:
    """The value tree without the SDK's request id: an SDK response's ``_request_id``,
    or the ``request_id`` of a recorded SDK stream's metadata (its first item)."""
    if type(tree) is dict and len(tree) == 1 and "$model" in tree:
        body = tree["$model"]
        private = body[2] if isinstance(body, list) and len(body) == 3 else None
        if isinstance(private, dict) and "_request_id" in private:
            kept = {k: v for k, v in private.items() if k != "_request_id"}
            return {"$model": [body[0], body[1], kept]}
    elif type(tree) is list and tree and type(tree[0]) is dict and set(tree[0]) == {"request_id"}:
        return [{"request_id": None}, *tree[1:]]
    return tree


def _record_from_doc(doc: Any) -> _Record:
    """Rebuild an entry from its document (a line of the file); raises ValueError."""
    if not isinstance(doc, dict):
        raise ValueError("an entry must be a JSON object")
    namespace, key, expires = doc.get("namespace"), doc.get("key"), doc.get("expires")
    if not isinstance(namespace, str) or not isinstance(key, str):
        raise ValueError("'namespace' and 'key' must be strings")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int | float)):
        raise ValueError("'expires' must be unix seconds or absent")
    expires = None if expires is None else float(expires)
    if "bytes" in doc:
        try:
            data = base64.b64decode(doc["bytes"], validate=True)
        except (binascii.Error, TypeError) as exc:
            raise ValueError(f"'bytes' is not base64: {exc}") from None
        return _Record(doc, data, expires)
    if "value" not in doc:
        raise ValueError("an entry needs 'value' (or 'bytes')")
    if "call" in doc:
        material: bytes | None = material_bytes(doc["call"])
        assert material is not None
        fp = fingerprint(material)
    else:
        material = None
        try:
            fp = bytes.fromhex(doc["fingerprint"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("an entry without 'call' needs a 32-hex 'fingerprint'") from None
        if len(fp) != 16:
            raise ValueError("'fingerprint' must be 32 hex digits")
    data = pack_entry(orjson.dumps(doc["value"]), fp, 0.0, expires, material)
    return _Record(doc, data, expires)


class CassetteBackend(Backend):
    """Entries kept in one pretty-printed, sorted JSON file (see the module docstring).

    The file is read on first use and again whenever it changes on disk; every
    write rewrites it atomically. A file that is not a cassette (bad JSON, a merge
    conflict left in it) raises ``ValueError`` naming the file and the entry.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.url = f"cassette:{path}"
        self.clock = clock
        #: How many writes changed the file (through this instance).
        self.changes = 0
        self._lock = threading.RLock()
        self._records: dict[tuple[str, str], _Record] = {}
        self._signature: _Signature = None
        self._loaded = False

    # ------------------------------------------------------------------ reading

    def _stat(self) -> _Signature:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def _refresh(self) -> None:
        """Load the file if it is new to us or changed on disk (caller holds the lock)."""
        signature = self._stat()
        if self._loaded and signature == self._signature:
            return
        self._records = self._parse() if signature is not None else {}
        self._signature = signature
        self._loaded = True

    def _parse(self) -> dict[tuple[str, str], _Record]:
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{self.path}: not a cassette (invalid JSON: {exc})") from None
        if not isinstance(document, dict) or not isinstance(document.get("entries"), list):
            raise ValueError(f"{self.path}: not a cassette (expected an object with 'entries')")
        version = document.get(_FORMAT_FIELD)
        if version != CASSETTE_FORMAT:
            raise ValueError(f"{self.path}: cassette format {version!r} is not supported (expected 1)")
        records: dict[tuple[str, str], _Record] = {}
        for number, doc in enumerate(document["entries"], start=1):
            try:
                record = _record_from_doc(doc)
            except ValueError as exc:
                raise ValueError(f"{self.path}: entry {number}: {exc}") from None
            records[(record.doc["namespace"], record.doc["key"])] = record
        return records

    def _live(self, record: _Record) -> bool:
        return record.expires is None or self.clock() < record.expires

    def get(self, namespace: str, key: str) -> bytes | Miss:
        with self._lock:
            self._refresh()
            record = self._records.get((namespace, key))
        if record is None or not self._live(record):
            return MISS
        return record.data

    def entries(self, namespace: str | None = None) -> Iterator[StoredEntry]:
        with self._lock:
            self._refresh()
            items = sorted(self._records.items())
        for (ns, key), record in items:
            if namespace is None or ns == namespace:
                yield StoredEntry(ns, key, record.data)

    def documents(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """The entries as they are in the file (for tools: reports, diffs of a miss)."""
        with self._lock:
            self._refresh()
            return [r.doc for (ns, _), r in sorted(self._records.items()) if namespace in (None, ns)]

    # ------------------------------------------------------------------ writing

    def set(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        deadline = None if ttl is None else self.clock() + ttl
        record = _record_from_bytes(namespace, key, value, deadline)

        def change(records: dict[tuple[str, str], _Record]) -> bool:
            old = records.get((namespace, key))
            if old is not None and old.doc == record.doc:
                return False  # the same answer again: leave the file (and its bytes) alone
            records[(namespace, key)] = record
            return True

        self._update(change)

    def delete(self, namespace: str, key: str) -> bool:
        found: list[bool] = []

        def change(records: dict[tuple[str, str], _Record]) -> bool:
            found.append(records.pop((namespace, key), None) is not None)
            return found[0]

        self._update(change)
        return found[0]

    def clear(self, namespace: str | None = None) -> int:
        cleared: list[int] = []

        def change(records: dict[tuple[str, str], _Record]) -> bool:
            doomed = [k for k in records if namespace is None or k[0] == namespace]
            for k in doomed:
                del records[k]
            cleared.append(len(doomed))
            return bool(doomed)

        self._update(change)
        return cleared[0]

    def close(self) -> None:
        with self._lock:  # nothing is buffered: forget what was read, reload on next use
            self._records, self._signature, self._loaded = {}, None, False

    def _update(self, change: Callable[[dict[tuple[str, str], _Record]], bool]) -> None:
        """Re-read, apply ``change``, write back if it changed anything: all under the locks."""
        with self._lock, self._directory_lock():
            self._refresh()
            if not change(self._records):
                return
            now = self.clock()
            live = {k: r for k, r in self._records.items() if r.expires is None or r.expires > now}
            self._records = live
            self._write(live)
            self._signature = self._stat()
            self.changes += 1

    @contextlib.contextmanager
    def _directory_lock(self) -> Iterator[None]:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover - Windows
            yield
            return
        fd = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _write(self, records: dict[tuple[str, str], _Record]) -> None:
        document = {_FORMAT_FIELD: CASSETTE_FORMAT, "entries": [records[k].doc for k in sorted(records)]}
        payload = orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
        try:
            mode = self.path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644  # a file to commit and share, not a private store
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, mode)
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def __len__(self) -> int:
        with self._lock:
            self._refresh()
            return len(self._records)


def _from_url(url: str, rest: str) -> CassetteBackend:
    if not rest:
        raise ValueError(f"backend={url!r}: name the cassette file, e.g. 'cassette:tests/cassettes/x.json'")
    return CassetteBackend(Path(rest).expanduser())


class CassetteRouter(Backend):
    """One cassette per source file, picked at call time (the pytest plugin's backend).

    ``source`` names the file whose code is running (a test module, a
    ``conftest.py``); ``locate(source)`` maps it to its cassette path (``source``
    is ``None`` outside any file: a session-wide cassette). Misses remember which
    cassette they were looked up in, for error messages.
    """

    def __init__(self, locate: Callable[[Path | None], Path]) -> None:
        self.url = "cassette:<one per test module>"
        self.source: Path | None = None
        self._locate = locate
        self._lock = threading.Lock()
        self._cassettes: dict[Path, CassetteBackend] = {}
        #: key -> the cassette a lookup of it missed in (the latest 1,000 misses).
        self.misses: dict[str, CassetteBackend] = {}

    def cassette(self, source: Path | None = None) -> CassetteBackend:
        path = self._locate(source)
        with self._lock:
            backend = self._cassettes.get(path)
            if backend is None:
                backend = self._cassettes[path] = CassetteBackend(path)
            return backend

    @property
    def current(self) -> CassetteBackend:
        return self.cassette(self.source)

    def opened(self) -> list[CassetteBackend]:
        with self._lock:
            return list(self._cassettes.values())

    def get(self, namespace: str, key: str) -> bytes | Miss:
        backend = self.current
        data = backend.get(namespace, key)
        if data is MISS:
            with self._lock:
                if len(self.misses) >= 1000:
                    self.misses.clear()
                self.misses[key] = backend
        return data

    def set(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        self.current.set(namespace, key, value, ttl)

    def delete(self, namespace: str, key: str) -> bool:
        return self.current.delete(namespace, key)

    def clear(self, namespace: str | None = None) -> int:
        return self.current.clear(namespace)

    def entries(self, namespace: str | None = None) -> Iterator[StoredEntry]:
        return self.current.entries(namespace)

    def close(self) -> None:
        for backend in self.opened():
            backend.close()
