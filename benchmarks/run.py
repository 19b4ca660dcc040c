"""llm_memo against its lower bounds and the usual alternatives, side by side, in one run.

    python benchmarks/run.py                 # the full run (several minutes)
    python benchmarks/run.py --quick         # a smoke run (well under a minute)
    python benchmarks/run.py --only memory,disk --json results.json

Prints markdown tables (ratios first) and the JSON of every number. Every row
is measured on the chat-shaped call in ``benchmarks/chat_call.json``; rows are
interleaved (A B C A B C ...) over several repetitions and reported as the
median of the per-repetition medians. See ``benchmarks/README.md`` for what
each row means.

Sections (``--only``): memory, disk, sqlite, redis (hits and misses on that
backend), scale (hit latency vs store size), throughput (threads, processes),
import, sdk (patched openai vs LangChain's ChatOpenAI vs a live call).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _peers
from _common import (
    HERE,
    NAMESPACE,
    WORKLOADS,
    Requests,
    Series,
    Value,
    load_call,
    nth_request,
    ratio,
    redis_server,
    sample,
)
from _peers import Case, Counter, Ctx, Unavailable, chat_function, memo_case

RESULTS = HERE / "results"
SECTIONS = (
    "memory",
    "disk",
    "sqlite",
    "redis",
    "cold",
    "seed",
    "size",
    "scale",
    "throughput",
    "import",
    "sdk",
)
BACKENDS = ("memory", "disk", "sqlite", "redis")
VARIANTS = ("ChatCompletion", "str")
#: (workload, variant) of every hit/miss context: the chat call in both variants, the
#: tool-calling conversation (``None`` contents) with the SDK's ChatCompletion only.
CONTEXTS = (("chat", "ChatCompletion"), ("chat", "str"), ("tools", "ChatCompletion"))
#: Modules ``import llm_memo`` must not load (SDKs, the Redis client, CLI libraries).
FORBIDDEN = ("openai", "anthropic", "redis", "langchain_core", "click", "typer", "rich", "httpx")
PEER_VERSIONS = (
    "llm-memo",
    "orjson",
    "diskcache",
    "pydantic",
    "openai",
    "langchain-core",
    "langchain-community",
    "langchain-openai",
    "joblib",
    "cachier",
    "cachetools",
    "redis",
    "SQLAlchemy",
)


@dataclass(frozen=True)
class Plan:
    quick: bool
    reps: int  # interleaved repetitions of every row
    budget: float  # seconds per hit row per repetition
    n: int  # at most this many calls per hit row per repetition
    miss_budget: float
    miss_n: int
    sizes: tuple[int, ...]  # store sizes for the scale section
    hot: int  # distinct stored calls hit in the scale section
    duration: float  # seconds per throughput run
    tp_reps: int
    import_reps: int
    distinct: int  # distinct stored calls cycled through by the "distinct calls" rows
    cold_reps: int  # fresh processes per backend for the cold hits
    cold_n: int  # timed cold hits per fresh process (each call made once)
    cold_warm: int  # untimed calls first, to warm the code paths of that process
    size_n: int  # entries stored per backend to measure bytes per entry
    rss_n: int  # memory-backend entries stored to measure resident memory


FULL = Plan(
    quick=False, reps=7, budget=0.25, n=20_000, miss_budget=0.12, miss_n=1_000,
    sizes=(1_000, 100_000, 1_000_000), hot=1_000, duration=1.0, tp_reps=3, import_reps=9,
    distinct=5_000, cold_reps=5, cold_n=2_000, cold_warm=200, size_n=2_000, rss_n=100_000,
)  # fmt: skip
QUICK = Plan(
    quick=True, reps=2, budget=0.02, n=400, miss_budget=0.02, miss_n=60,
    sizes=(1_000, 10_000), hot=1_000, duration=0.2, tp_reps=1, import_reps=3,
    distinct=1_000, cold_reps=1, cold_n=150, cold_warm=30, size_n=200, rss_n=3_000,
)  # fmt: skip


@dataclass
class Report:
    plan: Plan
    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, **row: Any) -> None:
        self.rows.append(row)

    def select(self, section: str, **match: Any) -> list[dict[str, Any]]:
        return [
            r for r in self.rows if r["section"] == section and all(r.get(k) == v for k, v in match.items())
        ]

    def one(self, section: str, **match: Any) -> dict[str, Any] | None:
        found = self.select(section, **match)
        return found[0] if found else None

    def error(self, where: str, exc: BaseException) -> None:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.errors.append(f"{where}: {detail}")
        print(f"error in {where}: {detail}", file=sys.stderr)


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------- stores


class Stores:
    """The llm_memo backend URLs of this run, checked to work before use."""

    def __init__(self, tmp: Path, redis_url: str | None) -> None:
        self.tmp = tmp
        self.redis_url = redis_url
        self._checked: dict[str, str | None] = {}

    def url(self, group: str) -> str:
        """The URL of the main store of ``group``; raises Unavailable with the reason."""
        if group not in self._checked:
            self._checked[group] = self._check(group)
        reason = self._checked[group]
        if reason is not None:
            raise Unavailable(reason)
        return self._url(group)

    def _url(self, group: str) -> str:
        if group == "memory":
            return "memory"
        if group == "disk":
            return f"disk:{self.tmp / 'memo-disk'}"
        if group == "sqlite":
            return f"sqlite:{self.tmp / 'memo.sqlite3'}"
        if self.redis_url is None:
            raise Unavailable("no redis-server found")
        return f"{self.redis_url}/0"

    def _check(self, group: str) -> str | None:
        from llm_memo.backends import from_url

        try:
            backend = from_url(self._url(group))
            backend.set("bench.check", "0" * 64, b"probe", None)
            ok = backend.get("bench.check", "0" * 64) == b"probe"
            backend.delete("bench.check", "0" * 64)
        except Unavailable as exc:
            return str(exc)
        except Exception as exc:  # e.g. a backend module still being written
            return f"backend not available ({type(exc).__name__}: {exc})"
        return None if ok else "backend not available (a stored value did not read back)"


# --------------------------------------------------------------------- cases


Builder = Callable[[Ctx], "Case | list[Case]"]


def _memo(stores: Stores, group: str) -> Builder:
    return lambda ctx: memo_case(ctx, group, stores.url(group))


def builders(stores: Stores, group: str, plan: Plan, workload: str) -> list[tuple[str, str, Builder]]:
    """(label, kind, builder) of every row of one backend; the label names n/a rows."""

    def memo(ctx: Ctx) -> Case:
        return memo_case(ctx, group, stores.url(group))

    def bound(ctx: Ctx) -> Case:
        stores.url(group)  # n/a when the backend is
        return _peers.bound_case(ctx, group)

    def distinct(ctx: Ctx) -> list[Case]:
        if ctx.value.name != "ChatCompletion":
            return []
        requests = [nth_request(ctx.request, 50_000_000 + i) for i in range(plan.distinct)]
        return _peers.distinct_cases(ctx, group, stores.url(group), requests)

    rows: list[tuple[str, str, Builder]] = [
        ("llm_memo", "llm_memo", memo),
        (_peers.BOUND_LABELS[group], "bound", bound),
    ]
    if workload != "chat":  # the peers are compared on the chat call only
        return rows
    if group == "memory":
        rows += [
            ("LangChain InMemoryCache", "peer", _peers.langchain_memory),
            ("cachetools LRUCache, JSON key", "peer", _peers.cachetools_cases),
            ("cachier memory core", "peer", _peers.cachier_memory),
        ]
    elif group == "disk":
        rows += [
            ("diskcache Cache.memoize", "peer", _peers.diskcache_memoize),
            ("joblib.Memory", "peer", _peers.joblib_memory),
            ("cachier pickle core", "peer", _peers.cachier_pickle),
        ]
    elif group == "sqlite":
        rows += [
            ("LangChain SQLiteCache", "peer", _peers.langchain_sqlite),
            ("cachier sql core (SQLite)", "peer", _peers.cachier_sql),
        ]
    else:
        rows += [
            ("LangChain RedisCache", "peer", _peers.langchain_redis),
            ("cachier redis core", "peer", _peers.cachier_redis),
        ]
    return [*rows, (f"llm_memo, {plan.distinct:,} distinct calls in turn", "llm_memo_distinct", distinct)]


def same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and bool(a == b)


def prime(case: Case, value: Value) -> None:
    """Store the entry, then prove two hits return equal objects without computing."""
    first = case.hit()  # a miss for most caches: computes and stores
    if not same(first, value.obj):
        raise AssertionError(f"{case.id}: the first call returned {type(first).__name__}, not the value")
    before = case.calls()
    a, b = case.hit(), case.hit()
    if case.calls() != before:
        raise AssertionError(f"{case.id}: a repeated call ran the function: not a hit")
    if not (same(a, value.obj) and same(b, value.obj)):
        raise AssertionError(f"{case.id}: a hit returned a different value")
    case.fresh = value.cls is str or a is not b
    for _ in range(50):
        case.hit()


def build_cases(
    report: Report, stores: Stores, ctxs: dict[tuple[str, str], Ctx], groups: list[str]
) -> dict[tuple[str, str], list[Case]]:
    """Every ready case of every context; unavailable ones become n/a rows."""
    cases: dict[tuple[str, str], list[Case]] = {key: [] for key in CONTEXTS}
    for key in CONTEXTS:
        ctx = ctxs[key]
        workload, variant = key
        progress(f"setting up the {workload} workload, {variant} result")
        for group in groups:
            for label, kind, build in builders(stores, group, report.plan, workload):
                try:
                    made = build(ctx)
                except Unavailable as exc:
                    if kind.endswith("_distinct") and variant != "ChatCompletion":
                        continue
                    for section in ("hit", "miss") if not kind.endswith("_distinct") else ("hit",):
                        report.add(
                            section=section,
                            workload=workload,
                            variant=variant,
                            group=group,
                            label=label,
                            kind=kind,
                            status="n/a",
                            reason=str(exc),
                        )
                    continue
                except Exception as exc:
                    report.error(f"setting up {variant}/{group}/{label}", exc)
                    continue
                for case in made if isinstance(made, list) else [made]:
                    try:
                        prime(case, ctx.value)
                    except Exception as exc:
                        report.error(f"checking {case.id}", exc)
                        case.close()
                        continue
                    cases[key].append(case)
    return cases


# --------------------------------------------------------------------- hits and misses


def measure_hits(report: Report, cases: dict[tuple[str, str], list[Case]]) -> None:
    plan = report.plan
    everything = [case for key in CONTEXTS for case in cases[key]]
    series = {case.id: Series() for case in everything}
    calls = {case.id: case.calls() for case in everything}
    failed: set[str] = set()
    for rep in range(plan.reps):
        progress(f"hits: repetition {rep + 1}/{plan.reps} of {len(everything)} rows")
        for case in everything:
            if case.id in failed:
                continue
            try:
                series[case.id].add(sample(case.hit, plan.n, plan.budget))
            except Exception as exc:
                failed.add(case.id)
                report.error(f"timing hits of {case.id}", exc)
    for case in everything:
        if case.id in failed:
            continue
        if case.calls() != calls[case.id]:
            report.error(case.id, AssertionError("the function ran during the timed hits"))
            continue
        s = series[case.id]
        report.add(
            section="hit",
            workload=case.workload,
            variant=case.variant,
            group=case.group,
            label=case.label,
            kind=case.kind,
            status="ok",
            median_us=s.median,
            p99_us=s.p99,
            medians_us=s.medians,
            calls=s.calls,
            fresh=case.fresh,
            note=case.note,
        )
    _relate(report, "hit", "median_us")


def _relate(report: Report, section: str, field_name: str) -> None:
    """Add ``x_bound`` and ``x_llm_memo`` to every measured row of a section."""
    for row in report.select(section, status="ok"):
        suffix = "_distinct" if row["kind"].endswith("_distinct") else ""
        where = {
            "workload": row["workload"],
            "variant": row["variant"],
            "group": row["group"],
            "status": "ok",
        }
        bound = report.one(section, kind="bound" + suffix, **where)
        memo = report.one(section, kind="llm_memo" + suffix, **where)
        row["x_bound"] = ratio(row[field_name], bound[field_name]) if bound else None
        row["x_llm_memo"] = ratio(row[field_name], memo[field_name]) if memo else None


def measure_misses(
    report: Report, workload: str, cases: list[Case], value: Value, requests: Requests
) -> None:
    """Miss overhead: a miss (new request) minus the wrapped function's own time."""
    plan = report.plan
    raw = chat_function(Counter(value), "chat_raw")
    own = Series()
    series = {case.id: Series() for case in cases}
    failed: set[str] = set()
    for rep in range(plan.reps):
        progress(f"misses, {workload}: repetition {rep + 1}/{plan.reps} of {len(cases)} rows")
        fresh = iter(requests.take(plan.miss_n))
        own.add(sample(lambda f=fresh: raw(**next(f)), plan.miss_n, plan.miss_budget))  # type: ignore[misc]
        for case in cases:
            if case.id in failed:
                continue
            prepared = iter([case.prepare(r) for r in requests.take(plan.miss_n)])
            miss = case.miss
            assert miss is not None
            before = case.calls()
            try:
                # A few misses suffice for the slowest rows (cachier's pickle core rewrites its
                # whole file on every miss); the budget decides for the others.
                samples = sample(
                    lambda m=miss, p=prepared: m(next(p)),  # type: ignore[misc]
                    plan.miss_n,
                    plan.miss_budget,
                    minimum=5,
                )
            except Exception as exc:
                failed.add(case.id)
                report.error(f"timing misses of {case.id}", exc)
                continue
            if case.kind != "bound" and case.calls() - before != len(samples):
                report.error(case.id, AssertionError("a timed miss did not run the function"))
            series[case.id].add(samples)
    report.add(
        section="miss",
        workload=workload,
        variant=value.name,
        group="-",
        label="the wrapped function alone",
        kind="function",
        status="ok",
        median_us=own.median,
        medians_us=own.medians,
        miss_median_us=own.median,
        miss_p99_us=own.p99,
    )
    for case in cases:
        if case.id in failed:
            continue
        s = series[case.id]
        overheads = [m - o for m, o in zip(s.medians, own.medians, strict=True)]
        report.add(
            section="miss",
            workload=workload,
            variant=case.variant,
            group=case.group,
            label=case.label,
            kind=case.kind,
            status="ok",
            miss_median_us=s.median,
            miss_p99_us=s.p99,
            median_us=statistics.median(overheads),
            overheads_us=overheads,
            note=case.note,
        )
    _relate(report, "miss", "median_us")


