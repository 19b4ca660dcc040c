"""Guarantee 8: secrets are never persisted.

The real OpenAI (and, when its integration imports, Anthropic) SDK is driven over
real HTTP against the local fake API with random credentials in every place a
client takes them: the ``api_key`` argument, the environment, an ``Authorization``
(or ``x-api-key``) default header, per-call headers and query, and user-info in the
base URL (argument and environment). Each backend is used in turn (memory, disk,
SQLite, Redis behind a password), with and without ``isolate_credentials``, then
broken on purpose so faults are logged and raised. Then every byte written is
searched for each secret and its encodings (raw, hex, base64 at every alignment,
HTTP Basic credentials, URL and JSON escaping, UTF-16): SQLite files with their
``-wal`` and ``-shm``, the diskcache directory, every Redis key and value in every
database, each entry's decompressed value, the ``llm_memo`` log records, and the
text of every exception llm_memo raised. Zero matches are allowed.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    from llm_memo.integrations import openai as memo_openai
except ImportError as exc:  # the integration is written separately from this suite
    pytest.skip(
        f"llm_memo.integrations.openai cannot be imported ({exc}); the secrets guarantee needs it",
        allow_module_level=True,
    )

import openai
from _fault_helpers import find_needles, inflate_entries, secret_needles
from _redis_fixtures import RedisServer
from pydantic import BaseModel

from llm_memo import BackendError, CacheMiss, LLMMemoError
from llm_memo.backends.disk import DiskBackend
from llm_memo.backends.memory import MemoryBackend
from llm_memo.backends.sqlite import SQLiteBackend

KINDS = ["memory", "disk", "sqlite", "redis"]
USER = "alice"


class Verdict(BaseModel):
    name: str
    score: int


def _secret(tag: str) -> str:
    return f"sk-{tag}-{secrets.token_urlsafe(24)}"


class Secrets:
    def __init__(self) -> None:
        self.values = {
            name: _secret(name)
            for name in (
                "argument",
                "environment",
                "header",
                "call-header",
                "call-query",
                "url-userinfo",
                "env-url-userinfo",
                "anthropic-argument",
                "anthropic-x-api-key",
                "anthropic-auth-token",
                "anthropic-environment",
                "anthropic-url-userinfo",
                "redis-password",
            )
        }

    def __getitem__(self, name: str) -> str:
        return self.values[name]

    def needles(self) -> dict[str, bytes]:
        out = {}
        for name, value in self.values.items():
            for encoding, needle in secret_needles(value, user=USER).items():
                out[f"{name}/{encoding}"] = needle
        return out


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> Secrets:
    found = Secrets()
    monkeypatch.setenv("OPENAI_API_KEY", found["environment"])
    monkeypatch.setenv("ANTHROPIC_API_KEY", found["anthropic-environment"])
    return found


class Raised:
    """Texts of every llm_memo exception seen (str, repr, and their causes)."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def record(self, exc: BaseException) -> None:
        seen: BaseException | None = exc
        while seen is not None:
            self.texts += [str(seen), repr(seen), *(str(a) for a in seen.args)]
            seen = seen.__cause__ or seen.__context__

    @contextlib.contextmanager
    def expect(self, *types: type[BaseException]) -> Iterator[None]:
        try:
            yield
        except types as exc:
            self.record(exc)
        else:
            raise AssertionError(f"expected one of {types}")


# --------------------------------------------------------------------------- drivers


def _drive_openai(base: str, host: str, keys: Secrets, raised: Raised) -> None:
    call_extras: dict[str, Any] = {
        "extra_headers": {"Authorization": f"Bearer {keys['call-header']}"},
        "extra_query": {"api-key": keys["call-query"]},
    }
    clients = [
        openai.OpenAI(api_key=keys["argument"], base_url=base, max_retries=0),
        openai.OpenAI(base_url=base, max_retries=0),  # OPENAI_API_KEY
        openai.OpenAI(
            api_key="sk-placeholder",
            base_url=base,
            default_headers={"Authorization": f"Bearer {keys['header']}"},
            max_retries=0,
        ),
        openai.OpenAI(
            api_key=keys["argument"],
            base_url=f"http://{USER}:{keys['url-userinfo']}@{host}/v1",
            max_retries=0,
        ),
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_BASE_URL", f"http://{USER}:{keys['env-url-userinfo']}@{host}/v1")
        clients.append(openai.OpenAI(max_retries=0))
    chat: dict[str, Any] = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "tell me a secret"}],
    }
    try:
        for client in clients:
            for _ in range(2):  # a miss that stores, then a hit
                client.chat.completions.create(**chat)
                client.chat.completions.create(**chat, **call_extras)
                list(client.chat.completions.create(**chat, stream=True))
                client.chat.completions.parse(**chat, response_format=Verdict)
                client.embeddings.create(model="emb", input="x", dimensions=4000, encoding_format="float")
                client.responses.create(model="gpt-test", input="secret?")
                client.completions.create(model="legacy", prompt="secret?")
            with contextlib.suppress(openai.APIError):
                client.chat.completions.create(
                    model="gpt-test", messages=[{"role": "user", "content": "fail [error500]"}]
                )
    finally:
        for client in clients:
            client.close()


