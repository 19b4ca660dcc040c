"""``llm-memo export`` and ``import``: entries to and from JSON Lines files.

::

    llm-memo export FILE [--function F]  JSON Lines ("-" for stdout)
    llm-memo import FILE                 ("-" for stdin)

The file format is :mod:`llm_memo.transfer`'s; this module adds files, progress
and reports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ._command import Command, common, guarded
from ._output import CLIError, Progress, emit_json, plural, say
from ._stores import open_store, probe

__all__ = ["COMMANDS"]


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
    from ..transfer import export_entries

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
        say(f"exported {plural(written, 'entry', 'entries')} from {backend.url} to {args.file}")
    return 0


def _configure_import(parser: argparse.ArgumentParser) -> None:
    common(parser)
    parser.add_argument("file", metavar="FILE", help="a file written by 'llm-memo export' ('-' for stdin)")


def _import(args: argparse.Namespace) -> int:
    from ..transfer import import_entries

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
        emit_json({"imported": imported, "file": args.file, "backend": backend.url})
        return 0
    say(f"imported {plural(imported, 'entry', 'entries')} into {backend.url}")
    return 0


COMMANDS: dict[str, Command] = {
    "export": Command("write entries to a JSON Lines file", _configure_export, guarded(_export)),
    "import": Command("store the entries of an exported file", _configure_import, guarded(_import)),
}
