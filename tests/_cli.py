"""Run the ``llm-memo`` command in a subprocess, as a user would.

It runs as ``python -m llm_memo`` with this interpreter, which is the console
script's own entry point, so the tests need no PATH setup.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["llm_memo_command", "parse_json", "run_cli"]


def llm_memo_command() -> list[str]:
    """The argv prefix that runs ``llm-memo``."""
    return [sys.executable, "-m", "llm_memo"]


def run_cli(
    *args: str,
    env: Mapping[str, str | None] | None = None,
    input: str | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``llm-memo *args``; ``env`` adds to (or, with None values, removes from) os.environ."""
    environment = dict(os.environ)
    environment.pop("NO_COLOR", None)
    environment.pop("LLM_MEMO_DEBUG", None)
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return subprocess.run(
        [*llm_memo_command(), *args],
        capture_output=True,
        text=True,
        env=environment,
        input=input,
        timeout=timeout,
        check=False,
    )


def parse_json(done: subprocess.CompletedProcess[str]) -> Any:
    """The command's ``--json`` output, after checking it succeeded."""
    assert done.returncode == 0, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return json.loads(done.stdout)
