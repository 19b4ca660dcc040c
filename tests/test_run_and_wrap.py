"""Zero code changes: ``llm_memo.wrap()``, ``LLM_MEMO_WRAP`` and ``llm-memo run``."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_memo import _run
from llm_memo._wrap_path import unwrap, wrap, wrap_from_env
from llm_memo.cli import main
from llm_memo.testing import FakeLLMServer

TARGET = """
calls = []


def ask(prompt, *, model="m"):
    calls.append(prompt)
    return f"answer to {prompt}"


class Bot:
    def __init__(self, name):
        self.name = name

    def __llm_memo_key__(self):
        return self.name

    def reply(self, prompt):
        calls.append(("reply", prompt))
        return prompt.upper()

    @classmethod
    def make(cls, x):
        calls.append(("make", x))
        return x * 2
"""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, not yet imported package ``<name>.target`` (someone else's module)."""
    name = f"wrapped_{uuid.uuid4().hex[:8]}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / name / "target.py").write_text(TARGET)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for module in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[module]


def test_wrap_caches_a_function_in_place_and_unwrap_restores_it(package: str) -> None:
    module: Any = importlib.import_module(f"{package}.target")
    original = module.ask
    handle = wrap(f"{package}.target:ask", backend="memory")
    assert module.ask is handle and module.ask("hi") == module.ask("hi") == "answer to hi"
    assert module.calls == ["hi"] and handle.cache_info().hits == 1
    again = wrap(f"{package}.target:ask", backend="memory", ttl="1h")  # replaces: one layer
    assert module.ask is again and again.__wrapped__ is original
    assert unwrap(f"{package}.target:ask") and module.ask is original
    assert not unwrap(f"{package}.target:ask")


def test_wrap_methods(package: str) -> None:
    module: Any = importlib.import_module(f"{package}.target")
    reply, make = vars(module.Bot)["reply"], vars(module.Bot)["make"]
    wrap(f"{package}.target:Bot.reply")
    wrap(f"{package}.target:Bot.make")
    bot = module.Bot("a")
    assert bot.reply("x") == module.Bot("a").reply("x") == "X"
    assert module.Bot.make(2) == module.Bot.make(2) == 4
    module.Bot("b").reply("x")
    assert module.calls == [("reply", "x"), ("make", 2), ("reply", "x")]
    unwrap(f"{package}.target:Bot.reply")
    unwrap(f"{package}.target:Bot.make")
    assert vars(module.Bot)["reply"] is reply and vars(module.Bot)["make"] is make


def test_env_wrap_is_deferred_until_import(package: str) -> None:
    target = f"{package}.target"
    assert wrap_from_env(f" {target}:ask , {target}:Bot.reply ") == [f"{target}:ask", f"{target}:Bot.reply"]
    assert target not in sys.modules  # nothing imported yet
    module: Any = importlib.import_module(target)
    module.ask("q")
    module.ask("q")
    assert module.calls == ["q"] and module.ask.cache_info().hits == 1
    unwrap(f"{target}:ask")
    unwrap(f"{target}:Bot.reply")


def test_bad_targets() -> None:
    for bad in ("no_colon", "mod:", ":fn", "mod:not-an-identifier"):
        with pytest.raises(ValueError, match=r"package\.module:function"):
            wrap(bad)
    with pytest.raises(ValueError):
        wrap_from_env("good.mod:fn,bad")


# --------------------------------------------------------------------------- llm-memo run


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert main(["run", "--ttl", "soon", "--", "python"]) == 2
    assert "cannot parse" in capsys.readouterr().err
    assert main(["run", "--", str(Path("no-such-program-here"))]) == 127
    with pytest.raises(SystemExit):
        main(["run", "--mode", "sometimes", "--", "python"])


def test_run_environment() -> None:
    env = _run.build_env({"PYTHONPATH": "elsewhere"}, ttl="7d", mode="replay")
    assert env["PYTHONPATH"].split(os.pathsep) == [_run.sitecustomize_dir(), "elsewhere"]
    assert (Path(_run.sitecustomize_dir()) / "sitecustomize.py").is_file()
    assert (
        env["LLM_MEMO_BACKEND"] == "disk" and env["LLM_MEMO_TTL"] == "7d" and env["LLM_MEMO_MODE"] == "replay"
    )
    assert _run.build_env({"LLM_MEMO_BACKEND": "memory"})["LLM_MEMO_BACKEND"] == "memory"


APP = """
import sys
import openai

client = openai.OpenAI(api_key="sk-run-test", base_url=sys.argv[1])
answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "from run"}])
print(answer.id, answer._request_id, sys.argv[2:])
sys.exit(int(sys.argv[2]))
"""


def llm_memo_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llm_memo.cli", "run", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_llm_memo_run_caches_a_program_across_runs(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    command = ["--", sys.executable, str(app), llm_server.openai_base_url, "7", "two words"]
    first = llm_memo_run("--backend", f"disk:{tmp_path / 'cache'}", "--ttl", "1d", *command)
    assert first.returncode == 7, first.stderr
    assert first.stdout.endswith("['7', 'two words']\n")
    assert llm_server.count() == 1
    second = llm_memo_run("--backend", f"disk:{tmp_path / 'cache'}", *command)
    assert second.returncode == 7 and second.stdout == first.stdout  # same id and request id
    assert llm_server.count() == 1  # served from the disk cache

    empty = llm_memo_run("--mode", "replay", "--backend", f"disk:{tmp_path / 'empty'}", *command)
    assert empty.returncode == 1
    assert (
        "CacheMiss: llm_memo replay mode: no cached entry for openai.chat.completions.create" in empty.stderr
    )
    assert llm_server.count() == 1


def test_llm_memo_run_applies_llm_memo_wrap_and_chains_sitecustomize(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "helpers.py").write_text(
        textwrap.dedent(
            """
            import os

            def slow(x):
                with open(os.environ["CALLS_FILE"], "a") as f:
                    f.write("call\\n")
                return x * 2
            """
        )
    )
    (tmp_path / "site").mkdir()
    # It marks the process it ran in: the llm-memo process itself is a Python on this
    # PYTHONPATH too, and two processes' prints on one pipe come in no fixed order.
    (tmp_path / "site" / "sitecustomize.py").write_text(
        "import os, sys\nsys.other_sitecustomize = os.getpid()\n"
    )
    (tmp_path / "app.py").write_text(
        "import os, sys\nimport helpers\n"
        "chained = getattr(sys, 'other_sitecustomize', None) == os.getpid()\n"
        "print(chained, helpers.slow(21), helpers.slow(21))\n"
    )
    calls = tmp_path / "calls.txt"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(tmp_path / "lib")]),
        "LLM_MEMO_WRAP": "helpers:slow",
        "CALLS_FILE": str(calls),
    }
    done = llm_memo_run("--backend", "memory", "--", sys.executable, str(tmp_path / "app.py"), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "True 42 42\n"  # the other sitecustomize ran in the program
    assert calls.read_text() == "call\n"
