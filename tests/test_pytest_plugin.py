"""The pytest plugin, run for real: pytester sessions whose tests call the real openai and
anthropic SDKs against the local server, and the cassette backend they record into."""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import openai
import orjson
import pytest
import wrapt

from llm_memo import llm_cached, pytest_plugin
from llm_memo._config import MODES
from llm_memo.backends import MISS, from_url
from llm_memo.backends.cassette import CassetteBackend
from llm_memo.integrations import anthropic as anthropic_integration
from llm_memo.integrations import openai as openai_integration
from llm_memo.keys import fingerprint
from llm_memo.serialize import pack_entry, read_entry
from llm_memo.testing import FakeLLMServer

pytest_plugins = ["pytester"]

# pytester's inline runs restore sys.modules and sys.meta_path afterwards, so an SDK module
# first imported inside one run would be a new module in the next, patched (or not) by an
# import hook that is gone. Importing every patched module now keeps them the same objects;
# a real session is one process, and test_deferred_patch_in_a_real_process covers that.
for _target in (*openai_integration.SPEC.targets, *anthropic_integration.SPEC.targets):
    importlib.import_module(_target.module)

API_KEY = "sk-llm-memo-plugin-SECRET-0123456789abcdef"
HEADER_SECRET = "trace-SECRET-fedcba9876543210"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pytest_offline"

CONFTEST = """
import os

import anthropic
import openai
import pytest

KEY = os.environ["LLM_MEMO_TEST_KEY"]


@pytest.fixture
def client():
    with openai.OpenAI(base_url=os.environ["LLM_MEMO_TEST_OPENAI_URL"], api_key=KEY, max_retries=0) as client:
        yield client


def async_client():
    return openai.AsyncOpenAI(base_url=os.environ["LLM_MEMO_TEST_OPENAI_URL"], api_key=KEY, max_retries=0)


@pytest.fixture
def claude():
    url = os.environ["LLM_MEMO_TEST_ANTHROPIC_URL"]
    with anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0) as client:
        yield client


@pytest.fixture
def greeting(client):
    # Defined in conftest.py: recorded in cassettes/conftest.json, whichever test uses it.
    answer = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}]
    )
    return answer.choices[0].message.content
"""

TEST_CHAT = """
import os

import pytest

PROMPT = os.environ.get("LLM_MEMO_TEST_PROMPT", "Tell me a joke")


def test_chat(client):
    answer = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": PROMPT}],
        temperature=0,
        extra_headers={"X-Trace-Token": os.environ["LLM_MEMO_TEST_HEADER"]},
    )
    assert PROMPT in answer.choices[0].message.content


def test_stream(client):
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Count to three"}], stream=True
    )
    assert "Count to three" in "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_cut_short_answers_replay_too(client):
    answer = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "An essay [length]"}], max_tokens=3
    )
    assert answer.choices[0].finish_reason == "length"


@pytest.mark.asyncio
async def test_async():
    from conftest import async_client

    async with async_client() as aclient:
        answer = await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Async hello"}]
        )
    assert "Async hello" in answer.choices[0].message.content


def test_conftest_fixture(greeting):
    assert "Say hello" in greeting
"""

TEST_MORE = """
def test_embedding(client):
    assert len(client.embeddings.create(model="text-embedding-3-small", input="hello").data) == 1


def test_claude(claude):
    message = claude.messages.create(
        model="claude-test-model", max_tokens=64, messages=[{"role": "user", "content": "Hi Claude"}]
    )
    assert "Hi Claude" in message.content[0].text
"""

#: The HTTP requests one full run of the project makes when nothing is recorded.
CALLS = 7
PASSED = 7


@pytest.fixture
def project(
    pytester: pytest.Pytester, llm_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.Pytester]:
    _serve(monkeypatch, llm_server)
    monkeypatch.setenv("LLM_MEMO_TEST_KEY", API_KEY)
    monkeypatch.setenv("LLM_MEMO_TEST_HEADER", HEADER_SECRET)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_chat=TEST_CHAT, test_more=TEST_MORE)
    yield pytester


