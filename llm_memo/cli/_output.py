"""What every command prints with: colour, tables, progress, sizes, durations, escaping.

Nothing here knows about stores or commands. Colour only on a terminal (and never
with ``NO_COLOR``); progress only when stderr is a terminal.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
from typing import IO, Any

import orjson

from .._secrets import is_secret_name, redact_text

__all__ = [
    "REDACTED",
    "CLIError",
    "Progress",
    "Style",
    "emit_json",
    "expiry",
    "iso",
    "one_line",
    "out",
    "plural",
    "printable",
    "redact",
    "render",
    "say",
    "seconds",
    "short",
    "size",
    "span",
    "table",
    "when",
]


class CLIError(Exception):
    """A failure to report in one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


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


def out() -> IO[str]:
    # Looked up at each call, not bound at import: tests and `contextlib.redirect_stdout` swap it.
    return sys.stdout


def say(text: str = "") -> None:
    print(text, file=out())


def emit_json(document: Any) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False, default=str), file=out())


def table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> list[str]:
    """Aligned columns (numbers right-aligned by index in ``right``), header in bold."""
    right = right or set()
    style = Style(out())
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


# ----------------------------------------------------------------------- numbers and times


def size(n: float) -> str:
    """``812 B``, ``1.2 KiB``, ``3.4 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def span(seconds: float) -> str:
    """A compact age: ``45s``, ``12m``, ``3h``, ``2d``."""
    seconds = max(seconds, 0.0)
    for limit, unit, div in ((120, "s", 1), (7200, "m", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds / div:.0f}{unit}"
    return f"{seconds / 86400:.0f}d"


def seconds(value: float) -> str:
    """A measured duration: ``1.02 s``, ``12.3 ms``, ``212 µs``."""
    if value >= 1.0:
        return f"{value:.2f} s"
    if value >= 0.001:
        return f"{value * 1000:.1f} ms"
    return f"{value * 1e6:.0f} µs"


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


def plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


# ----------------------------------------------------------------------- text from elsewhere


def printable(text: str) -> str:
    """``text`` with control and other unprintable characters escaped (``\\x1b``, ``\\n``):
    a namespace comes from the store, and must not move the cursor or fake a line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def short(text: str, width: int = 72) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    text = one_line(text)
    return text if len(text) <= width else text[: width - 1] + "…"


REDACTED = "[redacted]"


def redact(value: Any) -> Any:
    """A copy of ``value`` where anything that looks like a credential is replaced.

    Key material never holds credentials by construction; this is defence in
    depth for what ``show`` and ``explain`` print.
    """
    if isinstance(value, str):
        return redact_text(value, REDACTED)
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and v and is_secret_name(k) else redact(v)
            for k, v in value.items()
        }
    return value


def render(value: Any, width: int = 100) -> str:
    """A value as compact JSON on one line, redacted and cut to ``width`` characters."""
    text = orjson.dumps(redact(value), option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= width else text[: width - 1] + "…"