# --------------------------------------------------------------------- store size


@dataclass
class ScaleStore:
    group: str
    size: int
    backend: Any
    hit: Callable[[], Any]
    counter: Counter


def _fill_rows(group: str, size: int, hot: int) -> Iterator[int]:
    """How many filler rows to add before each of the ``hot`` stored calls."""
    filler = max(0, size - hot)
    per, extra = divmod(filler, hot)
    for i in range(hot):
        yield per + (1 if i < extra else 0)


def build_scale_store(
    group: str, size: int, plan: Plan, ctx: Ctx, stores: Stores, db: int, entry_size: int
) -> ScaleStore:
    import llm_memo

    blob = os.urandom(entry_size)
    hot = min(plan.hot, size)
    requests = [nth_request(ctx.request, 20_000_000 + i) for i in range(hot)]
    counter = Counter(ctx.value)
    insert: Callable[[int], None]
    backend: Any
    if group == "disk":
        from llm_memo.backends.disk import DiskBackend

        stores.url("disk")
        # No culling: the default 1 GiB size limit would evict entries of a 1M store.
        backend = DiskBackend(stores.tmp / f"scale-disk-{size}", size_limit=2**42)
        backend.cache  # noqa: B018 - creates the directory and tables
        con = sqlite3.connect(backend.directory / "cache.db", isolation_level=None)
        con.execute("PRAGMA synchronous = OFF")

        def insert(n: int) -> None:
            now = time.time()
            rows = ((os.urandom(32).hex(), now, now, "bench.filler", blob) for _ in range(n))
            con.execute("BEGIN IMMEDIATE")
            con.executemany(
                "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count,"
                " tag, size, mode, filename, value) VALUES (?, 1, ?, NULL, ?, 0, ?, 0, 1, NULL, ?)",
                rows,
            )
            con.execute("COMMIT")

    elif group == "sqlite":
        from llm_memo.backends import from_url

        stores.url("sqlite")
        path = stores.tmp / f"scale-{size}.sqlite3"
        backend = from_url(f"sqlite:{path}")
        backend.get("bench.filler", "0" * 64)  # creates the file and table
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("PRAGMA synchronous = OFF")

        def insert(n: int) -> None:
            now = time.time()
            rows = ((os.urandom(32).hex(), "bench.filler", blob, now) for _ in range(n))
            con.execute("BEGIN IMMEDIATE")
            con.executemany(
                "INSERT INTO llm_memo_entries (key, namespace, value, created, expires)"
                " VALUES (?, ?, ?, ?, NULL)",
                rows,
            )
            con.execute("COMMIT")

    else:
        import redis

        from llm_memo.backends import from_url

        stores.url("redis")
        assert stores.redis_url is not None
        url = f"{stores.redis_url}/{db}"
        client = redis.Redis.from_url(url)
        client.flushdb()
        backend = from_url(url)

        def insert(n: int) -> None:
            pipe = client.pipeline(transaction=False)
            for _ in range(n):
                pipe.set(f"llm-memo:bench.filler:{os.urandom(32).hex()}", blob)
            pipe.execute()

    fn = llm_memo.llm_cached(backend=backend, namespace=f"{NAMESPACE}.scale")(
        chat_function(counter, f"chat_scale_{group}")
    )
    for request, filler in zip(requests, _fill_rows(group, size, hot), strict=True):
        if filler:
            insert(filler)
        fn(**request)  # a miss: stores one of the calls we will hit
    if counter.n != hot:
        raise AssertionError(f"{group} at {size}: {counter.n} of {hot} hot calls were not misses")
    order = list(range(hot))
    random.Random(size).shuffle(order)
    cycle = [requests[i] for i in order] * 2
    position = [0]

    def hit() -> Any:
        i = position[0] = (position[0] + 1) % hot
        return fn(**cycle[i])

    for _ in range(min(hot, 2000)):
        hit()
    if counter.n != hot:
        raise AssertionError(f"{group} at {size}: a hit ran the function")
    return ScaleStore(group, size, backend, hit, counter)


