"""Shared machinery of the guarantee suites (``tests/test_guarantee_*.py``).

Import what you need explicitly (``from _fault_helpers import ...``); nothing here is
a plugin. It holds:

* ``seeded_random``: seeded randomness. The seed comes from ``LLM_MEMO_TEST_SEED``
  or is drawn fresh, and is printed at setup, so pytest shows it with any failure
  ("Captured stdout setup"); rerun with ``LLM_MEMO_TEST_SEED=<seed>``.
* ``stress``: the stress-tier marker plus a skip unless the run selected the tier
  (``pytest -m stress``), so a plain ``pytest`` stays fast even when ``addopts``
  lacks ``-m "not stress"``.
* ``FullDisk``: a real, small tmpfs (``mount -t tmpfs``) when running as root and
  mounting is allowed; otherwise a child process whose file-size limit
  (``RLIMIT_FSIZE``) makes every write past the limit fail at the OS boundary.
* ``LockHolder``: another *process* holding a SQLite database's write lock.
* ``audit_events``: a process-wide audit hook that records imports, process
  launches, ``eval``/``exec`` and unpickling while a block runs.
* ``forge_entry``: an entry envelope built field by field, with a valid checksum,
  so hostile values get past the checksum to the checks behind it.
* ``secret_needles`` / ``find_needles``: a secret and its encodings, and a byte scan.
* Worker functions for child processes (importable, so ``spawn`` and
  ``forkserver`` children can run them).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import threading
import traceback
import types
import urllib.parse
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "BACKEND_KINDS",
    "FullDisk",
    "LockHolder",
    "assert_rate_limited",
    "audit_events",
    "find_needles",
    "forge_entry",
    "integrity_check",
    "k",
    "llm_warnings",
    "open_backend",
    "secret_needles",
    "seeded_random",
    "stress",
]

SEED_ENV = "LLM_MEMO_TEST_SEED"
TESTS_DIR = Path(__file__).resolve().parent


def k(i: object) -> str:
    """A key shaped like the real ones (64 hex)."""
    return hashlib.sha256(str(i).encode()).hexdigest()


# --------------------------------------------------------------------------- seeds


def seeded_random(request: pytest.FixtureRequest) -> random.Random:
    """The test's random generator. Its seed is printed at setup, so it shows with any failure.

    Each test module defines ``rng`` as a one-line fixture returning this.
    """
    configured = os.environ.get(SEED_ENV)
    value = int(configured) if configured else random.SystemRandom().randrange(2**32)
    print(f"{request.node.nodeid}: seed={value} (rerun with {SEED_ENV}={value})")
    return random.Random(value)


# --------------------------------------------------------------------------- tiers

_STRESS_SELECTED = (
    "'stress' not in (config.getoption('markexpr') or '').replace(' ', '').replace('notstress', '')"
)


def stress(fn: Any) -> Any:
    """Mark a stress-tier test, and skip it unless the run selected the tier (``-m stress``).

    The skip keeps a plain ``pytest`` fast even when ``addopts`` lacks ``-m "not stress"``.
    """
    fn = pytest.mark.stress(fn)
    return pytest.mark.skipif(_STRESS_SELECTED, reason="stress tier: run with `pytest -m stress`")(fn)


# --------------------------------------------------------------------------- logs


def llm_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("llm_memo") and r.levelno >= logging.WARNING]


def assert_rate_limited(caplog: pytest.LogCaptureFixture, *, faulted_calls: int, most: int = 12) -> None:
    """Each distinct problem was logged at most once, and far fewer times than it happened."""
    records = llm_warnings(caplog)
    groups = Counter(
        (r.msg, tuple(str(a) for a in (r.args if isinstance(r.args, tuple) else ())[:3])) for r in records
    )
    repeated = {g: n for g, n in groups.items() if n > 1}
    assert not repeated, f"warnings repeated within the rate-limit interval: {repeated}"
    assert len(records) <= most, [r.getMessage() for r in records]
    assert len(records) < max(2, faulted_calls), "a warning per faulted call is not rate limiting"


# --------------------------------------------------------------------------- audit hook

_WATCHED = frozenset(
    {
        "import",
        "exec",
        "compile",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "subprocess.Popen",
        "pickle.find_class",
        "marshal.loads",
        "ctypes.dlopen",
        "builtins.input",
    }
)
_audit_lock = threading.Lock()
_audit_sink: list[tuple[str, str]] | None = None
_audit_installed = False


def _audit_hook(event: str, args: tuple[Any, ...]) -> None:
    sink = _audit_sink
    if sink is None or event not in _WATCHED:
        return
    try:
        detail = str(args[0])[:120] if args else ""
    except Exception:
        detail = "?"
    sink.append((event, detail))


@contextlib.contextmanager
def audit_events() -> Iterator[list[tuple[str, str]]]:
    """Record the watched audit events (imports, launches, eval/exec, unpickling) of a block.

    The hook is installed once per process (audit hooks cannot be removed) and costs
    one global read per event outside a block.
    """
    global _audit_sink, _audit_installed
    with _audit_lock:
        if not _audit_installed:
            sys.addaudithook(_audit_hook)
            _audit_installed = True
        events: list[tuple[str, str]] = []
        _audit_sink = events
    try:
        yield events
    finally:
        _audit_sink = None


# --------------------------------------------------------------------------- entries

_F64 = struct.Struct("<d")


def forge_entry(
    value: bytes,
    fingerprint: bytes,
    *,
    magic: bytes | None = None,
    flags: int = 0,
    created: float = 1_000.0,
    expires: float = 0.0,
    length: int | None = None,
    material: bytes = b"",
    checksum: bool = True,
) -> bytes:
    """An entry laid out as ``llm_memo.serialize`` does, every field chosen by hand.

    The layout (how many float64 fields precede the length) is read from the live
    module and checked against ``pack_entry`` (see ``_check_forge``), so a format
    change cannot silently turn these forgeries into "wrong magic" misses. The
    checksum is computed over what is written (``checksum=False`` leaves zeros), so
    a forged value reaches the fingerprint, length, inflation and value checks.
    """
    from llm_memo import serialize

    floats = (serialize._HEADER_SIZE - 4 - 1 - 16 - 8 - 4) // 8  # created, expires, then extras
    body = b"".join(
        (
            _F64.pack(created),
            _F64.pack(expires),
            _F64.pack(0.0) * (floats - 2),
            (len(value) if length is None else length).to_bytes(4, "little"),
            value,
            material,
        )
    )
    crc = zlib.crc32(body).to_bytes(8, "little") if checksum else bytes(8)
    return (serialize._MAGIC if magic is None else magic) + bytes([flags]) + fingerprint + crc + body


def _check_forge() -> None:
    from llm_memo.serialize import pack_entry

    fp = b"\x22" * 16
    assert forge_entry(b'"x"', fp) == pack_entry(b'"x"', fp, 1_000.0, None), (
        "the entry layout changed: update forge_entry"
    )


def current_version() -> int:
    from llm_memo.serialize import ENTRY_FORMAT_VERSION

    return ENTRY_FORMAT_VERSION


def zlib_bomb(inflated: int) -> bytes:
    """A zlib stream of ``inflated`` zero bytes (about 1000:1)."""
    packer = zlib.compressobj(9)
    chunk = bytes(8 * 1024 * 1024)
    parts = []
    left = inflated
    while left > 0:
        part = chunk if left >= len(chunk) else chunk[:left]
        parts.append(packer.compress(part))
        left -= len(part)
    parts.append(packer.flush())
    return b"".join(parts)


# --------------------------------------------------------------------------- SQLite


def integrity_check(path: Path) -> str:
    """``PRAGMA integrity_check`` of a SQLite file (opening it replays a hot WAL)."""
    con = sqlite3.connect(path, timeout=30)
    try:
        return "; ".join(row[0] for row in con.execute("PRAGMA integrity_check"))
    finally:
        con.close()


class LockHolder:
    """Another process holding ``BEGIN EXCLUSIVE`` (or IMMEDIATE) on a SQLite file."""

    def __init__(self, path: Path, mode: str = "EXCLUSIVE") -> None:
        script = textwrap.dedent(
            f"""
            import sqlite3, sys
            con = sqlite3.connect({str(path)!r}, isolation_level=None, timeout=30)
            con.execute("BEGIN {mode}")
            print("locked", flush=True)
            sys.stdin.readline()
            con.execute("ROLLBACK")
            """
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "locked":
            self.close()
            raise RuntimeError(f"the lock holder did not take the lock: {line!r}")

    def release(self) -> None:
        """Let go of the lock (the process ends)."""
        proc = self.proc
        if proc.poll() is None:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write("\n")
                proc.stdin.flush()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def __enter__(self) -> LockHolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.close()


# --------------------------------------------------------------------------- full disk


def _can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None


class FullDisk:
    """A directory on a small filesystem that a test can fill up and free again.

    ``method`` is ``"tmpfs"`` (a real ``mount -t tmpfs -o size=...``: writes fail with
    ``ENOSPC``) or ``"rlimit"`` (no mount possible: the scenario runs in a child
    process whose ``RLIMIT_FSIZE`` is lowered to the current file sizes, so every
    write that would grow a file fails with ``EFBIG`` at the OS boundary).
    """

    def __init__(self, root: Path, size_mib: int = 16) -> None:
        self.root = root
        self.dir = root / "mnt"
        self.dir.mkdir(parents=True)
        self.method = "rlimit"
        self._filler = self.dir / "filler"
        if _can_mount() and os.environ.get("LLM_MEMO_TEST_NO_MOUNT") != "1":
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", str(self.dir)],
                capture_output=True,
                timeout=30,
            )
            if done.returncode == 0:
                self.method = "tmpfs"

    def fill(self) -> None:
        """Take every free byte (tmpfs only)."""
        assert self.method == "tmpfs"
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 1 << 16, 1 << 12, 512, 1):
                block = bytes(size)
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, block)
        finally:
            os.close(fd)
        assert os.statvfs(self.dir).f_bavail == 0

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._filler.unlink()

    def close(self) -> None:
        self.free()
        if self.method == "tmpfs":
            subprocess.run(["umount", "-l", str(self.dir)], capture_output=True, timeout=30)


def run_with_file_size_limit(fn: Callable[[], dict[str, Any]], limit: int) -> dict[str, Any]:
    """Run ``fn`` in a forked child whose writes cannot grow any file beyond ``limit`` bytes."""
    import multiprocessing
    import resource

    ctx = multiprocessing.get_context("fork")
    reader, writer = ctx.Pipe(duplex=False)

    def child() -> None:
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a fatal signal
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            writer.send(("ok", fn()))
        except BaseException:
            writer.send(("error", traceback.format_exc()))

    proc = ctx.Process(target=child)
    proc.start()
    try:
        status, payload = reader.recv()
    finally:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if status != "ok":
        raise AssertionError(f"the file-size-limited child failed:\n{payload}")
    return dict(payload)


# --------------------------------------------------------------------------- secrets


def secret_needles(secret: str, *, user: str | None = None) -> dict[str, bytes]:
    """``secret`` and the encodings it could hide under in stored bytes or text.

    Base64 is searched at all three alignments (a secret inside a longer encoded
    blob starts at any offset mod 3), without the boundary characters that depend
    on neighbouring bytes.
    """
    raw = secret.encode()
    needles: dict[str, bytes] = {
        "raw": raw,
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
        "url-quoted": urllib.parse.quote(secret, safe="").encode(),
        "json": json.dumps(secret).encode()[1:-1],
        "utf-16-le": secret.encode("utf-16-le"),
        "utf-16-be": secret.encode("utf-16-be"),
        "reversed": raw[::-1],
    }
    blobs = {"b64": raw}
    if user is not None:
        blobs["b64-basic-auth"] = f"{user}:{secret}".encode()
    for name, blob in blobs.items():
        for shift in range(3):
            for alphabet, encode in (("std", base64.b64encode), ("urlsafe", base64.urlsafe_b64encode)):
                encoded = encode(b"\x00" * shift + blob)
                # Skip the characters that mix in the padding bytes and the unknown tail.
                start = (shift * 4 + 2) // 3
                core = encoded[start : (len(shift * b"\x00" + blob) // 3) * 4]
                if len(core) >= 16:
                    needles[f"{name}-{alphabet}-{shift}"] = core
    return needles


def find_needles(haystacks: dict[str, bytes], needles: dict[str, bytes]) -> list[str]:
    """``"<where>: <encoding>"`` for every needle found in a haystack."""
    found = []
    for where, data in haystacks.items():
        lowered = data.lower()
        for name, needle in needles.items():
            if needle in data or (name in ("hex", "url-quoted") and needle.lower() in lowered):
                found.append(f"{where}: {name}")
    return found


def inflate_entries(values: Iterable[bytes]) -> bytes:
    """Every entry's value section, decompressed (a compressed value hides its text)."""
    from llm_memo.errors import CorruptEntry
    from llm_memo.serialize import read_entry

    out = []
    for value in values:
        with contextlib.suppress(CorruptEntry):
            entry = read_entry(value)
            out.append(entry.value)
            out.append(entry.material or b"")
    return b"\n".join(out)


