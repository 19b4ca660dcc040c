"""What a subcommand is, the arguments they share, and how their failures are reported.

Errors are one line on stderr and a non-zero exit status: 1 for a failure
(unreachable store, missing file, unknown key), 2 for a usage error, 130 for an
interrupt; never a traceback (unless ``LLM_MEMO_DEBUG`` is set).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import re
import sys
from collections.abc import Callable
from typing import NamedTuple

from ._output import CLIError, one_line
from ._stores import store_url

__all__ = ["Command", "common", "count_arg", "describe_error", "duration", "guarded"]

_NOT_POSITIVE = re.compile(r"\s*(-.*|[0.]+\s*(ms|s|m|h|d|w)?\s*)\Z", re.IGNORECASE)


class Command(NamedTuple):
    """A subcommand: its one-line help, a function adding its arguments, and one running it."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def common(parser: argparse.ArgumentParser, *, backend: bool = True) -> None:
    """``--backend`` (the store) and ``--json``, which every store command takes."""
    if backend:
        parser.add_argument(
            "--backend",
            metavar="URL",
            help="the store: disk, disk:<dir>, sqlite, sqlite:<file>, redis://host:port/db... "
            "(default: $LLM_MEMO_BACKEND, else disk)",
        )
    parser.add_argument("--json", action="store_true", help="print one JSON document, for scripts")


def count_arg(text: str) -> int:
    """argparse type: a whole number, zero or more (``--limit``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be zero or more")
    return value


def duration(text: str) -> float:
    """argparse type: ``90s``, ``30m``, ``12h``, ``7d``, ``1h30m`` or seconds."""
    from .._config import parse_ttl

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
            print(f"llm-memo {command}: {one_line(str(exc))}", file=sys.stderr)
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
            print(f"llm-memo {command}: {one_line(describe_error(exc, args))}", file=sys.stderr)
            return 1

    return wrapper