def _serve(monkeypatch: pytest.MonkeyPatch, server: FakeLLMServer) -> None:
    monkeypatch.setenv("LLM_MEMO_TEST_OPENAI_URL", server.openai_base_url)
    monkeypatch.setenv("LLM_MEMO_TEST_ANTHROPIC_URL", server.anthropic_base_url)


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # Hypothesis' plugin makes each inline session ~1.5 s slower, and these use no hypothesis.
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest", *args)


def _cassettes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.json"))}


def _is_patched() -> bool:
    create = vars(openai.resources.chat.completions.completions.Completions)["create"]
    return isinstance(create, wrapt.ObjectProxy)


# ---------------------------------------------------------------------- the plugin


def test_modes_match_the_library() -> None:
    assert pytest_plugin.MODES == MODES


def test_inert_without_a_mode(project: pytest.Pytester, llm_server: FakeLLMServer) -> None:
    for _ in range(2):
        result = _run(project)
        result.assert_outcomes(passed=PASSED)
    assert llm_server.count() == 2 * CALLS  # nothing cached, nothing recorded
    assert not (project.path / "cassettes").exists()
    assert "llm_memo" not in result.stdout.str()
    assert not _is_patched()


def test_record_once_then_replay_offline(project: pytest.Pytester, llm_server: FakeLLMServer) -> None:
    recorded = _run(project, "--llm-memo=readwrite")
    recorded.assert_outcomes(passed=PASSED)
    assert llm_server.count() == CALLS
    recorded.stdout.fnmatch_lines(
        [
            "llm_memo: readwrite (OpenAI and Anthropic SDK calls), cassettes: *",
            f"readwrite: 0 calls replayed, {CALLS} recorded, {CALLS} not found in a cassette",
            "*updated cassettes/conftest.json: review and commit it",
            "*updated cassettes/test_chat.json: review and commit it",
            "*updated cassettes/test_more.json: review and commit it",
        ]
    )
    files = _cassettes(project.path)
    assert sorted(files) == [
        "cassettes/conftest.json",
        "cassettes/test_chat.json",
        "cassettes/test_more.json",
    ]
    assert not _is_patched()  # restored at the end of the session

    llm_server.reset()
    replayed = _run(project, "--llm-memo=replay")
    replayed.assert_outcomes(passed=PASSED)
    assert llm_server.count() == 0  # not one request: offline
    replayed.stdout.fnmatch_lines([f"replay: {CALLS} calls replayed, 0 recorded, 0 not found in a cassette"])
    assert "updated" not in replayed.stdout.str()
    assert _cassettes(project.path) == files
    assert not _is_patched()

    # readwrite again: everything is recorded already, nothing is called or rewritten.
    _run(project, "--llm-memo=readwrite").assert_outcomes(passed=PASSED)
    assert llm_server.count() == 0
    assert _cassettes(project.path) == files

    # refresh calls the API again for everything.
    _run(project, "--llm-memo=refresh").assert_outcomes(passed=PASSED)
    assert llm_server.count() == CALLS