def measure_scale(report: Report, plan: Plan, ctx: Ctx, stores: Stores) -> None:
    """llm_memo hit latency by store size, one backend at a time (its stores are then
    deleted, so a full run never holds more than one backend's big stores)."""
    import shutil

    from llm_memo.backends import from_url

    # The size of one real entry of this call: filler rows are that big too.
    probe = memo_case(ctx, "memory", "memory")
    probe.hit()
    memory = from_url("memory")
    entry_size = max(len(e.value) for e in memory.entries(f"{NAMESPACE}.{ctx.value.name}"))
    for group in ("disk", "sqlite", "redis"):
        built: list[ScaleStore] = []
        for db, size in enumerate(plan.sizes, start=1):
            progress(f"scale: filling the {group} store with {size:,} entries")
            try:
                built.append(build_scale_store(group, size, plan, ctx, stores, db, entry_size))
            except Unavailable as exc:
                report.add(section="scale", group=group, size=size, status="n/a", reason=str(exc))
            except Exception as exc:
                report.error(f"scale {group} {size}", exc)
        series = {store.size: Series() for store in built}
        for rep in range(plan.reps):
            progress(f"scale: {group}, repetition {rep + 1}/{plan.reps}")
            for store in built:
                series[store.size].add(sample(store.hit, plan.n, plan.budget))
        for store in built:
            s = series[store.size]
            ok = store.counter.n == min(plan.hot, store.size)
            if not ok:
                report.error(f"scale {group} {store.size}", AssertionError("a timed hit ran the function"))
            report.add(
                section="scale",
                group=group,
                size=store.size,
                status="ok" if ok else "error",
                entry_bytes=entry_size,
                median_us=s.median,
                p99_us=s.p99,
                medians_us=s.medians,
            )
            close = getattr(store.backend, "close", None)
            if close is not None:
                close()
        if group == "redis" and stores.redis_url is not None:
            import redis

            for db in range(1, len(plan.sizes) + 1):
                redis.Redis.from_url(f"{stores.redis_url}/{db}").flushdb()
        for path in stores.tmp.glob("scale-*"):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


# --------------------------------------------------------------------- throughput


def thread_rate(hit: Callable[[], Any], threads: int, duration: float) -> float:
    """Hits per second of ``threads`` threads hitting together for ``duration``."""
    barrier = threading.Barrier(threads + 1)
    counts = [0] * threads

    def loop(index: int) -> None:
        barrier.wait()
        clock = time.perf_counter
        deadline = clock() + duration
        n = 0
        while True:
            hit()
            n += 1
            if n % 16 == 0 and clock() >= deadline:
                break
        counts[index] = n

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - start)


class Workers:
    """Hit loops in separate processes (``_worker.py``) on one shared store."""

    def __init__(self, group: str, url: str, count: int) -> None:
        script = str(HERE / "_worker.py")
        self.procs = [
            subprocess.Popen(
                [sys.executable, script, group, url],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=str(HERE),
            )
            for _ in range(count)
        ]
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                self.close()
                raise RuntimeError(f"worker for {group} did not start (said {line!r})")

    def rate(self, count: int, duration: float) -> float:
        """Hits per second of the first ``count`` workers running together."""
        chosen = self.procs[:count]
        for proc in chosen:
            assert proc.stdin is not None
            proc.stdin.write(f"go {duration}\n")
            proc.stdin.flush()
        total = 0.0
        for proc in chosen:
            assert proc.stdout is not None
            result = json.loads(proc.stdout.readline())
            if result["misses"] or result["warm_misses"]:
                raise AssertionError(f"a worker missed {result['misses']} times: not all hits")
            total += result["hits"] / result["elapsed"]
        return total

    def close(self) -> None:
        for proc in self.procs:
            try:
                if proc.stdin is not None:
                    proc.stdin.write("exit\n")
                    proc.stdin.close()
                proc.wait(timeout=10)
            except Exception:
                proc.kill()
                proc.wait()


def measure_throughput(report: Report, plan: Plan, ctx: Ctx, stores: Stores) -> None:
    """Hits per second of 2 threads / 2 processes against 1, on one shared store.

    The first row, ``cpu``, is a pure-Python loop that shares nothing: what this
    machine gives two processes at this moment (its ceiling, for reading the others).
    """
    from _worker import cpu_loop

    for group in ("cpu", *BACKENDS):
        if group == "cpu":
            url, hit = "-", cpu_loop
        else:
            try:
                url = stores.url(group)
            except Unavailable as exc:
                report.add(section="throughput", group=group, status="n/a", reason=str(exc))
                continue
            case = memo_case(ctx, group, url)
            try:
                prime(case, ctx.value)
            except Exception as exc:
                report.error(f"throughput {group}", exc)
                continue
            hit = case.hit
        progress(f"throughput: {group}")
        t1: list[float] = []
        t2: list[float] = []
        p1: list[float] = []
        p2: list[float] = []
        workers: Workers | None = None
        if group != "memory":  # a memory store is private to its process
            try:
                workers = Workers(group, url, 2)
            except Exception as exc:
                report.error(f"throughput {group} processes", exc)
        try:
            for _ in range(plan.tp_reps):
                t1.append(thread_rate(hit, 1, plan.duration))
                t2.append(thread_rate(hit, 2, plan.duration))
                if workers is not None:
                    p1.append(workers.rate(1, plan.duration))
                    p2.append(workers.rate(2, plan.duration))
        except Exception as exc:
            report.error(f"throughput {group}", exc)
            continue
        finally:
            if workers is not None:
                workers.close()
        med = statistics.median
        report.add(
            section="throughput",
            group=group,
            status="ok",
            threads_1_per_s=med(t1),
            threads_2_per_s=med(t2),
            threads_x=ratio(med(t2), med(t1)),
            processes_1_per_s=med(p1) if p1 else None,
            processes_2_per_s=med(p2) if p2 else None,
            processes_x=ratio(med(p2), med(p1)) if p1 else None,
        )


