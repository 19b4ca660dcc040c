"""Guarantees 1 and 7: a hit is never another call's value, and no code runs from cache content.

Hostile entries are planted in every backend, under the exact key of a real call,
with a valid checksum where the attack needs one (``forge_entry``), so each reaches
the check that must stop it. An audit hook records imports, process launches,
``eval``/``exec`` and unpickling while the read runs: there must be none.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import decimal
import enum
import functools
import os
import pathlib
import pickle
import sqlite3
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from _fault_helpers import (
    BACKEND_KINDS,
    _check_forge,
    audit_events,
    current_version,
    forge_entry,
    open_backend,
    seeded_random,
    stress,
    zlib_bomb,
)
from _internals import memo_of, prepared
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import llm_memo
from llm_memo import _core, llm_cached
from llm_memo.errors import CorruptEntry, UncacheableArgument
from llm_memo.keys import canonical, key_material, material_bytes
from llm_memo.serialize import (
    MAX_VALUE_BYTES,
    TypeRegistry,
    decode_value,
    encode_value,
    pack_entry,
    unpack_entry,
)

FP = b"\x11" * 16
EMPTY = TypeRegistry()
VERSION = current_version()
_check_forge()  # forged entries really have the current layout


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> Any:
    return seeded_random(request)


@pytest.fixture(params=BACKEND_KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with open_backend(request.param, tmp_path, request, prefix="hostile") as b:
        yield b


def _kind(backend: Any) -> str:
    return type(backend).__name__.removesuffix("Backend").lower()


# --------------------------------------------------------------------------- guarantee 1


def test_forced_digest_collision_is_detected_and_served_as_a_miss(
    backend: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, rng: Any
) -> None:
    """Every call maps to one key: the fingerprint check alone keeps answers apart."""
    monkeypatch.setattr(_core, "digest", lambda data: "0" * 64)
    computed: list[tuple[str, int]] = []

    def make(name: str) -> Any:
        @llm_cached(backend=backend, namespace=f"collide.{name}")
        def fn(x: int) -> dict[str, Any]:
            computed.append((name, x))
            return {"fn": name, "x": x}

        return fn

    fns = {"a": make("a"), "b": make("b")}
    assert fns["a"].cache_key(1) == fns["a"].cache_key(2) == fns["b"].cache_key(1)  # the collision is real
    # Which calls share one storage slot: disk and SQLite key rows by digest alone;
    # memory, Redis and the tiers' front (memory) by namespace and digest.
    by_digest_only = _kind(backend) in ("disk", "sqlite")
    last: dict[str, tuple[str, int]] = {}
    for _ in range(150):
        name, x = rng.choice("ab"), rng.randrange(3)
        slot = "*" if by_digest_only else name
        expect_hit = last.get(slot) == (name, x)
        before = len(computed)
        assert fns[name](x) == {"fn": name, "x": x}
        assert (len(computed) == before) == expect_hit, (name, x, last)
        last[slot] = (name, x)
    hits = fns["a"].cache_info().hits + fns["b"].cache_info().hits
    assert 0 < hits < 150
    mismatches = [r for r in caplog.records if "fingerprint" in r.getMessage()]
    assert 1 <= len(mismatches) <= 2  # detected, and logged once per namespace, not per call


def test_an_entry_moved_under_another_key_is_a_miss(backend: Any) -> None:
    """A store that mixes up keys (a bad copy, a hand edit) still cannot serve the wrong answer."""

    @llm_cached(backend=backend, namespace="moved")
    def ask(q: str) -> str:
        return f"answer to {q}"

    assert ask("first") == "answer to first"
    key_first, key_second = ask.cache_key("first"), ask.cache_key("second")
    stolen = backend.get("moved", key_first)
    backend.set("moved", key_second, stolen, None)
    assert ask("second") == "answer to second"
    assert ask.cache_info().hits == 0


# --------------------------------------------------------------------------- guarantee 7: planted entries


class Pwn:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


@functools.lru_cache(maxsize=4)
def _bomb(inflated: int) -> bytes:
    return zlib_bomb(inflated)


def _value(tree: Any) -> bytes:
    return orjson.dumps(tree)


def _forger(tree: Any) -> Callable[[bytes], bytes]:
    return lambda fp: forge_entry(_value(tree), fp)


def _payloads(marker: Path) -> dict[str, Callable[[bytes], bytes]]:
    """name -> builder(fingerprint of the attacked call) -> the planted bytes."""
    cmd = f"touch {marker}"
    tags = {
        "tag-os-system": {"$model": ["os:system", {"command": cmd}, {}]},
        "tag-builtins-eval": {
            "$dataclass": ["builtins:eval", {"source": f"__import__('os').system({cmd!r})"}]
        },
        "tag-enum-exec": {"$enum": ["builtins:exec", cmd]},
        "tag-subprocess": {"$model": ["subprocess:Popen", {"args": ["touch", str(marker)]}, {}]},
        "tag-pickle-loads": {"$model": ["pickle:loads", {"data": "x"}, {}]},
        "tag-importlib": {"$dataclass": ["importlib:import_module", {"name": "antigravity"}]},
        "tag-sdk-traversal": {"$model": ["openai.types.chat:ChatCompletion.__init__.__globals__", {}, {}]},
        "tag-sdk-module-walk": {"$model": ["openai.lib.azure:os.system", {"command": cmd}, {}]},
        "tag-not-yet-imported-sdk": {"$model": ["anthropic.types.never_imported_module:Thing", {}, {}]},
        "tag-nested-in-data": {"ok": [1, {"$tuple": [{"$model": ["os:system", cmd, {}]}]}]},
        "tag-huge-int": {"$int": "9" * 100_000},
    }
    payloads: dict[str, Callable[[bytes], bytes]] = {
        "pickle-reduce": lambda fp: pickle.dumps(Pwn(marker)),
        "pickle-in-envelope": lambda fp: forge_entry(pickle.dumps(Pwn(marker)), fp),
        "json-nested-100k-lists": lambda fp: forge_entry(b"[" * 100_000 + b"]" * 100_000, fp),
        "json-nested-100k-dicts": lambda fp: forge_entry(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, fp),
        "tags-nested-900": lambda fp: forge_entry(b'{"$tuple":[' * 900 + b"1" + b"]}" * 900, fp),
        "version-next": lambda fp: forge_entry(_value("x"), fp, magic=b"LMM" + bytes([VERSION + 1])),
        "version-previous": lambda fp: forge_entry(_value("x"), fp, magic=b"LMM" + bytes([VERSION - 1])),
        "version-255": lambda fp: forge_entry(_value("x"), fp, magic=b"LMM\xff"),
        "wrong-magic": lambda fp: forge_entry(_value("x"), fp, magic=b"\x80\x04\x95\x00"),
        "length-4GiB": lambda fp: forge_entry(_value("x"), fp, length=0xFFFF_FFFF),
        "length-zero": lambda fp: forge_entry(_value("x"), fp, length=0),
        "length-short-by-one": lambda fp: forge_entry(_value("abc"), fp, length=len(_value("abc")) - 1),
        "timestamp-nan": lambda fp: forge_entry(_value("x"), fp, expires=float("nan")),
        "timestamp-negative": lambda fp: forge_entry(_value("x"), fp, created=-1.0),
        "unknown-flags": lambda fp: forge_entry(_value("x"), fp, flags=0xFE | 1),
        "bad-checksum": lambda fp: forge_entry(_value("x"), fp, checksum=False),
        "empty": lambda fp: b"",
        "header-only": lambda fp: forge_entry(b"", fp)[:49],
        "decompression-bomb": lambda fp: forge_entry(_bomb(8 * 1024 * 1024), fp, flags=1),
    }
    for name, tree in tags.items():
        payloads[name] = _forger(tree)
    return payloads


PAYLOADS = sorted(_payloads(Path("/nonexistent")))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_planted_entries_are_misses_and_run_nothing(
    backend: Any,
    payload: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    marker = tmp_path / "pwned"
    # The real cap is checked below (one backend, real size); here a smaller cap keeps
    # every backend's bomb fast while exercising the same refusal.
    monkeypatch.setattr("llm_memo.serialize.MAX_VALUE_BYTES", 4 * 1024 * 1024)

    @llm_cached(backend=backend, namespace="victim")
    def ask(q: str) -> dict[str, str]:
        return {"answer": q.upper()}

    # Warm every code path the attacked call takes (store, hit, miss, corrupt-entry warning).
    assert ask("warm-up") == {"answer": "WARM-UP"} and ask("warm-up") == {"answer": "WARM-UP"}
    warm = prepared(ask, "warm-up")
    backend.set("victim", warm.key, b"junk", None)
    assert ask("warm-up") == {"answer": "WARM-UP"}
    memo_of(ask).reset_info()

    call = prepared(ask, "target")
    backend.set("victim", call.key, _payloads(marker)[payload](call.fingerprint), None)
    modules = set(sys.modules)
    with audit_events() as events:
        started = time.monotonic()
        result = ask("target")
        elapsed = time.monotonic() - started
    assert result == {"answer": "TARGET"}
    assert ask.cache_info().hits == 0 and ask.cache_info().errors == 0
    assert events == [], events  # no import, no process, no eval/exec, no unpickling
    assert set(sys.modules) == modules
    assert not marker.exists()
    assert elapsed < 10
    # The honest answer replaced the planted bytes: the next call is a hit.
    assert ask("target") == {"answer": "TARGET"} and ask.cache_info().hits == 1


def test_control_an_honestly_forged_entry_is_served(backend: Any) -> None:
    """The control for the plantings above: a forged entry with a valid layout *is* read.

    So each hostile payload fails on its own defect, not on a stale layout. It also
    shows what is not promised: whoever can write to the store and knows a call's key
    material can plant a (data-only) answer for it; checksums stop accidents, not forgers.
    """

    @llm_cached(backend=backend, namespace="victim")
    def ask(q: str) -> dict[str, str]:
        return {"answer": q.upper()}

    call = prepared(ask, "target")
    planted = orjson.dumps({"answer": "PLANTED"})
    backend.set("victim", call.key, forge_entry(planted, call.fingerprint, created=time.time()), None)
    assert ask("target") == {"answer": "PLANTED"} and ask.cache_info().hits == 1


def _real_bomb_test(kind: str, inflated: int, root: Path, request: pytest.FixtureRequest) -> None:
    with open_backend(kind, root, request, prefix="bomb") as store:

        @llm_cached(backend=store, namespace="bomb")
        def ask(q: str) -> str:
            return q * 2

        assert ask("warm") == "warmwarm"
        call = prepared(ask, "x")
        store.set("bomb", call.key, forge_entry(_bomb(inflated), call.fingerprint, flags=1), None)
        tracemalloc.start()
        try:
            started = time.monotonic()
            assert ask("x") == "xx"
            elapsed = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert ask.cache_info().hits == 0
        assert peak < MAX_VALUE_BYTES + 64 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"
        assert elapsed < 30


def test_a_real_size_decompression_bomb_is_bounded(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The real cap: a bomb inflating past MAX_VALUE_BYTES costs at most the cap in memory."""
    _real_bomb_test("memory", MAX_VALUE_BYTES + 1024 * 1024, tmp_path, request)