def test_replay_miss_fails_the_test_naming_the_call(
    project: pytest.Pytester, llm_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(project, "--llm-memo=readwrite").assert_outcomes(passed=PASSED)
    llm_server.reset()
    monkeypatch.setenv("LLM_MEMO_TEST_PROMPT", "Tell me a pun")

    result = _run(project, "--llm-memo=replay")

    result.assert_outcomes(passed=PASSED - 1, failed=1)
    assert llm_server.count() == 0
    result.stdout.fnmatch_lines(
        [
            "E * llm_memo replay: no recording of this openai.chat.completions.create call (key *...) "
            "in cassettes/test_chat.json",
            'E *call: {"kwargs":{"messages":[[]{"content":"Tell me a pun","role":"user"}],*',  # [[] is a "["
            "E *closest recording (*...) differs in 1 place(s):",
            'E *kwargs.messages[[]0].content: "Tell me a joke" -> "Tell me a pun"',
            "E *record it: pytest --llm-memo=readwrite*",
            "test_chat.py:*: CacheMiss",  # the failure points at the test's own line
            "*FAILED test_chat.py::test_chat - llm_memo.errors.CacheMiss*",
        ]
    )
    assert "_sdk.py" not in result.stdout.str()  # llm_memo's own frames are left out

    # Recording it adds one entry to that module's cassette and touches nothing else.
    before = _cassettes(project.path)
    _run(project, "--llm-memo=readwrite").assert_outcomes(passed=PASSED)
    assert llm_server.count() == 1
    after = _cassettes(project.path)
    assert {name for name in after if after[name] != before[name]} == {"cassettes/test_chat.json"}


def test_cassettes_are_stable_and_hold_no_secrets(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    recordings: list[dict[str, bytes]] = []
    port = 0
    for _ in range(2):
        # A fresh server on the same port: the same answers, ids and request ids again.
        with FakeLLMServer(port=port) as server:
            port = server.port
            _serve(monkeypatch, server)
            shutil.rmtree(project.path / "cassettes", ignore_errors=True)
            _run(project, "--llm-memo=readwrite").assert_outcomes(passed=PASSED)
            assert server.count() == CALLS
            recordings.append(_cassettes(project.path))
    assert recordings[0] == recordings[1]  # byte for byte

    for name, data in recordings[0].items():
        text = data.decode()
        assert API_KEY not in text and HEADER_SECRET not in text, name
        assert "Bearer" not in text and "x-trace-token" not in text.lower(), name
        assert str(project.path) not in text and os.path.expanduser("~") not in text, name
        document = orjson.loads(data)
        keys = [(e["namespace"], e["key"]) for e in document["entries"]]
        assert keys == sorted(keys), name
        for entry in document["entries"]:
            assert set(entry) == {"namespace", "key", "call", "value"}  # no timestamps, no headers
    chat = orjson.loads(recordings[0]["cassettes/test_chat.json"])["entries"]
    assert any(
        e["call"]["a"]["material"]["kwargs"]["messages"][0]["content"] == "Tell me a joke" for e in chat
    )
    assert "Fake answer" in recordings[0]["cassettes/test_chat.json"].decode()  # the answer, readable


def test_edited_answer_is_what_replay_returns(project: pytest.Pytester, llm_server: FakeLLMServer) -> None:
    _run(project, "--llm-memo=readwrite", "test_chat.py::test_chat").assert_outcomes(passed=1)
    path = project.path / "cassettes" / "test_chat.json"
    path.write_text(path.read_text().replace("Fake answer", "Hand-edited answer"))
    project.makepyfile(
        test_chat=TEST_CHAT
        + "\n\ndef test_edited(client):\n"
        + "    answer = client.chat.completions.create(model='gpt-4o-mini', temperature=0,\n"
        + "        messages=[{'role': 'user', 'content': 'Tell me a joke'}])\n"
        + "    assert answer.choices[0].message.content.startswith('Hand-edited answer')\n"
    )
    llm_server.reset()
    _run(
        project, "--llm-memo=replay", "test_chat.py::test_chat", "test_chat.py::test_edited"
    ).assert_outcomes(passed=2)
    assert llm_server.count() == 0


LAZY = """
import os
import sys

FIRST_IMPORT = "openai" not in sys.modules


def test_sdk_imported_after_the_session_started():
    assert FIRST_IMPORT
    import openai  # first imported here: the plugin's deferred patch applies on import

    url, key = os.environ["LLM_MEMO_TEST_OPENAI_URL"], os.environ["LLM_MEMO_TEST_KEY"]
    with openai.OpenAI(base_url=url, api_key=key, max_retries=0) as client:
        answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "lazy"}])
    assert "lazy" in answer.choices[0].message.content
"""


def test_deferred_patch_in_a_real_process(
    pytester: pytest.Pytester, llm_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(monkeypatch, llm_server)
    monkeypatch.setenv("LLM_MEMO_TEST_KEY", API_KEY)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_lazy=LAZY)
    for mode in ("readwrite", "replay"):
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-p", "no:hypothesispytest", f"--llm-memo={mode}"
        )
        result.assert_outcomes(passed=1)
        assert llm_server.count() == 1  # recorded once, replayed without a request


def test_replay_needs_no_api_key(
    pytester: pytest.Pytester, llm_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(monkeypatch, llm_server)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    # A client built when conftest.py is imported (before pytest_configure), from the environment.
    pytester.makeconftest(
        "import os, openai\n"
        "CLIENT = openai.OpenAI(base_url=os.environ['LLM_MEMO_TEST_OPENAI_URL'], max_retries=0)\n"
    )
    pytester.makepyfile(
        test_key="from conftest import CLIENT\n\n\n"
        "def test_it():\n"
        "    CLIENT.embeddings.create(model='text-embedding-3-small', input='offline')\n"
    )
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    _run(pytester, "--llm-memo=readwrite").assert_outcomes(passed=1)
    monkeypatch.delenv("OPENAI_API_KEY")
    _run(pytester, "--llm-memo=replay").assert_outcomes(passed=1)
    assert llm_server.count() == 1
    assert "OPENAI_API_KEY" not in os.environ  # the placeholder is gone again
    without = _run(pytester)  # without the plugin: no key, as usual
    assert without.ret != 0 and "OPENAI_API_KEY" in without.stderr.str()


def test_ini_options_and_the_command_line_winning(
    project: pytest.Pytester, llm_server: FakeLLMServer
) -> None:
    project.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "llm_memo_mode = replay\nllm_memo_cassettes = recorded\n"
    )
    missing = _run(project)  # replay from the ini, and nothing is recorded yet
    missing.assert_outcomes(failed=PASSED - 1, errors=1)
    assert llm_server.count() == 0

    _run(project, "--llm-memo=readwrite").assert_outcomes(passed=PASSED)
    assert sorted(_cassettes(project.path / "recorded")) == [
        "conftest.json",
        "test_chat.json",
        "test_more.json",
    ]
    llm_server.reset()
    _run(project).assert_outcomes(passed=PASSED)
    assert llm_server.count() == 0

    off = _run(project, "--llm-memo=off")  # the command line wins over the ini
    off.assert_outcomes(passed=PASSED)
    assert llm_server.count() == CALLS


def test_bad_mode_is_a_usage_error(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nllm_memo_mode = record\n")
    result = _run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*llm_memo_mode = 'record': use one of readwrite, readonly, refresh, replay, off*"]
    )
    result = _run(project, "--llm-memo=always")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_example_suite_replays_offline(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LLM_MEMO_EXAMPLE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    before = _cassettes(EXAMPLE)
    assert before, "examples/pytest_offline has no recorded cassette"
    # Its pytest.ini says replay; the base URL points at a port where nothing listens.
    result = _run(pytester, str(EXAMPLE), "-o", "asyncio_default_fixture_loop_scope=function")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["replay: * calls replayed, 0 recorded, 0 not found in a cassette"])
    assert _cassettes(EXAMPLE) == before
    assert "OPENAI_API_KEY" not in os.environ  # the replay placeholder is removed again


# ---------------------------------------------------------------------- the cassette backend


def _entry(material: dict[str, object], value: bytes, expires: float | None = None) -> tuple[str, bytes]:
    data = orjson.dumps(material, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(data).hexdigest(), pack_entry(
        value, fingerprint(data), 123.0, expires, data, cost=1.5
    )


def test_cassette_round_trip_sorted_and_timeless(tmp_path: Path) -> None:
    path = tmp_path / "c" / "x.json"
    cassette = CassetteBackend(path)
    assert cassette.get("ns", "0" * 64) is MISS
    key_b, entry_b = _entry({"a": {"q": "b"}, "ns": "ns"}, b'{"answer":"B"}')
    key_a, entry_a = _entry({"a": {"q": "a"}, "ns": "ns"}, b'["A",{"$tuple":[1,2]}]')
    cassette.set("ns", key_b, entry_b, None)
    cassette.set("ns", key_a, entry_a, None)
    cassette.set("other", "k", b"\x00not an entry\xff", None)

    document = orjson.loads(path.read_bytes())
    assert document["llm_memo_cassette"] == 1
    assert [(e["namespace"], e["key"]) for e in document["entries"]] == sorted(
        [("ns", key_a), ("ns", key_b), ("other", "k")]
    )
    assert document["entries"][-1]["bytes"]  # not an entry: kept whole, as base64
    assert path.read_bytes().startswith(b'{\n  "llm_memo_cassette": 1,\n  "entries": [\n')
    assert oct(path.stat().st_mode & 0o777) == oct(0o644 & ~_umask())

    fresh = CassetteBackend(path)  # another process reading the file
    got = fresh.get("ns", key_a)
    assert isinstance(got, bytes)
    entry = read_entry(got)
    assert (entry.value, entry.created, entry.cost) == (b'["A",{"$tuple":[1,2]}]', 0.0, 0.0)
    assert fresh.get("other", "k") == b"\x00not an entry\xff"
    assert [e.key for e in fresh.entries("ns")] == sorted([key_a, key_b])

    before = path.read_bytes()
    fresh.set("ns", key_a, _entry({"a": {"q": "a"}, "ns": "ns"}, b'["A",{"$tuple":[1,2]}]')[1], None)
    assert path.read_bytes() == before and fresh.changes == 0  # same answer, other timestamps: untouched
    assert fresh.delete("ns", key_a) and not fresh.delete("ns", key_a)
    assert cassette.get("ns", key_a) is MISS  # the first instance sees the change on disk
    assert cassette.clear("ns") == 1 and len(cassette) == 1


def test_cassette_expiry_and_bad_files(tmp_path: Path) -> None:
    now = [1000.0]
    cassette = CassetteBackend(tmp_path / "x.json", clock=lambda: now[0])
    cassette.set("ns", "k", b"raw", 10)
    assert cassette.get("ns", "k") == b"raw"
    now[0] += 10
    assert cassette.get("ns", "k") is MISS

    bad = tmp_path / "bad.json"
    bad.write_text('{"llm_memo_cassette": 1, "entries": [\n<<<<<<< HEAD\n')
    with pytest.raises(ValueError, match=r"bad\.json: not a cassette"):
        CassetteBackend(bad).get("ns", "k")
    bad.write_text('{"llm_memo_cassette": 1, "entries": [{"namespace": "ns", "key": "k"}]}')
    with pytest.raises(ValueError, match="entry 1: an entry needs 'value'"):
        CassetteBackend(bad).get("ns", "k")


def test_cassette_url_scheme(tmp_path: Path) -> None:
    backend = from_url(f"cassette:{tmp_path / 'u.json'}")
    assert isinstance(backend, CassetteBackend) and backend.path == tmp_path / "u.json"
    with pytest.raises(ValueError, match="name the cassette file"):
        from_url("cassette:")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_cassette_behind_the_decorator(tmp_path: Path) -> None:
    calls: list[str] = []

    def ask(prompt: str) -> dict[str, object]:
        calls.append(prompt)
        return {"answer": prompt.upper(), "pair": (1, 2)}

    path = tmp_path / "cassettes" / "ask.json"
    first = llm_cached(backend=CassetteBackend(path), namespace="app.ask")(ask)
    second = llm_cached(backend=f"cassette:{path}", namespace="app.ask", mode="replay")(ask)
    assert first("hi") == {"answer": "HI", "pair": (1, 2)}
    assert second("hi") == {"answer": "HI", "pair": (1, 2)}  # read back from the file alone
    assert calls == ["hi"]
    (entry,) = orjson.loads(path.read_bytes())["entries"]
    assert entry["call"]["a"] == {"prompt": "hi"}
    assert entry["value"] == {"answer": "HI", "pair": {"$tuple": [1, 2]}}


def test_concurrent_writers_merge(tmp_path: Path) -> None:
    # Two instances stand for two processes (pytest -n): each write re-reads the file under
    # a lock on the directory, so neither loses the other's entries.
    import threading

    path = tmp_path / "shared.json"
    writers = [CassetteBackend(path), CassetteBackend(path)]

    def write(index: int) -> None:
        for i in range(25):
            writers[index].set("ns", f"{index}-{i:02d}", b"x", None)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(CassetteBackend(path)) == 50
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
