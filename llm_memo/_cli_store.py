"""The store subcommands of ``llm-memo``, and ``demo``.

::

    llm-memo demo [--latency 1.0] [--dir DIR] [--live]
    llm-memo stats                       entries, bytes, functions, oldest/newest, expired
    llm-memo ls [--function F] [--older-than 7d] [--newer-than 1h] [--expired]
    llm-memo show KEY                    the stored call (its key material) and result
    llm-memo rm KEY [KEY...]
    llm-memo clear [--function F] [--yes]
    llm-memo prune [--older-than 30d] [--dry-run]
    llm-memo export FILE [--function F]  JSON Lines ("-" for stdout)
    llm-memo import FILE                 ("-" for stdin)
    llm-memo explain KEY [--material FILE]
    llm-memo explain --function NS --call '{"prompt": "hi", "temperature": 0.7}' [--version V]

Every store command takes ``--backend URL`` (default ``$LLM_MEMO_BACKEND``, else
the default disk store) and ``--json`` (one JSON document on stdout, for
scripts). ``KEY`` is a key or a unique prefix of one (6 hex digits or more).
Errors are one line on stderr and a non-zero exit status: 1 for a failure
(unreachable store, missing file, unknown key), 2 for a usage error. Colour only
on a terminal (and never with ``NO_COLOR``); progress only when stderr is one.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import difflib
import fnmatch
import functools
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from ._demo import seconds
from .backends import Backend, StoredEntry, check_url, default_directory, from_url
from .cli import Command
from .errors import CorruptEntry
from .serialize import EntryHeader, read_entry

if TYPE_CHECKING:
    from .explain import BoundCall

__all__ = ["STORE_COMMANDS", "CLIError", "redact"]

#: Shortest key prefix accepted for KEY arguments.
MIN_PREFIX = 6
_HEX = re.compile(r"[0-9a-f]+\Z")
_GLOB = re.compile(r"[*?\[]")
_NOT_POSITIVE = re.compile(r"\s*(-.*|[0.]+\s*(ms|s|m|h|d|w)?\s*)\Z", re.IGNORECASE)


class CLIError(Exception):
    """A failure to report in one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ======================================================================= output


class Style:
    """ANSI colour only when the stream is a terminal and ``NO_COLOR`` is unset."""

    def __init__(self, stream: IO[str]) -> None:
        isatty = getattr(stream, "isatty", None)
        self.on = bool(isatty and isatty()) and not os.environ.get("NO_COLOR")

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.on and text else text

    def bold(self, text: str) -> str:
        return self.paint(text, "1")

    def dim(self, text: str) -> str:
        return self.paint(text, "2")

    def red(self, text: str) -> str:
        return self.paint(text, "31")

    def green(self, text: str) -> str:
        return self.paint(text, "32")

    def yellow(self, text: str) -> str:
        return self.paint(text, "33")

    def cyan(self, text: str) -> str:
        return self.paint(text, "36")


def _out() -> IO[str]:
    return sys.stdout


def _say(text: str = "") -> None:
    print(text, file=_out())


def _emit_json(document: Any) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False, default=str), file=_out())


def table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> list[str]:
    """Aligned columns (numbers right-aligned by index in ``right``), header in bold."""
    right = right or set()
    style = Style(_out())
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return [style.bold(line(headers)), *(line(r) for r in rows)]


