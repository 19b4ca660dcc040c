"""``llm-memo run``: run a program with its OpenAI/Anthropic SDK calls cached.

::

    llm-memo run [--backend URL] [--ttl 7d] [--mode replay] [--wrap pkg.mod:fn,...] -- python app.py ...

The child process and its environment are :mod:`llm_memo._run`'s.
"""

from __future__ import annotations

import argparse
import os
import sys

from .._config import MODES
from ._command import Command

__all__ = ["COMMANDS"]


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
    from .. import _run

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


# Not guarded: the exit status is the child's, and llm_memo._run reports a failure to start it
# (126/127, as a shell does), so a guard's 1 would hide what happened.
COMMANDS: dict[str, Command] = {
    "run": Command("run a program with its OpenAI/Anthropic SDK calls cached", _configure_run, _run),
}