# --------------------------------------------------------------------------- child workers


def deterministic_answer(i: int, size: int) -> dict[str, Any]:
    """A value that depends on ``i`` only: a hit can always be checked against it."""
    seed_bytes = hashlib.sha256(f"answer-{i}".encode()).digest()
    text = (seed_bytes.hex() * (size // 64 + 1))[:size]
    return {"i": i, "text": text, "digest": hashlib.sha256(text.encode()).hexdigest()}


def shared_store_worker(spec: str, namespace: str, worker: int, keys: int, threads: int, rounds: int) -> Any:
    """Run ``threads`` threads calling one cached function on ``spec``; report what they saw.

    Used as a ``multiprocessing`` target for fork, spawn and forkserver children:
    in a fork child ``spec`` resolves to the parent's own backend instance.
    """
    import llm_memo

    # The tally is a plain object, not a list: a list the function closes over would be
    # part of its identity, and the parent's own `answer` (version=1, no closure) must
    # share these entries.
    tally = types.SimpleNamespace(computed=[])
    lock = threading.Lock()

    @llm_memo.llm_cached(backend=spec, namespace=namespace, version=1)
    def answer(i: int) -> dict[str, Any]:
        with lock:
            tally.computed.append(i)
        return deterministic_answer(i, 200 + (i * 37) % 3000)

    wrong: list[str] = []
    errors: list[str] = []

    def run(t: int) -> None:
        r = random.Random(worker * 1000 + t)
        for _ in range(rounds):
            i = r.randrange(keys)
            try:
                got = answer(i)
            except Exception:
                errors.append(traceback.format_exc())
                continue
            if got != deterministic_answer(i, 200 + (i * 37) % 3000):
                wrong.append(f"{i}: {str(got)[:80]}")

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    info = answer.cache_info()
    return {
        "worker": worker,
        "pid": os.getpid(),
        "wrong": wrong,
        "errors": errors,
        "info": tuple(info),
        "computed": len(tally.computed),
    }


def queue_worker(queue: Any, *args: Any) -> None:
    """``shared_store_worker`` reporting through a queue (a multiprocessing target)."""
    try:
        queue.put(shared_store_worker(*args))
    except BaseException:
        queue.put({"crash": traceback.format_exc()})


#: The crash-consistency writer: stores, overwrites and deletes entries until killed.
CRASH_WRITER = textwrap.dedent(
    """
    import random, sys
    sys.path.insert(0, sys.argv[4])
    import llm_memo
    from _fault_helpers import deterministic_answer, crash_value_size

    spec, keys, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    @llm_memo.llm_cached(backend=spec, namespace="crash", mode="refresh", version=1)
    def answer(i: int) -> dict:
        return deterministic_answer(i, crash_value_size(i))

    rng = random.Random(seed)
    print("ready", flush=True)
    n = 0
    while True:
        i = rng.randrange(keys)
        if rng.random() < 0.1:
            answer.cache_invalidate(i)
        else:
            answer(i)
        n += 1
        if n == 1:
            print("wrote", flush=True)
    """
)


def crash_value_size(i: int) -> int:
    """Entry sizes for the crash writer: small, page-spanning, and compressed (> 32 KiB)."""
    return (40, 3_000, 9_000, 70_000)[i % 4] + i


# --------------------------------------------------------------------------- backends

#: The stores every guarantee is checked on ("tiered" is memory in front of SQLite).
BACKEND_KINDS = ("memory", "disk", "sqlite", "redis", "tiered")


@contextlib.contextmanager
def open_backend(
    kind: str, root: Path, request: pytest.FixtureRequest, *, prefix: str = "g"
) -> Iterator[Any]:
    """A fresh backend of ``kind`` under ``root`` (Redis: the session server, emptied)."""
    from llm_memo.backends.disk import DiskBackend
    from llm_memo.backends.memory import MemoryBackend
    from llm_memo.backends.sqlite import SQLiteBackend
    from llm_memo.backends.tiered import TieredBackend

    backend: Any
    if kind == "memory":
        backend = MemoryBackend()
    elif kind == "disk":
        backend = DiskBackend(root / "disk")
    elif kind == "sqlite":
        backend = SQLiteBackend(root / "cache.sqlite3")
    elif kind == "tiered":
        backend = TieredBackend([MemoryBackend(), SQLiteBackend(root / "tiered.sqlite3")])
    elif kind == "redis":
        from llm_memo.backends.redis import RedisBackend

        backend = RedisBackend(request.getfixturevalue("redis_url"), prefix=prefix)
    elif kind == "redis-cluster":
        from llm_memo.backends.redis import RedisBackend

        backend = RedisBackend(request.getfixturevalue("redis_cluster_url"), prefix=prefix)
    else:  # pragma: no cover - a typo in a parametrization
        raise ValueError(kind)
    try:
        yield backend
    finally:
        backend.close()
