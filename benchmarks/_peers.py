"""Every measured cache as a :class:`Case`: llm_memo, the lower bounds, and the peers.

A case knows how to make one hit of the prepared request, one miss of a new
request, and how many times its wrapped function really ran (so the harness can
prove a timed "hit" never computed). Every hit returns a fresh object equal to the
stored one; a cache that hands back the object it holds is marked ``fresh=False``
and, for the ChatCompletion variant, gets a second row that stores bytes and
decodes a fresh object on every hit, exactly like the lower bound.

Peers are driven the way their users drive them: LangChain caches through
``lookup(prompt, llm_string)`` with LangChain's own serialisation of the
messages, the decorators (diskcache, joblib, cachier, cachetools) by calling the
decorated function. A peer that is not installed becomes an "n/a" row.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import NAMESPACE, Value, bound_key, suffix


class Unavailable(Exception):
    """This case cannot run here (a peer or backend is missing); the row says why."""


@dataclass
class Ctx:
    """What every case builder may use."""

    tmp: Path
    request: dict[str, Any]
    value: Value
    redis_url: str | None = None
    workload: str = "chat"
    #: How many entries llm_memo's store of a group holds while hits are timed; a peer
    #: whose lookup cost grows with its size is filled to as many.
    fill: int = 0

    @property
    def tag(self) -> str:
        """Names this context's stores and namespaces apart from the others'."""
        return self.value.name + suffix(self.workload)


@dataclass
class Case:
    group: str  # memory | disk | sqlite | redis
    label: str
    kind: str  # llm_memo | bound | peer
    variant: str
    hit: Callable[[], Any]
    miss: Callable[[Any], Any] | None = None
    prepare: Callable[[dict[str, Any]], Any] = lambda request: request
    calls: Callable[[], int] = lambda: 0
    note: str = ""
    fresh: bool | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)
    workload: str = "chat"

    @property
    def id(self) -> str:
        return f"{self.workload}/{self.variant}/{self.group}/{self.label}"

    def close(self) -> None:
        for closer in reversed(self.closers):
            with contextlib.suppress(Exception):
                closer()


class Counter:
    """The wrapped function of a case: counts its calls, returns the stored value."""

    def __init__(self, value: Value) -> None:
        self.value = value
        self.n = 0

    def __call__(self) -> Any:
        self.n += 1
        return self.value.obj


def chat_function(counter: Counter, name: str) -> Callable[..., Any]:
    """A function with the chat request's parameters, as a user would write it.

    Its return annotation is the variant's class, so llm_memo can rebuild it.
    """

    def chat(
        *,
        messages: Any,
        model: Any,
        temperature: Any = None,
        max_tokens: Any = None,
        tools: Any = None,
    ) -> Any:
        return counter()

    chat.__annotations__["return"] = counter.value.cls
    chat.__name__ = chat.__qualname__ = name
    return chat


# --------------------------------------------------------------------- llm_memo


def memo_case(ctx: Ctx, group: str, backend: Any, label: str = "llm_memo", note: str = "") -> Case:
    import llm_memo

    counter = Counter(ctx.value)
    fn = llm_memo.llm_cached(backend=backend, namespace=f"{NAMESPACE}.{ctx.tag}")(
        chat_function(counter, f"chat_{group}")
    )
    request = ctx.request
    return Case(
        group,
        label,
        "llm_memo",
        ctx.value.name,
        hit=lambda: fn(**request),
        miss=lambda r: fn(**r),
        calls=lambda: counter.n,
        note=note,
        workload=ctx.workload,
    )


# --------------------------------------------------------------------- lower bounds


class Store:
    """The lower bound's storage: one lookup and one write, nothing else."""

    def __init__(
        self,
        get: Callable[[str], bytes | None],
        put: Callable[[str, bytes], Any],
        close: Callable[[], Any] = lambda: None,
    ) -> None:
        self.get, self.put, self.close = get, put, close


def _memory_store(ctx: Ctx, tag: str) -> Store:
    data: dict[str, bytes] = {}
    return Store(data.get, data.__setitem__)


