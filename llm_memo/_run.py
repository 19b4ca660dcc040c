"""``llm-memo run -- python app.py``: run a program with its LLM SDK calls cached.

The program is started with this package's ``_sitecustomize`` directory first on
``PYTHONPATH``; Python imports that ``sitecustomize`` at start-up, which patches
the SDKs (see :mod:`llm_memo._bootstrap`). The options travel as the usual
environment variables, so child processes of the program are cached alike.

It runs the command as a child process (rather than ``exec``) so it works the same
on every platform and from :func:`llm_memo.cli.main`; the child's exit code is
passed through (a child killed by signal N exits ``128 + N``, as in a shell).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ._config import check_mode, parse_ttl
from .backends import check_url

__all__ = ["DEFAULT_BACKEND", "build_env", "run", "sitecustomize_dir"]

#: The backend when neither ``--backend`` nor ``LLM_MEMO_BACKEND`` says: the point of
#: ``llm-memo run`` is not paying twice across runs, which memory cannot do.
DEFAULT_BACKEND = "disk"


def sitecustomize_dir() -> str:
    return str(Path(__file__).resolve().with_name("_sitecustomize"))


def build_env(
    base: Mapping[str, str],
    *,
    backend: str | None = None,
    ttl: str | None = None,
    mode: str | None = None,
    wrap: str | None = None,
) -> dict[str, str]:
    """The child's environment; raises ``ValueError`` for a bad ``backend``, ``ttl`` or ``mode``."""
    env = dict(base)
    if ttl is not None:
        parse_ttl(ttl)
        env["LLM_MEMO_TTL"] = ttl
    if mode is not None:
        env["LLM_MEMO_MODE"] = check_mode(mode)
    if backend is not None:
        env["LLM_MEMO_BACKEND"] = check_url(backend.strip())
    elif not env.get("LLM_MEMO_BACKEND"):
        env["LLM_MEMO_BACKEND"] = DEFAULT_BACKEND
    if wrap is not None:
        env["LLM_MEMO_WRAP"] = wrap
    here = sitecustomize_dir()
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != here]
    env["PYTHONPATH"] = os.pathsep.join([here, *rest])
    return env


def run(command: Sequence[str], env: Mapping[str, str]) -> int:
    """Run ``command`` with ``env``; its exit code."""
    try:
        process = subprocess.Popen(list(command), env=dict(env))
    except OSError as exc:  # not found, not executable
        print(f"llm-memo run: cannot run {command[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    with process:
        while True:
            try:
                code = process.wait()
                break
            except KeyboardInterrupt:
                continue  # the child got the same Ctrl-C: let it decide, and report its code
    return 128 - code if code < 0 else code
