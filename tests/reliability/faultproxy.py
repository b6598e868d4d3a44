"""A fault-injecting HTTP proxy for the reliability tests (stdlib only, threads).

rotatectl talks to the proxy exactly as it would to the server (the store's
``endpoint_url`` / ``url`` points at it); the proxy forwards each request to
the real upstream (moto_server, OpenBao) unless a rule says otherwise. A rule
is a predicate on the request (method, path, headers, body) plus a fault:

- ``Fault.delay(ms)``: wait, then forward (a slow network or server);
- ``Fault.drop()``: close the connection before forwarding (nothing applied);
- ``Fault.reply(status, body)``: answer without forwarding (500, 503, 429,
  an AWS ``ThrottlingException``...);
- ``Fault.lost()``: forward, let the server apply it, read its reply, then
  close the connection without answering: the *response lost after the write*
  case that idempotency (invariant 6) exists for.

Rules apply in the order added; a rule with ``times=n`` fires on its first
``n`` matches, then steps aside; ``every=k`` fires on every k-th match only;
``rate=p`` fires with probability ``p`` from a seeded generator (reproducible
chaos). A rule given several faults uses them in turn. Every exchange is
logged, so a test can count what was injected and what the server applied.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


@dataclass(frozen=True)
class Request:
    """One request as the proxy received it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), "")

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    @property
    def aws_operation(self) -> str:
        """``PutSecretValue`` for an AWS JSON-protocol call (X-Amz-Target), else ''."""
        return self.header("X-Amz-Target").rpartition(".")[2]

    @property
    def is_write(self) -> bool:
        return self.method in ("POST", "PUT", "DELETE", "PATCH")


class Kind(StrEnum):
    PASS = "pass"
    DELAY = "delay"
    DROP = "drop"
    REPLY = "reply"
    LOST = "lost"  # forward, then drop the response


@dataclass(frozen=True)
class Fault:
    kind: Kind
    delay_ms: int = 0
    status: int = 0
    body: bytes = b""
    content_type: str = "application/json"

    @classmethod
    def passthrough(cls) -> Fault:
        return cls(Kind.PASS)

    @classmethod
    def delay(cls, ms: int) -> Fault:
        return cls(Kind.DELAY, delay_ms=ms)

    @classmethod
    def drop(cls) -> Fault:
        return cls(Kind.DROP)

    @classmethod
    def lost(cls) -> Fault:
        return cls(Kind.LOST)

    @classmethod
    def reply(cls, status: int, body: Any = None, content_type: str = "application/json") -> Fault:
        raw = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
        return cls(Kind.REPLY, status=status, body=raw, content_type=content_type)

    # Replies in each server's own dialect.

    @classmethod
    def aws_error(
        cls, status: int, code: str, message: str = "injected by the fault proxy"
    ) -> Fault:
        """An AWS JSON-protocol error (``__type`` names the code botocore reports)."""
        return cls.reply(status, {"__type": code, "message": message}, "application/x-amz-json-1.1")

    @classmethod
    def aws_throttle(cls) -> Fault:
        return cls.aws_error(400, "ThrottlingException", "Rate exceeded")

    @classmethod
    def vault_error(cls, status: int, message: str = "injected by the fault proxy") -> Fault:
        return cls.reply(status, {"errors": [message]})

    @property
    def label(self) -> str:
        if self.kind is Kind.REPLY:
            return f"reply {self.status}"
        if self.kind is Kind.DELAY:
            return f"delay {self.delay_ms}ms"
        return self.kind.value


Match = Callable[[Request], bool]


@dataclass
class Rule:
    match: Match
    faults: tuple[Fault, ...]  # used in turn, one per firing
    times: int | None = None  # fire on the first n matches (None: always)
    every: int = 1  # fire on every k-th match
    rate: float = 1.0  # fire with this probability
    name: str = ""
    matched: int = 0
    fired: int = 0

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times


@dataclass(frozen=True)
class Exchange:
    """What happened to one request."""

    request: Request
    fault: Fault
    rule: str
    upstream_status: int | None  # None: never reached the server

    @property
    def applied(self) -> bool:
        """The server processed it successfully (whether or not the client heard back)."""
        return self.upstream_status is not None and self.upstream_status < 300


