"""The store commands of ``llm-memo``, run as a subprocess against real stores.

Entries are written by the real decorator (or, where a test needs a past
creation time, packed exactly as the front packs them); the command then reads
the same disk directory, SQLite file or Redis server from its own process.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _cli import parse_json, run_cli

import llm_memo
from llm_memo import CachedFunction, llm_cached
from llm_memo.backends import from_url
from llm_memo.cli import commands
from llm_memo.cli._output import redact
from llm_memo.explain import call_material, diff_material, explain
from llm_memo.keys import digest, fingerprint, material_bytes
from llm_memo.serialize import pack_entry

ASK = "app.ask"
SUMMARISE = "app.summarise"
SYSTEM = {"role": "system", "content": "Answer in one line."}
USER = {"role": "user", "content": "Tell me a joke"}


# ----------------------------------------------------------------------- stores


@pytest.fixture(params=["disk", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL of each kind (Redis: the test server, emptied)."""
    if request.param == "disk":
        return f"disk:{tmp_path / 'disk'}"
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'cache.sqlite3'}"
    url: str = request.getfixturevalue("redis_url")
    return url


def populate(url: str) -> dict[str, CachedFunction[..., Any]]:
    """Three app.ask entries and one app.summarise entry, through the real decorator."""

    @llm_cached(backend=url, namespace=ASK)
    def ask(
        prompt: str,
        *,
        model: str = "gpt-4o-mini",
        temperature: float = 0.0,
        messages: list[Any] | None = None,
    ) -> dict[str, Any]:
        return {"answer": f"about {prompt}", "model": model}

    @llm_cached(backend=url, namespace=SUMMARISE, ttl="7d")
    def summarise(text: str) -> str:
        return text[:12]

    ask("Tell me a joke", messages=[SYSTEM, USER])
    ask("Tell me a joke")
    ask("What is a cache?", model="gpt-4o")
    summarise("A long text about caches and keys.")
    return {"ask": ask, "summarise": summarise}


def put(
    url: str,
    namespace: str,
    arguments: dict[str, Any],
    value: Any,
    *,
    created: float | None = None,
    expires: float | None = None,
    material: bool = True,
    key: str | None = None,
) -> str:
    """Store one entry packed as the front packs it, with a chosen creation time."""
    backend = from_url(url)
    data = material_bytes(call_material(namespace, arguments))
    key = key or digest(data)
    entry = pack_entry(
        json.dumps(value).encode(),
        fingerprint(data),
        time.time() if created is None else created,
        expires,
        data if material else None,
        cost=1.25,
    )
    backend.set(namespace, key, entry, None)
    return key


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens once the socket is closed


def keys_in(url: str, *extra: str) -> set[str]:
    return {e["key"] for e in parse_json(run_cli("ls", "--backend", url, "--json", *extra))}


