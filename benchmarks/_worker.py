"""A hit loop in its own process, for the multi-process throughput measure of ``run.py``.

    python benchmarks/_worker.py <group> <backend-url>

Builds the same cached function as ``run.py`` on the given store (which already
holds the entry), warms up, prints ``ready``, then obeys lines on stdin:
``go <seconds>`` runs hits for that long and prints ``{"hits": n, "elapsed": s,
"misses": m}``; ``exit`` ends the process.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import Value, load_call
from _peers import Ctx, memo_case


def cpu_loop() -> int:
    """About as long as a cache hit, touching nothing shared."""
    return sum(range(400))


def main() -> None:
    group, url = sys.argv[1], sys.argv[2]
    hit: Callable[[], Any]
    calls: Callable[[], int]
    if group == "cpu":  # the machine's ceiling: pure Python, nothing shared
        hit, calls = cpu_loop, lambda: 0
    else:
        request, response = load_call()
        ctx = Ctx(Path(tempfile.gettempdir()), request, Value("ChatCompletion", response))
        case = memo_case(ctx, group, url)
        hit, calls = case.hit, case.calls
    for _ in range(200):
        hit()
    warm_misses = calls()
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "exit":
            break
        duration = float(command[1])
        clock = time.perf_counter
        start = clock()
        deadline = start + duration
        hits = 0
        while True:
            hit()
            hits += 1
            if hits % 16 == 0 and clock() >= deadline:
                break
        elapsed = clock() - start
        misses = calls() - warm_misses
        result = {"hits": hits, "elapsed": elapsed, "misses": misses, "warm_misses": warm_misses}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
