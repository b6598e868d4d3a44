"""The prometheus probe against a real Prometheus server scraping an exporter run by the test.

The module fixture starts Debian's ``prometheus`` on a free loopback port with
a 250ms scrape interval, scraping a small stdlib HTTP exporter in this process.
Without the binary the tests fail when ``CI`` is set and skip otherwise.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rotatectl.errors import ConfigError, ProbeError
from rotatectl.machine import usage_is_quiet
from rotatectl.model import Policy, UsageStatus
from rotatectl.ports import UsageProbe
from rotatectl.probes.prometheus import PrometheusProbe
from rotatectl.registry import AdapterContext, build
from rotatectl.testing.probe_contract import CREDENTIAL, ProbeContract

SCRAPE = 0.25  # seconds
STEP = 0.5  # the probe's step: at least the scrape interval
_metric_numbers = itertools.count(1)


class Exporter:
    """Counters ``<metric>{key_id, client, result}`` served in the text format, plus
    ``exporter_generation`` (bumped on every change) so a test can wait for a scrape."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, str, str, str], int] = {}
        self.generation = 0
        self.lock = threading.Lock()

    def use(self, metric: str, key_id: str, client: str | None, result: str = "ok") -> None:
        with self.lock:
            key = (metric, key_id, client or "", result)
            self.counters[key] = self.counters.get(key, 0) + 1
            self.generation += 1

    def render(self) -> bytes:
        with self.lock:
            lines = [f"exporter_generation {self.generation}"]
            for (metric, key_id, client, result), value in sorted(self.counters.items()):
                labels = f'key_id="{key_id}",result="{result}"'
                if client:
                    labels += f',client="{client}"'
                lines.append(f"{metric}{{{labels}}} {value}")
        return ("\n".join(lines) + "\n").encode()


class Server:
    def __init__(self, url: str, exporter: Exporter) -> None:
        self.url = url
        self.exporter = exporter

    def query(self, promql: str) -> list[dict[str, Any]]:
        form = urllib.parse.urlencode({"query": promql}).encode()
        url = f"{self.url}/api/v1/query"
        with urllib.request.urlopen(url, form, timeout=5) as response:  # noqa: S310 - http
            result: list[dict[str, Any]] = json.loads(response.read())["data"]["result"]
            return result

    def settle(self) -> None:
        """Wait until Prometheus scraped the exporter's latest state, and one probe
        step more, so the probe's query grid has a point after that scrape."""
        wanted = self.exporter.generation
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = self.query(
                f"timestamp(exporter_generation) and exporter_generation >= {wanted}"
            )
            if found:
                scraped = float(found[0]["value"][1])
                time.sleep(max(0.0, scraped + STEP + 0.05 - time.time()))
                return
            time.sleep(0.05)
        pytest.fail("Prometheus did not scrape the exporter within 10s")

    def probe(self, metric: str, **kwargs: Any) -> PrometheusProbe:
        return PrometheusProbe(self.url, metric=metric, step=STEP, timeout=5, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        why = "the prometheus binary is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    return found


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    binary = prometheus_binary()
    exporter = Exporter()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exporter.render()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    root = tmp_path_factory.mktemp("prometheus")
    config = root / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {int(SCRAPE * 1000)}ms\n"
        f"  scrape_timeout: {int(SCRAPE * 800)}ms\n"
        "scrape_configs:\n  - job_name: exporter\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{httpd.server_address[1]}']\n"
    )
    port = free_port()
    log = root / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", exporter)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                if server.query('up{job="exporter"} == 1'):
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus did not scrape within 30s:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        httpd.shutdown()
        httpd.server_close()


def fresh_metric() -> str:
    """A metric of its own per test: series from other tests cannot interfere."""
    return f"api_requests_t{next(_metric_numbers)}_total"


@pytest.mark.slow
class TestPrometheusContract(ProbeContract):
    resolution = timedelta(seconds=2 * STEP + SCRAPE)
    tick = 0.3
    complete_history = False  # each test's metric is younger than its window

    @pytest.fixture
    def probe(self, prometheus: Server) -> UsageProbe:
        self.server = prometheus
        self.metric = fresh_metric()
        return prometheus.probe(self.metric)

    def record_use(
        self, key_id: str, at: datetime, client: str | None = None, *, rejected: bool = False
    ) -> None:
        self.server.exporter.use(self.metric, key_id, client, "rejected" if rejected else "ok")

    def unreadable(self) -> UsageProbe:
        return PrometheusProbe(f"http://127.0.0.1:{free_port()}", timeout=2)

    def now(self) -> datetime:
        return datetime.now(UTC)

    def advance(self, seconds: float) -> None:
        time.sleep(seconds)

    def settle(self) -> None:
        self.server.settle()