def _drive_anthropic(base: str, host: str, keys: Secrets, backend: Any, isolate: bool) -> None:
    try:
        from llm_memo.integrations import anthropic as memo_anthropic
    except ImportError:
        return  # the OpenAI half still runs; the Anthropic half needs its integration
    import anthropic

    memo_anthropic.patch_anthropic(backend=backend, isolate_credentials=isolate)
    clients = [
        anthropic.Anthropic(api_key=keys["anthropic-argument"], base_url=base, max_retries=0),
        anthropic.Anthropic(base_url=base, max_retries=0),  # ANTHROPIC_API_KEY
        anthropic.Anthropic(
            api_key=None,
            auth_token=keys["anthropic-auth-token"],
            base_url=base,
            default_headers={"x-api-key": keys["anthropic-x-api-key"]},
            max_retries=0,
        ),
        anthropic.Anthropic(
            api_key=keys["anthropic-argument"],
            base_url=f"http://{USER}:{keys['anthropic-url-userinfo']}@{host}",
            max_retries=0,
        ),
    ]
    ask: dict[str, Any] = {
        "model": "claude-test",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
    }
    try:
        for client in clients:
            for _ in range(2):
                client.messages.create(**ask)
                list(client.messages.create(**ask, stream=True))
                with client.messages.stream(**ask) as stream:
                    stream.until_done()
    finally:
        memo_anthropic.unpatch_anthropic()
        for client in clients:
            client.close()


# --------------------------------------------------------------------------- what was written


def _sqlite_rows(path: Path) -> bytes:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = []
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):  # table names come from the file
                out += [v if isinstance(v, bytes) else str(v).encode("utf-8", "surrogatepass") for v in row]
        return b"\n".join(out)
    finally:
        con.close()


