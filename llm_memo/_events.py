"""What happened to each cached call: hooks, ``capture()`` and process-wide ``stats()``.

Nothing here runs on the hit path unless someone listens: the drivers check
:func:`listening` (one global read) before building an event.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from ._log import log

__all__ = ["CallEvent", "Stats", "add_hook", "capture", "remove_hook", "stats"]

EventKind = Literal["hit", "miss", "store", "error"]
_KINDS: tuple[EventKind, ...] = ("hit", "miss", "store", "error")
#: What became of a miss's result: stored, not storable (or ``cache_if`` said no),
#: or the backend failed to write it. None: no store was attempted (readonly mode).
StoreOutcome = Literal["stored", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One cached call's outcome (or a store or backend error), as hooks and ``capture()`` see it.

    ``latency`` is how long the call took in this process: microseconds for a
    hit, the model's time for a miss. ``saved_seconds`` is what the original call
    cost (recorded in the entry), ``saved_tokens`` the tokens its ``usage`` reported.
    A miss is reported once its result was dealt with: ``stored`` says how
    (``"stored"``, ``"skipped"``, ``"failed"``, or None when nothing was to be
    stored). ``error`` is set on ``"error"`` events (hooks only).
    """

    kind: EventKind
    function: str
    key: str
    latency: float | None = None
    age: float | None = None
    saved_seconds: float | None = None
    saved_tokens: int | None = None
    error: BaseException | None = None
    stored: StoreOutcome | None = None


_hooks: dict[str, list[Callable[[CallEvent], Any]]] = {kind: [] for kind in _KINDS}
_hooks_lock = threading.Lock()
_n_hooks = 0
_captures: contextvars.ContextVar[tuple[list[CallEvent], ...]] = contextvars.ContextVar(
    "llm_memo_captures", default=()
)


def add_hook(kind: EventKind, hook: Callable[[CallEvent], Any]) -> None:
    """Call ``hook(event)`` on every ``"hit"``, ``"miss"``, ``"store"`` or ``"error"``.

    For feeding Prometheus, OpenTelemetry or your own metrics. A hook that raises
    is logged and otherwise ignored: it can never break the call it observes.
    """
    global _n_hooks
    if kind not in _hooks:
        raise ValueError(f"add_hook({kind!r}): kind must be one of {', '.join(_KINDS)}")
    with _hooks_lock:
        _hooks[kind].append(hook)
        _n_hooks += 1


def remove_hook(kind: EventKind, hook: Callable[[CallEvent], Any]) -> None:
    global _n_hooks
    with _hooks_lock:
        _hooks[kind].remove(hook)
        _n_hooks -= 1


def listening() -> bool:
    return _n_hooks > 0 or bool(_captures.get())


def emit(event: CallEvent, *, record: bool = True) -> None:
    """Tell the hooks of ``event.kind``; and ``capture()`` blocks, if it is a call's ``record``.

    A call is recorded once (a hit, or a miss with its store's outcome on it), so
    ``"store"`` and ``"error"`` events go to hooks only.
    """
    if record:
        for sink in _captures.get():
            sink.append(event)
    for hook in _hooks[event.kind]:
        try:
            hook(event)
        except Exception as exc:
            log.warning("llm_memo: %s hook %r raised %r; ignored", event.kind, hook, exc)


@contextlib.contextmanager
def capture() -> Iterator[list[CallEvent]]:
    """Record every cached call made inside the block (in this thread or task): one event per call.

    A hit is a ``"hit"`` event; a miss is one ``"miss"`` event, made after its result
    was stored (or not), with the outcome in ``stored``.

    ::

        with llm_memo.capture() as calls:
            ask("hi")
        print(calls[0].kind, calls[0].latency)
    """
    sink: list[CallEvent] = []
    token = _captures.set((*_captures.get(), sink))
    try:
        yield sink
    finally:
        _captures.reset(token)


def tokens_of(value: Any) -> int | None:
    """Tokens reported by an SDK response's ``usage`` (OpenAI and Anthropic shapes).

    For a recorded stream (a list of chunks) the usage is on one of the last chunks
    (OpenAI's final chunk, Anthropic's message_delta); only those are looked at, so
    a long list result costs nothing here. Never raises: a ``usage`` that does
    (a property of a user's object) counts as no usage.
    """
    try:
        return _tokens_of(value)
    except Exception:
        return None


def _tokens_of(value: Any) -> int | None:
    if isinstance(value, list):
        for item in value[-1:-4:-1]:
            found = _tokens_of(item)
            if found is not None:
                return found
        return None
    usage = value.get("usage") if isinstance(value, dict) else getattr(value, "usage", None)
    if usage is None:
        return None
    if isinstance(usage, dict):
        get = usage.get
    else:

        def get(name: str, default: Any = None) -> Any:
            return getattr(usage, name, default)

    total = get("total_tokens")
    if isinstance(total, int):
        return total
    prompt, completion = get("input_tokens"), get("output_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        return prompt + completion
    return None


class Stats(NamedTuple):
    """Process-wide totals over every cached function (``llm_memo.stats()``)."""

    hits: int
    misses: int
    hit_ratio: float
    seconds_saved: float
    tokens_saved: int
    stores: int
    errors: int
    functions: dict[str, dict[str, Any]]
    #: SDK calls the patches saw but do not cache (raw responses, endpoints not
    #: covered, ``background=True``...): sent live, or refused in replay mode.
    uncached: int = 0


_uncached: dict[str, int] = {}
_uncached_lock = threading.Lock()


def note_uncached(endpoint: str) -> None:
    """Count an SDK call that the patches saw and did not cache."""
    with _uncached_lock:
        _uncached[endpoint] = _uncached.get(endpoint, 0) + 1


def uncached_calls() -> dict[str, int]:
    """Per endpoint (``"openai POST /moderations"``), the SDK calls not cached so far."""
    with _uncached_lock:
        return dict(_uncached)


def stats() -> Stats:
    """Hits, misses, hit ratio, time and tokens saved, across all cached functions."""
    from ._core import all_memos

    hits = misses = stores = errors = tokens = 0
    seconds = 0.0
    per: dict[str, dict[str, Any]] = {}
    for memo in all_memos():
        info = memo.info()
        saved_s, saved_t = memo.savings()
        if not (info.hits or info.misses or info.errors):
            continue
        hits += info.hits
        misses += info.misses
        stores += info.stores
        errors += info.errors
        seconds += saved_s
        tokens += saved_t
        entry = per.setdefault(
            memo.namespace, {"hits": 0, "misses": 0, "seconds_saved": 0.0, "tokens_saved": 0}
        )
        entry["hits"] += info.hits
        entry["misses"] += info.misses
        entry["seconds_saved"] += saved_s
        entry["tokens_saved"] += saved_t
    total = hits + misses
    uncached = sum(uncached_calls().values())
    return Stats(hits, misses, hits / total if total else 0.0, seconds, tokens, stores, errors, per, uncached)
