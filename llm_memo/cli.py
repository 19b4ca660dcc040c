"""The ``llm-memo`` command.

Subcommands are registered in :data:`COMMANDS`: each is a function adding its
arguments to a parser and a function running it (returning the exit code), so a
new subcommand is one entry plus two functions.

::

    llm-memo run [--backend URL] [--ttl 7d] [--mode replay] [--wrap pkg.mod:fn,...] -- python app.py ...
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

from ._config import MODES

__all__ = ["COMMANDS", "Command", "main"]


class Command(NamedTuple):
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ----------------------------------------------------------------------- run


def _configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", help="cache backend URL: disk (default), disk:<dir>, sqlite:<file>, redis://..., memory"
    )
    parser.add_argument("--ttl", help="how long answers stay fresh: 90s, 12h, 7d... (default: forever)")
    parser.add_argument(
        "--mode", choices=MODES, help="cache mode (replay: never call the API, fail on a miss)"
    )
    parser.add_argument(
        "--wrap", metavar="TARGETS", help="also cache these functions: pkg.mod:fn,pkg.mod:Cls.meth"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the program to run, after --")


def _run(args: argparse.Namespace) -> int:
    from . import _run

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print(
            "llm-memo run: no command given; usage: llm-memo run [options] -- python app.py", file=sys.stderr
        )
        return 2
    if args.backend is not None and not args.backend.strip():
        print(
            "llm-memo run: --backend is empty: give a store URL (disk, sqlite:<file>, ...)", file=sys.stderr
        )
        return 2
    try:
        env = _run.build_env(os.environ, backend=args.backend, ttl=args.ttl, mode=args.mode, wrap=args.wrap)
    except (TypeError, ValueError) as exc:
        print(f"llm-memo run: {exc}", file=sys.stderr)
        return 2
    return _run.run(command, env)


COMMANDS: dict[str, Command] = {
    "run": Command("run a program with its OpenAI/Anthropic SDK calls cached", _configure_run, _run),
}


# ----------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    from ._cli_store import STORE_COMMANDS  # here, not at import: _cli_store imports Command from us

    for name, command in STORE_COMMANDS.items():
        COMMANDS.setdefault(name, command)
    from . import __version__

    parser = argparse.ArgumentParser(prog="llm-memo", description="Memoize LLM calls.")
    parser.add_argument("--version", action="version", version=f"llm-memo {__version__}")
    subparsers = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        command.configure(sub)
        sub.set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
