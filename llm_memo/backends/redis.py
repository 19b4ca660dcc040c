"""Redis (redis-py), standalone or Cluster; also Valkey, which speaks the same protocol.

Key layout: one string per entry, ``<prefix>:<namespace>:<key>``, holding the
entry bytes, with server-side expiry (``SET ... PX``)::

    llm-memo:app.prompts.summarise:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

The namespace is escaped so that it holds no ``:`` and no glob character: ``%``,
``:``, ``*``, ``?``, ``[``, ``]``, ``\\``, ``{`` and ``}`` become ``%XX``. A
``SCAN MATCH <prefix>:<namespace>:*`` is then exact (namespace ``a`` never
matches ``a:b`` or ``a*``), and no hash tag forms, so on a Cluster the keys of
one function spread over all slots. Clearing scans (in batches, on every primary
of a Cluster) and ``UNLINK``s what it finds, only under the prefix: never
``FLUSHDB``, never a blocking ``KEYS``.

Faults: sockets have short explicit timeouts and a command is retried at most
once, on a dropped connection only. A connection error, a timeout or ``LOADING``
opens a circuit breaker: for a cool-down (5 s, doubling up to 60 s while the
server stays down) every call raises
:class:`~llm_memo.errors.BackendUnavailable` at once, then one call probes the
server. ``OOM`` and ``READONLY`` refusals of a write are raised too but leave
reads alone. The backend logs one warning when Redis goes away and one info
line when it is back.

Back-pressure: redis-py refuses a command once its pool's connections (100) are
all busy. That says nothing about the server, so it never opens the breaker, and
the asyncio side never gets there: at most :data:`MAX_CONCURRENT` commands per
event loop are in flight, and the others wait their turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import math
import re
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.cluster
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    MaxConnectionsError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from .._log import log
from .._secrets import is_url_credential_name
from ..errors import BackendUnavailable
from .base import MISS, Backend, Miss, StoredEntry

__all__ = ["DEFAULT_PREFIX", "RedisBackend", "escape_namespace", "redact_url"]

DEFAULT_PREFIX = "llm-memo"

#: Errors that mean "the server is not answering": they open the breaker.
_DOWN: tuple[type[BaseException], ...] = (
    RedisConnectionError,  # includes BusyLoadingError (LOADING) and AuthenticationError
    RedisTimeoutError,
    ClusterDownError,
    ClusterError,
    RedisClusterException,
    OSError,
)
#: Write refusals: the server is up, so reads go on.
_REFUSED = (OutOfMemoryError, ReadOnlyError)

#: Commands one event loop's client runs at once; redis-py's pools hold 100 connections
#: (per node, on a Cluster), so more would be refused rather than queued.
MAX_CONCURRENT = 100

_SCAN_COUNT = 1000
_BATCH = 500

T = TypeVar("T")

# ------------------------------------------------------------------- key layout

_ESCAPES = str.maketrans({c: f"%{ord(c):02X}" for c in "%:*?[]\\{}"})
_UNESCAPE = re.compile(r"%([0-9A-F]{2})")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


@functools.lru_cache(maxsize=4096)
def escape_namespace(namespace: str) -> str:
    """The namespace as it appears in a key: no ``:``, no glob character, no hash tag."""
    return namespace.translate(_ESCAPES)


def _unescape_namespace(text: str) -> str:
    return _UNESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def redact_url(url: str) -> str:
    """``url`` with any user name and password replaced by ``***`` (safe for logs)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = [
            (k, "***" if is_url_credential_name(k) else v)
            for k, v in parse_qsl(query, keep_blank_values=True)
        ]
        query = urlencode(pairs, safe="*")
    return _unsplit(parts._replace(netloc=netloc, query=query))


def _unsplit(parts: SplitResult) -> str:
    """The URL again, always with ``//``: ``urlunsplit`` drops it when there is no host,
    and ``unix:/path.sock`` is not a URL redis-py accepts (``unix:///path.sock`` is)."""
    url = f"{parts.scheme}://{parts.netloc}{parts.path}"
    url += f"?{parts.query}" if parts.query else ""
    return url + (f"#{parts.fragment}" if parts.fragment else "")


