"""Record LLM calls once, replay them offline in CI: llm_memo's pytest plugin.

Registered by entry point, and inert unless a mode is given::

    pytest --llm-memo=readwrite   # call the API for what is not recorded yet, record it
    pytest --llm-memo=replay      # never call out: a call with no recording fails its test
    pytest --llm-memo=refresh     # call the API for everything, record it again
    pytest --llm-memo=readonly    # use recordings, call the API for the rest, record nothing

or ``llm_memo_mode = replay`` in the ``[pytest]`` ini section (the command line wins;
``off``, the default, means the plugin does nothing and imports nothing).

When enabled, the OpenAI and Anthropic SDKs are patched for the session (as
:func:`llm_memo.patch_openai` does: every client, sync and async, streams
included; SDKs imported later are patched on import) and restored at the end.
Each call is recorded in the cassette of the file whose code made it:

* a test, or a fixture defined in the test module: ``cassettes/<module>.json``
  beside the module (``tests/test_chat.py`` -> ``tests/cassettes/test_chat.json``);
* a fixture defined in a ``conftest.py``: that conftest's cassette
  (``tests/cassettes/conftest.json``), whichever test uses it;
* anything outside a test file: ``cassettes/_session.json`` under the rootdir.

``llm_memo_cassettes = <dir>`` (ini, relative to the rootdir) or
``--llm-memo-cassettes=<dir>`` puts every cassette under one directory instead,
mirroring the test paths (``<dir>/tests/test_chat.json``).

A cassette is a pretty-printed JSON file, sorted, with the call's key material and
its answer (see :mod:`llm_memo.backends.cassette`); it holds no API key, no request
header and no timestamp, so recording the same calls again gives the same bytes.
Entries never expire; every answer is recorded, also those cut short
(``finish_reason="length"``), so that replay returns what the API returned.

In ``replay`` mode a call with no recording raises :class:`llm_memo.CacheMiss`,
whose message names the endpoint, the call's arguments, the cassette, and how it
differs from the closest recorded call of that endpoint. ``OPENAI_API_KEY`` and
``ANTHROPIC_API_KEY`` are set to a placeholder when unset, so clients can be built in
a CI job that has no secrets. Calls the SDK integration never caches
(``with_raw_response``, ``background=True``, other endpoints) raise ``CacheMiss``
in replay mode and go to the API otherwise; the summary line counts them.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the plugin is loaded by every pytest run: import llm_memo only when enabled
    from .backends.cassette import CassetteBackend, CassetteRouter
    from .errors import CacheMiss

__all__ = ["MODES"]

#: The modes ``--llm-memo`` accepts (those of :func:`llm_memo.llm_cached`).
MODES = ("readwrite", "readonly", "refresh", "replay", "off")

_KEY_PLACEHOLDER = "llm-memo-replay-placeholder-key"
_PLACEHOLDER_ENV = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
_SHOWN_DIFFERENCES = 6


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llm_memo", "llm_memo: record LLM calls, replay them offline")
    group.addoption(
        "--llm-memo",
        dest="llm_memo_mode",
        choices=MODES,
        default=None,
        metavar="MODE",
        help="patch the OpenAI/Anthropic SDKs and record calls in cassettes: "
        "readwrite (record what is missing), replay (never call out), refresh, readonly, off",
    )
    group.addoption(
        "--llm-memo-cassettes",
        dest="llm_memo_cassettes",
        default=None,
        metavar="DIR",
        help="keep every cassette under DIR (default: a cassettes/ directory beside each test module)",
    )
    parser.addini("llm_memo_mode", "llm_memo mode when --llm-memo is not given (default: off)", default="")
    parser.addini(
        "llm_memo_cassettes",
        "directory (relative to the rootdir) for every cassette (default: cassettes/ beside each module)",
        default="",
    )


class _Recorder:
    """The plugin's state for one pytest session (kept on ``config.stash``)."""

    def __init__(self, config: pytest.Config, mode: str) -> None:
        from .backends.cassette import CassetteRouter

        self.config = config
        self.mode = mode
        self.rootpath = config.rootpath.resolve()
        option = config.getoption("llm_memo_cassettes")
        ini = str(config.getini("llm_memo_cassettes") or "")
        if option:
            self.directory: Path | None = (config.invocation_params.dir / option).resolve()
        elif ini:
            self.directory = (config.rootpath / ini).resolve()
        else:
            self.directory = None
        self.router: CassetteRouter = CassetteRouter(self.cassette_path)
        self.uncached_before = 0

    def cassette_path(self, source: Path | None) -> Path:
        if source is None:
            return (self.directory or self.rootpath / "cassettes") / "_session.json"
        if self.directory is None:
            return source.parent / "cassettes" / f"{source.stem}.json"
        try:
            relative = source.resolve().relative_to(self.rootpath)
        except ValueError:
            relative = Path(source.name)
        return self.directory / relative.with_suffix(".json")

    def display(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.rootpath))
        except ValueError:
            return str(path)

    def start(self) -> None:
        from ._events import stats
        from .integrations import patch_anthropic, patch_openai

        if self.mode == "replay":
            _set_placeholders(self.config)
        options: dict[str, Any] = {
            "backend": self.router,
            "ttl": None,  # a recording never expires
            "mode": self.mode,
            "strict": True,  # an unreadable cassette fails the test instead of calling out
            "cache_if": _always,  # replay returns what the API returned, cut short or not
        }
        patch_openai(**options)
        patch_anthropic(**options)
        self.uncached_before = stats().uncached

    def stop(self) -> None:
        from .integrations import unpatch_anthropic, unpatch_openai

        unpatch_openai()
        unpatch_anthropic()
        _remove_placeholders(self.config)
        self.router.close()

    @contextlib.contextmanager
    def routed(self, source: Path | None) -> Iterator[None]:
        previous, self.router.source = self.router.source, source
        try:
            yield
        finally:
            self.router.source = previous

    def counts(self) -> dict[str, int]:
        from ._events import stats
        from .integrations import anthropic, openai

        totals = {"hits": 0, "misses": 0, "stores": 0}
        for info in (*openai.cache_info().values(), *anthropic.cache_info().values()):
            for name in totals:
                totals[name] += getattr(info, name)
        # Calls no cassette can hold (raw responses, other endpoints...): sent to the
        # API in readwrite, refused in replay.
        totals["uncached"] = stats().uncached - self.uncached_before
        return totals