@stress
@pytest.mark.parametrize("kind", BACKEND_KINDS)
def test_stress_a_4gib_decompression_bomb_in_every_backend(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _real_bomb_test(kind, 4 * 1024 * 1024 * 1024, tmp_path, request)


def test_langchain_style_objects_in_llm_output_stay_plain_data(backend: Any) -> None:
    """LangChain serialises objects as {"lc": 1, "type": "constructor", ...}; here they are text."""
    lc = {
        "lc": 1,
        "type": "constructor",
        "id": ["langchain_core", "prompts", "PromptTemplate"],
        "kwargs": {"template": "{x}", "input_variables": ["x"], "template_format": "jinja2"},
    }
    secret_lc = {"lc": 1, "type": "secret", "id": ["OPENAI_API_KEY"]}
    answer = {"content": orjson.dumps(lc).decode(), "tool_args": lc, "secret": secret_lc}

    @llm_cached(backend=backend, namespace="lc")
    def ask(q: str) -> dict[str, Any]:
        return copy.deepcopy(answer)

    assert ask("q") == answer
    modules = set(sys.modules)
    with audit_events() as events:
        hit = ask("q")
    assert hit == answer and type(hit["tool_args"]) is dict and type(hit["secret"]) is dict
    assert ask.cache_info().hits == 1
    assert events == [] and set(sys.modules) == modules
    assert not any(m.startswith("langchain") for m in set(sys.modules) - modules)


# --------------------------------------------------------------------------- store-specific plantings


@pytest.mark.parametrize(
    "planted", [42, 4.25, "LMM\x01 text, not bytes", None], ids=["int", "float", "text", "null"]
)
def test_sqlite_rows_of_another_type_are_misses(planted: Any, tmp_path: Path) -> None:
    """SQLite columns are dynamically typed: a hand-edited row may hold any type."""
    path = tmp_path / "c.sqlite3"

    @llm_cached(backend=f"sqlite:{path}", namespace="typed")
    def ask(q: str) -> str:
        return q + "!"

    assert ask("q") == "q!"
    con = sqlite3.connect(path, isolation_level=None)
    try:
        if planted is None:  # NOT NULL is a constraint of our table, not of one someone else made
            con.executescript(
                "ALTER TABLE llm_memo_entries RENAME TO old;"
                "CREATE TABLE llm_memo_entries (key TEXT PRIMARY KEY, namespace TEXT, value BLOB,"
                " created REAL, expires REAL);"
                "INSERT INTO llm_memo_entries SELECT * FROM old; DROP TABLE old;"
            )
        con.execute("UPDATE llm_memo_entries SET value = ?", (planted,))
    finally:
        con.close()
    assert ask("q") == "q!"  # a miss, never a TypeError from the entry check
    assert ask.cache_info().hits == 0


def test_disk_values_in_diskcache_file_mode_are_refused(tmp_path: Path) -> None:
    """diskcache keeps large values in side files (and reads them back): never here."""
    import diskcache

    store = tmp_path / "store"

    @llm_cached(backend=f"disk:{store}", namespace="files")
    def ask(q: str) -> str:
        return q + "!"

    assert ask("warm") == "warm!"
    call = prepared(ask, "q")
    entry = pack_entry(encode_value("PLANTED", EMPTY), call.fingerprint, time.time(), None)
    with diskcache.Cache(str(store), disk_min_file_size=0) as planted:
        planted.set(call.key, entry + b"\x00" * 100_000, read=False)  # a file-mode value
    assert any(p.suffix == ".val" for p in store.rglob("*"))
    assert ask("q") == "q!" and ask.cache_info().hits == 0


def test_redis_key_of_another_type_is_a_miss(redis_url: str) -> None:
    import redis

    @llm_cached(backend=redis_url, namespace="typed")
    def ask(q: str) -> str:
        return q + "!"

    assert ask("warm") == "warm!"
    key = f"llm-memo:typed:{ask.cache_key('q')}"
    with redis.Redis.from_url(redis_url) as raw:
        raw.hset(key, mapping={"value": b"x"})
        assert ask("q") == "q!"
        raw.delete(key)
        raw.rpush(key, b"x")
        assert ask("q") == "q!"
    assert ask.cache_info().hits == 0


# --------------------------------------------------------------------------- fuzzing

FUZZ = settings(
    max_examples=250, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
FUZZ_STRESS = settings(
    max_examples=5000, deadline=None, print_blob=True, suppress_health_check=list(HealthCheck)
)

_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
_TAGS = [
    "$model", "$dataclass", "$enum", "$tuple", "$bytes", "$dict", "$int", "$float", "$set",
    "$frozenset", "$datetime", "$date", "$time", "$timedelta", "$uuid", "$decimal", "$", "$$", "$x",
]  # fmt: skip
_NAMES = [
    "os:system", "builtins:eval", "builtins:exec", "subprocess:Popen", "pickle:loads",
    "importlib:import_module", "posix:system", "__main__:Pwn", "openai.types.chat:ChatCompletion",
    "openai.types.chat:ChatCompletion.__class__", "openai.types:__builtins__",
    "openai._models:BaseModel", "anthropic.types:Message", "openai.lib.azure:os",
    "llm_memo.serialize:TypeRegistry", "decimal:Decimal", "enum:Enum",
]  # fmt: skip
_hostile_json = st.recursive(
    _json_leaf | st.sampled_from(_NAMES),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
        | st.builds(lambda t, b: {t: b}, st.sampled_from(_TAGS), inner)
        | st.builds(lambda t, n, b: {t: [n, b, {}]}, st.sampled_from(_TAGS), st.sampled_from(_NAMES), inner)
    ),
    max_leaves=20,
)


def _decode_fully(data: bytes, fp: bytes) -> Any:
    entry = unpack_entry(data, fp)
    return decode_value(entry.value, EMPTY)


def _check_decoder(data: bytes, fp: bytes) -> None:
    with audit_events() as events, contextlib.suppress(CorruptEntry):
        _decode_fully(data, fp)
    assert events == []


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_entry_decoder_on_random_bytes(data: bytes) -> None:
    _check_decoder(data, FP)
    _check_decoder(b"LMM\x01" + data, FP)


_mutation = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "truncate", "overwrite", "extend"]),
    st.integers(min_value=0, max_value=10_000),
    st.binary(min_size=1, max_size=16),
)


