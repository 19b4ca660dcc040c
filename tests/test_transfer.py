"""Moving entries between backends and through JSON Lines files, expiry intact."""

from __future__ import annotations

import base64
import hashlib
import io
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import FakeClock

import llm_memo
from llm_memo.backends import MISS, from_url
from llm_memo.backends.disk import DiskBackend
from llm_memo.backends.memory import MemoryBackend
from llm_memo.backends.sqlite import SQLiteBackend
from llm_memo.keys import digest, fingerprint
from llm_memo.serialize import pack_entry, read_entry
from llm_memo.transfer import copy_entries, export_entries, import_entries


def k(i: object) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def real_entry(
    namespace: str, arg: str, value: Any, clock: FakeClock, ttl: float | None
) -> tuple[str, bytes]:
    """(key, entry bytes) as the front builds them, key material included."""
    material = orjson.dumps(
        {"a": {"x": arg}, "f": 1, "ns": namespace, "v": None}, option=orjson.OPT_SORT_KEYS
    )
    expires = None if ttl is None else clock.now + ttl
    return digest(material), pack_entry(
        orjson.dumps(value), fingerprint(material), clock.now, expires, material
    )


@pytest.fixture
def filled(tmp_path: Path, clock: FakeClock) -> Iterator[SQLiteBackend]:
    src = SQLiteBackend(tmp_path / "src.db", clock=clock)
    for i, ttl in enumerate([None, 100, 5]):
        key, data = real_entry("app.ask", str(i), {"answer": i, "tuple": {"$tuple": [1]}}, clock, ttl)
        src.set("app.ask", key, data, ttl)
    key, data = real_entry("app.other", "o", "other", clock, None)
    src.set("app.other", key, data, None)
    src.set("app.ask", k("junk"), b"not an entry", None)
    yield src
    src.close()


def test_copy_keeps_expiry_and_skips_expired_and_junk(filled: SQLiteBackend, clock: FakeClock) -> None:
    clock.advance(10)  # the 5 s entry is now expired
    dst = MemoryBackend(clock=clock)
    assert copy_entries(filled, dst, clock=clock) == 3
    copied = {e.key: read_entry(e.value) for e in dst.entries()}
    assert {h.expires for h in copied.values()} == {None, clock.now + 90}
    clock.advance(89)
    assert len([e for e in dst.entries() if dst.get(e.namespace, e.key) is not MISS]) == 3
    clock.advance(2)  # the 100 s entry now gone from the copy too: it got the remaining TTL
    assert len([e for e in dst.entries() if dst.get(e.namespace, e.key) is not MISS]) == 2


def test_copy_one_namespace_between_urls(filled: SQLiteBackend, tmp_path: Path, clock: FakeClock) -> None:
    target = f"sqlite:{tmp_path / 'dst.db'}"
    assert copy_entries(filled, target, namespace="app.other", clock=clock) == 1
    assert [e.namespace for e in from_url(target).entries()] == ["app.other"]


def test_seed_redis_from_disk_through_the_decorator(tmp_path: Path, redis_url: str) -> None:
    calls: list[str] = []

    def ask(prompt: str) -> dict[str, Any]:
        calls.append(prompt)
        return {"answer": prompt.upper(), "n": (1, 2)}

    laptop = llm_memo.llm_cached(backend=f"disk:{tmp_path / 'disk'}", ttl="1d", namespace="team.ask")(ask)
    assert laptop("hi") == {"answer": "HI", "n": (1, 2)}
    assert copy_entries(f"disk:{tmp_path / 'disk'}", redis_url) == 1
    shared = llm_memo.llm_cached(backend=redis_url, namespace="team.ask")(ask)
    assert shared("hi") == {"answer": "HI", "n": (1, 2)}
    assert calls == ["hi"]  # the Redis side never called the model


def test_export_import_round_trip(filled: SQLiteBackend, tmp_path: Path, clock: FakeClock) -> None:
    out = tmp_path / "export.jsonl"
    assert export_entries(filled, out, clock=clock) == 4  # the junk value is not exported
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    lines = [orjson.loads(line) for line in out.read_text().splitlines()]
    first = next(line for line in lines if line["namespace"] == "app.ask" and line["expires"] is None)
    assert first["value"] == {"answer": 0, "tuple": {"$tuple": [1]}}  # readable in review
    assert set(first) == {"namespace", "key", "created", "expires", "value", "entry"}

    dst = DiskBackend(tmp_path / "imported")
    clock.advance(10)
    assert import_entries(out, dst, clock=clock) == 3  # the 5 s entry expired in transit
    originals = {e.key: e.value for e in filled.entries()}
    for e in dst.entries():
        assert e.value == originals[e.key]  # byte for byte
    dst.close()


def test_export_to_a_stream(filled: SQLiteBackend, clock: FakeClock) -> None:
    buffer = io.StringIO()
    assert export_entries(filled, buffer, namespace="app.other", clock=clock) == 1
    buffer.seek(0)
    dst = MemoryBackend()
    assert import_entries(buffer, dst, clock=clock) == 1


def _line(**fields: Any) -> str:
    return orjson.dumps(fields).decode()


@pytest.fixture
def good_line(clock: FakeClock) -> dict[str, Any]:
    key, data = real_entry("app.ask", "x", "ok", clock, None)
    return {"namespace": "app.ask", "key": key, "expires": None, "entry": base64.b64encode(data).decode()}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: "{not json", "not JSON"),
        (lambda d: _line(**{**d, "key": "ABC"}), "64 lowercase hex"),
        (lambda d: _line(**{**d, "key": k("other")}), "not the hash"),
        (lambda d: _line(**{**d, "namespace": "app.evil"}), "belongs to"),
        (lambda d: _line(**{**d, "entry": "***"}), "base64"),
        (lambda d: _line(**{**d, "expires": 5.0}), "does not match"),
        (
            lambda d: _line(**{**d, "entry": base64.b64encode(_flip(base64.b64decode(d["entry"]))).decode()}),
            "not a valid llm_memo entry",
        ),
        (lambda d: _line(**{**d, "entry": base64.b64encode(b"plain bytes").decode()}), "not a valid"),
        (lambda d: "[1, 2]", "not a JSON object"),
    ],
)
def test_bad_lines_are_refused_with_their_number(
    tmp_path: Path, clock: FakeClock, good_line: dict[str, Any], change: Any, message: str
) -> None:
    other_key, other = real_entry("app.ask", "y", "fine", clock, None)
    good = _line(namespace="app.ask", key=other_key, expires=None, entry=base64.b64encode(other).decode())
    path = tmp_path / "in.jsonl"
    path.write_text(good + "\n\n" + change(good_line) + "\n")
    dst = MemoryBackend()
    with pytest.raises(ValueError, match=f"line 3: .*{message}"):
        import_entries(path, dst, clock=clock)
    assert [e.key for e in dst.entries()] == [other_key]  # line 1 landed, nothing of line 3


def _flip(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def test_import_refuses_a_tampered_value(tmp_path: Path, clock: FakeClock, good_line: dict[str, Any]) -> None:
    data = bytearray(base64.b64decode(good_line["entry"]))
    data[60] ^= 0xFF  # inside the value section: the checksum catches it
    path = tmp_path / "in.jsonl"
    path.write_text(_line(**{**good_line, "entry": base64.b64encode(bytes(data)).decode()}) + "\n")
    dst = MemoryBackend()
    with pytest.raises(ValueError, match=r"line 1: .*checksum"):
        import_entries(path, dst, clock=clock)
    assert len(dst) == 0