_STATE = pytest.StashKey[_Recorder]()
_PLACEHOLDERS = pytest.StashKey[list[str]]()


def _set_placeholders(config: pytest.Config) -> None:
    """Let SDK clients be built without a key (replay never sends one anywhere)."""
    if _PLACEHOLDERS in config.stash:
        return
    config.stash[_PLACEHOLDERS] = names = []
    for name in _PLACEHOLDER_ENV:
        if not os.environ.get(name):
            os.environ[name] = _KEY_PLACEHOLDER
            names.append(name)


def _remove_placeholders(config: pytest.Config) -> None:
    for name in config.stash.get(_PLACEHOLDERS, []):
        if os.environ.get(name) == _KEY_PLACEHOLDER:
            del os.environ[name]
    config.stash[_PLACEHOLDERS] = []


def _always(value: Any) -> bool:
    return True


def _recorder(config: pytest.Config) -> _Recorder | None:
    return config.stash.get(_STATE, None)


def _mode(config: pytest.Config) -> str:
    mode = config.getoption("llm_memo_mode") or str(config.getini("llm_memo_mode") or "").strip() or "off"
    if mode not in MODES:
        raise pytest.UsageError(f"llm_memo_mode = {mode!r}: use one of {', '.join(MODES)}")
    return mode


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # conftest.py files (and the application modules they import) are loaded before
    # pytest_configure: a module-level ``OpenAI()`` there needs its key already.
    with contextlib.suppress(Exception):  # a bad mode is reported by pytest_configure
        option = getattr(early_config.known_args_namespace, "llm_memo_mode", None)
        if (option or str(early_config.getini("llm_memo_mode") or "").strip()) == "replay":
            _set_placeholders(early_config)