def assert_one_line_error(done: Any, *needles: str, code: int | None = None) -> None:
    assert done.returncode != 0, done.stdout
    if code is not None:
        assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("llm-memo "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


# ----------------------------------------------------------------------- reading a store


def test_stats_ls_show(store: str) -> None:
    fns = populate(store)
    joke_key = fns["ask"].cache_key("Tell me a joke")

    stats = parse_json(run_cli("stats", "--backend", store, "--json"))
    assert stats["entries"] == 4 and stats["expired"] == 0 and stats["invalid"] == 0
    assert stats["bytes"] > 0 and stats["oldest"] and stats["newest"]
    assert {ns: f["entries"] for ns, f in stats["functions"].items()} == {ASK: 3, SUMMARISE: 1}

    listed = parse_json(run_cli("ls", "--backend", store, "--json"))
    assert len(listed) == 4 and joke_key in {e["key"] for e in listed}
    summary = next(e for e in listed if e["function"] == SUMMARISE)
    assert summary["expires"] is not None and not summary["expired"]

    shown = parse_json(run_cli("show", joke_key[:8], "--backend", store, "--json"))
    assert shown["key"] == joke_key and shown["function"] == ASK
    assert shown["material"]["a"] == {
        "prompt": "Tell me a joke",
        "model": "gpt-4o-mini",
        "temperature": 0,
        "messages": None,
    }
    assert shown["value"] == {"answer": "about Tell me a joke", "model": "gpt-4o-mini"}


def test_human_output_and_filters(tmp_path: Path) -> None:
    url = f"disk:{tmp_path / 'disk'}"
    fns = populate(url)
    joke_key = fns["ask"].cache_key("Tell me a joke")
    old = put(url, ASK, {"prompt": "old"}, "old", created=time.time() - 3 * 3600)

    human = run_cli("stats", "--backend", url)
    assert human.returncode == 0 and "FUNCTION" in human.stdout and f"{ASK}  " in human.stdout
    assert "entries    5" in human.stdout
    assert "\x1b[" not in human.stdout  # no colour when stdout is not a terminal

    table = run_cli("ls", "--backend", url)
    assert table.stdout.splitlines()[0].split() == ["KEY", "FUNCTION", "AGE", "EXPIRES", "SIZE"]
    assert joke_key[:12] in table.stdout and "5 entries" in table.stdout
    assert table.stdout.splitlines()[-2].startswith(old[:12])  # newest first
    assert len(keys_in(url, "--function", SUMMARISE)) == 1
    assert len(keys_in(url, "--function", "app.*", "--newer-than", "1h")) == 4
    assert keys_in(url, "--older-than", "2h") == {old}
    assert run_cli("ls", "--older-than", "soon", "--backend", url).returncode == 2

    pretty = run_cli("show", joke_key, "--backend", url)
    assert pretty.returncode == 0
    assert "call (key material)" in pretty.stdout and '    "prompt": "Tell me a joke",' in pretty.stdout
    assert '"answer": "about Tell me a joke"' in pretty.stdout


def test_rm_and_clear(store: str) -> None:
    fns = populate(store)
    joke = fns["ask"].cache_key("Tell me a joke")
    other = fns["ask"].cache_key("What is a cache?", model="gpt-4o")

    removed = parse_json(run_cli("rm", joke[:10], other, "--backend", store, "--json"))
    assert {r["key"] for r in removed["removed"]} == {joke, other}
    assert_one_line_error(run_cli("rm", joke[:10], "--backend", store), "no entry", code=1)

    cleared = parse_json(run_cli("clear", "--function", SUMMARISE, "--backend", store, "--json"))
    assert cleared == {"removed": 1, "function": SUMMARISE}
    done = run_cli("clear", "--yes", "--backend", store)
    assert done.returncode == 0 and "removed 1 entry" in done.stdout
    assert keys_in(store) == set()


def test_prune_older_than(store: str) -> None:
    now = time.time()
    fresh = put(store, ASK, {"prompt": "fresh"}, "new")
    old = put(store, ASK, {"prompt": "old"}, "old", created=now - 10 * 86400)
    older = put(store, SUMMARISE, {"text": "older"}, "older", created=now - 40 * 86400)

    dry = parse_json(run_cli("prune", "--older-than", "7d", "--dry-run", "--backend", store, "--json"))
    assert dry["dry_run"] and set(dry["keys"]) == {old, older} and dry["older"] == 2
    one = parse_json(run_cli("prune", "--older-than", "30d", "--backend", store, "--json"))
    assert one["keys"] == [older] and not one["dry_run"]
    done = run_cli("prune", "--older-than", "7d", "--backend", store)
    assert done.returncode == 0 and "removed 1 entry" in done.stdout
    assert keys_in(store) == {fresh}


def test_prune_removes_expired_entries_of_a_disk_store(tmp_path: Path) -> None:
    url = f"disk:{tmp_path / 'disk'}"

    @llm_cached(backend=url, namespace=ASK, ttl=0.3)
    def ask(prompt: str) -> str:
        return prompt

    ask("soon gone")
    put(url, ASK, {"prompt": "kept"}, "kept")
    time.sleep(0.4)
    stats = parse_json(run_cli("stats", "--backend", url, "--json"))
    assert stats["entries"] == 2 and stats["expired"] == 1
    assert keys_in(url, "--expired") == {ask.cache_key("soon gone")}
    pruned = parse_json(run_cli("prune", "--backend", url, "--json"))
    assert (
        pruned["removed"] == 1 and pruned["expired"] == 1 and pruned["keys"] == [ask.cache_key("soon gone")]
    )
    assert parse_json(run_cli("stats", "--backend", url, "--json"))["entries"] == 1


# ----------------------------------------------------------------------- moving entries


@pytest.mark.parametrize("target", ["sqlite", "redis"])
def test_export_then_import_round_trips(tmp_path: Path, request: pytest.FixtureRequest, target: str) -> None:
    source = f"disk:{tmp_path / 'disk'}"
    destination = (
        f"sqlite:{tmp_path / 'copy.sqlite3'}" if target == "sqlite" else request.getfixturevalue("redis_url")
    )
    fns = populate(source)
    file = tmp_path / "entries.jsonl"

    exported = parse_json(run_cli("export", str(file), "--backend", source, "--json"))
    assert exported["exported"] == 4
    lines = [json.loads(line) for line in file.read_text().splitlines()]
    assert {line["namespace"] for line in lines} == {ASK, SUMMARISE}
    assert (file.stat().st_mode & 0o777) == 0o600

    imported = parse_json(run_cli("import", str(file), "--backend", destination, "--json"))
    assert imported["imported"] == 4
    assert keys_in(destination) == keys_in(source)
    key = fns["summarise"].cache_key("A long text about caches and keys.")
    copied = parse_json(run_cli("show", key, "--backend", destination, "--json"))
    original = parse_json(run_cli("show", key, "--backend", source, "--json"))
    assert copied["value"] == original["value"] == "A long text "
    assert copied["material"] == original["material"] and copied["expires"] == original["expires"]

    # And the cache itself reads the imported entries: a hit, not a recomputation.
    # (The same function: its code is part of its entries' identity.)
    summarise = fns["summarise"].with_options(backend=destination)
    assert summarise("A long text about caches and keys.") == "A long text "
    assert summarise.cache_info().hits == 1 and summarise.cache_info().misses == 0


def test_export_to_stdout_and_import_from_stdin(tmp_path: Path) -> None:
    source, destination = f"disk:{tmp_path / 'a'}", f"sqlite:{tmp_path / 'b.sqlite3'}"
    populate(source)
    out = run_cli("export", "-", "--function", ASK, "--backend", source)
    assert out.returncode == 0 and "exported 3 entries" in out.stderr
    assert len(out.stdout.splitlines()) == 3
    done = run_cli("import", "-", "--backend", destination, input=out.stdout)
    assert done.returncode == 0 and "imported 3 entries" in done.stdout
    assert keys_in(destination) == keys_in(source, "--function", ASK)


def test_import_reports_a_bad_line(tmp_path: Path) -> None:
    source = f"disk:{tmp_path / 'a'}"
    populate(source)
    file = tmp_path / "entries.jsonl"
    run_cli("export", str(file), "--backend", source)
    first = file.read_text().splitlines()[0]
    file.write_text(first + "\n{not json\n")
    destination = f"sqlite:{tmp_path / 'b.sqlite3'}"
    done = run_cli("import", str(file), "--backend", destination)
    assert_one_line_error(done, "line 2", "not JSON", code=1)
    assert len(keys_in(destination)) == 1  # the line before it was imported


# ----------------------------------------------------------------------- explain


def test_explain_names_what_changed(store: str) -> None:
    populate(store)
    call = {
        "prompt": "Tell me a joke",
        "model": "gpt-4o-mini",
        "temperature": 0.7,
        "messages": [SYSTEM, {"role": "user", "content": "Be funny."}, USER],
        "top_p": 1,
    }
    result = parse_json(
        run_cli("explain", "--function", ASK, "--call", json.dumps(call), "--backend", store, "--json")
    )
    assert not result["stored"] and result["compared"] == 3
    closest = result["closest"][0]
    assert [(d["path"], d["kind"]) for d in closest["differences"]] == [
        ("a.messages[1]", "added"),
        ("a.temperature", "changed"),
        ("a.top_p", "new kwarg"),
    ]
    assert closest["differences"][1]["stored"] == 0 and closest["differences"][1]["call"] == 0.7
    assert [e["distance"] for e in result["closest"]] == sorted(e["distance"] for e in result["closest"])

    human = run_cli("explain", "--function", ASK, "--call", json.dumps(call), "--backend", store)
    assert human.returncode == 0, human.stderr
    assert "stored    no: this call misses" in human.stdout
    assert "a.temperature: 0 → 0.7" in human.stdout
    assert 'a.messages[1]: added {"content":"Be funny.","role":"user"}' in human.stdout
    assert "a.top_p: new kwarg (= 1)" in human.stdout

    # The same call as stored: an exact match, a hit.
    stored = dict(call, temperature=0, top_p=None, messages=[SYSTEM, USER])
    del stored["top_p"]
    hit = parse_json(
        run_cli("explain", "--function", ASK, "--call", json.dumps(stored), "--backend", store, "--json")
    )
    assert hit["stored"] is True and hit["expired"] is False


def test_explain_by_key_and_by_material(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'cache.sqlite3'}"
    fns = populate(url)
    joke = fns["ask"].cache_key("Tell me a joke")
    with_messages = fns["ask"].cache_key("Tell me a joke", messages=[SYSTEM, USER])

    cache = fns["ask"].cache_key("What is a cache?", model="gpt-4o")
    by_key = parse_json(run_cli("explain", cache[:8], "--backend", url, "--json"))
    assert by_key["key"] == cache and by_key["stored"]
    assert [e["key"] for e in by_key["closest"]] == [joke, with_messages]  # its siblings, closest first
    assert [d["path"] for d in by_key["closest"][0]["differences"]] == ["a.model", "a.prompt"]
    assert by_key["closest"][0]["distance"] == 2 and by_key["closest"][1]["distance"] == 6

    # A key that is not stored needs its material: say so, in one line.
    material = call_material(ASK, {"prompt": "Tell me a joke", "model": "gpt-4o-mini", "temperature": 0.2})
    unstored = digest(material_bytes(material))
    assert_one_line_error(run_cli("explain", unstored, "--backend", url), "--material", code=1)
    file = tmp_path / "material.json"
    file.write_text(json.dumps(material))
    by_material = parse_json(
        run_cli("explain", unstored, "--material", str(file), "--backend", url, "--json")
    )
    assert by_material["key"] == unstored and not by_material["stored"]
    first = by_material["closest"][0]
    assert first["key"] == joke and [d["path"] for d in first["differences"]] == [
        "a.messages",
        "a.temperature",
    ]
    assert first["differences"][0]["kind"] == "dropped kwarg"
    mismatch = run_cli("explain", joke, "--material", str(file), "--backend", url)
    assert_one_line_error(mismatch, "not", code=1)

    # Entries stored without key material cannot be compared, and say why.
    llm_memo.configure(store_material=False)
    quiet = put(url, ASK, {"prompt": "no material"}, "x", material=False)
    assert_one_line_error(run_cli("explain", quiet, "--backend", url), "without its key material")
    counted = parse_json(run_cli("explain", "--function", ASK, "--call", "{}", "--backend", url, "--json"))
    assert counted["without_material"] == 1 and counted["compared"] == 3

    # A namespace with no entries suggests the ones that exist.
    typo = parse_json(
        run_cli("explain", "--function", "app.asks", "--call", "{}", "--backend", url, "--json")
    )
    assert typo["compared"] == 0 and ASK in typo["similar_functions"]
    usage = run_cli("explain", "--function", ASK, "--call", "[1]", "--backend", url)
    assert_one_line_error(usage, "JSON object", code=2)


def test_explain_python_api(tmp_path: Path) -> None:
    url = f"disk:{tmp_path / 'disk'}"
    populate(url)
    found = explain(
        ASK, {"prompt": "Tell me a joke", "model": "gpt-4o", "temperature": 0, "messages": None}, url
    )
    # Two entries are one difference away; ties go to the newer entry, so compare as a set.
    assert {tuple(str(d) for d in f.differences) for f in found[:2]} == {
        ('a.model: "gpt-4o-mini" → "gpt-4o"',),
        ('a.prompt: "What is a cache?" → "Tell me a joke"',),
    }
    assert found[0].distance == found[1].distance == 1 and not found[0].exact
    exact = explain(
        ASK, {"prompt": "What is a cache?", "model": "gpt-4o", "temperature": 0, "messages": None}, url
    )
    assert exact[0].exact and exact[0].differences == ()
    # Aligned, not positional: a message inserted first is one addition.
    diffs = diff_material({"a": {"m": [1, 2, 3]}}, {"a": {"m": [0, 1, 2, 3]}})
    assert [(d.path, d.kind, d.call) for d in diffs] == [("a.m[0]", "added", 0)]
    assert [d.kind for d in diff_material({"a": {"x": True}}, {"a": {"x": 1}})] == ["changed"]


# ----------------------------------------------------------------------- secrets and keys


def test_show_redacts_anything_like_a_secret(tmp_path: Path) -> None:
    url = f"disk:{tmp_path / 'disk'}"
    secret = "sk-proj-abcdefghijklmnop1234"
    key = put(
        url,
        ASK,
        {
            "prompt": f"my key is {secret}",
            "headers": {"Authorization": "Bearer abcdef123456", "api_key": "x"},
        },
        {"echo": secret},
    )
    for extra in ((), ("--json",)):
        done = run_cli("show", key, "--backend", url, *extra)
        assert done.returncode == 0, done.stderr
        assert secret not in done.stdout and "abcdef123456" not in done.stdout
        assert "[redacted]" in done.stdout
    assert redact({"api_key": "", "n": 1}) == {"api_key": "", "n": 1}


def test_key_prefixes(tmp_path: Path) -> None:
    url = f"disk:{tmp_path / 'disk'}"
    a = put(url, ASK, {"prompt": "a"}, "a", key="abcdef01" + "0" * 56)
    put(url, ASK, {"prompt": "b"}, "b", key="abcdef02" + "0" * 56)
    assert parse_json(run_cli("show", "ABCDEF01", "--backend", url, "--json"))["key"] == a
    assert_one_line_error(
        run_cli("show", "abcdef", "--backend", url), "ambiguous", "abcdef0100000000", code=1
    )
    assert_one_line_error(run_cli("show", "abc", "--backend", url), "at least 6", code=2)
    assert_one_line_error(run_cli("show", "not-hex!", "--backend", url), "hex", code=2)
    assert_one_line_error(run_cli("show", "123456", "--backend", url), "no entry", code=1)


# ----------------------------------------------------------------------- failures


def test_unreachable_redis_is_one_line_for_every_command(tmp_path: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:{closed_port()}/0"
    file = tmp_path / "in.jsonl"
    file.write_text("")
    commands = [
        ["stats"],
        ["ls"],
        ["show", "abcdef"],
        ["rm", "abcdef"],
        ["clear", "--yes"],
        ["prune"],
        ["export", str(tmp_path / "out.jsonl")],
        ["explain", "--function", ASK, "--call", "{}"],
        ["import", str(file)],
        ["stats", "--json"],
    ]
    for command in commands:
        done = run_cli(*command, "--backend", url)
        assert_one_line_error(done, "cannot reach redis://", "127.0.0.1", code=1)
        assert "hunter2" not in done.stderr and done.stdout == ""


def test_missing_stores_and_files_are_one_line(tmp_path: Path) -> None:
    missing_db = tmp_path / "nope.sqlite3"
    for command in (["ls"], ["stats", "--json"], ["export", str(tmp_path / "x.jsonl")]):
        done = run_cli(*command, "--backend", f"sqlite:{missing_db}")
        assert_one_line_error(done, "no SQLite store", str(missing_db), code=1)
    assert not missing_db.exists()  # reading never creates a store
    done = run_cli("ls", "--backend", f"disk:{tmp_path / 'nodir'}")
    assert_one_line_error(done, "no disk store", code=1)
    done = run_cli("import", str(tmp_path / "missing.jsonl"), "--backend", f"sqlite:{missing_db}")
    assert_one_line_error(done, "no such file", code=1)
    not_db = tmp_path / "text.sqlite3"
    not_db.write_text("hello")
    assert_one_line_error(run_cli("ls", "--backend", f"sqlite:{not_db}"), "SQLite error", code=1)
    assert_one_line_error(run_cli("ls", "--backend", "ftp://x"), "unknown backend", code=2)


def test_default_backend_comes_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'env.sqlite3'}"
    populate(url)
    listed = parse_json(run_cli("ls", "--json", env={"LLM_MEMO_BACKEND": url}))
    assert {e["key"] for e in listed} == keys_in(url) and len(listed) == 4
    # Unset: the default disk store under LLM_MEMO_DIR.
    directory = tmp_path / "home"
    populate(f"disk:{directory / 'disk'}")
    env = {"LLM_MEMO_BACKEND": None, "LLM_MEMO_DIR": str(directory)}
    stats = parse_json(run_cli("stats", "--json", env=env))
    assert stats["entries"] == 4 and stats["backend"].endswith(os.path.join("home", "disk"))


def test_every_command_has_json_and_help() -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    for name, command in commands().items():
        assert name in done.stdout
        assert command.help
    helps = {name: run_cli(name, "--help").stdout for name in ("stats", "explain", "demo")}
    assert all("--json" in text for text in helps.values())
    assert "--backend" in helps["stats"] and "--call" in helps["explain"] and "--latency" in helps["demo"]


def test_unreadable_values(tmp_path: Path) -> None:
    url = f"disk:{tmp_path / 'disk'}"
    populate(url)
    from_url(url).set("app.junk", "f" * 64, b"not an entry", None)
    assert parse_json(run_cli("stats", "--backend", url, "--json"))["invalid"] == 1
    assert "(unreadable)" in run_cli("ls", "--backend", url).stdout
    assert_one_line_error(run_cli("show", "ffffff", "--backend", url), "not a readable", code=1)
    pruned = parse_json(run_cli("prune", "--unreadable", "--backend", url, "--json"))
    assert pruned["keys"] == ["f" * 64] and pruned["unreadable"] == 1
    assert len(keys_in(url)) == 4


def _on_a_terminal(*args: str, env: dict[str, str] | None = None) -> bytes:
    """Run ``llm-memo *args`` with a pseudo-terminal as stdin, stdout and stderr."""
    import pty

    from _cli import llm_memo_command

    pid, fd = pty.fork()
    if pid == 0:  # the child
        os.environ.pop("NO_COLOR", None)
        os.environ.update(env or {})
        argv = [*llm_memo_command(), *args]
        os.execv(argv[0], argv)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    os.close(fd)
    return out


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_colour_and_progress_only_on_a_terminal(tmp_path: Path) -> None:
    url = f"disk:{tmp_path / 'disk'}"
    populate(url)
    assert b"\x1b[1mKEY" in _on_a_terminal("ls", "--backend", url)
    assert b"\x1b[" not in _on_a_terminal("ls", "--backend", url, env={"NO_COLOR": "1"})
    assert "\x1b[" not in run_cli("ls", "--backend", url).stdout
    shown = _on_a_terminal("export", str(tmp_path / "a.jsonl"), "--backend", url)
    assert b"\rexporting" in shown.replace(b"\x1b[K", b"") and b"exported 4 entries" in shown
    piped = run_cli("export", str(tmp_path / "b.jsonl"), "--backend", url)
    assert piped.stderr == "" and "exported 4 entries" in piped.stdout