def _split_options(url: str) -> tuple[str, dict[str, str]]:
    """Take our own query options (``prefix``) out of a URL before redis-py parses it."""
    parts = urlsplit(url)
    if not parts.query:
        return url, {}
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k == "prefix":
            ours[k] = v
        else:
            theirs.append((k, v))
    return _unsplit(parts._replace(query=urlencode(theirs))), ours


# ------------------------------------------------------------------- breaker


class _Breaker:
    """Closed until a connection fault; then open (fail fast) until one probe succeeds."""

    def __init__(self, url: str, cooldown: float, max_cooldown: float, clock: Callable[[], float]) -> None:
        self.url = url
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.clock = clock
        self.open_until: float | None = None  # None: closed (read without the lock on the hot path)
        self.probing = False
        self.delay = cooldown
        self._lock = threading.Lock()

    def before(self) -> None:
        """Raise BackendUnavailable while open; after the cool-down, let one probe through."""
        with self._lock:
            if self.open_until is None:
                return
            now = self.clock()
            if self.probing or now < self.open_until:
                raise BackendUnavailable(
                    f"{self.url} is unavailable; next attempt in {max(0.0, self.open_until - now):.1f}s"
                )
            self.probing = True

    def success(self) -> None:
        with self._lock:
            if self.open_until is None:
                return
            self.open_until = None
            self.probing = False
            self.delay = self.cooldown
        log.info("llm_memo: %s is reachable again; caching resumes", self.url)

    def failure(self, exc: BaseException) -> None:
        with self._lock:
            first = self.open_until is None
            self.delay = self.cooldown if first else min(self.delay * 2, self.max_cooldown)
            self.open_until = self.clock() + self.delay
            self.probing = False
            delay = self.delay
        if first:
            log.warning(
                "llm_memo: %s is unavailable (%s: %s); calls run uncached, retrying in %.0fs",
                self.url,
                type(exc).__name__,
                exc,
                delay,
            )

    def abandon(self) -> None:
        """A probe ended without an answer either way (e.g. cancelled): allow another."""
        with self._lock:
            self.probing = False


# ------------------------------------------------------------------- backend


class _LoopState:
    """The asyncio client of one event loop, and the generator that closes it."""

    __slots__ = ("client", "closer", "done", "slots")

    def __init__(self, client: Any) -> None:
        self.client = client
        self.closer: AsyncGenerator[None, None] | None = None
        self.done = False
        self.slots = asyncio.Semaphore(MAX_CONCURRENT)  # waiting here is back-pressure


