"""``llm-memo rm``, ``clear`` and ``prune``: remove entries.

::

    llm-memo rm KEY [KEY...]
    llm-memo clear [--function F] [--yes]
    llm-memo prune [--older-than 30d] [--unreadable] [--dry-run]
"""

from __future__ import annotations

import argparse
import sys
import time

from ._command import Command, common, duration, guarded
from ._output import CLIError, Progress, emit_json, plural, printable, say, span
from ._stores import Row, delete, open_store, resolve, scan

__all__ = ["COMMANDS"]


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
        emit_json({"removed": [{"key": r.key, "function": r.namespace} for r in removed]})
        return 0
    for r in removed:
        say(f"removed {r.key[:12]}  {printable(r.namespace)}")
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
        emit_json({"removed": removed, "function": args.function})
        return 0
    of = f" of {args.function}" if args.function else ""
    say(f"removed {plural(removed, 'entry', 'entries')}{of} from {backend.url}")
    return 0


# ----------------------------------------------------------------------- prune


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
        emit_json(
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
    say(f"{verb} {plural(len(removed), 'entry', 'entries')} ({expired} expired{older}) from {backend.url}")
    return 0


COMMANDS: dict[str, Command] = {
    "rm": Command("remove entries by key", _configure_rm, guarded(_rm)),
    "clear": Command("remove every entry, or one function's", _configure_clear, guarded(_clear)),
    "prune": Command("remove expired (and old) entries", _configure_prune, guarded(_prune)),
}
