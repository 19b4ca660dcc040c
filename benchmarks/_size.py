"""Resident memory of memory-backend chat entries, in a process of its own.

    python benchmarks/_size.py <entries>

Stores ``entries`` distinct chat calls through ``@llm_cached`` on a memory backend
without limits (the default one keeps 10,000 entries, which would cap the growth),
each request built, called once, and dropped, so only what llm_memo keeps stays
resident, and prints ``{"entries": n, "rss_before": bytes, "rss_after": bytes}``.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

from _common import NAMESPACE, Value, load_call, nth_request
from _peers import Counter, Ctx, chat_function


def rss() -> int:
    """Resident bytes now (``/proc``), else the peak (``getrusage``, where there is no /proc)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    import llm_memo
    from llm_memo.backends.memory import MemoryBackend

    entries = int(sys.argv[1])
    request, response = load_call()
    ctx = Ctx(Path(tempfile.gettempdir()), request, Value("ChatCompletion", response))
    counter = Counter(ctx.value)
    backend = MemoryBackend(max_entries=None, max_bytes=None)
    fn = llm_memo.llm_cached(backend=backend, namespace=f"{NAMESPACE}.rss")(chat_function(counter, "chat"))
    for i in range(200):  # first-use setup and allocator warm-up, not counted
        fn(**nth_request(request, 70_000_000 + i))
    gc.collect()
    before = rss()
    for i in range(entries):
        fn(**nth_request(request, 80_000_000 + i))
    gc.collect()
    after = rss()
    if counter.n != entries + 200:
        raise SystemExit("a distinct call was a hit")
    if sum(1 for _ in backend.entries()) != entries + 200:
        raise SystemExit("the store did not keep every entry")
    print(json.dumps({"entries": entries, "rss_before": before, "rss_after": after}), flush=True)


if __name__ == "__main__":
    main()