@pytest.mark.slow
def test_the_gate_holds_while_the_old_key_is_used_and_releases_after(prometheus: Server) -> None:
    metric = fresh_metric()
    probe = prometheus.probe(metric)
    policy = Policy(usage_quiet=timedelta(seconds=2))
    exporter = prometheus.exporter
    started = datetime.now(UTC)
    in_use = threading.Event()
    in_use.set()

    def clients() -> None:  # a laggard keeps using the old key; others use the new one
        while in_use.is_set():
            exporter.use(metric, "k-old", "10.0.0.7")
            exporter.use(metric, "k-new", "billing")
            time.sleep(0.1)

    worker = threading.Thread(target=clients)
    worker.start()
    try:
        for _ in range(2):  # the gate holds, again and again, while the old key is used
            time.sleep(0.3)
            prometheus.settle()
            now = datetime.now(UTC)
            got = probe.usage(CREDENTIAL, ["k-old", "k-new"], started - timedelta(seconds=1), now)
            old = got["k-old"]
            assert old.status is UsageStatus.SEEN
            assert old.clients == ("10.0.0.7",)
            assert old.last_seen is not None and now - old.last_seen < timedelta(seconds=2)
            assert not usage_is_quiet(old, policy, now)
    finally:
        in_use.clear()
        worker.join()
    stopped = datetime.now(UTC)
    prometheus.settle()
    released = None
    while datetime.now(UTC) - stopped < timedelta(seconds=15):
        now = datetime.now(UTC)
        old = probe.usage(CREDENTIAL, ["k-old"], started - timedelta(seconds=1), now)["k-old"]
        assert old.status is UsageStatus.SEEN  # it was used in the window, just not lately
        assert old.last_seen is not None and old.last_seen <= stopped + timedelta(seconds=2)
        if usage_is_quiet(old, policy, now):
            released = now
            break
        time.sleep(0.25)
    assert released is not None, "the gate never released after the old key went quiet"
    # Released once quiet for usage_quiet, give or take the probe's resolution.
    assert released - stopped < policy.usage_quiet + timedelta(seconds=3)


@pytest.mark.slow
def test_rejected_attempts_are_counted(prometheus: Server) -> None:
    metric = fresh_metric()
    for _ in range(3):
        prometheus.exporter.use(metric, "k-new", "10.0.0.9", "rejected")
    prometheus.exporter.use(metric, "k-new", "10.0.0.9")
    prometheus.settle()
    now = datetime.now(UTC)
    got = prometheus.probe(metric).usage(CREDENTIAL, ["k-new"], now - timedelta(minutes=1), now)
    assert (got["k-new"].count, got["k-new"].rejected) == (4, 3)
    off = prometheus.probe(metric, rejected_matcher="", client_label="")
    got = off.usage(CREDENTIAL, ["k-new"], now - timedelta(minutes=1), now)
    assert (got["k-new"].count, got["k-new"].rejected, got["k-new"].clients) == (4, 0, ())


@pytest.mark.slow
def test_a_metric_that_does_not_exist_is_unknown(prometheus: Server) -> None:
    now = datetime.now(UTC)
    probe = prometheus.probe("no_such_metric_total")
    got = probe.usage(CREDENTIAL, ["k1"], now - timedelta(minutes=1), now)["k1"]
    assert got.status is UsageStatus.UNKNOWN
    assert "no series of no_such_metric_total" in got.detail
    unchecked = prometheus.probe("no_such_metric_total", coverage_query=None)
    got = unchecked.usage(CREDENTIAL, ["k1"], now - timedelta(minutes=1), now)["k1"]
    assert got.status is UsageStatus.NOT_SEEN


@pytest.mark.slow
def test_a_bad_query_is_a_probe_error_with_prometheus_reason(prometheus: Server) -> None:
    now = datetime.now(UTC)
    probe = prometheus.probe(
        fresh_metric(), query="max(rate({selector}[{window}]", coverage_query=None
    )
    with pytest.raises(ProbeError, match=r"HTTP 400: .*parse error") as info:
        probe.usage(CREDENTIAL, ["k1"], now - timedelta(minutes=1), now)
    assert not info.value.retryable
    matrix = prometheus.probe(fresh_metric(), query="{selector}[1m]", coverage_query=None)
    with pytest.raises(ProbeError, match="instant vector or a scalar"):
        matrix.usage(CREDENTIAL, ["k1"], now - timedelta(minutes=1), now)


