"""Guarantee: different functions never share entries by default.

A function is named ``module.qualname`` (a script after its file, never
``__main__``) and, beyond its name, identified by its own code, the values it
closes over and the arguments a ``functools.partial`` binds.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _cli import parse_json, run_cli
from _internals import memo_of

from llm_memo import CachedFunction, UncacheableArgument, llm_cached
from llm_memo._identity import Identity, code_digest, default_namespace
from llm_memo.explain import compare, diff_material

IDENTITY_MODULE = Path(__file__).resolve().parent.parent / "llm_memo" / "_identity.py"

# ----------------------------------------------------------------------- lambdas

upper = llm_cached(lambda p: p.upper())
lower = llm_cached(lambda p: p.lower())
first, last = llm_cached(lambda p: p[0]), llm_cached(lambda p: p[-1])  # one line, one name


def test_two_lambdas_in_one_module_do_not_share_entries() -> None:
    assert upper("Hi") == "HI"
    assert lower("Hi") == "hi"
    assert upper.cache_parameters()["namespace"] == lower.cache_parameters()["namespace"]
    assert upper.cache_key("Hi") != lower.cache_key("Hi")


def test_two_lambdas_on_one_line_do_not_share_entries() -> None:
    assert first("abc") == "a"
    assert last("abc") == "c"
    assert first.cache_key("abc") != last.cache_key("abc")


# ----------------------------------------------------------------------- closures


def make_asker(model: str, temperature: float = 0.0) -> CachedFunction[[str], str]:
    @llm_cached
    def ask(prompt: str) -> str:
        return f"{model}@{temperature}: {prompt}"

    return ask


def test_closures_from_a_factory_do_not_share_entries() -> None:
    gpt, claude = make_asker("gpt"), make_asker("claude")
    assert gpt("hi") == "gpt@0.0: hi"
    assert claude("hi") == "claude@0.0: hi"
    assert make_asker("gpt", 0.5)("hi") == "gpt@0.5: hi"
    # The same configuration made again is the same function: it shares entries.
    again = make_asker("gpt")
    assert again("hi") == "gpt@0.0: hi" and again.cache_info().hits == 1


def test_variants_of_a_function_closing_over_state_share_entries() -> None:
    calls: list[str] = []

    @llm_cached
    def ask(prompt: str) -> str:
        calls.append(prompt)  # state it closes over, read once, at the first call
        return prompt.upper()

    assert ask("a") == "A"
    replay = ask.with_options(mode="replay")
    assert replay("a") == "A" and calls == ["a"]


class Client:
    """Something a key cannot encode (a real SDK client, a connection)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def complete(self, prompt: str) -> str:
        return f"{self.base_url}: {prompt}"


def make_client_asker(client: Client, *, explicit: bool) -> Callable[[str], str]:
    if explicit:

        @llm_cached(key=lambda prompt: {"prompt": prompt, "base_url": client.base_url})
        def ask(prompt: str) -> str:
            return client.complete(prompt)

    else:

        @llm_cached
        def ask(prompt: str) -> str:
            return client.complete(prompt)

    return ask


def test_unencodable_closure_values_are_left_out_and_key_makes_them_explicit() -> None:
    a, b = Client("https://a"), Client("https://b")
    # Left out of the identity, as the README says: these two share entries...
    assert make_client_asker(a, explicit=False)("hi") == "https://a: hi"
    assert make_client_asker(b, explicit=False)("hi") == "https://a: hi"
    # ...unless key= (or namespace=) says what tells them apart.
    assert make_client_asker(a, explicit=True)("hi") == "https://a: hi"
    assert make_client_asker(b, explicit=True)("hi") == "https://b: hi"


def test_closure_cells_filled_after_decoration_and_super_work() -> None:
    class Base:
        def answer(self, prompt: str) -> str:
            return "base " + prompt

    class Bot(Base):
        def __llm_memo_key__(self) -> str:
            return "bot"

        @llm_cached
        def answer(self, prompt: str) -> str:
            return super().answer(prompt) + suffix  # __class__ and suffix: empty cells at decoration

    suffix = "!"
    assert Bot().answer("hi") == "base hi!"
    assert Bot().answer("hi") == "base hi!" and Bot.answer.cache_info().hits == 1


# ----------------------------------------------------------------------- scripts