def _mutate(data: bytes, mutations: list[tuple[str, int, bytes]], recompute: bool) -> bytes:
    buf = bytearray(data)
    for op, pos, blob in mutations:
        if not buf:
            buf += blob
            continue
        pos %= len(buf)
        if op == "flip":
            buf[pos] ^= blob[0] or 1
        elif op == "insert":
            buf[pos:pos] = blob
        elif op == "delete":
            del buf[pos : pos + len(blob)]
        elif op == "truncate":
            del buf[pos:]
        elif op == "overwrite":
            buf[pos : pos + len(blob)] = blob
        else:
            buf += blob
    if recompute and len(buf) >= 29:  # a forger fixes the checksum: the checks behind it must hold
        buf[21:29] = __import__("zlib").crc32(bytes(buf[29:])).to_bytes(8, "little")
    return bytes(buf)


@FUZZ
@given(_hostile_json, st.lists(_mutation, min_size=1, max_size=4), st.booleans(), st.booleans())
def test_fuzz_entry_decoder_on_mutated_entries(
    tree: Any, mutations: list[tuple[str, int, bytes]], recompute: bool, compressed: bool
) -> None:
    value = orjson.dumps(tree) + (b" " * 40_000 if compressed else b"")
    data = pack_entry(value, FP, 1.0, None, b'{"material":1}')
    mutated = _mutate(data, mutations, recompute)
    _check_decoder(mutated, FP)
    if not recompute and mutated != data:
        # Any change without a forged checksum is a miss, or (a flipped unused flag bit:
        # the flags byte sits before the checksummed part) the very same value.
        try:
            expected: Any = _decode_fully(data, FP)
        except CorruptEntry:
            expected = CorruptEntry
        try:
            got: Any = _decode_fully(mutated, FP)
        except CorruptEntry:
            got = CorruptEntry
        assert got is CorruptEntry or (got == expected and mutated[4] != data[4]), (got, expected)


