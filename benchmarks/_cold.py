"""Cold hits in a fresh process, for the "cold hit" rows of ``run.py``.

    python benchmarks/_cold.py '<json spec>'

The store named in the spec already holds every call this process will make
(``run.py`` filled it from another process). Here, each call's arguments are built
fresh (parsed from JSON, sharing no object with any other call) and made exactly
once: nothing the process remembers about arguments it has seen can help. That is
the hit a second run of a program pays (a notebook restart, a CI replay). The
lower bound does the same in the same process, on its own store.

The first ``warm`` calls warm the code paths up (imports, first-use setup) and are
not timed; the timed calls alternate between llm_memo and the bound in chunks, each
call timed on its own. Prints one JSON line: per workload, the nanoseconds of every
timed call of each, and how many times the wrapped function ran (must be 0).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from _common import NAMESPACE, Value, bound_key, load_call, nth_request
from _peers import Counter, Ctx, bound_store, chat_function

#: Cold hits use their own namespace and bound store names, never touched by warm rows.
FIRST = 60_000_000
CHUNK = 25


def namespace(ctx: Ctx) -> str:
    return f"{NAMESPACE}.cold.{ctx.tag}"


def requests(ctx: Ctx, count: int) -> list[bytes]:
    """The calls of the cold rows, as JSON: each parsed only when it is made."""
    return [orjson.dumps(nth_request(ctx.request, FIRST + i)) for i in range(count)]


def context(spec: dict[str, Any], workload: str) -> Ctx:
    request, response = load_call(workload)
    value = Value("ChatCompletion", response)
    return Ctx(Path(spec["tmp"]), request, value, spec.get("redis_url"), workload=workload)


def fill(spec: dict[str, Any], workload: str) -> None:
    """Store every cold call in llm_memo's store and the bound's (run by ``run.py``)."""
    import llm_memo

    ctx = context(spec, workload)
    counter = Counter(ctx.value)
    url = spec["source"] if spec["group"] == "memory" else spec["url"]
    fn = llm_memo.llm_cached(backend=url, namespace=namespace(ctx))(chat_function(counter, "chat_cold"))
    store = None if spec["group"] == "memory" else bound_store(ctx, spec["group"], f"cold-{ctx.tag}")
    for raw in requests(ctx, spec["warm"] + spec["n"]):
        request = orjson.loads(raw)
        fn(**request)
        if store is not None:
            store.put(bound_key(request), ctx.value.payload)
    if store is not None:
        store.close()


def run(spec: dict[str, Any], workload: str) -> dict[str, Any]:
    import llm_memo

    group = spec["group"]
    ctx = context(spec, workload)
    calls = requests(ctx, spec["warm"] + spec["n"])
    store = bound_store(ctx, group, f"cold-{ctx.tag}")
    if group == "memory":
        # A memory store cannot outlive its process: this one gets the entries another
        # process wrote (raw bytes, as a tiered or copied store would), and the bound's
        # dict gets its own; neither step makes a call through llm_memo.
        from llm_memo.backends import from_url

        source, memory = from_url(spec["source"]), from_url("memory")
        for entry in source.entries(namespace(ctx)):
            memory.set(entry.namespace, entry.key, entry.value, None)
        for raw in calls:
            store.put(bound_key(orjson.loads(raw)), ctx.value.payload)
    counter = Counter(ctx.value)
    fn = llm_memo.llm_cached(backend=spec["url"], namespace=namespace(ctx))(
        chat_function(counter, "chat_cold")
    )
    decode, get = ctx.value.decode, store.get
    parsed = [orjson.loads(raw) for raw in calls]  # parsed before timing; each used once
    warm, timed = parsed[: spec["warm"]], parsed[spec["warm"] :]
    for request in warm:
        fn(**request)
        decode(get(bound_key(request)))
    # Each side gets its own copies: no object is ever passed twice.
    memo_calls = timed
    bound_calls = [orjson.loads(raw) for raw in calls[spec["warm"] :]]
    clock = time.perf_counter_ns
    memo_ns: list[int] = []
    bound_ns: list[int] = []
    gc.collect()
    for start in range(0, len(timed), CHUNK):
        for request in memo_calls[start : start + CHUNK]:
            t0 = clock()
            fn(**request)
            memo_ns.append(clock() - t0)
        for request in bound_calls[start : start + CHUNK]:
            t0 = clock()
            decode(get(bound_key(request)))  # type: ignore[arg-type]
            bound_ns.append(clock() - t0)
    store.close()
    return {"llm_memo": memo_ns, "bound": bound_ns, "misses": counter.n}


def main() -> None:
    spec = json.loads(sys.argv[1])
    action = spec.get("action", "run")
    out: dict[str, Any] = {}
    for workload in spec["workloads"]:
        if action == "fill":
            fill(spec, workload)
        else:
            out[workload] = run(spec, workload)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
