"""``llm-memo stats``, ``ls`` and ``show``: read a store, change nothing.

::

    llm-memo stats                       entries, bytes, functions, oldest/newest, expired
    llm-memo ls [--function F] [--older-than 7d] [--newer-than 1h] [--expired]
    llm-memo show KEY                    the stored call (its key material) and result
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import orjson

from ..keys import short_key
from ._command import Command, common, count_arg, duration, guarded
from ._output import (
    CLIError,
    Progress,
    Style,
    emit_json,
    expiry,
    iso,
    out,
    plural,
    printable,
    redact,
    say,
    seconds,
    size,
    span,
    table,
    when,
)
from ._stores import Row, entry_json, open_store, resolve, scan

__all__ = ["COMMANDS"]


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
        emit_json(
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
    style = Style(out())
    live = total["entries"] - total["expired"] - total["invalid"]
    say(f"{style.bold('store')}      {backend.url}")
    extra = [f"{total['expired']} expired"] if total["expired"] else []
    extra += [f"{total['invalid']} unreadable"] if total["invalid"] else []
    say(
        f"{style.bold('entries')}    {total['entries']:,}"
        + (f" ({live:,} live, {', '.join(extra)})" if extra else "")
    )
    say(f"{style.bold('size')}       {size(total['bytes'])}")
    if oldest is not None and newest is not None:
        say(f"{style.bold('oldest')}     {when(oldest)} ({span(now - oldest)} ago)")
        say(f"{style.bold('newest')}     {when(newest)} ({span(now - newest)} ago)")
        took = f"{seconds(total['cost'])} (what the stored calls took: hits on them save it again)"
        say(f"{style.bold('call time')}  {took}")
    if functions:
        say()
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
            say(line)
    return 0


# ----------------------------------------------------------------------- ls


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
        emit_json([entry_json(r, now) for r in rows])
        return 0
    if not rows:
        say("no entries" if total == 0 else f"{plural(total, 'entry', 'entries')} (none shown: --limit 0)")
        return 0
    style = Style(out())
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
    say(lines[0])
    for line, cell, r in zip(lines[1:], cells, rows, strict=True):
        if r.expired(now):  # painted after padding: colour codes would break the alignment
            line = line.replace(cell[3], style.red(cell[3]), 1)
        if r.header is None:
            line += " " + style.yellow("(unreadable)")
        say(line)
    shown = f"{len(rows)} of {total:,} entries" if total > len(rows) else plural(total, "entry", "entries")
    say(style.dim(shown))
    return 0


# ----------------------------------------------------------------------- show


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
        raise CLIError(
            f"entry {short_key(row.key)} of {printable(row.namespace)} is not a readable llm_memo entry"
        )
    material = redact(row.material())
    try:
        value = redact(orjson.loads(row.header.value))
    except orjson.JSONDecodeError:
        value = None
    if args.json:
        emit_json({**entry_json(row, now), "material": material, "value": value})
        return 0
    style = Style(out())
    created = row.header.created
    say(f"{style.bold('key')}       {row.key}")
    say(f"{style.bold('function')}  {printable(row.namespace)}")
    say(f"{style.bold('created')}   {when(created)} ({span(now - created)} ago)")
    say(f"{style.bold('expires')}   {expiry(row.expires, now)}")
    say(f"{style.bold('size')}      {size(row.size)}")
    if row.header.cost:
        say(f"{style.bold('cost')}      {seconds(row.header.cost)} (the original call: each hit saves it)")
    say()
    say(style.bold("call (key material)"))
    if material is None:
        say(style.dim("(not stored: the entry was written with configure(store_material=False))"))
    else:
        say(_pretty(material))
    say()
    say(style.bold("result"))
    say(_pretty(value))
    return 0


COMMANDS: dict[str, Command] = {
    "stats": Command("summarise a store: entries, size, functions, age", _configure_stats, guarded(_stats)),
    "ls": Command("list stored entries", _configure_ls, guarded(_ls)),
    "show": Command("show one stored call and its result", _configure_show, guarded(_show)),
}