class RedisBackend(Backend):
    """Entries in Redis or Redis Cluster (see the module docstring for keys and faults).

    ``target`` is a URL (``redis://``, ``rediss://``, ``unix://``,
    ``redis+cluster://``, ``rediss+cluster://``; a ``?prefix=`` option is read
    here) or a ``redis.Redis`` / ``redis.cluster.RedisCluster`` instance. With a
    URL, async functions use ``redis.asyncio`` natively (one client per event
    loop, closed when that loop shuts down); with an instance they run the sync
    client in a thread. An instance is the caller's: :meth:`close` leaves it open.
    """

    blocking = True  # the sync methods do network I/O
    atomic_add = True  # SET NX

    def __init__(
        self,
        target: str | redis.Redis | redis.cluster.RedisCluster,
        *,
        prefix: str | None = None,
        socket_timeout: float = 1.0,
        connect_timeout: float = 1.0,
        retries: int = 1,
        cooldown: float = 5.0,
        max_cooldown: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client_url: str | None = None
        self._owned = True
        self._sync: Any = None
        if isinstance(target, str):
            scheme = target.partition(":")[0]
            self.cluster = scheme.endswith("+cluster")
            url, options = _split_options(target)
            self._client_url = url.replace("+cluster", "", 1) if self.cluster else url
            self.url = redact_url(target)
            prefix = prefix if prefix is not None else options.get("prefix")
        elif isinstance(target, redis.cluster.RedisCluster | redis.Redis):
            self.cluster = isinstance(target, redis.cluster.RedisCluster)
            self._sync, self._owned = target, False
            self.url = f"redis:<{type(target).__name__} instance>"
            if _decodes(target):
                raise ValueError("the Redis client must return bytes: create it without decode_responses")
        else:
            raise TypeError(f"expected a Redis URL or client, got {type(target).__name__}")
        self.prefix = DEFAULT_PREFIX if prefix is None else prefix
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self._breaker = _Breaker(self.url, cooldown, max_cooldown, clock)
        self._lock = threading.Lock()
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._write_refused = False
        prefix_re = re.escape(self.prefix.encode())
        # Only keys of our exact shape are ever deleted: a key another prefix
        # ("<prefix>:x") or another tool put there is left alone.
        self._ours = re.compile(prefix_re + rb":([^:]*):[0-9a-f]{64}\Z")

    # ---------------------------------------------------------------- clients

    def _client(self) -> Any:
        client = self._sync
        if client is None:
            with self._lock:
                if self._sync is None:
                    self._sync = self._new_sync()
                client = self._sync
        return client

    def _client_options(self) -> tuple[str, ExponentialBackoff, dict[str, Any]]:
        """What the sync and async clients share: a short backoff and explicit timeouts.

        One retry, on a dropped connection only (e.g. a pooled socket the server
        closed on restart). A timeout is not retried: that would double the wait.
        """
        assert self._client_url is not None
        return (
            self._client_url,
            ExponentialBackoff(cap=0.05, base=0.01),
            {
                "socket_timeout": self.socket_timeout,
                "socket_connect_timeout": self.connect_timeout,
            },
        )

    def _new_sync(self) -> Any:
        url, backoff, kwargs = self._client_options()
        if self.cluster:
            return redis.cluster.RedisCluster.from_url(url, retry=Retry(backoff, self.retries), **kwargs)
        return redis.Redis.from_url(
            url,
            retry=Retry(backoff, self.retries, supported_errors=(RedisConnectionError,)),
            **kwargs,
        )

    def _new_async(self) -> Any:
        url, backoff, kwargs = self._client_options()
        if self.cluster:
            return redis.asyncio.cluster.RedisCluster.from_url(
                url, retry=redis.asyncio.retry.Retry(backoff, self.retries), **kwargs
            )
        return redis.asyncio.Redis.from_url(
            url,
            retry=redis.asyncio.retry.Retry(backoff, self.retries, supported_errors=(RedisConnectionError,)),
            **kwargs,
        )

    async def _astate(self) -> _LoopState:
        # An asyncio client belongs to the loop it first ran on, and users call
        # asyncio.run() many times: one client per loop.
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = _LoopState(self._new_async())
            closer = self._closer(loop, state)
            # A started async generator is finalised by loop.shutdown_asyncgens()
            # (asyncio.run does that), which closes the client on its own loop.
            await closer.__anext__()
            state.closer = closer
            self._loops[loop] = state
        return state

    async def _closer(self, loop: asyncio.AbstractEventLoop, state: _LoopState) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if self._loops.get(loop) is state:
                del self._loops[loop]
            if not state.done:
                state.done = True
                await state.client.aclose()

    # ---------------------------------------------------------------- guarded calls

    def _key(self, namespace: str, key: str) -> str:
        return f"{self.prefix}:{escape_namespace(namespace)}:{key}"

    def _guard(self, fn: Callable[[], T]) -> T:
        breaker = self._breaker
        if breaker.open_until is not None:
            breaker.before()
        try:
            result = fn()
        except MaxConnectionsError:
            breaker.abandon()  # every pooled connection busy: the server is fine
            raise
        except _DOWN as exc:
            breaker.failure(exc)
            raise
        except RedisError:
            breaker.success()  # the server answered, with an error
            raise
        except BaseException:
            breaker.abandon()
            raise
        if breaker.open_until is not None:
            breaker.success()
        return result

    async def _aguard(self, fn: Callable[[Any], Any]) -> Any:
        breaker = self._breaker
        state = await self._astate()
        async with state.slots:
            # Checked once a slot is ours: the breaker may have opened while we waited.
            if breaker.open_until is not None:
                breaker.before()
            try:
                result = await fn(state.client)
            except MaxConnectionsError:
                breaker.abandon()
                raise
            except _DOWN as exc:
                breaker.failure(exc)
                raise
            except RedisError:
                breaker.success()
                raise
            except BaseException:
                breaker.abandon()
                raise
        if breaker.open_until is not None:
            breaker.success()
        return result

    def _refused(self, exc: RedisError | None) -> None:
        """Log write refusals (OOM, READONLY) once per change of state."""
        if exc is not None and not self._write_refused:
            self._write_refused = True
            log.warning("llm_memo: %s refuses writes (%s); results are not being stored", self.url, exc)
        elif exc is None and self._write_refused:
            self._write_refused = False
            log.info("llm_memo: %s accepts writes again", self.url)

    # ---------------------------------------------------------------- sync API

    def get(self, namespace: str, key: str) -> bytes | Miss:
        k = self._key(namespace, key)
        value = self._guard(lambda: self._client().get(k))
        return MISS if value is None else value

    def set(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        k = self._key(namespace, key)
        if ttl is not None and ttl <= 0:  # already expired: storing it would only shadow nothing
            self._guard(lambda: self._client().unlink(k))
            return
        px = None if ttl is None else max(1, math.ceil(ttl * 1000))
        try:
            self._guard(lambda: self._client().set(k, value, px=px))
        except _REFUSED as exc:
            self._refused(exc)
            raise
        if self._write_refused:
            self._refused(None)

    def add(self, namespace: str, key: str, value: bytes, ttl: float | None) -> bool:
        """``SET NX``: store only if absent (a lease); True if it was stored."""
        k = self._key(namespace, key)
        px = None if ttl is None else max(1, math.ceil(ttl * 1000))
        return bool(self._guard(lambda: self._client().set(k, value, px=px, nx=True)))

    def delete(self, namespace: str, key: str) -> bool:
        k = self._key(namespace, key)
        return bool(self._guard(lambda: self._client().unlink(k)))

    def _pattern(self, namespace: str | None) -> str:
        prefix = _GLOB_SPECIAL.sub(r"\\\1", self.prefix)
        return f"{prefix}:*" if namespace is None else f"{prefix}:{escape_namespace(namespace)}:*"

    def clear(self, namespace: str | None = None) -> int:
        return self._guard(lambda: self._clear(self._client(), self._pattern(namespace)))

    def _clear(self, client: Any, pattern: str) -> int:
        removed = 0
        batch: list[bytes] = []
        for k in client.scan_iter(match=pattern, count=_SCAN_COUNT):
            if self._ours.match(k):
                batch.append(k)
                if len(batch) >= _BATCH:
                    removed += client.unlink(*batch)
                    batch = []
        if batch:
            removed += client.unlink(*batch)
        return removed

    def entries(self, namespace: str | None = None) -> Iterator[StoredEntry]:
        client = self._guard(self._client)
        scan = client.scan_iter(match=self._pattern(namespace), count=_SCAN_COUNT)
        mget = client.mget_nonatomic if self.cluster else client.mget
        while True:
            # Streamed in batches: a store of millions of keys is never listed in memory.
            batch: list[bytes] = self._guard(lambda: list(itertools.islice(scan, _BATCH)))
            if not batch:
                return
            batch = [k for k in batch if self._ours.match(k)]
            values: list[bytes | None] = self._guard(functools.partial(mget, batch)) if batch else []
            for k, value in zip(batch, values, strict=True):
                if value is None:  # expired or deleted since the scan
                    continue
                ns, _, digest = k[len(self.prefix.encode()) + 1 :].rpartition(b":")
                try:
                    entry = StoredEntry(_unescape_namespace(ns.decode()), digest.decode(), value)
                except UnicodeDecodeError:
                    # Not a key llm_memo wrote (its namespaces are text): listed as
                    # unreadable, so one foreign key cannot stop a whole listing.
                    entry = StoredEntry(ns.decode(errors="backslashreplace"), digest.decode(), b"")
                yield entry

    def close(self) -> None:
        with self._lock:
            client, self._sync = self._sync, (None if self._owned else self._sync)
        if client is not None and self._owned:
            client.close()
        # Async clients of loops that are gone: closed already by their loop's
        # shutdown, unless the loop was closed without it; then only forget them.
        for loop, state in list(self._loops.items()):
            if loop.is_closed():
                self._loops.pop(loop, None)
                _finish(state)

    # ---------------------------------------------------------------- async API

    async def aget(self, namespace: str, key: str) -> bytes | Miss:
        if not self._owned:
            return await super().aget(namespace, key)
        k = self._key(namespace, key)
        value = await self._aguard(lambda c: c.get(k))
        return MISS if value is None else value

    async def aset(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        if not self._owned:
            return await super().aset(namespace, key, value, ttl)
        k = self._key(namespace, key)
        if ttl is not None and ttl <= 0:
            await self._aguard(lambda c: c.unlink(k))
            return
        px = None if ttl is None else max(1, math.ceil(ttl * 1000))
        try:
            await self._aguard(lambda c: c.set(k, value, px=px))
        except _REFUSED as exc:
            self._refused(exc)
            raise
        if self._write_refused:
            self._refused(None)

    async def aadd(self, namespace: str, key: str, value: bytes, ttl: float | None) -> bool:
        if not self._owned:
            return await asyncio.to_thread(self.add, namespace, key, value, ttl)
        k = self._key(namespace, key)
        px = None if ttl is None else max(1, math.ceil(ttl * 1000))
        return bool(await self._aguard(lambda c: c.set(k, value, px=px, nx=True)))

    async def adelete(self, namespace: str, key: str) -> bool:
        if not self._owned:
            return await super().adelete(namespace, key)
        k = self._key(namespace, key)
        return bool(await self._aguard(lambda c: c.unlink(k)))

    async def aclear(self, namespace: str | None = None) -> int:
        if not self._owned:
            return await super().aclear(namespace)
        pattern = self._pattern(namespace)
        return int(await self._aguard(lambda c: self._aclear(c, pattern)))

    async def _aclear(self, client: Any, pattern: str) -> int:
        removed = 0
        batch: list[bytes] = []
        async for k in client.scan_iter(match=pattern, count=_SCAN_COUNT):
            if self._ours.match(k):
                batch.append(k)
                if len(batch) >= _BATCH:
                    removed += await client.unlink(*batch)
                    batch = []
        if batch:
            removed += await client.unlink(*batch)
        return removed

    async def aclose(self) -> None:
        """Close the current event loop's client now, and the sync client."""
        loop = asyncio.get_running_loop()
        state = self._loops.pop(loop, None)
        if state is not None and not state.done:
            state.done = True
            await state.client.aclose()
            _finish(state)
        await asyncio.to_thread(self.close)


def _finish(state: _LoopState) -> None:
    """Run a loop's closer generator to its end without that loop.

    Its ``finally`` awaits nothing once ``done`` is set, so one ``send`` ends it; a
    finished generator is never handed to a (possibly closed) loop's finaliser.
    """
    state.done = True
    closer, state.closer = state.closer, None
    if closer is None:
        return
    with contextlib.suppress(StopIteration):
        closer.aclose().send(None)


def _decodes(client: Any) -> bool:
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if kwargs is None and hasattr(client, "get_connection_kwargs"):
        kwargs = client.get_connection_kwargs()
    return bool((kwargs or {}).get("decode_responses"))


def _from_url(url: str, rest: str) -> RedisBackend:
    return RedisBackend(url)
