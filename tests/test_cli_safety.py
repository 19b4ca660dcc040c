"""Commands that must not surprise: destructive ones ask, listings see every row, errors are one line.

Each test runs ``llm-memo`` (or a small program) in a subprocess, as a user would,
against real stores: disk, SQLite files and real redis-servers (one on a unix socket).
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from _cli import parse_json, run_cli
from _redis_fixtures import RedisServer

from llm_memo.backends import from_url
from llm_memo.backends.redis import redact_url
from llm_memo.explain import call_material
from llm_memo.keys import digest, fingerprint, material_bytes
from llm_memo.serialize import pack_entry

ASK = "app.ask"


def put(url: str, namespace: str, arguments: dict[str, Any], value: Any, *, ttl: float | None = None) -> str:
    """One entry, packed as the front packs it, stored with ``ttl`` (header and store agree)."""
    data = material_bytes(call_material(namespace, arguments))
    now = time.time()
    entry = pack_entry(
        json.dumps(value).encode(), fingerprint(data), now, None if ttl is None else now + ttl, data
    )
    from_url(url).set(namespace, digest(data), entry, ttl)
    return digest(data)


def keys_in(url: str, *extra: str) -> set[str]:
    return {e["key"] for e in parse_json(run_cli("ls", "--backend", url, "--json", *extra))}


def one_line_error(done: subprocess.CompletedProcess[str], *needles: str, code: int | None = None) -> str:
    assert done.returncode != 0, done.stdout
    if code is not None:
        assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(params=["disk", "sqlite"])
def file_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"disk:{tmp_path / 'disk'}" if request.param == "disk" else f"sqlite:{tmp_path / 'c.sqlite3'}"


# ----------------------------------------------------------------------- clear


def test_clear_without_yes_refuses_when_nobody_can_answer(file_store: str) -> None:
    key = put(file_store, ASK, {"prompt": "kept"}, "kept")
    piped = run_cli("clear", "--backend", file_store, input="")  # stdin is a pipe, not a terminal
    one_line_error(piped, "--yes", "nothing removed", code=2)
    as_json = run_cli("clear", "--backend", file_store, "--json", input="")
    one_line_error(as_json, "--yes", code=2)
    assert keys_in(file_store) == {key}
    assert parse_json(run_cli("clear", "--yes", "--backend", file_store, "--json"))["removed"] == 1
    assert keys_in(file_store) == set()


# ----------------------------------------------------------------------- expired rows


def test_prune_ls_and_stats_see_expired_rows_on_disk_and_sqlite_alike(file_store: str) -> None:
    gone = put(file_store, ASK, {"prompt": "soon gone"}, "x", ttl=0.2)
    kept = put(file_store, ASK, {"prompt": "kept"}, "kept")
    time.sleep(0.3)  # only ever more expired: no timing bound is asserted
    stats = parse_json(run_cli("stats", "--backend", file_store, "--json"))
    assert (stats["entries"], stats["expired"]) == (2, 1)
    assert keys_in(file_store, "--expired") == {gone}
    pruned = parse_json(run_cli("prune", "--backend", file_store, "--json"))
    assert pruned["keys"] == [gone] and pruned["expired"] == 1
    assert keys_in(file_store) == {kept}


# ----------------------------------------------------------------------- Redis URL forms


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Not tmp_path: a unix socket path must stay under ~100 bytes.
    path = Path(tempfile.mkdtemp(prefix="llm-memo-sock-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _round_trip(url: str, server: RedisServer, db: int, prefix: str = "llm-memo", **auth: str) -> None:
    """Store through ``url``, then find the key with a plain client in database ``db``."""
    backend = from_url(url)
    key = put(url, ASK, {"prompt": url}, "answer")
    assert backend.get(ASK, key) != b"" and "//" in backend.url
    assert "pw" not in backend.url.replace("***", "")
    import redis

    with redis.Redis(host="127.0.0.1", port=server.port, db=db, **auth) as plain:  # type: ignore[arg-type]
        assert plain.exists(f"{prefix}:{ASK}:{key}") == 1, url
    assert key in keys_in(url)  # and the command reads the same place


def _with_password(server: RedisServer) -> RedisServer:
    # Set once started: the fixture's start-up probe is an unauthenticated PING.
    with server.client() as plain:
        plain.config_set("requirepass", "pw")
    return server


def test_every_documented_redis_url_form_connects(
    redis_server_factory: Callable[..., RedisServer], socket_dir: Path
) -> None:
    sock = socket_dir / "r.sock"
    open_server = redis_server_factory("--unixsocket", str(sock), "--unixsocketperm", "700")
    port = open_server.port
    _round_trip(f"redis://127.0.0.1:{port}", open_server, 0)
    _round_trip(f"redis://127.0.0.1:{port}/3", open_server, 3)
    _round_trip(f"redis://127.0.0.1:{port}/4?prefix=team", open_server, 4, prefix="team")
    _round_trip(f"unix://{sock}", open_server, 0)
    _round_trip(f"unix://{sock}?db=2", open_server, 2)
    _round_trip(f"unix://{sock}?db=5&prefix=team", open_server, 5, prefix="team")
    assert from_url(f"unix://{sock}?db=2").url == f"unix://{sock}?db=2"

    locked = _with_password(redis_server_factory())
    auth = {"password": "pw"}
    _round_trip(f"redis://:pw@127.0.0.1:{locked.port}/1", locked, 1, **auth)
    _round_trip(f"redis://default:pw@127.0.0.1:{locked.port}/2", locked, 2, **auth)
    assert from_url(f"redis://:pw@127.0.0.1:{locked.port}/1").url == f"redis://***@127.0.0.1:{locked.port}/1"


def test_password_in_a_unix_socket_url(
    redis_server_factory: Callable[..., RedisServer], socket_dir: Path
) -> None:
    sock = socket_dir / "p.sock"
    server = _with_password(redis_server_factory("--unixsocket", str(sock), "--unixsocketperm", "700"))
    _round_trip(f"unix://{sock}?db=1&password=pw", server, 1, password="pw")
    assert from_url(f"unix://{sock}?db=1&password=pw").url == f"unix://{sock}?db=1&password=***"


def test_cluster_url_form(redis_cluster_url: str) -> None:
    key = put(redis_cluster_url, ASK, {"prompt": "cluster"}, "answer")
    assert from_url(redis_cluster_url).get(ASK, key) and key in keys_in(redis_cluster_url)


def test_rebuilt_urls_keep_their_double_slash() -> None:
    assert redact_url("redis://") == "redis://"
    assert redact_url("unix:///run/redis.sock?db=1") == "unix:///run/redis.sock?db=1"
    done = run_cli("ls", "--backend", "redis://127.0.0.1:1/0")
    assert "redis://127.0.0.1:1/0" in one_line_error(done) and "::" not in done.stderr


# ----------------------------------------------------------------------- optional extras

_HIDDEN = [
    (
        "redis",
        "import llm_memo\nllm_memo.llm_cached(backend='redis://127.0.0.1:1/0')(lambda p: p)('hi')",
        "redis",
    ),
    ("redis", "import llm_memo\nllm_memo.RedisBackend", "redis"),
    ("openai", "import llm_memo\nllm_memo.patch_openai(defer=False)", "openai"),
    ("anthropic", "import llm_memo\nllm_memo.patch_anthropic(defer=False)", "anthropic"),
    ("langchain_core", "import llm_memo.integrations.langchain", "langchain"),
]


@pytest.mark.parametrize(("module", "code", "extra"), _HIDDEN)
def test_a_missing_extra_is_one_error_naming_the_pip_install(module: str, code: str, extra: str) -> None:
    program = f"import sys\nsys.modules[{module!r}] = None\n{code}\n"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.count("Traceback") == 1, done.stderr
    assert "During handling" not in done.stderr and "direct cause" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("llm_memo.errors.MissingExtra: ") and f"pip install 'llm-memo[{extra}]'" in last


def test_the_command_names_the_redis_extra_in_one_line() -> None:
    program = (
        "import sys\nsys.modules['redis'] = None\nfrom llm_memo.cli import main\nsys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, "ls", "--backend", "redis://:secret@127.0.0.1:1/0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = one_line_error(done, "pip install 'llm-memo[redis]'")
    assert "secret" not in line


# ----------------------------------------------------------------------- explain


def test_explain_applies_the_function_defaults(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'c.sqlite3'}"
    (tmp_path / "explained_app.py").write_text(
        textwrap.dedent(
            f"""
            import llm_memo

            @llm_memo.llm_cached(backend={store!r}, ignore=["verbose"])
            def ask(prompt, model="gpt-4o-mini", temperature=0.0, verbose=False):
                return prompt.upper()
            """
        )
    )
    env = {"PYTHONPATH": str(tmp_path)}
    subprocess.run(
        [sys.executable, "-c", "import explained_app; explained_app.ask('hi')"],
        env={**__import__("os").environ, **env},
        check=True,
        timeout=60,
    )
    call = '{"prompt": "hi"}'
    report = parse_json(
        run_cli(
            "explain",
            "--backend",
            store,
            "--function",
            "explained_app.ask",
            "--call",
            call,
            "--json",
            env=env,
        )
    )
    assert report["stored"] is True and report["defaults"]["applied"] is True
    assert "model" in report["defaults"]["note"] and "verbose" not in report["defaults"]["note"]
    human = run_cli("explain", "--backend", store, "--function", "explained_app.ask", "--call", call, env=env)
    assert "this call is a hit" in human.stdout, human.stdout

    unknown = parse_json(
        run_cli("explain", "--backend", store, "--function", "nowhere_app.ask", "--call", call, "--json")
    )
    assert unknown["stored"] is False and unknown["defaults"]["applied"] is False
    assert "cannot import nowhere_app.ask" in unknown["defaults"]["note"]


# ----------------------------------------------------------------------- demo


def test_demo_dir_is_served_from_its_cache_on_the_second_run(tmp_path: Path) -> None:
    directory = str(tmp_path / "demo")
    first = parse_json(run_cli("demo", "--latency", "0", "--dir", directory, "--json", timeout=90))
    assert first["summary"]["misses"] == 2
    second = parse_json(run_cli("demo", "--latency", "0", "--dir", directory, "--json", timeout=90))
    assert [c["outcome"] for c in second["calls"]] == ["hit"] * 5


# ----------------------------------------------------------------------- import


def test_import_refuses_a_value_that_is_not_the_entry(tmp_path: Path) -> None:
    source, target = f"sqlite:{tmp_path / 'a.sqlite3'}", f"sqlite:{tmp_path / 'b.sqlite3'}"
    put(source, ASK, {"prompt": "hi"}, {"answer": "the real one"})
    exported = tmp_path / "review.jsonl"
    assert run_cli("export", str(exported), "--backend", source).returncode == 0
    line = orjson.loads(exported.read_text())
    assert line["value"] == {"answer": "the real one"}
    line["value"] = {"answer": "what the reviewer approved"}
    exported.write_text(orjson.dumps(line).decode() + "\n")
    done = run_cli("import", str(exported), "--backend", target)
    one_line_error(done, "line 1", "'value' does not match the entry")
    assert keys_in(target) == set()
    line["value"] = {"answer": "the real one"}
    exported.write_text(orjson.dumps(line).decode() + "\n")
    assert parse_json(run_cli("import", str(exported), "--backend", target, "--json"))["imported"] == 1


def test_import_compares_values_as_json_not_as_python() -> None:
    from llm_memo.transfer import _same_json

    assert _same_json({"a": 1, "b": [1.5]}, {"b": [1.5], "a": 1})
    assert not _same_json(True, 1) and not _same_json(1, 1.0)


# ----------------------------------------------------------------------- run --wrap


def test_run_wrap_typos_are_one_clear_line_each(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "mod.py").write_text("def fn(x):\n    return x * 2\n")
    (tmp_path / "app.py").write_text("import pkg.mod\nprint('ran', pkg.mod.fn(21))\n")
    env = {"PYTHONPATH": str(tmp_path)}
    app = [sys.executable, str(tmp_path / "app.py")]

    typo = run_cli("run", "--backend", "memory", "--wrap", "pkg.mod:typo", "--", *app, env=env)
    assert typo.returncode == 0 and typo.stdout.strip().endswith("ran 42")
    assert typo.stderr.strip() == (
        "llm-memo: LLM_MEMO_WRAP: pkg.mod:typo is not cached: module pkg.mod has no attribute 'typo'"
    )
    missing = run_cli("run", "--backend", "memory", "--wrap", "nosuch.mod:fn", "--", *app, env=env)
    assert missing.returncode == 0 and missing.stdout.strip().endswith("ran 42")
    assert (
        missing.stderr.strip()
        == "llm-memo: LLM_MEMO_WRAP: nosuch.mod:fn is not cached: no module named nosuch.mod"
    )
    fine = run_cli("run", "--backend", "memory", "--wrap", "pkg.mod:fn", "--", *app, env=env)
    assert fine.returncode == 0 and fine.stderr == ""


def test_wrap_of_a_missing_attribute_names_it() -> None:
    import llm_memo

    with pytest.raises(AttributeError, match="module json has no attribute 'nothing_here'"):
        llm_memo.wrap("json:nothing_here")


# ----------------------------------------------------------------------- small ones


def test_version_and_argument_checks(tmp_path: Path) -> None:
    import llm_memo

    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"llm-memo {llm_memo.__version__}"
    one_line_error(run_cli("ls", "--backend", ""), "--backend is empty", code=2)
    one_line_error(run_cli("ls", "--backend", "  "), "--backend is empty", code=2)
    one_line_error(
        run_cli("run", "--backend", "", "--", sys.executable, "-c", "pass"), "--backend is empty", code=2
    )
    store = f"sqlite:{tmp_path / 'c.sqlite3'}"
    put(store, ASK, {"prompt": "hi"}, "x")
    for command in (["ls"], ["explain", "--function", ASK, "--call", "{}"]):
        done = run_cli(*command, "--limit", "-1", "--backend", store)
        assert done.returncode == 2 and "must be zero or more" in done.stderr
    for age in ("0", "0s", "0.0h", "-1d"):
        done = run_cli("prune", f"--older-than={age}", "--backend", store)
        assert done.returncode == 2 and "must be more than zero" in done.stderr
    assert len(keys_in(store)) == 1

    into_dir = run_cli("export", str(tmp_path), "--backend", store)
    assert ".part" not in one_line_error(into_dir, "is a directory", code=2)
    no_parent = run_cli("export", str(tmp_path / "nope" / "x.jsonl"), "--backend", store)
    assert ".part" not in one_line_error(no_parent, "cannot write", "x.jsonl")


# ----------------------------------------------------------------------- hostile rows


def test_hostile_sqlite_rows_are_counted_not_fatal(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'c.sqlite3'}"
    good = put(store, ASK, {"prompt": "hi"}, "fine")
    evil_ns = "evil\x1b[2J\nns"
    put(store, evil_ns, {"prompt": "x"}, "escaped")
    with sqlite3.connect(tmp_path / "c.sqlite3") as db:
        rows = [
            ("a" * 64, ASK, 10**18),  # bytes(10**18) would try to allocate an exabyte
            ("b" * 64, ASK, "some text"),
            (b"\xff" * 8, ASK, b"blob key"),
            ("c" * 64, ASK, 1e300),
        ]
        db.executemany(
            "INSERT INTO llm_memo_entries (key, namespace, value, created) VALUES (?, ?, ?, 0)", rows
        )
    db.close()
    stats = parse_json(run_cli("stats", "--backend", store, "--json"))
    assert (stats["entries"], stats["invalid"]) == (6, 4)
    listed = run_cli("ls", "--backend", store)
    assert listed.returncode == 0, listed.stderr
    assert "\x1b" not in listed.stdout and "evil\\x1b[2J\\nns" in listed.stdout
    exported = run_cli("export", "-", "--backend", store)
    assert exported.returncode == 0 and len(exported.stdout.splitlines()) == 2
    pruned = parse_json(run_cli("prune", "--unreadable", "--backend", store, "--json"))
    assert pruned["unreadable"] == 3  # the row whose key is not text cannot be named, so stays
    assert good in keys_in(store)


def test_a_non_utf8_redis_key_is_counted_not_fatal(redis_url: str) -> None:
    good = put(redis_url, ASK, {"prompt": "hi"}, "fine")
    import redis

    with redis.Redis.from_url(redis_url) as plain:
        plain.set(b"llm-memo:\xff\xfe:" + b"d" * 64, base64.b64encode(b"not an entry"))
    stats = parse_json(run_cli("stats", "--backend", redis_url, "--json"))
    assert (stats["entries"], stats["invalid"]) == (2, 1)
    listed = run_cli("ls", "--backend", redis_url)
    assert listed.returncode == 0 and "\\xff\\xfe" in listed.stdout, listed.stderr
    assert keys_in(redis_url) == {good, "d" * 64}