def pytest_configure(config: pytest.Config) -> None:
    mode = _mode(config)
    if mode == "off":
        return
    recorder = _Recorder(config, mode)
    recorder.start()
    config.stash[_STATE] = recorder


def pytest_unconfigure(config: pytest.Config) -> None:
    recorder = _recorder(config)
    if recorder is not None:
        del config.stash[_STATE]
        recorder.stop()


def pytest_report_header(config: pytest.Config) -> list[str]:
    recorder = _recorder(config)
    if recorder is None:
        return []
    where = (
        recorder.display(recorder.directory) + "/<test path>.json"
        if recorder.directory is not None
        else "cassettes/<module>.json beside each test module"
    )
    lines = [f"llm_memo: {recorder.mode} (OpenAI and Anthropic SDK calls), cassettes: {where}"]
    env = os.environ.get("LLM_MEMO_MODE", "").strip().lower()
    if env and env != recorder.mode:
        lines.append(f"llm_memo: LLM_MEMO_MODE={env} in the environment overrides {recorder.mode}")
    return lines


# ---------------------------------------------------------------------- routing calls to cassettes


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, Any]:
    __tracebackhide__ = True  # failures point at the test, not at this hook
    recorder = _recorder(collector.config)
    if recorder is None or not isinstance(collector, pytest.Module):
        return (yield)
    with recorder.routed(collector.path):  # calls made while the module is imported
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
    __tracebackhide__ = True  # failures point at the test, not at this hook
    recorder = _recorder(item.config)
    if recorder is None:
        return (yield)
    with recorder.routed(item.path):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: Any) -> Generator[None, Any, Any]:
    __tracebackhide__ = True  # failures point at the test, not at this hook
    recorder = _recorder(request.config)
    source = _conftest_of(fixturedef) if recorder is not None else None
    if recorder is None or source is None:
        return (yield)
    with recorder.routed(source):
        return (yield)


def _conftest_of(fixturedef: pytest.FixtureDef[Any]) -> Path | None:
    """The conftest.py that defines a fixture (None for fixtures of test modules and plugins)."""
    try:
        name = inspect.getsourcefile(inspect.unwrap(fixturedef.func))
    except (TypeError, ValueError):
        return None
    return Path(name) if name is not None and os.path.basename(name) == "conftest.py" else None


# ---------------------------------------------------------------------- replay misses


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    recorder = _recorder(item.config)
    if recorder is not None and call.excinfo is not None:
        with contextlib.suppress(Exception):  # a better message is never worth a crash
            _explain_misses(recorder, item, call.excinfo)
    return (yield)


def _explain_misses(
    recorder: _Recorder, item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]
) -> None:
    """Rewrite the message of cassette misses (a cached function's own misses stay as they are)."""
    from .errors import CacheMiss

    seen: set[int] = set()
    error: BaseException | None = excinfo.value
    while error is not None and id(error) not in seen:  # the error, and what it was raised from
        seen.add(id(error))
        cassette = recorder.router.misses.get(error.key) if isinstance(error, CacheMiss) else None
        if isinstance(error, CacheMiss) and cassette is not None:
            if not getattr(error, "_llm_memo_described", False):
                error.args = (_describe_miss(recorder, error, cassette),)
                error._llm_memo_described = True  # type: ignore[attr-defined]
            if error is excinfo.value and not item.config.getoption("fulltrace", False):
                _end_at_caller(excinfo)
        error = error.__cause__ or error.__context__