@dataclass
class FaultProxy:
    """Forwards to ``upstream`` (``http://host:port``), injecting faults per rules."""

    upstream: str
    seed: int = 0
    rules: list[Rule] = field(default_factory=list)
    log: list[Exchange] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        assert parts.hostname and parts.port, self.upstream
        self._host, self._port = parts.hostname, parts.port
        self._lock = threading.Lock()
        self._random = random.Random(self.seed)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control --------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add(
        self,
        match: Match,
        fault: Fault | Sequence[Fault],
        *,
        times: int | None = 1,
        every: int = 1,
        rate: float = 1.0,
        name: str = "",
    ) -> Rule:
        faults = (fault,) if isinstance(fault, Fault) else tuple(fault)
        rule = Rule(match, faults, times, every, rate, name)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def injected(self) -> list[Exchange]:
        """Exchanges that got a fault (anything but a plain pass)."""
        with self._lock:
            return [e for e in self.log if e.fault.kind is not Kind.PASS]

    def exchanges(self, match: Match | None = None) -> list[Exchange]:
        with self._lock:
            return [e for e in self.log if match is None or match(e.request)]

    def start(self) -> FaultProxy:
        handler = _handler_for(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @contextmanager
    def running(self) -> Iterator[FaultProxy]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    # -- the decision -----------------------------------------------------------

    def _choose(self, request: Request) -> tuple[Fault, str]:
        with self._lock:
            for rule in self.rules:
                if rule.exhausted or not rule.match(request):
                    continue
                rule.matched += 1
                if rule.matched % rule.every:
                    continue
                if rule.rate < 1.0 and self._random.random() >= rule.rate:
                    continue
                fault = rule.faults[rule.fired % len(rule.faults)]
                rule.fired += 1
                return fault, rule.name or fault.label
        return Fault.passthrough(), ""

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.log.append(exchange)

    def forward(self, request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=60)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(request.body))
            conn.request(request.method, request.path, body=request.body, headers=headers)
            reply = conn.getresponse()
            body = reply.read()  # de-chunked by http.client
            kept = [(k, v) for k, v in reply.getheaders() if k.lower() not in HOP_BY_HOP]
            kept = [(k, v) for k, v in kept if k.lower() != "content-length"]
            return reply.status, kept, body
        finally:
            conn.close()


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the clients expect

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the exchange log is the record

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _abort(self) -> None:
            """Close the connection with a reset and no reply."""
            self.close_connection = True
            try:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
            except OSError:
                pass

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _serve(self) -> None:
            request = Request(self.command, self.path, dict(self.headers.items()), self._body())
            fault, rule = proxy._choose(request)
            if fault.kind is Kind.DROP:
                proxy._record(Exchange(request, fault, rule, None))
                self._abort()
                return
            if fault.kind is Kind.REPLY:
                proxy._record(Exchange(request, fault, rule, None))
                self._send(fault.status, [("Content-Type", fault.content_type)], fault.body)
                return
            if fault.kind is Kind.DELAY:
                time.sleep(fault.delay_ms / 1000)
            try:
                status, headers, body = proxy.forward(request)
            except OSError:
                proxy._record(Exchange(request, fault, rule, None))
                self._abort()
                return
            proxy._record(Exchange(request, fault, rule, status))
            if fault.kind is Kind.LOST:
                self._abort()
                return
            self._send(status, headers, body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve
        do_LIST = _serve  # Vault's LIST verb

    return Handler


# -- predicates -------------------------------------------------------------------


def any_request(request: Request) -> bool:
    return True


def aws(operation: str, secret: str | None = None, **fields: Any) -> Match:
    """An AWS JSON call ``operation`` (e.g. ``PutSecretValue``) on ``secret``,
    whose body has every ``fields`` value (e.g. ``VersionStage="AWSCURRENT"``)."""

    def match(request: Request) -> bool:
        if request.aws_operation != operation:
            return False
        body = request.json() or {}
        if secret is not None and body.get("SecretId", body.get("Name")) != secret:
            return False
        return all(body.get(k) == v for k, v in fields.items())

    return match


def vault(method: str, path_contains: str, *, exact_tail: str | None = None) -> Match:
    """A Vault API call: ``method`` (or ``WRITE`` for POST/PUT) on a path containing
    ``path_contains`` (and, with ``exact_tail``, ending in it, query aside)."""

    def match(request: Request) -> bool:
        wanted = ("POST", "PUT") if method == "WRITE" else (method,)
        if request.method not in wanted:
            return False
        path = request.path.split("?", 1)[0]
        if path_contains not in path:
            return False
        return exact_tail is None or path.endswith(exact_tail)

    return match
