"""The ``llm-memo`` command.

Each module of this package is one group of subcommands and exports them as
``COMMANDS`` (name -> :class:`~llm_memo.cli._command.Command`); :func:`build_parser`
puts them together in the order of ``llm-memo --help``, so a new subcommand is one
entry and two functions in the module of its group. Shared pieces:
``_output`` (colour, tables, durations, escaping, redaction), ``_stores`` (opening
the store ``--backend`` names, reading its entries), ``_command`` (shared
arguments, one-line errors and exit codes).

::

    llm-memo run [--backend URL] [--ttl 7d] [--mode replay] [--wrap pkg.mod:fn,...] -- python app.py ...
    llm-memo demo [--latency 1.0] [--dir DIR] [--live]
    llm-memo stats | ls | show KEY                    (inspect)
    llm-memo rm KEY... | clear | prune                (edit)
    llm-memo export FILE | import FILE                (transfer)
    llm-memo explain KEY | --function NS --call JSON  (explain)

Every store command takes ``--backend URL`` (default ``$LLM_MEMO_BACKEND``, else
the default disk store) and ``--json`` (one JSON document on stdout, for scripts).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from . import demo, edit, explain, inspect, run, transfer
from ._command import Command

__all__ = ["build_parser", "main"]

#: The groups of subcommands, in the order ``--help`` lists them.
GROUPS = (run, demo, inspect, edit, transfer, explain)


def commands() -> dict[str, Command]:
    """Every subcommand by name."""
    return {name: command for group in GROUPS for name, command in group.COMMANDS.items()}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="llm-memo", description="Memoize LLM calls.")
    parser.add_argument("--version", action="version", version=f"llm-memo {__version__}")
    subparsers = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    for name, command in commands().items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        command.configure(sub)
        sub.set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)