def _files_under(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


def _written(kind: str, backend: Any, root: Path, redis_url: str | None) -> dict[str, bytes]:
    """Every byte the backend wrote, raw and logical (rows, keys, values, inflated entries)."""
    written: dict[str, bytes] = {}
    if kind == "memory":
        values = [e.value for e in backend.entries()]
        written["memory entries"] = b"\n".join(f"{e.namespace}\n{e.key}".encode() for e in backend.entries())
        written["memory values"] = b"\n".join(values)
    elif kind in ("disk", "sqlite"):
        store = backend.directory if kind == "disk" else backend.path.parent
        written.update(_files_under(store))  # database, -wal, -shm: raw pages, free space too
        db = backend.directory / "cache.db" if kind == "disk" else backend.path
        written[f"{db} rows"] = _sqlite_rows(db)
        values = [e.value for e in backend.entries()]
    else:
        import redis

        assert redis_url is not None
        values = []
        with redis.Redis.from_url(redis_url) as raw:
            for db_name in raw.info("keyspace"):
                index = int(str(db_name).removeprefix("db"))
                with redis.Redis.from_url(redis_url, db=index) as client:
                    for key in client.scan_iter(count=1000):
                        dumped = client.dump(key) or b""
                        value = client.get(key) if client.type(key) == b"string" else b""
                        written[f"redis db{index} key {key[:60]!r}"] = (
                            key + b"\n" + dumped + b"\n" + (value or b"")
                        )
                        values.append(value or b"")
    written["inflated entries"] = inflate_entries(values)
    assert values, "nothing was stored: the scan would prove nothing"
    return written


# --------------------------------------------------------------------------- the test


@contextlib.contextmanager
def _store(
    kind: str, root: Path, factory: Callable[..., RedisServer] | None, pw: str
) -> Iterator[tuple[Any, Any]]:
    """(backend, redis server or None). Redis runs with a password, given in the URL."""
    server = None
    if kind == "memory":
        backend: Any = MemoryBackend()
    elif kind == "disk":
        backend = DiskBackend(root / "disk")
    elif kind == "sqlite":
        backend = SQLiteBackend(root / "sqlite" / "cache.sqlite3")
    else:
        from llm_memo.backends.redis import RedisBackend

        assert factory is not None
        server = factory()
        with server.client() as admin:  # (the fixture's readiness probe speaks no AUTH)
            admin.config_set("requirepass", pw)
        backend = RedisBackend(
            f"redis://:{pw}@127.0.0.1:{server.port}/0", socket_timeout=0.5, connect_timeout=0.5
        )
    try:
        yield backend, server
    finally:
        backend.close()


def _break(kind: str, backend: Any, server: Any, root: Path) -> Any:
    """Make the store fail, so faults are logged and (strict) raised; returns the broken backend."""
    if kind == "redis":
        server.kill()
        return backend
    if kind == "disk":
        broken = root / "broken-disk"
        broken.write_bytes(b"not a directory")
        return DiskBackend(broken)
    if kind == "sqlite":
        broken = root / "broken.sqlite3"
        broken.write_bytes(b"not a database" * 100)
        return SQLiteBackend(broken)

    class Failing(MemoryBackend):
        def get(self, namespace: str, key: str) -> Any:
            raise OSError("the memory store failed")

        def set(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
            raise OSError("the memory store failed")

    return Failing()


@pytest.mark.parametrize("isolate", [False, True], ids=["shared", "isolated"])
@pytest.mark.parametrize("kind", KINDS)
def test_no_secret_is_ever_written_logged_or_raised(
    kind: str,
    isolate: bool,
    keys: Secrets,
    llm_server: Any,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    raised = Raised()
    host = llm_server.openai_base_url.split("//", 1)[1].split("/", 1)[0]
    factory = request.getfixturevalue("redis_server_factory") if kind == "redis" else None
    with _store(kind, tmp_path, factory, keys["redis-password"]) as (backend, server):
        memo_openai.patch_openai(backend=backend, isolate_credentials=isolate)
        try:
            _drive_openai(llm_server.openai_base_url, host, keys, raised)
            # Replay mode on a call never recorded: the CacheMiss text is scanned too.
            memo_openai.patch_openai(backend=backend, isolate_credentials=isolate, mode="replay")
            with (
                openai.OpenAI(api_key=keys["argument"], base_url=llm_server.openai_base_url) as client,
                raised.expect(CacheMiss),
            ):
                client.chat.completions.create(model="never", messages=[{"role": "user", "content": "new"}])
        finally:
            memo_openai.unpatch_openai()
        _drive_anthropic(llm_server.anthropic_base_url, host, keys, backend, isolate)

        redis_url = f"redis://:{keys['redis-password']}@127.0.0.1:{server.port}/0" if server else None
        written = _written(kind, backend, tmp_path, redis_url)

        broken = _break(kind, backend, server, tmp_path)
        for strict in (True, False):
            memo_openai.patch_openai(backend=broken, isolate_credentials=isolate, strict=strict)
            try:
                with openai.OpenAI(api_key=keys["argument"], base_url=llm_server.openai_base_url) as client:
                    if strict:
                        with raised.expect(BackendError):
                            client.chat.completions.create(
                                model="m", messages=[{"role": "user", "content": "broken store"}]
                            )
                    else:
                        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
            finally:
                memo_openai.unpatch_openai()
        if broken is not backend:
            broken.close()

    logs = [r for r in caplog.records if r.name.startswith("llm_memo")]
    assert any(r.levelno >= logging.WARNING for r in logs), "the broken store logged nothing to scan"
    written["llm_memo log records"] = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in logs).encode(
        "utf-8", "surrogatepass"
    )
    written["llm_memo exception texts"] = "\n".join(raised.texts).encode("utf-8", "surrogatepass")
    assert raised.texts, "no exception text was captured: the scan would prove nothing"
    assert all(isinstance(e, str) for e in raised.texts)
    leaks = find_needles(written, keys.needles())
    assert leaks == [], f"secrets found: {leaks[:10]}"
    assert issubclass(CacheMiss, LLMMemoError) and issubclass(BackendError, LLMMemoError)