@FUZZ
@given(_hostile_json)
def test_fuzz_value_decoder_on_hostile_tag_trees(tree: Any) -> None:
    _check_decoder(forge_entry(orjson.dumps(tree), FP), FP)


@stress
@FUZZ_STRESS
@given(_hostile_json, st.lists(_mutation, min_size=1, max_size=6), st.booleans())
def test_stress_fuzz_entry_decoder(
    tree: Any, mutations: list[tuple[str, int, bytes]], recompute: bool
) -> None:
    data = pack_entry(orjson.dumps(tree), FP, 1.0, None, b"{}")
    _check_decoder(_mutate(data, mutations, recompute), FP)
    _check_decoder(forge_entry(orjson.dumps(tree), FP), FP)


# --------------------------------------------------------------------------- key encoder fuzzing


class Colour(enum.Enum):
    RED = "red"
    ONE = 1


@dataclasses.dataclass(frozen=True)
class Point:
    x: Any
    y: Any


# All of Unicode, lone surrogates included: a str argument can hold anything.
_any_text = st.text(st.characters(exclude_categories=()), max_size=8)
_nul_text = st.builds(lambda s: "\x00" + s, _any_text)
_key_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _any_text
    | _nul_text
    | st.binary(max_size=8)
    | st.decimals(allow_nan=False, allow_infinity=True)
    | st.just(decimal.Decimal("-0"))
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.dates()
    | st.times()
    | st.timedeltas()
    | st.uuids()
    | st.sampled_from(
        [Colour.RED, Colour.ONE, pathlib.PurePosixPath("/a/b"), pathlib.PureWindowsPath("c:/x")]
    )
)
# A signalling NaN cannot be hashed: only outside sets and dict keys.
_unhashable_leaf = st.sampled_from([decimal.Decimal("sNaN"), decimal.Decimal("NaN")])
_hashable = st.recursive(
    _key_leaf, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=6
)
_key_values = st.recursive(
    _key_leaf | _unhashable_leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(_any_text | _nul_text, inner, max_size=4)
        | st.dictionaries(_hashable, inner, max_size=3)
        | st.sets(_hashable, max_size=3)
        | st.builds(Point, inner, inner)
    ),
    max_leaves=25,
)