# --------------------------------------------------------------------- import


_IMPORT_PROBE = """
import json, sys, time
t = time.perf_counter()
{statement}
seconds = time.perf_counter() - t
names = {forbidden!r}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in names or m == "llm_memo.cli")
print(json.dumps({{"seconds": seconds, "loaded": loaded, "modules": len(sys.modules)}}))
"""
IMPORT_PLAIN = "import llm_memo"
IMPORT_USE = "from llm_memo import llm_cached; llm_cached(lambda prompt: prompt)"
#: What llm_memo is built on: the start-up target is what llm_memo adds to it.
IMPORT_WRAPT = "import wrapt"


def measure_import(report: Report, plan: Plan, tmp: Path) -> None:
    """``import llm_memo`` in fresh interpreters, with bytecode cached as in a normal install."""
    progress("import time")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPROFILE", "PYTHONIMPORTTIME"))}
    # Compiled bytecode goes to a private directory (the tree is left alone), and is
    # written even where PYTHONDONTWRITEBYTECODE is set: users import from .pyc files.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    runs: dict[str, list[dict[str, Any]]] = {IMPORT_WRAPT: [], IMPORT_PLAIN: [], IMPORT_USE: []}
    for rep in range(plan.import_reps + 1):  # the first round writes the bytecode cache
        for statement in runs:
            code = _IMPORT_PROBE.format(statement=statement, forbidden=FORBIDDEN)
            out = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                env=env,
                cwd=str(tmp),
                check=True,
            )
            if rep:
                runs[statement].append(json.loads(out.stdout))
    for statement, results in runs.items():
        report.add(
            section="import",
            label=statement,
            status="ok",
            median_ms=statistics.median(r["seconds"] for r in results) * 1000,
            runs_ms=[r["seconds"] * 1000 for r in results],
            forbidden_loaded=sorted({m for r in results for m in r["loaded"]}),
            modules=results[0]["modules"],
        )


# --------------------------------------------------------------------- SDK


def _integration(name: str) -> Callable[..., Any] | None:
    """``llm_memo.<name>``, else ``llm_memo.integrations.<name>``; None until it exists."""
    import llm_memo

    found = getattr(llm_memo, name, None)
    if found is None:
        try:
            from llm_memo import integrations  # type: ignore[attr-defined,unused-ignore]
        except ImportError:
            return None
        found = getattr(integrations, name, None)
    return found if callable(found) else None


@contextmanager
def _patched(patch: Callable[..., Any], unpatch: Callable[..., Any] | None) -> Iterator[None]:
    """``patch_openai(backend="memory")`` for the duration of the block (it patches the SDK
    class, so every client: the other SDK rows run outside the block)."""
    patch(backend="memory")
    try:
        yield
    finally:
        if unpatch is not None:
            unpatch()


SDK_PATCHED = "openai chat.completions.create, patched by llm_memo.patch_openai (hit)"
SDK_WRAPPED = "@llm_cached function around chat.completions.create (hit)"
SDK_LANGCHAIN = "LangChain ChatOpenAI(cache=InMemoryCache()).invoke (hit)"
SDK_LIVE = "live call to the local server (no cache)"


def _comparable(result: Any) -> Any:
    if hasattr(result, "tool_calls") and hasattr(result, "content"):  # a LangChain AIMessage
        return (result.content, result.tool_calls)
    return result.model_dump() if hasattr(result, "model_dump") else result


def measure_sdk(report: Report, plan: Plan, request: dict[str, Any]) -> None:
    progress("SDK calls")
    try:
        import openai
        from openai.types.chat import ChatCompletion
    except ImportError as exc:
        report.add(section="sdk", label="all", status="n/a", reason=f"{exc.name} is not installed")
        return

    import llm_memo
    from llm_memo.testing import FakeLLMServer

    rows: dict[str, Callable[[], Any]] = {}
    around: dict[str, Callable[[], Any]] = {}  # context managers entered around each batch
    notes: dict[str, str] = {}
    with ExitStack() as stack:
        server = stack.enter_context(FakeLLMServer(latency=0.0))
        base_url = server.openai_base_url

        def client() -> Any:
            made = openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
            stack.callback(made.close)
            return made

        live = client()
        rows[SDK_LIVE] = lambda: live.chat.completions.create(**request)

        patch = _integration("patch_openai")
        if patch is None:
            report.add(
                section="sdk",
                label=SDK_PATCHED,
                status="n/a",
                reason="llm_memo.patch_openai does not exist yet",
            )
        else:
            unpatch = _integration("unpatch_openai")
            patched = client()
            rows[SDK_PATCHED] = lambda: patched.chat.completions.create(**request)
            around[SDK_PATCHED] = lambda: _patched(patch, unpatch)

        wrapped_client = client()

        def create(**kwargs: Any) -> Any:
            return wrapped_client.chat.completions.create(**kwargs)

        create.__annotations__["return"] = ChatCompletion
        cached_create = llm_memo.llm_cached(backend="memory", namespace=f"{NAMESPACE}.sdk")(create)
        rows[SDK_WRAPPED] = lambda: cached_create(**request)

        try:
            from langchain_core.caches import InMemoryCache
            from langchain_openai import ChatOpenAI

            llm = ChatOpenAI(
                model=request["model"],
                temperature=request["temperature"],
                max_tokens=request["max_tokens"],  # type: ignore[call-arg]
                api_key="sk-bench",  # type: ignore[arg-type]
                base_url=base_url,
                max_retries=0,
                cache=InMemoryCache(),
            )
            runnable = llm.bind_tools(request["tools"])
            messages = _peers.lc_messages(request)
            rows[SDK_LANGCHAIN] = lambda: runnable.invoke(messages)
            notes[SDK_LANGCHAIN] = "returns LangChain's AIMessage, as LangChain does on a hit"
        except ImportError as exc:
            report.add(
                section="sdk", label=SDK_LANGCHAIN, status="n/a", reason=f"{exc.name} is not installed"
            )

        def batch(label: str, fn: Callable[[], Any], n: int) -> list[int]:
            with around[label]() if label in around else ExitStack():
                return sample(fn, n, plan.budget)

        # Prime every cache (one live call each), then prove hits never reach the server.
        for label, fn in list(rows.items()):
            try:
                batch(label, fn, 1)
                if label == SDK_LIVE:
                    continue
                before = server.count()
                with around[label]() if label in around else ExitStack():
                    a, b = fn(), fn()
                if server.count() != before:
                    raise AssertionError("a hit reached the server")
                if _comparable(a) != _comparable(b):
                    raise AssertionError("two hits returned different values")
            except Exception as exc:
                report.error(label, exc)
                rows.pop(label)
        series = {label: Series() for label in rows}
        counts = server.count()
        for rep in range(plan.reps):
            progress(f"SDK: repetition {rep + 1}/{plan.reps}")
            for label, fn in rows.items():
                series[label].add(batch(label, fn, plan.n))
        live_calls = series[SDK_LIVE].calls if SDK_LIVE in series else 0
        if server.count() - counts != live_calls:
            report.error("sdk", AssertionError("a timed hit reached the server"))
    for label, s in series.items():
        report.add(
            section="sdk",
            label=label,
            status="ok",
            median_us=s.median,
            p99_us=s.p99,
            medians_us=s.medians,
            note=notes.get(label, ""),
        )


