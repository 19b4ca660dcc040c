"""The fake LLM server itself: a threaded HTTP/1.1 server on loopback, and its command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ._answers import ROUTES, Reply, error, user_text

__all__ = ["FakeLLMServer", "RecordedRequest", "main"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (header names lowercased, body parsed as JSON)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a burst of concurrent clients overflows it
    # and the dropped SYNs are only retried after a full second.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], fake: FakeLLMServer) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        # Without this, Nagle's algorithm + delayed ACKs add ~40 ms to every small response.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.fake._track(conn, True)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        self.fake._track(request, False)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, which the SDKs' connection pools rely on
    server: _HTTPServer

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        url, fake = urlsplit(self.path), self.server.fake
        headers = {k.lower(): v for k, v in self.headers.items()}
        serial = fake._record(
            RecordedRequest(self.command, url.path, dict(parse_qsl(url.query)), headers, body)
        )
        anthropic = url.path.startswith("/v1/messages")
        route = ROUTES.get(url.path) if self.command == "POST" else None
        if route is None:
            reply = error(404, f"Unknown endpoint {self.command} {url.path}", "not_found_error", anthropic)
        elif not isinstance(body, dict):
            reply = error(400, "The request body must be a JSON object", "invalid_request_error", anthropic)
        elif "[error500]" in user_text(body):
            reply = error(
                500, "Simulated server error", "api_error" if anthropic else "server_error", anthropic
            )
        else:
            reply = route(body, serial)
        reply.headers["x-request-id"] = f"req_{serial}"
        if anthropic:
            reply.headers["request-id"] = f"req_{serial}"  # what anthropic's `_request_id` reads
        try:
            self._send(reply, fake.latency if route is not None else 0.0)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away mid-answer

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _send(self, reply: Reply, latency: float) -> None:
        if reply.events is None:
            time.sleep(latency)  # a stream instead answers at once and spreads it over its events
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.events is None:
            payload = json.dumps(reply.body).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        # Chunked encoding (rather than closing) keeps the connection reusable after a stream.
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in reply.events:
            time.sleep(latency / len(reply.events))
            self.wfile.write(b"%X\r\n%s\r\n" % (len(event), event))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.fake.verbose:
            super().log_message(format, *args)


# --------------------------------------------------------------------------- public API


class FakeLLMServer:
    """Fake OpenAI + Anthropic API on 127.0.0.1, served from a daemon thread.

    ``latency`` (seconds) is slept before each answer of a known endpoint (spread over
    the events of a stream) and may be changed while the server runs.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0, verbose: bool = False
    ) -> None:
        self.host, self.latency, self.verbose = host, latency, verbose
        self._requested_port = port
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._serial = 0
        self._connections: set[Any] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeLLMServer:
        """Listen (on a free port unless one was given) and serve from a daemon thread."""
        if self._httpd is None:
            self._httpd = _HTTPServer((self.host, self._requested_port), self)
            self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection, kept-alive ones included."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        # Kept-alive connections would otherwise still be served by their handler threads.
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeLLMServer is not running; call start() first")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url  # the Anthropic SDK appends /v1/messages itself

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received since start (or the last reset)."""
        with self._lock:
            return list(self._requests)

    def count(self, path_suffix: str | None = None) -> int:
        """How many requests were received (whose path ends with ``path_suffix``, if given)."""
        with self._lock:
            return sum(1 for r in self._requests if path_suffix is None or r.path.endswith(path_suffix))

    def reset(self) -> None:
        """Forget recorded requests; the serial keeps growing, so ids stay unique."""
        with self._lock:
            self._requests.clear()

    def _record(self, request: RecordedRequest) -> int:
        with self._lock:
            self._serial += 1
            self._requests.append(request)
            return self._serial

    def _track(self, conn: Any, alive: bool) -> None:
        with self._lock:
            (self._connections.add if alive else self._connections.discard)(conn)


def main(argv: list[str] | None = None) -> None:
    """Serve in the foreground until interrupted (``python -m llm_memo.testing``)."""
    parser = argparse.ArgumentParser(description="Fake OpenAI/Anthropic API server for llm-memo.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per completion request")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    server = FakeLLMServer(args.host, args.port, args.latency, verbose=not args.quiet).start()
    print(f"Fake LLM server on {server.url}  (OpenAI base_url: {server.openai_base_url})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