def _fuzz_key_encoder(value: Any) -> None:
    @llm_cached(namespace="fuzz")
    def f(x: Any) -> None:
        return None

    memo = memo_of(f)
    try:
        first = memo.prepare(None, (value,), {})
    except UncacheableArgument:
        return  # the documented refusal (a TypeError naming the argument)
    assert first is not None
    # The same key by the raw-JSON shortcut, by a second walk, and for a deep copy.
    assert prepared(f, value).key == first.key
    assert memo.key_for(None, (copy.deepcopy(value),), {}) == first.key
    material = material_bytes(key_material("fuzz", None, {"x": canonical(value)}))
    assert orjson.loads(material)["ns"] == "fuzz"


@FUZZ
@given(_key_values)
@example("\ud800")  # found by this fuzzer: orjson refuses lone surrogates
@example({"\udfff": [1]})
@example({"\ud800"})
def test_fuzz_key_encoder_builds_a_stable_key_or_refuses_clearly(value: Any) -> None:
    _fuzz_key_encoder(value)


@stress
@FUZZ_STRESS
@given(_key_values)
def test_stress_fuzz_key_encoder(value: Any) -> None:
    _fuzz_key_encoder(value)


def test_a_lone_surrogate_argument_never_breaks_the_call() -> None:
    """Python strings may hold lone surrogates (e.g. from os.fsdecode); JSON cannot."""

    @llm_cached(namespace="surrogates")
    def ask(q: str | dict[str, int]) -> int:
        return len(q)

    for text in ("\ud800", "ok \udcff ok", {"k\udfff": 1}):
        # The documented refusal is acceptable; any other exception is not.
        with contextlib.suppress(UncacheableArgument):
            assert ask(text) == len(text)