# --------------------------------------------------------------------- cold hits


def _child(script: str, spec: dict[str, Any], timeout: float = 600) -> Any:
    """Run ``script`` (one of this folder's) in a fresh interpreter; its last line is JSON."""
    done = subprocess.run(
        [sys.executable, str(HERE / script), json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=str(HERE),
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_cold(report: Report, plan: Plan, stores: Stores) -> None:
    """Cold hits: fresh processes reading a warm store, every call's arguments new to the
    process (``_cold.py``); one process per backend per repetition, interleaved."""
    specs: dict[str, dict[str, Any]] = {}
    for group in BACKENDS:
        label = "llm_memo, cold process"
        try:
            url = stores.url(group)
        except Unavailable as exc:
            for workload in WORKLOADS:
                report.add(
                    section="cold",
                    workload=workload,
                    group=group,
                    label=label,
                    kind="llm_memo",
                    status="n/a",
                    reason=str(exc),
                )
            continue
        spec = {
            "group": group,
            "url": url,
            "source": f"sqlite:{stores.tmp / 'cold-memory-source.sqlite3'}",
            "tmp": str(stores.tmp),
            "redis_url": stores.redis_url,
            "workloads": list(WORKLOADS),
            "warm": plan.cold_warm,
            "n": plan.cold_n,
        }
        progress(f"cold: filling the {group} stores")
        try:
            _child("_cold.py", {**spec, "action": "fill"})
        except Exception as exc:
            report.error(f"cold {group} fill", exc)
            continue
        specs[group] = spec
    series: dict[tuple[str, str, str], Series] = {}
    failed: set[str] = set()
    for rep in range(plan.cold_reps):
        progress(f"cold: repetition {rep + 1}/{plan.cold_reps} ({len(specs)} fresh processes)")
        for group, spec in specs.items():
            if group in failed:
                continue
            try:
                result = _child("_cold.py", spec)
            except Exception as exc:
                failed.add(group)
                report.error(f"cold {group}", exc)
                continue
            for workload, timings in result.items():
                if timings["misses"]:
                    failed.add(group)
                    report.error(f"cold {group}", AssertionError(f"{timings['misses']} cold calls missed"))
                for kind in ("llm_memo", "bound"):
                    series.setdefault((workload, group, kind), Series()).add(timings[kind])
    for (workload, group, kind), s in series.items():
        if group in failed:
            continue
        label = "llm_memo, cold process" if kind == "llm_memo" else _peers.BOUND_LABELS[group]
        report.add(
            section="cold",
            workload=workload,
            variant="ChatCompletion",
            group=group,
            label=label,
            kind=kind,
            status="ok",
            median_us=s.median,
            p99_us=s.p99,
            medians_us=s.medians,
            calls=s.calls,
        )
    _relate(report, "cold", "median_us")


# --------------------------------------------------------------------- the seed scenario


def measure_seed(report: Report, plan: Plan, tmp: Path) -> None:
    """LangChain's caching how-to, as it times it (see ``_seed.py``)."""
    import _seed
    from langchain_core.globals import get_llm_cache, set_llm_cache

    progress("seed scenario")
    try:
        server_cls = _seed.server_class()
        factories = _seed.cache_factories(tmp)
    except Unavailable as exc:
        report.add(section="seed", label="all", status="n/a", reason=str(exc))
        return
    previous = get_llm_cache()
    first: dict[tuple[str, str], list[float]] = {}
    cached: dict[tuple[str, str], Series] = {}
    caches: list[Any] = []
    try:
        with server_cls(latency=0.0) as server:
            llms = _seed.models(server.openai_base_url)
            combos = [(m, c) for m in llms for c in factories]
            for rep in range(plan.reps):
                progress(f"seed: repetition {rep + 1}/{plan.reps}")
                made: dict[tuple[str, str], Any] = {}
                for model, kind in combos:
                    tag = f"{rep}-{_seed.MODELS.index(model)}"
                    cache = made[model, kind] = factories[kind](tag)
                    caches.append(cache)
                    set_llm_cache(cache)
                    before = server.count()
                    t0 = time.perf_counter_ns()
                    answer = llms[model].invoke(_seed.PROMPT)
                    first.setdefault((model, kind), []).append((time.perf_counter_ns() - t0) / 1000)
                    if server.count() != before + 1:
                        raise AssertionError(
                            f"{model} / {kind}: the first call did not reach the server once"
                        )
                    if _seed.comparable(llms[model].invoke(_seed.PROMPT)) != _seed.comparable(answer):
                        raise AssertionError(f"{model} / {kind}: the cached call returned another answer")
                for model, kind in combos:
                    set_llm_cache(made[model, kind])
                    llm = llms[model]
                    before = server.count()
                    samples = sample(lambda llm=llm: llm.invoke(_seed.PROMPT), plan.n, plan.budget)  # type: ignore[misc]
                    if server.count() != before:
                        raise AssertionError(f"{model} / {kind}: a cached call reached the server")
                    cached.setdefault((model, kind), Series()).add(samples)
    finally:
        set_llm_cache(previous)
        for cache in caches:
            _seed.close(cache)
    for (model, kind), s in cached.items():
        report.add(
            section="seed",
            model=model,
            label=kind,
            status="ok",
            first_us=statistics.median(first[model, kind]),
            firsts_us=first[model, kind],
            median_us=s.median,
            p99_us=s.p99,
            medians_us=s.medians,
        )


# --------------------------------------------------------------------- size


def _tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _checkpoint(database: Path) -> None:
    """Fold the WAL into the database file, so the file size is the data's size."""
    if database.exists():
        con = sqlite3.connect(database)
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()


def measure_size(report: Report, plan: Plan, ctx: Ctx, stores: Stores) -> None:
    """Bytes per stored chat entry on every backend and two peers, and resident memory of
    memory-backend entries (in a process of its own)."""
    import orjson

    import llm_memo
    from llm_memo.backends import from_url

    progress(f"size: {plan.size_n:,} entries per store")
    n = plan.size_n
    response_bytes = len(orjson.dumps(load_call()[1]))
    requests = [nth_request(ctx.request, 90_000_000 + i) for i in range(n)]

    def add(group: str, label: str, kind: str, total: int, how: str) -> None:
        per = total / n
        report.add(
            section="size",
            group=group,
            label=label,
            kind=kind,
            status="ok",
            entries=n,
            bytes_per_entry=per,
            x_response=per / response_bytes,
            how=how,
        )

    report.add(
        section="size",
        group="-",
        label="the response's own JSON",
        kind="response",
        status="ok",
        bytes_per_entry=float(response_bytes),
        x_response=1.0,
        how="len(orjson.dumps(response))",
    )

    def fill(backend: Any) -> None:
        counter = Counter(ctx.value)
        fn = llm_memo.llm_cached(backend=backend, namespace=f"{NAMESPACE}.size")(
            chat_function(counter, "chat")
        )
        for request in requests:
            fn(**request)
        if counter.n != n:
            raise AssertionError("a distinct call was a hit")

    for group in BACKENDS:
        try:
            stores.url(group)
            if group == "memory":
                fill("memory")
                entries = list(from_url("memory").entries(f"{NAMESPACE}.size"))
                total = sum(len(e.key) + len(e.value) for e in entries)
                add(group, "llm_memo", "llm_memo", total, "key + value bytes held")
            elif group in ("disk", "sqlite"):
                path = stores.tmp / f"size-{group}"
                url = f"disk:{path}" if group == "disk" else f"sqlite:{path}.sqlite3"
                backend = from_url(url)
                backend.get("bench.size", "0" * 64)  # creates the empty store
                database = path / "cache.db" if group == "disk" else Path(f"{path}.sqlite3")
                _checkpoint(database)
                empty = _tree_bytes(path if group == "disk" else database)
                fill(backend)
                backend.close()
                _checkpoint(database)
                total = _tree_bytes(path if group == "disk" else database) - empty
                add(group, "llm_memo", "llm_memo", total, "growth of the files on disk (WAL checkpointed)")
            else:
                import redis

                assert stores.redis_url is not None
                client = redis.Redis.from_url(f"{stores.redis_url}/9")
                client.flushdb()
                before = int(client.info("memory")["used_memory"])
                fill(from_url(f"{stores.redis_url}/9"))
                total = int(client.info("memory")["used_memory"]) - before
                client.flushdb()
                client.close()
                add(group, "llm_memo", "llm_memo", total, "growth of redis-server's used_memory")
        except Unavailable as exc:
            report.add(
                section="size", group=group, label="llm_memo", kind="llm_memo", status="n/a", reason=str(exc)
            )
        except Exception as exc:
            report.error(f"size {group}", exc)
    try:
        _size_langchain_sqlite(ctx, requests, add)
    except Unavailable as exc:
        report.add(
            section="size",
            group="sqlite",
            label="LangChain SQLiteCache",
            kind="peer",
            status="n/a",
            reason=str(exc),
        )
    except Exception as exc:
        report.error("size LangChain SQLiteCache", exc)
    try:
        import diskcache

        path = stores.tmp / "size-diskcache"
        cache = diskcache.Cache(str(path))
        empty = (_checkpoint(path / "cache.db"), _tree_bytes(path))[1]
        fn = cache.memoize()(chat_function(Counter(ctx.value), "chat_size_diskcache"))
        for request in requests:
            fn(**request)
        cache.close()
        _checkpoint(path / "cache.db")
        add(
            "disk",
            "diskcache Cache.memoize",
            "peer",
            _tree_bytes(path) - empty,
            "growth of the files (pickle)",
        )
    except Exception as exc:
        report.error("size diskcache", exc)
    progress(f"size: resident memory of {plan.rss_n:,} memory-backend entries")
    try:
        done = subprocess.run(
            [sys.executable, str(HERE / "_size.py"), str(plan.rss_n)],
            capture_output=True,
            text=True,
            cwd=str(HERE),
            timeout=900,
            check=True,
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        grown = result["rss_after"] - result["rss_before"]
        report.add(
            section="size",
            group="memory",
            label="resident memory per 100,000 entries",
            kind="rss",
            status="ok",
            entries=result["entries"],
            rss_mb_per_100k=grown / result["entries"] * 100_000 / 2**20,
            extrapolated=result["entries"] != 100_000,
            how="RSS growth of a process storing that many distinct calls",
        )
    except Exception as exc:
        report.error("size rss", exc)


def _size_langchain_sqlite(ctx: Ctx, requests: list[dict[str, Any]], add: Callable[..., None]) -> None:
    """What LangChain's SQLiteCache stores for a chat call: the prompt (LangChain's dump of the
    messages) and the ChatGeneration LangChain builds from the response."""
    try:
        from langchain_community.cache import SQLiteCache
    except ImportError as exc:
        raise Unavailable(f"{exc.name} is not installed") from None
    lc = _peers._LangChain(ctx)
    generations = lc.llm._create_chat_result(ctx.value.obj).generations
    path = ctx.tmp / "size-langchain.sqlite3"
    cache = SQLiteCache(database_path=str(path))
    cache.lookup("x", "y")  # creates the table
    _checkpoint(path)
    empty = _tree_bytes(path)
    for request in requests:
        cache.update(*lc.key(lc.messages(request)), generations)
    cache.engine.dispose()
    _checkpoint(path)
    add(
        "sqlite",
        "LangChain SQLiteCache",
        "peer",
        _tree_bytes(path) - empty,
        "growth of the file (WAL checkpointed)",
    )


# --------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    goal: str
    measured: float | None
    ok: bool | None
    detail: str = ""
    #: "target": a promise of the current performance goals; "check": an older guard rail.
    kind: str = "target"


def _hit(
    report: Report,
    group: str,
    kind: str | None = None,
    label: str | None = None,
    workload: str = "chat",
    section: str = "hit",
) -> float | None:
    match: dict[str, Any] = {
        "workload": workload,
        "variant": "ChatCompletion",
        "group": group,
        "status": "ok",
    }
    if kind is not None:
        match["kind"] = kind
    if label is not None:
        match["label"] = label
    row = report.one(section, **match)
    return row["median_us"] if row else None


#: Warm hit ÷ its lower bound, at most.
WARM_LIMITS = {"memory": 1.5, "disk": 2.0, "sqlite": 1.5, "redis": 1.2}
WORKLOAD_NAMES = {"chat": "chat call", "tools": "tool-calling conversation"}


def targets(report: Report) -> list[Target]:
    out: list[Target] = []

    def at_most(name: str, value: float | None, limit: float, detail: str = "", kind: str = "target") -> None:
        out.append(
            Target(name, f"≤ {limit:g}x", value, None if value is None else value <= limit, detail, kind)
        )

    def at_least(
        name: str, value: float | None, limit: float, detail: str = "", kind: str = "target"
    ) -> None:
        out.append(
            Target(name, f"≥ {limit:g}x", value, None if value is None else value >= limit, detail, kind)
        )

    for workload, wname in WORKLOAD_NAMES.items():
        for group in BACKENDS:
            memo, bound = (
                _hit(report, group, "llm_memo", workload=workload),
                _hit(report, group, "bound", workload=workload),
            )
            at_most(f"{wname}: {group} warm hit ÷ its lower bound", ratio(memo, bound), WARM_LIMITS[group])
        for group in BACKENDS:
            memo = _hit(report, group, "llm_memo", workload=workload, section="cold")
            bound = _hit(report, group, "bound", workload=workload, section="cold")
            at_most(f"{wname}: {group} cold hit (fresh process) ÷ its lower bound", ratio(memo, bound), 2)
        for group in BACKENDS:
            m = report.one("miss", workload=workload, group=group, kind="llm_memo", status="ok")
            b = report.one("miss", workload=workload, group=group, kind="bound", status="ok")
            value = ratio(m["median_us"], b["median_us"]) if m and b else None
            at_most(f"{wname}: {group} miss overhead ÷ its lower bound", value, 3)

    import _seed

    for model in _seed.MODELS:
        rows = {r["label"]: r for r in report.select("seed", model=model, status="ok")}

        def cached(label: str, rows: dict[str, Any] = rows) -> float | None:
            return rows[label]["median_us"] if label in rows else None

        at_least(
            f"seed, {model}: InMemoryCache ÷ LLMMemoCache memory (cached call)",
            ratio(cached(_seed.CACHES[0]), cached(_seed.CACHES[1])),
            1,
        )
        at_least(
            f"seed, {model}: SQLiteCache ÷ LLMMemoCache sqlite (cached call)",
            ratio(cached(_seed.CACHES[2]), cached(_seed.CACHES[3])),
            5,
        )

    for group in BACKENDS:
        row = report.one("size", group=group, kind="llm_memo", status="ok")
        detail = f"{row['bytes_per_entry']:,.0f} B per entry" if row else ""
        at_most(
            f"size: {group} bytes per chat entry ÷ the response's JSON",
            row["x_response"] if row else None,
            1.3,
            detail,
        )
    rss = report.one("size", kind="rss", status="ok")
    if rss is not None:
        extra = f", extrapolated from {rss['entries']:,}" if rss["extrapolated"] else ""
        detail = f"{rss['rss_mb_per_100k']:.0f} MB{extra}"
        at_most("size: RSS per 100k memory entries ÷ 250 MB", rss["rss_mb_per_100k"] / 250, 1, detail)
    else:
        at_most("size: RSS per 100k memory entries ÷ 250 MB", None, 1)

    imports = {r["label"]: r for r in report.select("import", status="ok")}
    if IMPORT_USE in imports and IMPORT_WRAPT in imports:
        added = imports[IMPORT_USE]["median_ms"] - imports[IMPORT_WRAPT]["median_ms"]
        loaded = imports[IMPORT_USE]["forbidden_loaded"]
        detail = f"{added:.1f} ms; loads: {', '.join(loaded) if loaded else 'none forbidden'}"
        out.append(
            Target(
                "start-up: import + first @llm_cached minus import wrapt, ÷ 15 ms",
                "≤ 1x, none loaded",
                added / 15,
                added <= 15 and not loaded,
                detail,
            )
        )
    else:
        out.append(
            Target("start-up: import + first @llm_cached minus import wrapt, ÷ 15 ms", "≤ 1x", None, None)
        )

    memo = {group: _hit(report, group, "llm_memo") for group in BACKENDS}
    lc = _hit(report, "memory", label="LangChain InMemoryCache")
    at_least("peers: LangChain InMemoryCache ÷ memory hit", ratio(lc, memo["memory"]), 10)
    ct = _hit(report, "memory", label="cachetools LRUCache, JSON key, shared object")
    at_least("peers: cachetools (JSON key, its stored object) ÷ memory hit", ratio(ct, memo["memory"]), 1.5)
    dc = _hit(report, "disk", label="diskcache Cache.memoize")
    at_least("peers: diskcache Cache.memoize ÷ disk hit", ratio(dc, memo["disk"]), 5)
    jl = _hit(report, "disk", label="joblib.Memory")
    at_least("peers: joblib.Memory ÷ disk hit", ratio(jl, memo["disk"]), 8)
    ls = _hit(report, "sqlite", label="LangChain SQLiteCache")
    at_least("peers: LangChain SQLiteCache ÷ sqlite hit", ratio(ls, memo["sqlite"]), 20)
    lr = _hit(report, "redis", label="LangChain RedisCache")
    at_least("peers: LangChain RedisCache ÷ redis hit", ratio(lr, memo["redis"]), 2)

    # Older guard rails, kept so a regression in them still shows.
    for group in ("disk", "sqlite", "redis"):
        rows = {r["size"]: r["median_us"] for r in report.select("scale", group=group, status="ok")}
        largest = max(rows) if rows else None
        value = ratio(rows[largest], rows.get(1_000)) if largest and largest > 1_000 else None
        detail = f"{largest:,} vs 1,000 entries" if largest else ""
        at_most(f"{group} hit at the largest store ÷ at 1,000 entries", value, 1.5, detail, "check")
    cpu = report.one("throughput", group="cpu", status="ok")
    ceiling = f"a pure-Python loop gets {_x(cpu['processes_x'])} here" if cpu else ""
    for group in ("disk", "sqlite"):
        row = report.one("throughput", group=group, status="ok")
        value = row["processes_x"] if row else None
        at_least(f"{group}: 2 processes ÷ 1 process (hits/s)", value, 1.6, ceiling, "check")
    patched = report.one("sdk", label=SDK_PATCHED)
    lcs = report.one("sdk", label=SDK_LANGCHAIN)
    value = (
        ratio(lcs["median_us"], patched["median_us"])
        if lcs and patched and lcs["status"] == "ok" and patched["status"] == "ok"
        else None
    )
    at_least("LangChain ChatOpenAI.invoke hit ÷ patched create hit", value, 10, kind="check")
    return out


# --------------------------------------------------------------------- output


def _x(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def _us(value: float | None) -> str:
    if value is None or value != value:
        return "—"
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def markdown(report: Report, goals: list[Target], meta: dict[str, Any]) -> str:
    lines: list[str] = []
    add = lines.append
    kind = "quick smoke run" if report.plan.quick else "full run"
    add(f"## llm_memo benchmark ({kind}; {meta['python']}, {meta['machine']})")
    add("")
    add(f"Command: `{meta['command']}`. Ratios are of medians of {report.plan.reps} interleaved repetitions.")
    add("")
    for kind, title in (("target", "Targets (ChatCompletion results)"), ("check", "Other checks")):
        add(f"### {title}")
        add("")
        add("| target | measured | goal | result |")
        add("|---|---:|---|---|")
        for t in (t for t in goals if t.kind == kind):
            result = "n/a" if t.ok is None else ("PASS" if t.ok else "MISS")
            detail = f" ({t.detail})" if t.detail else ""
            add(f"| {t.name}{detail} | {_x(t.measured)} | {t.goal} | {result} |")
        add("")
    lines.pop()
    for workload, variant in CONTEXTS:
        rows = report.select("hit", workload=workload, variant=variant)
        if not rows:
            continue
        add("")
        add(f"### Hit latency, {WORKLOAD_NAMES[workload]}, {variant} result")
        add("")
        add("| backend | cache | median µs | p99 µs | ÷ lower bound | ÷ llm_memo | fresh object |")
        add("|---|---|---:|---:|---:|---:|---|")
        for row in rows:
            if row["status"] != "ok":
                add(f"| {row['group']} | {row['label']} | n/a ({row['reason']}) | | | | |")
                continue
            fresh = {True: "yes", False: "**no**", None: "?"}[row["fresh"]]
            add(
                f"| {row['group']} | {row['label']} | {_us(row['median_us'])} | {_us(row['p99_us'])} "
                f"| {_x(row.get('x_bound'))} | {_x(row.get('x_llm_memo'))} | {fresh} |"
            )
    misses = report.select("miss")
    if misses:
        add("")
        add("### Miss overhead, ChatCompletion result (a miss minus the wrapped function's own time)")
        add("")
        add("| workload | backend | cache | overhead µs | ÷ lower bound | ÷ llm_memo | whole miss p99 µs |")
        add("|---|---|---|---:|---:|---:|---:|")
        for row in misses:
            if row["status"] != "ok":
                add(f"| {row['workload']} | {row['group']} | {row['label']} | n/a ({row['reason']}) | | | |")
                continue
            label = row["label"]
            if row["kind"] == "bound":
                label = "lower bound: key + lookup (a miss) + encode + one write"
            add(
                f"| {row['workload']} | {row['group']} | {label} | {_us(row['median_us'])} "
                f"| {_x(row.get('x_bound'))} | {_x(row.get('x_llm_memo'))} | {_us(row.get('miss_p99_us'))} |"
            )
    cold = report.select("cold")
    if cold:
        add("")
        add("### Cold hits: a fresh process reading a warm store, every call new to the process")
        add("")
        add("| workload | backend | cache | median µs | p99 µs | ÷ lower bound |")
        add("|---|---|---|---:|---:|---:|")
        for row in cold:
            if row["status"] != "ok":
                add(f"| {row['workload']} | {row['group']} | {row['label']} | n/a ({row['reason']}) | | |")
                continue
            add(
                f"| {row['workload']} | {row['group']} | {row['label']} | {_us(row['median_us'])} "
                f"| {_us(row['p99_us'])} | {_x(row.get('x_bound'))} |"
            )
    seed = report.select("seed")
    if seed:
        add("")
        add('### The seed scenario: `llm.invoke("Tell me a joke")` with `set_llm_cache(...)`, local server')
        add("")
        add("| model | cache | first call µs | cached call µs | cached p99 µs |")
        add("|---|---|---:|---:|---:|")
        for row in seed:
            if row["status"] != "ok":
                add(f"| {row.get('model', '—')} | {row['label']} | n/a ({row['reason']}) | | |")
                continue
            add(
                f"| {row['model']} | {row['label']} | {_us(row['first_us'])} | {_us(row['median_us'])} "
                f"| {_us(row['p99_us'])} |"
            )
    size = report.select("size")
    if size:
        add("")
        add("### Size of a stored chat entry (ChatCompletion result)")
        add("")
        add("| backend | store | bytes per entry | ÷ the response's JSON | measured as |")
        add("|---|---|---:|---:|---|")
        for row in size:
            if row["status"] != "ok":
                add(f"| {row['group']} | {row['label']} | n/a ({row['reason']}) | | |")
            elif row["kind"] == "rss":
                extra = f" (extrapolated from {row['entries']:,})" if row["extrapolated"] else ""
                add(
                    f"| {row['group']} | {row['label']} | {row['rss_mb_per_100k']:.0f} MB{extra} | "
                    f"| {row['how']} |"
                )
            else:
                add(
                    f"| {row['group']} | {row['label']} | {row['bytes_per_entry']:,.0f} "
                    f"| {_x(row['x_response'])} | {row['how']} |"
                )
    scale = report.select("scale")
    if scale:
        sizes = sorted({r["size"] for r in scale})
        add("")
        add("### llm_memo hit latency by store size (median µs; 1,000 distinct stored calls hit in turn)")
        add("")
        add("| backend | " + " | ".join(f"{s:,} entries" for s in sizes) + " | largest ÷ 1,000 |")
        add("|---|" + "---:|" * (len(sizes) + 1))
        for group in ("disk", "sqlite", "redis"):
            by_size = {r["size"]: r for r in scale if r["group"] == group}
            if not by_size:
                continue
            cells = [
                _us(by_size[s]["median_us"]) if s in by_size and by_size[s]["status"] == "ok" else "n/a"
                for s in sizes
            ]
            ok = {s: r["median_us"] for s, r in by_size.items() if r["status"] == "ok"}
            growth = ratio(ok[max(ok)], ok.get(1_000)) if ok else None
            add(f"| {group} | " + " | ".join(cells) + f" | {_x(growth)} |")
    throughput = report.select("throughput")
    if throughput:
        add("")
        add("### llm_memo hit throughput, one shared store")
        add("")
        add("(`cpu`: a pure-Python loop sharing nothing, the machine's ceiling at that moment.)")
        add("")
        add("| backend | 1 thread hits/s | 2 threads ÷ 1 | 1 process hits/s | 2 processes ÷ 1 |")
        add("|---|---:|---:|---:|---:|")
        for row in throughput:
            if row["status"] != "ok":
                add(f"| {row['group']} | n/a ({row['reason']}) | | | |")
                continue
            p1 = row["processes_1_per_s"]
            add(
                f"| {row['group']} | {row['threads_1_per_s']:,.0f} | {_x(row['threads_x'])} "
                f"| {'—' if p1 is None else f'{p1:,.0f}'} | {_x(row['processes_x'])} |"
            )
    imports = report.select("import")
    if imports:
        add("")
        add("### Import time (fresh interpreters, bytecode cached)")
        add("")
        wrapt = report.one("import", label=IMPORT_WRAPT, status="ok")
        add("| statement | median ms | added to `import wrapt`, ms | SDK / Redis / CLI modules loaded |")
        add("|---|---:|---:|---|")
        for imp in imports:
            loaded = ", ".join(imp["forbidden_loaded"]) or "none"
            added = "—" if wrapt is None or imp is wrapt else f"{imp['median_ms'] - wrapt['median_ms']:.1f}"
            add(f"| `{imp['label']}` | {imp['median_ms']:.1f} | {added} | {loaded} |")
    sdk = report.select("sdk")
    if sdk:
        add("")
        add("### SDK-level calls (ChatCompletion from the local OpenAI-compatible server)")
        add("")
        patched = report.one("sdk", label=SDK_PATCHED)
        wrapped = report.one("sdk", label=SDK_WRAPPED)
        ref = patched if patched and patched["status"] == "ok" else wrapped
        ref_name = "patched" if ref is patched else "@llm_cached"
        add(f"| call | median µs | p99 µs | ÷ {ref_name} hit |")
        add("|---|---:|---:|---:|")
        for row in sdk:
            if row["status"] != "ok":
                add(f"| {row['label']} | n/a ({row['reason']}) | | |")
                continue
            rel = ratio(row["median_us"], ref["median_us"]) if ref and ref["status"] == "ok" else None
            add(f"| {row['label']} | {_us(row['median_us'])} | {_us(row['p99_us'])} | {_x(rel)} |")
    if report.errors:
        add("")
        add("### Errors")
        add("")
        for error in report.errors:
            add(f"- {error}")
    return "\n".join(lines)


def metadata_of(args: argparse.Namespace) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in PEER_VERSIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    command = "python benchmarks/run.py" + (" --quick" if args.quick else "")
    if args.only:
        command += f" --only {args.only}"
    return {
        "command": command,
        "python": f"Python {platform.python_version()}",
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "versions": versions,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (CI); numbers are rough")
    parser.add_argument("--only", default="", help=f"comma-separated sections: {','.join(SECTIONS)}")
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="write the JSON here (default: benchmarks/results/latest.json, latest-quick.json with "
        "--quick; '-' prints it after the tables instead)",
    )
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    plan = QUICK if args.quick else FULL
    warnings.filterwarnings("ignore", message=".*allowed_objects.*")  # LangChain's loads(), every hit
    report = Report(plan)
    meta = metadata_of(args)
    request = load_call()[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llm-memo-bench-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        os.environ["LLM_MEMO_DIR"] = str(tmp / "default")  # never touch the user's cache
        needs_redis = any(s in only for s in ("redis", "cold", "size", "scale", "throughput"))
        redis_url = stack.enter_context(redis_server()) if needs_redis else None
        if needs_redis and redis_url is None:
            progress("no redis-server found: Redis rows are n/a")
        stores = Stores(tmp, redis_url)
        calls = {workload: load_call(workload) for workload in WORKLOADS}
        ctxs = {
            (workload, variant): Ctx(
                tmp,
                calls[workload][0],
                Value(variant, calls[workload][1]),
                redis_url,
                workload=workload,
                fill=plan.distinct if workload == "chat" else 0,
            )
            for workload, variant in CONTEXTS
        }
        chat = ctxs["chat", "ChatCompletion"]
        groups = [g for g in BACKENDS if g in only]
        if groups:
            cases = build_cases(report, stores, ctxs, groups)
            # What is alive now lives to the end: out of the collector's way, so the
            # collection before each timed batch is quick and the batches see no old-generation pass.
            gc.collect()
            gc.freeze()
            for case in (c for key in CONTEXTS for c in cases[key]):
                stack.callback(case.close)
            try:
                measure_hits(report, cases)
            except Exception as exc:
                report.error("hits", exc)
            for workload in WORKLOADS:
                try:
                    with_misses = [c for c in cases[workload, "ChatCompletion"] if c.miss is not None]
                    ctx = ctxs[workload, "ChatCompletion"]
                    measure_misses(report, workload, with_misses, ctx.value, Requests(ctx.request))
                except Exception as exc:
                    report.error(f"misses, {workload}", exc)
            for row in report.select("miss", status="n/a", variant="str"):
                report.rows.remove(row)
        sections: tuple[tuple[str, Callable[[], None]], ...] = (
            ("cold", lambda: measure_cold(report, plan, stores)),
            ("seed", lambda: measure_seed(report, plan, tmp)),
            ("size", lambda: measure_size(report, plan, chat, stores)),
            ("scale", lambda: measure_scale(report, plan, chat, stores)),
            ("throughput", lambda: measure_throughput(report, plan, chat, stores)),
            ("import", lambda: measure_import(report, plan, tmp)),
            ("sdk", lambda: measure_sdk(report, plan, request)),
        )
        for section, run in sections:
            if section in only:
                try:
                    run()
                except Exception as exc:
                    report.error(section, exc)
        from llm_memo import backends

        close_all = getattr(backends, "_reset_for_tests", None)
        if close_all is not None:
            close_all()  # close the shared backends before their directory goes away
    goals = targets(report)
    meta["seconds"] = round(time.perf_counter() - started, 1)
    print(markdown(report, goals, meta))
    document = {
        "meta": meta,
        "plan": plan.__dict__,
        "targets": [t.__dict__ for t in goals],
        "rows": report.rows,
        "errors": report.errors,
    }
    text = json.dumps(document, indent=1, default=str)
    if args.json == "-":
        print("\n```json\n" + text + "\n```")
    else:
        default = RESULTS / ("latest-quick.json" if plan.quick else "latest.json")
        path = Path(args.json) if args.json else default
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        print(f"\nEvery number of this run: {path}")
    return 1 if report.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