class Progress:
    """A one-line progress indicator on stderr, shown only when stderr is a terminal."""

    def __init__(self, label: str, total: int | None = None, unit: str = "") -> None:
        self.label, self.total, self.unit = label, total, unit
        self.on = sys.stderr.isatty()
        self.shown = False
        self._next = 0.0

    def update(self, done: int, *, force: bool = False) -> None:
        if not self.on:
            return
        now = time.monotonic()
        if now < self._next and not force:
            return
        self._next = now + 0.1
        if self.total:
            filled = min(20, 20 * done // self.total)
            bar = "#" * filled + "." * (20 - filled)
            text = f"{self.label} [{bar}] {done * 100 // self.total:3d}%"
        else:
            text = f"{self.label} {done:,}{self.unit}"
        sys.stderr.write(f"\r\x1b[K{text}")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def size(n: float) -> str:
    """``812 B``, ``1.2 KiB``, ``3.4 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def span(seconds: float) -> str:
    """A compact duration: ``45s``, ``12m``, ``3h``, ``2d``."""
    seconds = max(seconds, 0.0)
    for limit, unit, div in ((120, "s", 1), (7200, "m", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds / div:.0f}{unit}"
    return f"{seconds / 86400:.0f}d"


def when(timestamp: float) -> str:
    return _dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return _dt.datetime.fromtimestamp(timestamp, _dt.UTC).isoformat(timespec="seconds")


def expiry(expires: float | None, now: float) -> str:
    if expires is None:
        return "never"
    if expires <= now:
        return f"expired {span(now - expires)} ago"
    return f"in {span(expires - now)}"


# ======================================================================= redaction

_SECRET_PATTERNS = (
    # OpenAI (sk-..., sk-proj-...), Anthropic (sk-ant-...) and look-alike API keys.
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=\-]{6,}", re.IGNORECASE),
)
_SECRET_FIELDS = frozenset(
    {"api_key", "apikey", "api-key", "x-api-key", "authorization", "password", "secret", "access_token"}
)
REDACTED = "[redacted]"


def redact(value: Any) -> Any:
    """A copy of ``value`` where anything that looks like a credential is replaced.

    Key material never holds credentials by construction; this is defence in
    depth for what ``show`` and ``explain`` print.
    """
    if isinstance(value, str):
        for pattern in _SECRET_PATTERNS:
            value = pattern.sub(REDACTED, value)
        return value
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and k.lower() in _SECRET_FIELDS and v else redact(v)
            for k, v in value.items()
        }
    return value


# ======================================================================= stores


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
        default = default_directory() / ("disk" if scheme == "disk" else "cache.sqlite3")
        path = Path(rest).expanduser() if rest else default
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
        shown = ", ".join(f"{r.key[:16]} ({printable(r.namespace)})" for r in found[:8])
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
    from .backends.disk import DiskBackend

    if stuck and isinstance(backend, DiskBackend):
        # diskcache's delete() skips a row past its expiry time; expire() removes those.
        backend.cache.expire(retry=False)
        remaining = {r.key for r in scan(backend)}
        removed.update(r.key for r in stuck if r.key not in remaining)
    return removed


def probe(backend: Backend) -> None:
    """One cheap read, so an unreachable store fails before any file is touched."""
    backend.get("llm-memo-cli", "0" * 64)


def count_arg(text: str) -> int:
    """argparse type: a whole number, zero or more (``--limit``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be zero or more")
    return value


def printable(text: str) -> str:
    """``text`` with control and other unprintable characters escaped (``\\x1b``, ``\\n``):
    a namespace comes from the store, and must not move the cursor or fake a line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def duration(text: str) -> float:
    """argparse type: ``90s``, ``30m``, ``12h``, ``7d``, ``1h30m`` or seconds."""
    from ._config import parse_ttl

    if _NOT_POSITIVE.match(text):
        # `prune --older-than 0` would remove every entry: that is `clear`, asked for plainly.
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than zero (to remove everything: clear)")
    try:
        seconds = parse_ttl(text, name="duration")
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r}: use a duration like 90s, 30m, 12h, 7d") from None
    if seconds is None:
        raise argparse.ArgumentTypeError(f"{text!r}: use a duration like 90s, 30m, 12h, 7d")
    return seconds


# ======================================================================= plumbing


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe_error(exc: BaseException, args: argparse.Namespace) -> str:
    """One line for an exception from a store, a file or the SDK."""
    where = getattr(args, "store", None) or getattr(args, "backend", None) or store_url(args)
    module = type(exc).__module__
    name = type(exc).__name__
    if module.startswith("redis") or (isinstance(exc, ConnectionError) and module.startswith("llm_memo")):
        if "connect" in str(exc).lower() or "unavailable" in str(exc).lower() or "Timeout" in name:
            return f"cannot reach {where}: {exc}"
        return f"Redis error at {where}: {name}: {exc}"
    if module.startswith("sqlite3"):
        return f"{where}: SQLite error: {exc}"
    if module.startswith("openai"):
        return f"the OpenAI API call failed: {name}: {exc}"
    if isinstance(exc, FileNotFoundError):
        return f"no such file or directory: {exc.filename}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
    return f"{name}: {exc}"


def guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn every failure into one line on stderr and an exit status, never a traceback."""

    @functools.wraps(run)
    def wrapper(args: argparse.Namespace) -> int:
        command = getattr(args, "subcommand", None) or run.__name__.strip("_")
        # The commands report store failures themselves, in one line: the library's
        # fail-open warnings (meant for applications) would only repeat them.
        logging.getLogger("llm_memo").setLevel(logging.ERROR)
        try:
            return run(args)
        except CLIError as exc:
            print(f"llm-memo {command}: {_one_line(str(exc))}", file=sys.stderr)
            return exc.code
        except KeyboardInterrupt:
            print(f"llm-memo {command}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # `llm-memo ls | head`: the reader left; say nothing more.
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            return 0
        except Exception as exc:
            if os.environ.get("LLM_MEMO_DEBUG"):
                raise
            print(f"llm-memo {command}: {_one_line(describe_error(exc, args))}", file=sys.stderr)
            return 1

    return wrapper


def common(parser: argparse.ArgumentParser, *, backend: bool = True) -> None:
    if backend:
        parser.add_argument(
            "--backend",
            metavar="URL",
            help="the store: disk, disk:<dir>, sqlite, sqlite:<file>, redis://host:port/db... "
            "(default: $LLM_MEMO_BACKEND, else disk)",
        )
    parser.add_argument("--json", action="store_true", help="print one JSON document, for scripts")


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


# ======================================================================= stats


def _configure_stats(parser: argparse.ArgumentParser) -> None:
    common(parser)
    parser.add_argument("--function", metavar="F", help="only this function (a glob like 'app.*' works)")


def _stats(args: argparse.Namespace) -> int:
    backend = open_store(args)
    now = time.time()
    per: dict[str, dict[str, Any]] = {}
    total = {"entries": 0, "bytes": 0, "expired": 0, "invalid": 0, "cost": 0.0}
    oldest: float | None = None
    newest: float | None = None
    progress = Progress("reading entries", unit=" entries")
    for row in scan(backend, args.function):
        progress.update(int(total["entries"]))
        f = per.setdefault(
            row.namespace, {"entries": 0, "bytes": 0, "expired": 0, "invalid": 0, "newest": None}
        )
        for bucket in (f, total):
            bucket["entries"] += 1
            bucket["bytes"] += row.size
            bucket["expired"] += row.expired(now)
            bucket["invalid"] += row.header is None
        if row.header is not None:
            total["cost"] += row.header.cost
        created = row.created
        if created is not None:
            oldest = created if oldest is None else min(oldest, created)
            newest = created if newest is None else max(newest, created)
            f["newest"] = created if f["newest"] is None else max(f["newest"], created)
    progress.close()
    functions = dict(sorted(per.items(), key=lambda kv: (-kv[1]["entries"], kv[0])))
    if args.json:
        _emit_json(
            {
                "backend": backend.url,
                "entries": total["entries"],
                "bytes": total["bytes"],
                "expired": total["expired"],
                "invalid": total["invalid"],
                "cost_seconds": total["cost"],
                "oldest": iso(oldest),
                "newest": iso(newest),
                "functions": {
                    ns: {**{k: v for k, v in f.items() if k != "newest"}, "newest": iso(f["newest"])}
                    for ns, f in functions.items()
                },
            }
        )
        return 0
    style = Style(_out())
    live = total["entries"] - total["expired"] - total["invalid"]
    _say(f"{style.bold('store')}      {backend.url}")
    extra = [f"{total['expired']} expired"] if total["expired"] else []
    extra += [f"{total['invalid']} unreadable"] if total["invalid"] else []
    _say(
        f"{style.bold('entries')}    {total['entries']:,}"
        + (f" ({live:,} live, {', '.join(extra)})" if extra else "")
    )
    _say(f"{style.bold('size')}       {size(total['bytes'])}")
    if oldest is not None and newest is not None:
        _say(f"{style.bold('oldest')}     {when(oldest)} ({span(now - oldest)} ago)")
        _say(f"{style.bold('newest')}     {when(newest)} ({span(now - newest)} ago)")
        took = f"{seconds(total['cost'])} (what the stored calls took: hits on them save it again)"
        _say(f"{style.bold('call time')}  {took}")
    if functions:
        _say()
        rows = [
            [
                printable(ns),
                f"{f['entries']:,}",
                size(f["bytes"]),
                f"{f['expired']:,}",
                "-" if f["newest"] is None else f"{span(now - f['newest'])} ago",
            ]
            for ns, f in functions.items()
        ]
        for line in table(["FUNCTION", "ENTRIES", "SIZE", "EXPIRED", "NEWEST"], rows, right={1, 2, 3, 4}):
            _say(line)
    return 0


# ======================================================================= ls


def _configure_ls(parser: argparse.ArgumentParser) -> None:
    common(parser)
    parser.add_argument(
        "--function", "-f", metavar="F", help="only this function (a glob like 'app.*' works)"
    )
    parser.add_argument(
        "--older-than", type=duration, metavar="AGE", help="only entries older than this (7d)"
    )
    parser.add_argument(
        "--newer-than", type=duration, metavar="AGE", help="only entries newer than this (1h)"
    )
    parser.add_argument("--expired", action="store_true", help="only expired entries")
    parser.add_argument(
        "--limit", "-n", type=count_arg, metavar="N", help="show at most N entries (newest first)"
    )


def _ls(args: argparse.Namespace) -> int:
    backend = open_store(args)
    now = time.time()
    rows: list[Row] = []
    for row in scan(backend, args.function):
        age = None if row.created is None else now - row.created
        if args.older_than is not None and (age is None or age < args.older_than):
            continue
        if args.newer_than is not None and (age is None or age > args.newer_than):
            continue
        if args.expired and not row.expired(now):
            continue
        rows.append(row)
    rows.sort(key=lambda r: (-(r.created or 0.0), r.key))
    total = len(rows)
    if args.limit is not None:
        rows = rows[: max(args.limit, 0)]
    if args.json:
        _emit_json([entry_json(r, now) for r in rows])
        return 0
    if not rows:
        _say("no entries" if total == 0 else f"{plural(total, 'entry', 'entries')} (none shown: --limit 0)")
        return 0
    style = Style(_out())
    cells = [
        [
            r.key[:12],
            printable(r.namespace),
            "?" if r.created is None else span(now - r.created),
            expiry(r.expires, now),
            size(r.size),
        ]
        for r in rows
    ]
    lines = table(["KEY", "FUNCTION", "AGE", "EXPIRES", "SIZE"], cells, right={2, 4})
    _say(lines[0])
    for line, cell, r in zip(lines[1:], cells, rows, strict=True):
        if r.expired(now):  # painted after padding: colour codes would break the alignment
            line = line.replace(cell[3], style.red(cell[3]), 1)
        if r.header is None:
            line += " " + style.yellow("(unreadable)")
        _say(line)
    shown = f"{len(rows)} of {total:,} entries" if total > len(rows) else plural(total, "entry", "entries")
    _say(style.dim(shown))
    return 0


# ======================================================================= show


def _configure_show(parser: argparse.ArgumentParser) -> None:
    common(parser)
    parser.add_argument("key", metavar="KEY", help="a key, or a unique prefix of one (6+ hex digits)")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def _show(args: argparse.Namespace) -> int:
    backend = open_store(args)
    row = resolve(backend, args.key)
    now = time.time()
    if row.header is None:
        raise CLIError(f"entry {row.key[:16]} of {printable(row.namespace)} is not a readable llm_memo entry")
    material = redact(row.material())
    try:
        value = redact(orjson.loads(row.header.value))
    except orjson.JSONDecodeError:
        value = None
    if args.json:
        _emit_json({**entry_json(row, now), "material": material, "value": value})
        return 0
    style = Style(_out())
    created = row.header.created
    _say(f"{style.bold('key')}       {row.key}")
    _say(f"{style.bold('function')}  {printable(row.namespace)}")
    _say(f"{style.bold('created')}   {when(created)} ({span(now - created)} ago)")
    _say(f"{style.bold('expires')}   {expiry(row.expires, now)}")
    _say(f"{style.bold('size')}      {size(row.size)}")
    if row.header.cost:
        _say(f"{style.bold('cost')}      {seconds(row.header.cost)} (the original call: each hit saves it)")
    _say()
    _say(style.bold("call (key material)"))
    if material is None:
        _say(style.dim("(not stored: the entry was written with configure(store_material=False))"))
    else:
        _say(_pretty(material))
    _say()
    _say(style.bold("result"))
    _say(_pretty(value))
    return 0


# ======================================================================= rm / clear


def _configure_rm(parser: argparse.ArgumentParser) -> None:
    common(parser)
    parser.add_argument("keys", metavar="KEY", nargs="+", help="keys, or unique prefixes (6+ hex digits)")


def _rm(args: argparse.Namespace) -> int:
    backend = open_store(args)
    rows = [resolve(backend, key) for key in args.keys]  # all resolved before anything goes
    unique = list({r.key: r for r in rows}.values())
    gone = delete(backend, unique, time.time())
    removed = [r for r in unique if r.key in gone]
    if args.json:
        _emit_json({"removed": [{"key": r.key, "function": r.namespace} for r in removed]})
        return 0
    for r in removed:
        _say(f"removed {r.key[:12]}  {printable(r.namespace)}")
    return 0


def _configure_clear(parser: argparse.ArgumentParser) -> None:
    common(parser)
    parser.add_argument("--function", "-f", metavar="F", help="only this function's entries")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before clearing a whole store")


def _clear(args: argparse.Namespace) -> int:
    backend = open_store(args)
    if args.function is None and not args.yes:
        if args.json or not sys.stdin.isatty():
            # In a script, a pipe or CI nobody can answer: a shared store must not go by default.
            why = "--json" if args.json else "stdin is not a terminal"
            raise CLIError(
                f"refusing to remove every entry in {backend.url} without --yes ({why}); nothing removed",
                code=2,
            )
        answer = input(f"Remove every entry in {backend.url}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise CLIError("nothing removed")
    removed = backend.clear(args.function)
    if args.json:
        _emit_json({"removed": removed, "function": args.function})
        return 0
    of = f" of {args.function}" if args.function else ""
    _say(f"removed {plural(removed, 'entry', 'entries')}{of} from {backend.url}")
    return 0


# ======================================================================= prune


def _configure_prune(parser: argparse.ArgumentParser) -> None:
    common(parser)
    parser.add_argument(
        "--older-than",
        type=duration,
        metavar="AGE",
        help="also remove entries stored longer ago than this (30d)",
    )
    parser.add_argument("--function", "-f", metavar="F", help="only this function's entries")
    parser.add_argument(
        "--unreadable", action="store_true", help="also remove values that are not readable llm_memo entries"
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")


def _prune(args: argparse.Namespace) -> int:
    backend = open_store(args)
    now = time.time()
    doomed: list[tuple[Row, str]] = []
    reading = Progress("reading entries", unit=" entries")
    for n, row in enumerate(scan(backend, args.function)):
        reading.update(n)
        if row.expired(now):
            doomed.append((row, "expired"))
        elif row.header is None and args.unreadable:
            doomed.append((row, "unreadable"))
        elif args.older_than is not None and row.created is not None and now - row.created > args.older_than:
            doomed.append((row, "older"))
    reading.close()
    removed = doomed
    if not args.dry_run:
        progress = Progress("pruning", total=len(doomed))
        try:
            gone = delete(backend, [row for row, _ in doomed], now, progress)
        finally:
            progress.close()
        removed = [(row, why) for row, why in doomed if row.key in gone]
    expired = sum(why == "expired" for _, why in removed)
    unreadable = sum(why == "unreadable" for _, why in removed)
    older_count = len(removed) - expired - unreadable
    if args.json:
        _emit_json(
            {
                "removed": len(removed),
                "expired": expired,
                "older": older_count,
                "unreadable": unreadable,
                "dry_run": args.dry_run,
                "keys": [r.key for r, _ in removed],
            }
        )
        return 0
    verb = "would remove" if args.dry_run else "removed"
    older = f", {older_count} older than {span(args.older_than)}" if args.older_than else ""
    older += f", {unreadable} unreadable" if args.unreadable else ""
    _say(f"{verb} {plural(len(removed), 'entry', 'entries')} ({expired} expired{older}) from {backend.url}")
    return 0


# ======================================================================= export / import


class _CountingWriter:
    """A text stream that counts the lines written through it (for progress)."""

    def __init__(self, target: IO[str], progress: Progress) -> None:
        self.target, self.progress, self.lines = target, progress, 0

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        self.progress.update(self.lines)
        return self.target.write(text)


class _CountingReader:
    """Iterates the lines of a text stream, reporting the bytes read (for progress)."""

    def __init__(self, source: IO[str], progress: Progress) -> None:
        self.source, self.progress, self.read = source, progress, 0

    def __iter__(self) -> Iterator[str]:
        for line in self.source:
            self.read += len(line.encode("utf-8"))
            self.progress.update(self.read)
            yield line


def _configure_export(parser: argparse.ArgumentParser) -> None:
    common(parser)
    parser.add_argument("file", metavar="FILE", help="the JSON Lines file to write ('-' for stdout)")
    parser.add_argument("--function", "-f", metavar="F", help="only this function's entries")


def _export(args: argparse.Namespace) -> int:
    from .transfer import export_entries

    backend = open_store(args)
    probe(backend)
    progress = Progress("exporting", unit=" entries")
    to_stdout = args.file == "-"
    try:
        if to_stdout:
            writer = _CountingWriter(sys.stdout, progress)
            written = export_entries(backend, writer, namespace=args.function)  # type: ignore[arg-type]
        else:
            path = Path(args.file).expanduser()
            if path.is_dir():
                raise CLIError(f"{args.file} is a directory: give the name of the file to write", code=2)
            partial = path.with_name(path.name + ".part")
            # Cached answers may be private: the file is as private as the store (0600).
            try:
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            except OSError as exc:  # named after the file asked for, not our temporary one
                raise CLIError(f"cannot write {args.file}: {exc.strerror or exc}") from None
            try:
                with open(fd, "w", encoding="utf-8", newline="\n") as fh:
                    writer = _CountingWriter(fh, progress)
                    written = export_entries(backend, writer, namespace=args.function)  # type: ignore[arg-type]
                os.replace(partial, path)  # a failed export never leaves a truncated file behind
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
    finally:
        progress.close()
    report = {"exported": written, "file": args.file, "backend": backend.url}
    if args.json:
        print(json.dumps(report), file=sys.stderr if to_stdout else sys.stdout)
    elif to_stdout:
        print(f"exported {plural(written, 'entry', 'entries')} from {backend.url}", file=sys.stderr)
    else:
        _say(f"exported {plural(written, 'entry', 'entries')} from {backend.url} to {args.file}")
    return 0


def _configure_import(parser: argparse.ArgumentParser) -> None:
    common(parser)
    parser.add_argument("file", metavar="FILE", help="a file written by 'llm-memo export' ('-' for stdin)")


def _import(args: argparse.Namespace) -> int:
    from .transfer import import_entries

    path = None if args.file == "-" else Path(args.file).expanduser()
    if path is not None and not path.is_file():
        raise CLIError(f"no such file: {args.file}" if not path.exists() else f"not a file: {args.file}")
    backend = open_store(args, create=True)
    probe(backend)
    total = (path.stat().st_size or None) if path is not None else None
    progress = Progress("importing", total=total, unit=" bytes")
    try:
        with contextlib.ExitStack() as stack:
            source = sys.stdin if path is None else stack.enter_context(open(path, encoding="utf-8"))
            reader = _CountingReader(source, progress)
            imported = import_entries(reader, backend)  # type: ignore[arg-type]
    except UnicodeDecodeError:
        raise CLIError(f"{args.file}: not a text file written by 'llm-memo export'") from None
    except ValueError as exc:
        raise CLIError(f"{args.file}: {exc} (the lines before it were imported)") from None
    finally:
        progress.close()
    if args.json:
        _emit_json({"imported": imported, "file": args.file, "backend": backend.url})
        return 0
    _say(f"imported {plural(imported, 'entry', 'entries')} into {backend.url}")
    return 0


# ======================================================================= explain


def _configure_explain(parser: argparse.ArgumentParser) -> None:
    common(parser)
    parser.add_argument(
        "key",
        metavar="KEY",
        nargs="?",
        help="the key (or a unique prefix) of the call to explain: a stored entry is compared "
        "with its siblings; an unstored key needs --material",
    )
    parser.add_argument("--material", metavar="FILE", help="the call's key material, as JSON ('-' for stdin)")
    parser.add_argument("--function", "-f", metavar="NS", help="the cached function's namespace")
    parser.add_argument(
        "--call",
        metavar="JSON",
        help='the call\'s arguments as a JSON object, e.g. \'{"prompt": "hi", "temperature": 0.7}\''
        " (@FILE reads it from a file)",
    )
    parser.add_argument(
        "--version", dest="fn_version", metavar="V", help="the function's version= (JSON, else a string)"
    )
    parser.add_argument(
        "--limit", "-n", type=count_arg, default=3, metavar="N", help="closest entries to show (3)"
    )


def _read_json(text: str, what: str) -> Any:
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise CLIError(f"cannot read {what} from {text[1:]}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CLIError(f"{what} is not valid JSON: {exc}", code=2) from None


def _explain_target(
    args: argparse.Namespace, backend: Backend
) -> tuple[dict[str, Any], set[str], Row | None]:
    """(key material of the call, keys to leave out, the stored entry explained if any)."""
    from .explain import call_material

    if args.call is not None or args.function is not None:
        if args.key is not None or args.material is not None:
            raise CLIError("give either KEY / --material, or --function with --call", code=2)
        if args.call is None or args.function is None:
            raise CLIError("--function and --call go together", code=2)
        arguments = _read_json(args.call, "--call")
        if not isinstance(arguments, dict):
            raise CLIError("--call must be a JSON object of the call's arguments", code=2)
        version: Any = None
        if args.fn_version is not None:
            try:
                version = json.loads(args.fn_version)
            except json.JSONDecodeError:
                version = args.fn_version
        from .explain import bind_call

        # As `python -m` would: the function's module is usually in the project being worked on.
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())
        bound = bind_call(args.function, arguments)
        args.defaults = bound
        return call_material(args.function, bound.arguments, version), set(), None
    if args.material is not None:
        if args.material.startswith("@"):
            args.material = args.material[1:]
        material = _read_json(args.material if args.material == "-" else "@" + args.material, "--material")
        if not isinstance(material, dict) or not isinstance(material.get("ns"), str) or "a" not in material:
            raise CLIError('--material must be key material: {"a": ..., "f": 2, "ns": ..., "v": ...}', code=2)
        if args.key is not None:
            from .keys import digest, material_bytes

            key = digest(material_bytes(material))
            if not key.startswith(args.key.strip().lower()):
                raise CLIError(f"the material in {args.material} has key {key[:16]}, not {args.key}")
        return material, set(), None
    if args.key is None:
        raise CLIError("give a KEY, --material FILE, or --function NS --call JSON", code=2)
    try:
        row = resolve(backend, args.key)
    except CLIError as exc:
        if str(exc).startswith("no entry"):
            raise CLIError(
                f"{exc}; to explain a key that is not stored, pass the call's key material with "
                "--material FILE, or the call with --function NS --call JSON"
            ) from None
        raise
    if row.header is None:
        raise CLIError(f"entry {row.key[:16]} of {printable(row.namespace)} is not a readable llm_memo entry")
    material = row.material()
    if not isinstance(material, dict):
        raise CLIError(
            f"entry {row.key[:16]} was stored without its key material (configure(store_material=False)), "
            "so there is nothing to compare"
        )
    return material, {row.key}, row


def _explain(args: argparse.Namespace) -> int:
    from .explain import compare
    from .keys import digest, material_bytes

    backend = open_store(args)
    material, exclude, row = _explain_target(args, backend)
    bound: BoundCall | None = getattr(args, "defaults", None)
    now = time.time()
    result = compare(material, backend, limit=max(args.limit, 0) + 1, exclude=exclude)
    key = digest(material_bytes(material))
    # Without the function's identity, a stored call with the same arguments is the match.
    exact = next((e for e in result.closest if e.key == key or (result.identity_unknown and e.exact)), None)
    closest = [e for e in result.closest if e is not exact and e.key != key][: max(args.limit, 0)]
    namespace = printable(result.namespace)
    others: list[str] = []
    if result.compared == 0 and result.without_material == 0:
        functions = {r.namespace for r in scan(backend)}
        others = difflib.get_close_matches(result.namespace, sorted(functions), n=3, cutoff=0.4)
    if args.json:
        _emit_json(
            {
                "function": result.namespace,
                "key": key,
                "stored": exact is not None or row is not None,
                "expired": exact.expired if exact else (row.expired(now) if row else None),
                "compared": result.compared,
                "without_material": result.without_material,
                "closest": [
                    {
                        "key": e.key,
                        "distance": e.distance,
                        "created": iso(e.created),
                        "expires": iso(e.expires),
                        "expired": e.expired,
                        "differences": [redact(d.to_json()) for d in e.differences],
                    }
                    for e in closest
                ],
                "similar_functions": others,
                **({"defaults": {"applied": bound.bound, "note": bound.note}} if bound else {}),
            }
        )
        return 0
    style = Style(_out())
    _say(f"{style.bold('call')}      {namespace}  key {key[:16]}")
    if bound is not None:
        _say(f"{style.bold('defaults')}  {bound.note if bound.bound else style.yellow(bound.note)}")
    if row is not None:
        stored = f"{span(now - (row.created or now))} ago; compared with the other entries of {namespace}"
    elif exact is not None and exact.expired:
        ago = span(now - (exact.expires or now))
        stored = f"{style.yellow('yes, but expired')} {ago} ago: a miss until it is stored again"
    elif exact is not None:
        stored = f"{style.green('yes')} ({span(now - exact.created)} ago): this call is a hit"
    else:
        stored = f"{style.yellow('no')}: this call misses"
    _say(f"{style.bold('stored')}    {stored}")
    if result.identity_unknown:
        _say(style.dim("          compared by arguments: explain a KEY to compare the function's code too"))
    if result.without_material:
        n = result.without_material
        _say(style.dim(f"          {n} entries of {namespace} have no stored key material: not compared"))
    if not closest:
        if result.compared == 0 and result.without_material == 0:
            hint = f" (did you mean {', '.join(map(printable, others))}?)" if others else ""
            _say(f"no other stored entries of {namespace} to compare with{hint}")
        elif exact is None or row is not None:
            _say(f"no other stored entries of {namespace} to compare with")
        return 0
    _say()
    compared = result.compared - (exact is not None)
    noun = "entry" if len(closest) == 1 else "entries"
    _say(f"closest {'other ' if exact or row else ''}stored {noun} of {compared:,} compared:")
    for n, e in enumerate(closest, start=1):
        ago = f"stored {span(now - e.created)} ago" + (", expired" if e.expired else "")
        count = plural(len(e.differences), "difference", "differences")
        if e.distance != len(e.differences):
            count += f" ({e.distance} values)"
        _say(f"  {n}. {style.cyan(e.key[:12])}  {style.dim(ago)}  {count}")
        for d in e.differences:
            _say(f"       {d.describe(_render)}")
    return 0


def _render(value: Any) -> str:
    text = orjson.dumps(redact(value), option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= 100 else text[:99] + "…"


# ======================================================================= demo


def _configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--latency", type=float, default=1.0, metavar="SECONDS", help="the embedded model's latency (1.0)"
    )
    parser.add_argument(
        "--dir", metavar="DIR", help="keep the cache in DIR (default: a fresh temporary directory)"
    )
    parser.add_argument("--live", action="store_true", help="call the real OpenAI API (needs OPENAI_API_KEY)")
    common(parser, backend=False)


def _demo(args: argparse.Namespace) -> int:
    from ._demo import DemoError, run_demo

    try:
        return run_demo(latency=args.latency, directory=args.dir, live=args.live, as_json=args.json)
    except DemoError as exc:
        raise CLIError(str(exc), exc.code) from None


# ======================================================================= registry

STORE_COMMANDS: dict[str, Command] = {
    "demo": Command(
        "see caching work end to end: real openai SDK calls, offline", _configure_demo, guarded(_demo)
    ),
    "stats": Command("summarise a store: entries, size, functions, age", _configure_stats, guarded(_stats)),
    "ls": Command("list stored entries", _configure_ls, guarded(_ls)),
    "show": Command("show one stored call and its result", _configure_show, guarded(_show)),
    "rm": Command("remove entries by key", _configure_rm, guarded(_rm)),
    "clear": Command("remove every entry, or one function's", _configure_clear, guarded(_clear)),
    "prune": Command("remove expired (and old) entries", _configure_prune, guarded(_prune)),
    "export": Command("write entries to a JSON Lines file", _configure_export, guarded(_export)),
    "import": Command("store the entries of an exported file", _configure_import, guarded(_import)),
    "explain": Command(
        "say why a call missed: its closest stored entries, diffed", _configure_explain, guarded(_explain)
    ),
}