SCRIPT = """
import multiprocessing
import sys

from llm_memo import llm_cached


@llm_cached(backend="disk")
def ask(prompt: str) -> str:
    return "{name}: " + prompt


def child(queue):
    queue.put((ask("hello"), ask.cache_info().hits))


if __name__ == "__main__":
    print(ask("hello"), ask.cache_info().hits, ask.cache_parameters()["namespace"], sep="|")
    if "--spawn" in sys.argv:
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        process = context.Process(target=child, args=(queue,))
        process.start()
        answer, hits = queue.get(timeout=60)
        process.join(60)
        print(answer, hits, "child", sep="|")
"""


def _python(cwd: Path, *args: str) -> list[list[str]]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), *sys.path])}
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return [line.split("|") for line in done.stdout.splitlines()]


def test_two_scripts_on_one_disk_store_do_not_share_entries(tmp_path: Path) -> None:
    for name in ("translate", "summarize"):
        (tmp_path / f"{name}.py").write_text(SCRIPT.format(name=name))
    assert _python(tmp_path, "translate.py") == [["translate: hello", "0", "translate.ask"]]
    assert _python(tmp_path, "summarize.py") == [["summarize: hello", "0", "summarize.ask"]]
    # The script, its import and a spawned child (main module __mp_main__) share entries.
    assert _python(tmp_path, "translate.py", "--spawn") == [
        ["translate: hello", "1", "translate.ask"],
        ["translate: hello", "1", "child"],
    ]
    imported = _python(
        tmp_path,
        "-c",
        "import translate; print(translate.ask('hello'), translate.ask.cache_info().hits, sep='|')",
    )
    assert imported == [["translate: hello", "1"]]


def test_a_module_run_with_dash_m_is_named_as_imported(tmp_path: Path) -> None:
    package = tmp_path / "app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tool.py").write_text(SCRIPT.format(name="tool"))
    assert _python(tmp_path, "-m", "app.tool") == [["tool: hello", "0", "app.tool.ask"]]
    # As a file path inside the package, it is still app.tool, so it hits.
    assert _python(tmp_path, str(Path("app") / "tool.py")) == [["tool: hello", "1", "app.tool.ask"]]


def test_the_repl_and_python_c_stay_main() -> None:
    def ask(prompt: str) -> str:
        return prompt

    ask.__module__ = "__main__"
    main = sys.modules["__main__"]
    saved = main.__dict__.get("__spec__"), main.__dict__.get("__file__")
    try:
        main.__spec__ = None
        main.__dict__.pop("__file__", None)
        assert default_namespace(ask).startswith("__main__.")
    finally:
        main.__spec__ = saved[0]
        if saved[1] is not None:
            main.__file__ = saved[1]


# ----------------------------------------------------------------------- code