def test_huge_numbers_are_keyed_or_refused_quickly() -> None:
    """Big ints and Decimals with huge exponents: a clear refusal or a key, in bounded time."""

    @llm_cached(namespace="numbers")
    def ask(n: Any) -> str:
        return "ok"

    for number in (10**5000, -(10**4400), decimal.Decimal("1E+150000"), decimal.Decimal("-1E+5000")):
        started = time.monotonic()
        with contextlib.suppress(UncacheableArgument):
            assert ask(number) == "ok"
        assert time.monotonic() - started < 0.5, f"{str(number)[:20]}: key took too long"


def test_tags_cannot_be_spelled_by_plain_values() -> None:
    """A user dict that spells a tag never shares a key with the tagged value."""

    @llm_cached(namespace="spell")
    def f(x: Any) -> None:
        return None

    pairs = [
        ({"\x00set": [1, 2]}, {1, 2}),
        ({"\x00bytes": "YQ=="}, b"a"),
        ({"\x00float": "nan"}, float("nan")),
        ({"\x00map": [[1, 2]]}, {1: 2}),
        ({"\x00int": str(2**70)}, 2**70),
        ({"\x00\x00set": [1]}, {"\x00set": [1]}),
        ({"$tuple": [1]}, (1,)),
    ]
    for plain, tagged in pairs:
        assert f.cache_key(plain) != f.cache_key(tagged), plain
    assert llm_memo.keys.canonical({"\x00set": []}) != llm_memo.keys.canonical(set())