def _disk_store(ctx: Ctx, tag: str) -> Store:
    """One file per key, read by path: the least a disk cache can do (no index, no library)."""
    directory = ctx.tmp / f"bound-disk-{tag}"
    directory.mkdir(exist_ok=True)
    root = str(directory) + "/"

    def get(key: str) -> bytes | None:
        try:
            with open(root + key, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def put(key: str, value: bytes) -> None:
        # Written whole then renamed, as any safe file store must (a reader never sees half).
        part = root + key + ".part"
        with open(part, "wb") as f:
            f.write(value)
        os.replace(part, root + key)

    return Store(get, put)


_BOUND_GET = "SELECT value FROM entries WHERE key = ?"
_BOUND_SET = (
    "INSERT INTO entries (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


def _sqlite_store(ctx: Ctx, tag: str) -> Store:
    con = sqlite3.connect(ctx.tmp / f"bound-{tag}.sqlite3", isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")  # what llm_memo's SQLite backend uses
    con.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
    execute = con.execute

    def get(key: str) -> bytes | None:
        row = execute(_BOUND_GET, (key,)).fetchone()  # a prepared statement (sqlite3's cache)
        return None if row is None else row[0]

    def put(key: str, value: bytes) -> None:
        execute(_BOUND_SET, (key, value))  # one autocommit statement

    return Store(get, put, con.close)


def _redis_store(ctx: Ctx, tag: str) -> Store:
    if ctx.redis_url is None:
        raise Unavailable("no redis-server")
    import redis

    client = redis.Redis.from_url(ctx.redis_url)
    prefix = f"bound:{tag}:"
    get, set_ = client.get, client.set
    return Store(lambda key: get(prefix + key), lambda key, value: set_(prefix + key, value), client.close)  # type: ignore[arg-type,return-value]


_STORES = {"memory": _memory_store, "disk": _disk_store, "sqlite": _sqlite_store, "redis": _redis_store}
BOUND_LABELS = {
    "memory": "lower bound: key + dict lookup + decode",
    "disk": "lower bound: key + read one file by path + decode",
    "sqlite": "lower bound: key + prepared SQLite SELECT + decode",
    "redis": "lower bound: key + redis-py GET + decode",
}


def bound_store(ctx: Ctx, group: str, tag: str) -> Store:
    """The lower bound's store of ``group`` (opened again by the cold-hit processes)."""
    return _STORES[group](ctx, tag)


def bound_case(ctx: Ctx, group: str) -> Case:
    """Canonical JSON (orjson, sorted keys) + SHA-256 + the backend's lookup + a fresh decode."""
    value = ctx.value
    store = _STORES[group](ctx, ctx.tag)
    store.put(bound_key(ctx.request), value.payload)
    request = ctx.request
    decode, encode, get, put = value.decode, value.encode, store.get, store.put

    def hit() -> Any:
        return decode(get(bound_key(request)))  # type: ignore[arg-type]

    def miss(r: dict[str, Any]) -> Any:
        key = bound_key(r)
        if get(key) is not None:
            raise AssertionError("not a miss")
        result = value.obj  # the wrapped function's result
        put(key, encode(result))
        return result

    case = Case(group, BOUND_LABELS[group], "bound", value.name, hit, miss, workload=ctx.workload)
    case.closers.append(store.close)
    return case


class Cycle:
    """Hands out ``requests`` in turn: every call a different stored call."""

    def __init__(self, requests: list[dict[str, Any]]) -> None:
        self.requests = requests
        self.position = 0

    def __call__(self) -> dict[str, Any]:
        self.position = (self.position + 1) % len(self.requests)
        return self.requests[self.position]


def distinct_cases(ctx: Ctx, group: str, backend: Any, requests: list[dict[str, Any]]) -> list[Case]:
    """llm_memo and the lower bound, each hit a different stored call every time.

    ``llm_memo`` remembers the keys of recently seen arguments in the process; these
    rows show the hit of a call *not* seen recently (a cold process replaying a run).
    """
    import llm_memo

    value = ctx.value
    n = len(requests)
    counter = Counter(value)
    fn = llm_memo.llm_cached(backend=backend, namespace=f"{NAMESPACE}.distinct.{value.name}")(
        chat_function(counter, f"chat_distinct_{group}")
    )
    for request in requests:
        fn(**request)
    memo_next = Cycle(requests)
    store = _STORES[group](ctx, f"distinct-{value.name}")
    for request in requests:
        store.put(bound_key(request), value.payload)
    bound_next = Cycle(requests)
    decode, get = value.decode, store.get
    memo = Case(
        group,
        f"llm_memo, {n:,} distinct calls in turn",
        "llm_memo_distinct",
        value.name,
        hit=lambda: fn(**memo_next()),
        calls=lambda: counter.n,
        note="no call repeats within the process's recent-key memo",
    )
    bound = Case(
        group,
        f"lower bound, {n:,} distinct calls in turn",
        "bound_distinct",
        value.name,
        hit=lambda: decode(get(bound_key(bound_next()))),  # type: ignore[arg-type]
    )
    bound.closers.append(store.close)
    return [memo, bound]


# --------------------------------------------------------------------- LangChain


def lc_messages(request: dict[str, Any]) -> list[Any]:
    """The request's messages as LangChain message objects (what a LangChain user holds)."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[m["role"]](content=m["content"]) for m in request["messages"]]


class _LangChain:
    """LangChain's cache protocol as ``BaseChatModel._generate_with_cache`` runs it."""

    def __init__(self, ctx: Ctx) -> None:
        try:
            from langchain_core.load import dumps
            from langchain_core.outputs import Generation
            from langchain_openai import ChatOpenAI
        except ImportError as exc:
            raise Unavailable(f"{exc.name} is not installed") from None
        request = ctx.request
        llm = ChatOpenAI(
            model=request["model"],
            temperature=request["temperature"],
            max_tokens=request["max_tokens"],  # type: ignore[call-arg]
            api_key="sk-bench",  # type: ignore[arg-type]
            base_url="http://127.0.0.1:9/v1",
        )
        self.llm = llm
        self.kwargs: dict[str, Any] = dict(llm.bind_tools(request["tools"]).kwargs)  # type: ignore[attr-defined]
        # LangChain's loads() warns on every hit about a future default; not our business here.
        warnings.filterwarnings("ignore", message=".*allowed_objects.*")
        self.dumps = dumps
        self.generation = Generation
        self.value = ctx.value

    def messages(self, request: dict[str, Any]) -> list[Any]:
        return lc_messages(request)

    def key(self, messages: list[Any]) -> tuple[str, str]:
        # The two lines of _generate_with_cache that build the lookup's arguments.
        llm_string = self.llm._get_llm_string(stop=None, **self.kwargs)
        normalized = [
            m.model_copy(update={"id": None}) if getattr(m, "id", None) is not None else m for m in messages
        ]
        return self.dumps(normalized), llm_string

    def case(self, ctx: Ctx, group: str, label: str, cache: Any) -> Case:
        value, counter = self.value, Counter(self.value)
        text = (lambda v: v) if value.cls is str else (lambda v: value.encode(v).decode())
        decode: Callable[[str], Any] = (lambda t: t) if value.cls is str else value.decode
        prepared = self.messages(ctx.request)
        cache.update(*self.key(prepared), [self.generation(text=text(value.obj))])
        key, lookup, update, generation = self.key, cache.lookup, cache.update, self.generation

        def hit() -> Any:
            found = lookup(*key(prepared))
            return decode(found[0].text)

        def miss(messages: list[Any]) -> Any:
            prompt, llm_string = key(messages)
            if lookup(prompt, llm_string) is not None:
                raise AssertionError("not a miss")
            result = counter()
            update(prompt, llm_string, [generation(text=text(result))])
            return result

        note = "Generation(text=<the result's JSON>); a hit decodes it" if value.cls is not str else ""
        return Case(group, label, "peer", value.name, hit, miss, self.messages, lambda: counter.n, note)


def langchain_memory(ctx: Ctx) -> Case:
    lc = _LangChain(ctx)
    from langchain_core.caches import InMemoryCache

    return lc.case(ctx, "memory", "LangChain InMemoryCache", InMemoryCache())


def langchain_sqlite(ctx: Ctx) -> Case:
    lc = _LangChain(ctx)
    try:
        from langchain_community.cache import SQLiteCache
    except ImportError as exc:
        raise Unavailable(f"{exc.name} is not installed") from None
    cache = SQLiteCache(database_path=str(ctx.tmp / f"langchain-{ctx.value.name}.sqlite3"))
    case = lc.case(ctx, "sqlite", "LangChain SQLiteCache", cache)
    case.closers.append(cache.engine.dispose)
    return case


def langchain_redis(ctx: Ctx) -> Case:
    if ctx.redis_url is None:
        raise Unavailable("no redis-server")
    lc = _LangChain(ctx)
    try:
        import redis
        from langchain_community.cache import RedisCache
    except ImportError as exc:
        raise Unavailable(f"{exc.name} is not installed") from None
    # Both variants make the same (prompt, llm_string): each gets its own database.
    db = 4 if ctx.value.name == "ChatCompletion" else 5
    client = redis.Redis.from_url(f"{ctx.redis_url}/{db}")
    case = lc.case(ctx, "redis", "LangChain RedisCache", RedisCache(client))
    case.closers.append(client.close)
    return case


# --------------------------------------------------------------------- decorators


def _decorated(
    ctx: Ctx,
    group: str,
    label: str,
    decorate: Callable[[Callable[..., Any]], Callable[..., Any]],
    *,
    store_bytes: bool = False,
    note: str = "",
) -> Case:
    """A peer used as a decorator. ``store_bytes``: the function returns the encoded
    result and the caller decodes a fresh object per hit (for caches that hold objects)."""
    value, counter = ctx.value, Counter(ctx.value)
    name = f"chat_{group}_{label.split()[0]}_{value.name}_{'bytes' if store_bytes else 'obj'}"
    base = chat_function(counter, name)
    if store_bytes:
        inner = base
        encode = value.encode

        def as_bytes(**kwargs: Any) -> bytes:
            return encode(inner(**kwargs))

        as_bytes.__name__ = as_bytes.__qualname__ = name
        fn = decorate(as_bytes)
        decode = value.decode
        request = ctx.request

        def hit() -> Any:
            return decode(fn(**request))

        def miss(r: dict[str, Any]) -> Any:
            return decode(fn(**r))
    else:
        fn = decorate(base)
        request = ctx.request

        def hit() -> Any:
            return fn(**request)

        def miss(r: dict[str, Any]) -> Any:
            return fn(**r)

    return Case(group, label, "peer", value.name, hit, miss, calls=lambda: counter.n, note=note)


def json_key(*args: Any, **kwargs: Any) -> str:
    """The usual cachetools recipe for unhashable arguments: a sorted-keys JSON string."""
    return json.dumps([args, kwargs], sort_keys=True)


def cachetools_cases(ctx: Ctx) -> list[Case]:
    try:
        import cachetools
    except ImportError as exc:
        raise Unavailable(f"{exc.name} is not installed") from None

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        cache: Any = cachetools.LRUCache(maxsize=100_000)
        wrapped: Callable[..., Any] = cachetools.cached(cache, key=json_key)(fn)
        return wrapped

    if ctx.value.cls is str:  # a str is immutable: the held object is as good as fresh
        return [_decorated(ctx, "memory", "cachetools LRUCache, JSON key", decorate)]
    return [
        _decorated(
            ctx,
            "memory",
            "cachetools LRUCache, JSON key, + fresh decode",
            decorate,
            store_bytes=True,
            note="holds the result's JSON; a hit decodes a fresh object",
        ),
        _decorated(
            ctx,
            "memory",
            "cachetools LRUCache, JSON key, shared object",
            decorate,
            note="returns the object it holds: NOT fresh (a caller's mutation reaches the next hit)",
        ),
    ]


def diskcache_memoize(ctx: Ctx) -> Case:
    import diskcache

    cache = diskcache.Cache(str(ctx.tmp / f"diskcache-memoize-{ctx.value.name}"))
    case = _decorated(ctx, "disk", "diskcache Cache.memoize", cache.memoize(), note="pickle")
    case.closers.append(cache.close)
    return case


def joblib_memory(ctx: Ctx) -> Case:
    try:
        import joblib  # type: ignore[import-untyped]
    except ImportError as exc:
        raise Unavailable(f"{exc.name} is not installed") from None
    memory = joblib.Memory(location=str(ctx.tmp / f"joblib-{ctx.value.name}"), verbose=0)
    return _decorated(ctx, "disk", "joblib.Memory", memory.cache, note="pickle files")


def _cachier() -> Any:
    try:
        from cachier import cachier
    except ImportError as exc:
        raise Unavailable(f"{exc.name} is not installed") from None
    return cachier


def cachier_memory(ctx: Ctx) -> list[Case]:
    cachier = _cachier()
    if ctx.value.cls is str:
        return [_decorated(ctx, "memory", "cachier memory core", cachier(backend="memory"))]
    return [
        _decorated(
            ctx,
            "memory",
            "cachier memory core, + fresh decode",
            cachier(backend="memory"),
            store_bytes=True,
            note="holds the result's JSON; a hit decodes a fresh object",
        ),
        _decorated(
            ctx,
            "memory",
            "cachier memory core, shared object",
            cachier(backend="memory"),
            note="returns the object it holds: NOT fresh",
        ),
    ]


def _pickle_core(fn: Any) -> Any:
    """cachier's core object behind a decorated function (it keeps it in closures only)."""
    for helper in (fn.clear_cache, fn.precache_value):
        for cell in helper.__closure__ or ():
            if hasattr(cell.cell_contents, "get_cache_dict"):
                return cell.cell_contents
    raise Unavailable("cannot reach cachier's pickle core to fill its file")


def cachier_pickle(ctx: Ctx) -> Case:
    """cachier's default core: one pickle file per function, holding every entry, re-read on
    every call. The file is filled to as many entries as llm_memo's disk store holds, so each
    hit pays for a realistically sized file, not a file of one entry."""
    cachier = _cachier()
    directory = ctx.tmp / f"cachier-{ctx.value.name}"
    decorator = cachier(backend="pickle", cache_dir=str(directory))
    captured: list[Any] = []

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        wrapped = decorator(fn)
        captured.append(wrapped)
        return wrapped

    case = _decorated(
        ctx,
        "disk",
        "cachier pickle core",
        decorate,
        note=f"one pickle file per function, re-read on every call; holds {ctx.fill + 1:,} entries",
    )
    case.hit()  # stores the real entry, then the filler entries join it in the same file
    if ctx.fill:
        import copy

        core = _pickle_core(captured[0])
        entries = core.get_cache_dict(reload=True)
        (real,) = entries.values()
        value = ctx.value
        for i in range(ctx.fill):
            filler = copy.copy(real)
            filler.value = value.decode(value.payload)  # its own object: pickle would share one
            entries[f"bench-filler-{i:08d}"] = filler
        core._save_cache(entries)
    return case


def cachier_sql(ctx: Ctx) -> Case:
    cachier = _cachier()
    try:
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"{exc.name} is not installed") from None
    url = f"sqlite:///{ctx.tmp / f'cachier-{ctx.value.name}.sqlite3'}"
    return _decorated(ctx, "sqlite", "cachier sql core (SQLite)", cachier(backend="sql", sql_engine=url))


def cachier_redis(ctx: Ctx) -> Case:
    if ctx.redis_url is None:
        raise Unavailable("no redis-server")
    cachier = _cachier()
    import redis

    client = redis.Redis.from_url(ctx.redis_url)
    case = _decorated(ctx, "redis", "cachier redis core", cachier(backend="redis", redis_client=client))
    case.closers.append(client.close)
    return case