# -- without a server: the request the probe sends --------------------------------------------


@pytest.fixture
def fake_prometheus() -> Iterator[tuple[str, list[tuple[Message, dict[str, list[str]]]]]]:
    """Answers every query with scalar 42 and records (headers, form)."""
    seen: list[tuple[Message, dict[str, list[str]]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            form = urllib.parse.parse_qs(
                self.rfile.read(int(self.headers["Content-Length"])).decode()
            )
            seen.append((self.headers, form))
            body = json.dumps(
                {"status": "success", "data": {"resultType": "scalar", "result": [1, "42"]}}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", seen
    httpd.shutdown()
    httpd.server_close()


def test_queries_are_filled_in_and_authenticated(
    fake_prometheus: tuple[str, list[tuple[Message, dict[str, list[str]]]]], tmp_path: Path
) -> None:
    url, seen = fake_prometheus
    ctx = AdapterContext(
        table="credentials.x.usage",
        base_dir=tmp_path,
        state_dir=tmp_path,
        env={"PROM_TOKEN": "t0k"},
    )
    probe = build(
        "probe",
        {
            "type": "prometheus",
            "url": url,
            "metric": "gw_auth_total",
            "key_label": "kid",
            "step": "30s",
            "token_env": "PROM_TOKEN",
            "clients_query": "",
            "rejected_query": "sum(increase({rejected_selector}[{window}])) # {key_id}",
        },
        ctx,
    )
    assert isinstance(probe, PrometheusProbe)
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    got = probe.usage(CREDENTIAL, ['we"ird'], now - timedelta(minutes=15), now)['we"ird']
    # Scalar 42 for every query: last seen at 42s after the epoch is before the window.
    assert got.status is UsageStatus.SEEN and got.last_seen == now - timedelta(minutes=15)
    assert (got.count, got.rejected) == (42, 42)
    queries = [form["query"][0] for _, form in seen]
    assert queries[0] == "min_over_time(timestamp(count(gw_auth_total))[900s:30s])"
    assert queries[1].startswith(
        'max(max_over_time(timestamp((increase(gw_auth_total{kid="we\\"ird"}[60s]) > 0)'
    )
    assert queries[2] == (
        'sum((gw_auth_total{kid="we\\"ird"} unless gw_auth_total{kid="we\\"ird"} offset 900s)'
        ' or increase(gw_auth_total{kid="we\\"ird"}[900s]))'
    )
    assert queries[3] == (
        'sum(increase(gw_auth_total{kid="we\\"ird",result!="ok"}[900s])) # we\\"ird'
    )
    assert len(queries) == 4  # no clients query
    assert {form["time"][0] for _, form in seen} == {f"{now.timestamp():.3f}"}
    assert all(headers.get("Authorization") == "Bearer t0k" for headers, _ in seen)


def test_unreachable_server_is_a_retryable_probe_error() -> None:
    now = datetime.now(UTC)
    with pytest.raises(ProbeError, match="cannot reach") as info:
        PrometheusProbe(f"http://127.0.0.1:{free_port()}").usage(
            CREDENTIAL, ["k1"], now - timedelta(minutes=1), now
        )
    assert info.value.retryable


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({}, "url"),
        ({"url": "prometheus:9090"}, "url"),
        ({"url": "http://p:9090/{key_id}"}, "url"),
        ({"url": "http://p:9090", "metric": "api-requests"}, "metric"),
        ({"url": "http://p:9090", "key_label": "key id"}, "key_label"),
        ({"url": "http://p:9090", "client_label": "1x"}, "client_label"),
        ({"url": "http://p:9090", "step": "0s"}, "step"),
        ({"url": "http://p:9090", "step": "fast"}, "step"),
        ({"url": "http://p:9090", "query": ""}, "query"),
        ({"url": "http://p:9090", "count_query": "sum({selectr})"}, "count_query"),
        ({"url": "http://p:9090", "coverage_query": "{nope}"}, "coverage_query"),
        ({"url": "http://p:9090", "token_env": "A B"}, "token_env"),
        ({"url": "http://p:9090", "timeout": "1 minute"}, "timeout"),
        ({"url": "http://p:9090", "window": "1h"}, "window"),
    ],
)
def test_from_config_rejects(tmp_path: Path, settings: dict[str, Any], key: str) -> None:
    ctx = AdapterContext(table="credentials.x.usage", base_dir=tmp_path, state_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        PrometheusProbe.from_config(settings, ctx)
    assert f"[credentials.x.usage] {key}:" in str(info.value)
