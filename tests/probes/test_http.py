"""The http probe against a real local HTTP server (a stand-in for a gateway's analytics API)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rotatectl.errors import ConfigError, ProbeError
from rotatectl.model import UsageStatus, iso, parse_iso
from rotatectl.ports import AccessCheck, UsageProbe
from rotatectl.probes.http import HttpProbe
from rotatectl.registry import AdapterContext, build
from rotatectl.testing.probe_contract import CREDENTIAL, ProbeContract

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(minutes=15)
TOKEN = "gw-token-zz9plural-DO-NOT-LEAK"
TEMPLATE = "/usage/{credential}/{key_id}?from={since}&to={now}"


@dataclass
class Gateway:
    """An analytics endpoint: GET /usage/<credential>/<key_id>?from=&to= -> usage JSON.

    ``uses`` holds (credential, key_id, at, client, rejected); ``reply`` overrides
    the answer (status, body) for every request; ``requests`` records (path, headers).
    """

    url: str = ""
    uses: list[tuple[str, str, datetime, str | None, bool]] = field(default_factory=list)
    reply: tuple[int, Any] | None = None
    delay: float = 0.0
    requests: list[tuple[str, Message]] = field(default_factory=list)

    def answer(self, path: str) -> tuple[int, Any]:
        if self.reply is not None:
            return self.reply
        parts = urllib.parse.urlsplit(path)
        segments = parts.path.split("/")
        if len(segments) != 4 or segments[1] != "usage":
            return 404, {"error": "no such endpoint"}
        credential, key_id = (urllib.parse.unquote(s) for s in segments[2:])
        query = urllib.parse.parse_qs(parts.query)
        since, until = parse_iso(query["from"][0]), parse_iso(query["to"][0])
        assert since is not None and until is not None
        hits = [u for u in self.uses if u[:2] == (credential, key_id) and since <= u[2] <= until]
        if not any(u[1] == key_id for u in self.uses):
            return 404, {"error": f"unknown key {key_id}"}
        return 200, {
            "last_seen": iso(max(u[2] for u in hits)) if hits else None,
            "count": len(hits),
            "clients": sorted({u[3] for u in hits if u[3]}),
            "rejected": sum(1 for u in hits if u[4]),
        }


@pytest.fixture(scope="module")
def server() -> Iterator[Gateway]:
    gateway = Gateway()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            gateway.requests.append((self.path, self.headers))
            if gateway.delay:
                time.sleep(gateway.delay)
            status, body = gateway.answer(self.path)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            with contextlib.suppress(ConnectionError):  # the client may have timed out
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    gateway.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield gateway
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def gateway(server: Gateway) -> Gateway:
    server.uses.clear()
    server.requests.clear()
    server.reply, server.delay = None, 0.0
    return server


def probe_for(gateway: Gateway, **kwargs: Any) -> HttpProbe:
    return HttpProbe(gateway.url + TEMPLATE, **kwargs)


def ctx(base: Path, env: dict[str, str] | None = None) -> AdapterContext:
    return AdapterContext(table="credentials.x.usage", base_dir=base, state_dir=base, env=env or {})


class TestHttpContract(ProbeContract):
    @pytest.fixture
    def probe(self, gateway: Gateway) -> UsageProbe:
        self.gateway = gateway
        # Key ids the contract never used are unknown to a real gateway, which
        # answers 404: UNKNOWN. Seed them so that "not used in the window" is asked.
        for key_id in ("k-never", "k-other", "k1", "k2", "k3", "k-ok", "k-new"):
            gateway.uses.append(("someone/else", key_id, NOW, None, False))
        return probe_for(gateway, token_env="GW_TOKEN", env={"GW_TOKEN": TOKEN})

    def record_use(
        self, key_id: str, at: datetime, client: str | None = None, *, rejected: bool = False
    ) -> None:
        self.gateway.uses.append((CREDENTIAL, key_id, at, client, rejected))

    def plant_secret(self, value: str) -> None:
        self.gateway.uses.append((CREDENTIAL, "k-planted", self.now(), value, False))

    def unreadable(self) -> UsageProbe:
        return HttpProbe("http://127.0.0.1:9/usage/{key_id}", timeout=2)  # discard port: closed


def test_sends_the_token_and_quotes_the_template(gateway: Gateway) -> None:
    gateway.uses.append((CREDENTIAL, "k/1 x", NOW - timedelta(minutes=1), "10.0.0.7", False))
    probe = probe_for(gateway, token_env="GW_TOKEN", env={"GW_TOKEN": TOKEN})
    got = probe.usage(CREDENTIAL, ["k/1 x"], SINCE, NOW)["k/1 x"]
    assert (got.status, got.last_seen, got.clients) == (
        UsageStatus.SEEN,
        NOW - timedelta(minutes=1),
        ("10.0.0.7",),
    )
    path, headers = gateway.requests[-1]
    assert path == (
        "/usage/partners%2Facme/k%2F1%20x?from=2026-11-27T11%3A45%3A00Z&to=2026-11-27T12%3A00%3A00Z"
    )
    assert headers.get("Authorization") == f"Bearer {TOKEN}"


def test_another_header_gets_the_bare_token(gateway: Gateway) -> None:
    probe = HttpProbe.from_config(
        {"url": gateway.url + TEMPLATE, "header": "X-API-Key", "token_env": "GW_TOKEN"},
        ctx(Path("."), {"GW_TOKEN": TOKEN}),
    )
    probe.usage(CREDENTIAL, ["k1"], SINCE, NOW)
    _, headers = gateway.requests[-1]
    assert headers.get("X-API-Key") == TOKEN
    assert headers.get("Authorization") is None


def test_a_missing_token_variable_fails_the_probe_and_shows_in_check(gateway: Gateway) -> None:
    probe = HttpProbe.from_config(
        {"url": gateway.url + TEMPLATE, "token_env": "GW_TOKEN"}, ctx(Path("."), {})
    )
    assert isinstance(probe, AccessCheck)
    assert probe.check_access() == ["environment variable GW_TOKEN (token_env) is not set"]
    with pytest.raises(ProbeError, match="GW_TOKEN"):
        probe.usage(CREDENTIAL, ["k1"], SINCE, NOW)
    assert gateway.requests == []  # nothing was sent without the token


def test_404_is_unknown(gateway: Gateway) -> None:
    got = probe_for(gateway).usage(CREDENTIAL, ["never-heard-of"], SINCE, NOW)
    assert got["never-heard-of"].status is UsageStatus.UNKNOWN
    assert "404" in got["never-heard-of"].detail


@pytest.mark.parametrize(
    ("body", "status", "last_seen", "count", "detail"),
    [
        ({"last_seen": None, "count": 0}, UsageStatus.NOT_SEEN, None, 0, ""),
        (
            {"last_seen": iso(SINCE - timedelta(seconds=1)), "count": 4},
            UsageStatus.NOT_SEEN,
            None,
            0,
            "",
        ),
        ({"last_seen": iso(SINCE), "count": 0}, UsageStatus.SEEN, SINCE, 1, ""),
        ({"last_seen": None, "count": 3}, UsageStatus.SEEN, NOW, 3, "taken as now"),
        (
            {"last_seen": iso(NOW + timedelta(minutes=1)), "count": 2},
            UsageStatus.SEEN,
            NOW,
            2,
            "clock skew",
        ),
        (
            {"last_seen": "2026-11-27T13:55:00+02:00", "count": 2, "rejected": 5},
            UsageStatus.SEEN,
            NOW - timedelta(minutes=5),
            2,
            "",
        ),
    ],
)
def test_answers_map_to_usage(
    gateway: Gateway,
    body: dict[str, Any],
    status: UsageStatus,
    last_seen: datetime | None,
    count: int,
    detail: str,
) -> None:
    gateway.reply = (200, body)
    got = probe_for(gateway).usage(CREDENTIAL, ["k1"], SINCE, NOW)["k1"]
    assert (got.status, got.last_seen, got.count) == (status, last_seen, count)
    assert detail in got.detail
    assert got.rejected <= got.count


def test_clients_are_deduplicated_sorted_and_capped(gateway: Gateway) -> None:
    names = [f"svc-{i:02d}" for i in range(15, 0, -1)] + ["svc-01", ""]
    gateway.reply = (200, {"last_seen": iso(NOW), "count": 20, "clients": names})
    got = probe_for(gateway).usage(CREDENTIAL, ["k1"], SINCE, NOW)["k1"]
    assert got.clients == tuple(f"svc-{i:02d}" for i in range(1, 11))
    assert "more than 10 clients" in got.detail


@pytest.mark.parametrize(
    ("reply", "retryable", "match"),
    [
        ((500, {"error": "boom"}), True, "HTTP 500"),
        ((429, {}), True, "HTTP 429"),
        ((401, {"error": f"bad token {TOKEN}"}), False, "HTTP 401"),
        ((200, b"<html>not json</html>"), False, "did not answer JSON"),
        ((200, [1, 2]), False, "expected a JSON object"),
        ((200, {"last_seen": None}), False, "count"),
        ((200, {"last_seen": None, "count": -1}), False, "count"),
        ((200, {"last_seen": None, "count": True}), False, "count"),
        ((200, {"last_seen": "yesterday", "count": 1}), False, "last_seen"),
        ((200, {"last_seen": 5, "count": 1}), False, "last_seen"),
        ((200, {"last_seen": None, "count": 1, "clients": "a"}), False, "clients"),
        ((200, {"last_seen": None, "count": 1, "rejected": "x"}), False, "rejected"),
    ],
)
def test_failures_are_probe_errors(
    gateway: Gateway, reply: tuple[int, Any], retryable: bool, match: str
) -> None:
    gateway.reply = reply
    probe = probe_for(gateway, token_env="GW_TOKEN", env={"GW_TOKEN": TOKEN})
    with pytest.raises(ProbeError, match=match) as info:
        probe.usage(CREDENTIAL, ["k1"], SINCE, NOW)
    assert info.value.retryable is retryable
    assert TOKEN not in str(info.value)
    assert "from=" not in str(info.value)  # the query string stays out of messages


def test_a_slow_endpoint_times_out(gateway: Gateway) -> None:
    gateway.delay = 1.0
    started = time.monotonic()
    with pytest.raises(ProbeError, match="cannot reach") as info:
        probe_for(gateway, timeout=0.2).usage(CREDENTIAL, ["k1"], SINCE, NOW)
    assert info.value.retryable
    assert time.monotonic() - started < 1.0


def test_from_config(tmp_path: Path) -> None:
    built = build(
        "probe",
        {"type": "http", "url": "https://gw.example/usage?key={key_id}", "timeout": "3s"},
        ctx(tmp_path),
    )
    assert isinstance(built, HttpProbe)
    assert built.timeout == 3.0
    assert built.check_access() == []


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({}, "url"),
        ({"url": "ftp://gw/{key_id}"}, "url"),
        ({"url": "gw/{key_id}"}, "url"),
        ({"url": "https://gw/{key}"}, "url"),
        ({"url": "https://gw/{key_id}", "header": "X-Key"}, "header"),
        ({"url": "https://gw/{key_id}", "header": "X Key", "token_env": "T"}, "header"),
        ({"url": "https://gw/{key_id}", "token_env": "1-T"}, "token_env"),
        ({"url": "https://gw/{key_id}", "timeout": "soon"}, "timeout"),
        ({"url": "https://gw/{key_id}", "timeout": "0s"}, "timeout"),
        ({"url": "https://gw/{key_id}", "token": "inline"}, "token"),
    ],
)
def test_from_config_rejects(tmp_path: Path, settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        HttpProbe.from_config(settings, ctx(tmp_path))
    assert f"[credentials.x.usage] {key}:" in str(info.value)
