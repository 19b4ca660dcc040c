"""Guarantees 9 and 10: isolation between namespaces (and credentials), and private files.

9. Functions with crafted namespaces (separators, glob and hash-tag characters,
   escapes, JSON syntax, NUL) never share entries, in every backend; invalidating or
   clearing one never touches another. With ``isolate_credentials=True`` two API
   keys never share an answer.
10. Stores are created 0700 (directories) and 0600 (files, ``-wal`` and ``-shm``
   included) whatever the umask; a world-writable cache directory is warned about;
   one owned by another user, or a database file owned by another user, is refused.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _fault_helpers import BACKEND_KINDS, open_backend

import llm_memo
from llm_memo import llm_cached

# Namespaces that would collide under a naive separator, glob, escape or concatenation.
CRAFTED = [
    "a",
    "A",
    "a:b",
    "a%3Ab",
    "a%253Ab",
    "a*",
    "a?",
    "a[b]",
    "a\\",
    "a{b}",
    "{a}",
    "a:*",
    "a b",
    "a\x00",
    "a\x00b",
    'a","v":"x',
    "ünï·码",
    "a" * 300,
]

FOREIGN_UID = 54321


@pytest.fixture(params=[*BACKEND_KINDS, "redis-cluster"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with open_backend(request.param, tmp_path, request, prefix="iso") as b:
        yield b


def _functions(backend: Any, calls: list[tuple[str, int]]) -> dict[str, Any]:
    fns = {}
    for ns in CRAFTED:

        def answer(x: int, ns: str = ns) -> dict[str, Any]:
            calls.append((ns, x))
            return {"ns": ns, "x": x}

        fns[ns] = llm_cached(backend=backend, namespace=ns, ignore=["ns"])(answer)
    return fns


def test_namespaces_never_share_entries_and_clear_only_themselves(backend: Any) -> None:
    calls: list[tuple[str, int]] = []
    fns = _functions(backend, calls)
    keys = {fn.cache_key(1) for fn in fns.values()}
    assert len(keys) == len(CRAFTED)  # same arguments, distinct keys
    for x in (1, 2):
        for ns, fn in fns.items():
            assert fn(x) == {"ns": ns, "x": x}
    assert len(calls) == 2 * len(CRAFTED)  # nobody was served another namespace's answer
    for ns, fn in fns.items():
        assert fn(1) == {"ns": ns, "x": 1} and fn(2) == {"ns": ns, "x": 2}
    assert len(calls) == 2 * len(CRAFTED)  # and everyone hits their own entries

    def recomputed(action: Any) -> set[tuple[str, int]]:
        before = len(calls)
        action()
        for ns, fn in fns.items():
            assert fn(1) == {"ns": ns, "x": 1} and fn(2) == {"ns": ns, "x": 2}
        return set(calls[before:])

    assert recomputed(lambda: fns["a"].cache_invalidate(1)) == {("a", 1)}
    assert recomputed(lambda: fns["a:*"].cache_clear()) == {("a:*", 1), ("a:*", 2)}
    assert recomputed(lambda: fns["a*"].cache_clear()) == {("a*", 1), ("a*", 2)}
    assert recomputed(lambda: fns["{a}"].cache_clear()) == {("{a}", 1), ("{a}", 2)}
    assert recomputed(lambda: fns["a\x00"].cache_clear()) == {("a\x00", 1), ("a\x00", 2)}
    assert recomputed(lambda: fns["a%3Ab"].cache_clear()) == {("a%3Ab", 1), ("a%3Ab", 2)}
    entries = {(e.namespace, e.key) for e in backend.entries()}
    for ns, fn in fns.items():
        assert (ns, fn.cache_key(1)) in entries and (ns, fn.cache_key(2)) in entries


def test_versions_and_prefixes_isolate_too(redis_url: str) -> None:
    calls: list[str] = []

    def answer(x: int) -> str:
        calls.append("x")
        return "v"

    one = llm_cached(backend=redis_url, namespace="same", version="1")(answer)
    two = llm_cached(backend=redis_url, namespace="same", version="2")(answer)
    team = llm_cached(backend=redis_url + "?prefix=team", namespace="same", version="1")(answer)
    for fn in (one, two, team):
        fn(1)
    assert len(calls) == 3  # another version, another prefix: another entry
    for fn in (one, two, team):
        fn(1)
    assert len(calls) == 3
    # A clear is per namespace (every version of it), and never reaches another prefix.
    assert two.cache_clear() == 2
    team(1)
    assert len(calls) == 3


def test_isolated_credentials_never_share_answers(backend: Any, llm_server: Any) -> None:
    memo_openai = pytest.importorskip("llm_memo.integrations.openai")
    import openai

    ask: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "whose answer?"}]}
    memo_openai.patch_openai(backend=backend, isolate_credentials=True)
    clients = [openai.OpenAI(api_key=key, base_url=llm_server.openai_base_url) for key in ("sk-1", "sk-2")]
    try:
        for client in clients:
            client.chat.completions.create(**ask)
        assert llm_server.count("/chat/completions") == 2  # two keys: two answers
        for client in clients:
            client.chat.completions.create(**ask)
        assert llm_server.count("/chat/completions") == 2  # each hits its own
        memo_openai.patch_openai(backend=backend, isolate_credentials=False)
        clients[0].chat.completions.create(**{**ask, "messages": [{"role": "user", "content": "shared"}]})
        clients[1].chat.completions.create(**{**ask, "messages": [{"role": "user", "content": "shared"}]})
        assert llm_server.count("/chat/completions") == 3  # the documented default: shared
    finally:
        memo_openai.unpatch_openai()
        for client in clients:
            client.close()


# --------------------------------------------------------------------------- guarantee 10


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
@pytest.mark.parametrize("kind", ["disk", "sqlite"])
def test_stores_are_created_private_whatever_the_umask(
    kind: str, umask: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "llm-memo"
    monkeypatch.setenv("LLM_MEMO_DIR", str(home))
    old = os.umask(umask)
    try:

        @llm_cached(backend=kind, namespace="private")
        def ask(i: int) -> str:
            return "x" * (1000 + 5000 * i)

        for i in range(20):
            ask(i)
        ask(0)
    finally:
        os.umask(old)
    store_dir = home / "disk" if kind == "disk" else home
    files = [p for p in store_dir.rglob("*") if p.is_file()]
    dirs = [store_dir, *(p for p in store_dir.rglob("*") if p.is_dir())]
    names = {p.name for p in files}
    assert {"cache.db", "cache.db-wal"} <= names or {"cache.sqlite3", "cache.sqlite3-wal"} <= names, names
    assert {str(p): oct(_mode(p)) for p in files} == {str(p): oct(0o600) for p in files}
    assert {str(p): oct(_mode(p)) for p in dirs} == {str(p): oct(0o700) for p in dirs}


@pytest.mark.parametrize("kind", ["disk", "sqlite"])
def test_a_world_writable_cache_directory_is_warned_about(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    spec = f"disk:{shared}" if kind == "disk" else f"sqlite:{shared / 'cache.sqlite3'}"
    with caplog.at_level(logging.WARNING, logger="llm_memo"):

        @llm_cached(backend=spec, namespace="ww")
        def ask(q: str) -> str:
            return q + "!"

        assert ask("a") == "a!" and ask("a") == "a!"
    assert any("writable by other users" in r.getMessage() for r in caplog.records), [
        r.getMessage() for r in caplog.records
    ]


needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")


@needs_root
@pytest.mark.parametrize("kind", ["disk", "sqlite"])
def test_a_cache_directory_owned_by_another_user_is_refused(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """$LLM_MEMO_DIR (or the disk store in it) belongs to someone else: never used."""
    home = tmp_path / "llm-memo"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("LLM_MEMO_DIR", str(home))
    store_dir = home / "disk" if kind == "disk" else home
    store_dir.mkdir(mode=0o700, exist_ok=True)
    os.chown(store_dir, FOREIGN_UID, FOREIGN_UID)
    calls: list[str] = []

    @llm_cached(backend=kind, namespace="foreign")
    def ask(q: str) -> str:
        calls.append(q)
        return q + "!"

    with caplog.at_level(logging.WARNING, logger="llm_memo"):
        assert ask("a") == "a!" and ask("a") == "a!"
    assert calls == ["a", "a"], "a store in another user's directory was used"
    assert ask.cache_info().errors >= 1
    assert list(store_dir.iterdir()) == [], "llm_memo wrote into another user's directory"
    assert any("owned by" in r.getMessage() for r in caplog.records)


@needs_root
def test_a_database_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """Someone else's SQLite file, planted where ours would be: refused, left untouched."""
    store = tmp_path / "mine"
    store.mkdir(mode=0o700)
    path = store / "cache.sqlite3"
    backend = llm_memo.SQLiteBackend(path)
    backend.set("planted", "0" * 64, b"planted", None)
    backend.close()
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            os.chown(f"{path}{suffix}", FOREIGN_UID, FOREIGN_UID)
    before = path.read_bytes()
    calls: list[str] = []

    @llm_cached(backend=f"sqlite:{path}", namespace="foreign-file")
    def ask(q: str) -> str:
        calls.append(q)
        return q + "!"

    assert ask("a") == "a!" and ask("a") == "a!"
    assert calls == ["a", "a"], "another user's database file was used"
    assert path.read_bytes() == before