def _load(tmp_path: Path, source: str, *, version: str | None = None) -> ModuleType:
    """Import ``source`` as module ``app_prompts`` (a fresh file each time, as after an edit)."""
    folder = tmp_path / f"v{len(list(tmp_path.glob('v*')))}"
    folder.mkdir()
    path = folder / "app_prompts.py"
    text = textwrap.dedent(source)
    if version is not None:
        text = text.replace(
            "@llm_cached(backend=BACKEND)", f"@llm_cached(backend=BACKEND, version={version!r})"
        )
    path.write_text(text.replace("BACKEND", repr(f"disk:{tmp_path / 'store'}")))
    spec = importlib.util.spec_from_file_location("app_prompts", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ORIGINAL = """
from llm_memo import llm_cached

@llm_cached(backend=BACKEND)
def ask(prompt: str) -> str:
    return f"Translate to French: {prompt}"
"""

RESTYLED = '''
from llm_memo import llm_cached

# The same code, with a comment, a docstring, other formatting and another decorator option.
@llm_cached(backend=BACKEND, ttl="7d")
def ask(
    prompt: str,
) -> str:
    """Ask the model."""
    return (
        f"Translate to French: {prompt}"  # the template
    )
'''

EDITED = """
from llm_memo import llm_cached

@llm_cached(backend=BACKEND)
def ask(prompt: str) -> str:
    return f"Translate to German: {prompt}"
"""


def test_editing_the_code_misses_and_restyling_it_does_not(tmp_path: Path) -> None:
    assert _load(tmp_path, ORIGINAL).ask("cat") == "Translate to French: cat"
    restyled = _load(tmp_path, RESTYLED).ask
    assert restyled("cat") == "Translate to French: cat" and restyled.cache_info().hits == 1
    edited = _load(tmp_path, EDITED).ask
    assert edited("cat") == "Translate to German: cat"  # not the old prompt's answer
    assert edited.cache_info().misses == 1


def test_version_pins_the_identity_instead_of_the_code(tmp_path: Path) -> None:
    assert _load(tmp_path, ORIGINAL, version="1").ask("cat") == "Translate to French: cat"
    pinned = _load(tmp_path, EDITED, version="1").ask
    assert pinned("cat") == "Translate to French: cat"  # pinned: an edit is not a new function
    assert pinned.cache_info().hits == 1
    bumped = _load(tmp_path, EDITED, version="2").ask
    assert bumped("cat") == "Translate to German: cat"


def test_explain_says_the_code_changed(tmp_path: Path) -> None:
    url = f"disk:{tmp_path / 'store'}"
    _load(tmp_path, ORIGINAL).ask("cat")
    edited = _load(tmp_path, EDITED).ask
    edited("cat")
    key = edited.cache_key("cat")
    human = run_cli("explain", key, "--backend", url)
    assert human.returncode == 0, human.stderr
    assert "the function's code changed" in human.stdout
    data = parse_json(run_cli("explain", key, "--backend", url, "--json"))
    assert [d["path"] for d in data["closest"][0]["differences"]] == ["id.code"]


def test_explain_names_closure_values_that_changed() -> None:
    stored = {"a": {"prompt": "hi"}, "id": {"code": "aa", "closure": {"model": "gpt"}}}
    call = {"a": {"prompt": "hi"}, "id": {"code": "aa", "closure": {"model": "claude"}}}
    assert [str(d) for d in diff_material(stored, call)] == ['id.closure.model: "gpt" → "claude"']


def test_explain_from_arguments_alone_compares_arguments(tmp_path: Path) -> None:
    from llm_memo.backends import from_url
    from llm_memo.explain import call_material

    module = _load(tmp_path, ORIGINAL)
    module.ask("cat")
    namespace = module.ask.cache_parameters()["namespace"]
    result = compare(call_material(namespace, {"prompt": "cat"}), from_url(f"disk:{tmp_path / 'store'}"))
    assert result.identity_unknown and result.closest[0].exact


NESTED = """
from llm_memo import llm_cached

def helper(prompt):
    return prompt.upper()

class Translator:
    @llm_cached(backend=BACKEND, ignore=["self"])
    def ask(self, prompt: str) -> str:
        def inner(p):
            "Inner docstrings do not count either."
            return helper(p)
        return inner(prompt)
"""


def test_methods_and_nested_functions_are_found(tmp_path: Path) -> None:
    module = _load(tmp_path, NESTED)
    digest = code_digest(module.Translator.ask.__wrapped__)
    assert digest is not None and ":" not in digest  # from source, not the bytecode fallback
    assert module.Translator().ask("a") == "A"


def test_without_source_the_bytecode_decides() -> None:
    namespace: dict[str, Any] = {}
    exec("def ask(p):\n    return p + '!'\n\ndef other(p):\n    return p + '?'\n", namespace)
    ask, other = namespace["ask"], namespace["other"]
    version = f"py{sys.version_info[0]}.{sys.version_info[1]}:"
    digest = code_digest(ask)
    assert digest is not None and digest.startswith(version)
    assert code_digest(ask) != code_digest(other)
    cached_ask, cached_other = llm_cached(namespace="repl.f")(ask), llm_cached(namespace="repl.f")(other)
    assert cached_ask("x") == "x!" and cached_other("x") == "x?"


#: A function and its pinned digest: the same on every Python version and machine.
GOLDEN_SOURCE = '''
def ask(prompt: str, *, model: str = "gpt-4o-mini", n: int = 1) -> list[str]:
    """Docstring."""
    template = f"Q: {prompt!r:>10}\\nA:"  # comment
    return [template.format(i) for i in range(n) if i % 2 == 0 or model in {"a", "b"}]
'''
GOLDEN_DIGEST = "ca628210cbefed6340136621286a4971"

PROBE = """
import importlib.util, linecache, sys
spec = importlib.util.spec_from_file_location("probe_identity", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
source = sys.argv[2]
linecache.cache["<golden>"] = (len(source), None, source.splitlines(True), "<golden>")
namespace = {}
exec(compile(source, "<golden>", "exec"), namespace)
print(module.code_digest(namespace["ask"]))
"""


def _golden_digest(python: str) -> str:
    done = subprocess.run(
        [python, "-c", PROBE, str(IDENTITY_MODULE), GOLDEN_SOURCE], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_code_digest_is_pinned() -> None:
    assert _golden_digest(sys.executable) == GOLDEN_DIGEST


def _other_pythons() -> list[str]:
    found = {shutil.which(f"python3.{minor}") for minor in (11, 12, 13)}
    found |= {str(p) for p in Path.home().glob(".pyenv/versions/3.1[123]*/bin/python")}
    usable = []
    for python in sorted(p for p in found if p):
        done = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info >= (3, 11))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.stdout.strip() == "True":
            usable.append(python)
    return usable


def test_code_digest_is_the_same_on_every_python() -> None:
    pythons = _other_pythons()
    if not pythons:
        pytest.skip("no other Python 3.11+ interpreter found")
    assert {python: _golden_digest(python) for python in pythons} == dict.fromkeys(pythons, GOLDEN_DIGEST)


# ----------------------------------------------------------------------- decorators


CLIENT = Client("https://api")


def inject_client(func: Callable[..., str]) -> Callable[..., str]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        return func(*args, client=CLIENT, **kwargs)

    return wrapper


def test_a_wraps_decorator_that_injects_an_argument_is_cached() -> None:
    calls = []

    @llm_cached(ignore=["client"])
    @inject_client
    def ask(prompt: str, client: Client) -> str:
        calls.append(prompt)
        return client.complete(prompt)

    assert ask("hi") == ask("hi") == ask(prompt="hi") == "https://api: hi"
    assert calls == ["hi"] and ask.cache_info().hits == 2


def test_a_call_that_does_not_fit_under_a_decorator_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    def consume_retries(func: Callable[..., str]) -> Callable[..., str]:
        @functools.wraps(func)
        def wrapper(*args: Any, retries: int = 0, **kwargs: Any) -> str:
            return func(*args, **kwargs)

        return wrapper

    @llm_cached
    @consume_retries
    def ask(prompt: str) -> str:
        return prompt

    with caplog.at_level(logging.WARNING, logger="llm_memo"):
        assert ask("hi", retries=2) == ask("hi", retries=2) == "hi"
    warnings = [r.getMessage() for r in caplog.records if "does not fit" in r.getMessage()]
    assert len(warnings) == 1 and "not cached" in warnings[0]


# ----------------------------------------------------------------------- partials


def complete(model: str, prompt: str, *, temperature: float = 0.0) -> str:
    return f"{model}@{temperature}: {prompt}"


def test_partials_keep_their_bound_arguments_apart() -> None:
    gpt = llm_cached(functools.partial(complete, "gpt"))
    claude = llm_cached(functools.partial(complete, "claude"))
    warm = llm_cached(functools.partial(complete, "gpt", temperature=0.7))
    assert gpt("hi") == "gpt@0.0: hi"
    assert claude("hi") == "claude@0.0: hi"
    assert warm("hi") == "gpt@0.7: hi"
    assert gpt.cache_parameters()["namespace"] == f"{__name__}.complete"


@dataclasses.dataclass
class Answer:
    text: str


def complete_typed(model: str, prompt: str) -> Answer:
    return Answer(f"{model}: {prompt}")


def test_a_partial_is_cached_with_its_function_s_return_type() -> None:
    ask = llm_cached(functools.partial(complete_typed, "gpt"))
    assert ask("hi") == ask("hi") == Answer("gpt: hi")
    assert ask.cache_info().hits == 1


def test_a_partial_binding_an_unencodable_argument_is_refused_clearly() -> None:
    def ask(client: Client, prompt: str) -> str:
        return client.complete(prompt)

    with pytest.raises(UncacheableArgument, match=r"partial.*bind it by keyword"):
        llm_cached(functools.partial(ask, CLIENT))
    by_keyword = llm_cached(ignore=["client"])(functools.partial(ask, client=CLIENT))
    assert by_keyword(prompt="hi") == "https://api: hi"


def test_a_callable_object_asks_for_a_namespace() -> None:
    class Asker:
        def __call__(self, prompt: str) -> str:
            return prompt

    with pytest.raises(TypeError, match="namespace="):
        llm_cached(Asker())
    assert llm_cached(namespace="asker")(Asker())("hi") == "hi"


# ----------------------------------------------------------------------- our own code


def test_the_library_s_own_callables_have_no_code_identity() -> None:
    from llm_memo.integrations import _sdk

    # SDK entries must survive an upgrade of llm_memo's own code (the key format versions them).
    assert Identity(_sdk._answer).material() is None
    memo = memo_of(llm_cached(namespace="x")(complete))
    call = memo.prepare(None, ("m", "p"), {})
    assert call is not None
    assert set(json.loads(memo.material(call))["id"]) == {"code"}