def _end_at_caller(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """Drop the traceback's innermost frames inside llm_memo, wrapt and the SDKs.

    The failure then points at the line of the test (or fixture) that made the call
    (``--fulltrace`` keeps them). The raw chain is cut too: pytest rebuilds tracebacks
    from it.
    """
    import sys

    packages = [sys.modules.get(name) for name in ("llm_memo", "wrapt", "openai", "anthropic")]
    inside = tuple(
        os.path.dirname(str(module.__file__)) + os.sep
        for module in packages
        if module is not None and module.__file__
    )
    entries = list(excinfo.traceback)
    keep = len(entries)
    while keep > 1 and str(entries[keep - 1].path).startswith(inside):
        keep -= 1
    if keep < len(entries):
        entries[keep - 1]._rawentry.tb_next = None
        kept = {id(entry) for entry in entries[:keep]}
        excinfo.traceback = excinfo.traceback.filter(lambda entry: id(entry) in kept)


def _miss_material(error: CacheMiss) -> dict[str, Any] | None:
    """The key material of the call that missed (the error carries it)."""
    import orjson

    if error.material is None:
        return None
    material = orjson.loads(error.material)
    return material if isinstance(material, dict) else None


def _describe_miss(recorder: _Recorder, error: CacheMiss, cassette: CassetteBackend) -> str:
    from .keys import short_key

    lines = [
        f"llm_memo replay: no recording of this {error.function} call "
        f"(key {short_key(error.key)}...) in {recorder.display(cassette.path)}"
    ]
    material = _miss_material(error)
    if material is not None:
        arguments = _arguments(material)
        lines.append(f"  call: {_compact(arguments, 600)}")
        closest = _closest(cassette, error.namespace, arguments)
        if closest is not None:
            differences, key = closest
            lines.append(f"  closest recording ({short_key(key)}...) differs in {len(differences)} place(s):")
            lines += [f"    {d}" for d in differences[:_SHOWN_DIFFERENCES]]
            if len(differences) > _SHOWN_DIFFERENCES:
                lines.append(f"    ... and {len(differences) - _SHOWN_DIFFERENCES} more")
        else:
            lines.append(f"  the cassette has no recording of {error.function}")
    lines.append(
        "  record it: pytest --llm-memo=readwrite (calls the API once), then review and commit the cassette"
    )
    return "\n".join(lines)


def _arguments(material: dict[str, Any]) -> Any:
    """What identifies the call: an SDK call's kwargs and client, or a function's arguments."""
    arguments = material.get("a")
    if isinstance(arguments, dict) and isinstance(arguments.get("material"), dict):
        sdk = arguments["material"]
        return {"kwargs": sdk.get("kwargs"), "client": sdk.get("client")}
    return arguments


def _closest(cassette: CassetteBackend, namespace: str, arguments: Any) -> tuple[list[str], str] | None:
    best: tuple[int, list[str], str] | None = None
    mine = _leaves(arguments)
    for doc in cassette.documents(namespace):
        call = doc.get("call")
        if not isinstance(call, dict):
            continue
        theirs = _leaves(_arguments(call))
        differences = [
            f"{path}: {_show(theirs, path)} -> {_show(mine, path)}"
            for path in sorted(mine.keys() | theirs.keys())
            if mine.get(path, _ABSENT) != theirs.get(path, _ABSENT)
        ]
        if best is None or len(differences) < best[0]:
            best = (len(differences), differences, str(doc.get("key", "")))
    return None if best is None else (best[1], best[2])


_ABSENT = object()


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        found: dict[str, Any] = {}
        for name, item in value.items():
            found.update(_leaves(item, f"{path}.{name}" if path else str(name)))
        return found
    if isinstance(value, list) and value:
        found = {}
        for index, item in enumerate(value):
            found.update(_leaves(item, f"{path}[{index}]"))
        return found
    return {path: value}


def _show(leaves: dict[str, Any], path: str) -> str:
    value = leaves.get(path, _ABSENT)
    return "(absent)" if value is _ABSENT else _compact(value, 120)


def _compact(value: Any, width: int) -> str:
    import orjson

    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


# ---------------------------------------------------------------------- summary


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    recorder = _recorder(config)
    if recorder is None:
        return
    counts = recorder.counts()
    terminalreporter.write_sep("-", "llm_memo")
    line = (
        f"{recorder.mode}: {counts['hits']} calls replayed, {counts['stores']} recorded, "
        f"{counts['misses']} not found in a cassette"
    )
    if counts["uncached"]:
        fate = "refused" if recorder.mode == "replay" else "sent to the API"
        line += f", {counts['uncached']} not cacheable ({fate}; see the log)"
    terminalreporter.write_line(line)
    changed = sorted((c for c in recorder.router.opened() if c.changes), key=lambda c: c.path)
    for cassette in changed:
        terminalreporter.write_line(f"  updated {recorder.display(cassette.path)}: review and commit it")
