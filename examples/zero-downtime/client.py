"""The demo's load client: threads that call the API continuously with CurrentKey.

    python client.py --config rotatectl.toml --credential demo/api \\
        --url http://127.0.0.1:PORT [--seconds 10] [--threads 4] [--rate 100]

Each thread keeps one HTTP/1.1 connection open and sends ``GET /hello`` at
``--rate`` requests per second with ``Authorization: Bearer <current key>``.
The key comes from :class:`rotatectl.sdk.CurrentKey`; on a 401/403 it is
refreshed once and the request retried once with the new key. Every attempt
that was refused is recorded (time, key id, reason), so that the demo can
tell which failures, if any, were allowed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

from rotatectl import keyformat
from rotatectl.config import load_config
from rotatectl.sdk import CurrentKey
from rotatectl.workspace import Workspace


def key_id(key: str) -> str:
    """The public key id of a generated key ("?" for anything else)."""
    try:
        return keyformat.parse(key).key_id
    except keyformat.KeyFormatError:
        return "?"


@dataclass(frozen=True)
class Attempt:
    """One refused attempt: when (epoch seconds), with which key id, why."""

    at: float
    key_id: str
    status: int
    reason: str


@dataclass
class Stats:
    requests: int = 0  # logical requests (a retry is part of its request)
    ok: int = 0
    failures: list[Attempt] = field(default_factory=list)  # requests that did not succeed
    refused: list[Attempt] = field(default_factory=list)  # every 401/403 attempt

    def add(self, other: Stats) -> None:
        self.requests += other.requests
        self.ok += other.ok
        self.failures += other.failures
        self.refused += other.refused


class LoadClient:
    """``threads`` workers calling ``url + path`` at ``rate`` requests/s each (0: flat out);
    a refused request is retried once with a refreshed key unless ``retry`` is False."""

    def __init__(
        self,
        url: str,
        current: CurrentKey,
        *,
        threads: int = 4,
        rate: float = 100.0,
        path: str = "/hello",
        retry: bool = True,
    ) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.current = current
        self.path = path
        self.rate = rate
        # False: a client that cannot refresh on demand (a device, a partner's
        # deploy): it sends the key it holds until its next scheduled refresh.
        self.retry = retry
        self._stop = threading.Event()
        self._stats = [Stats() for _ in range(threads)]
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, args=(s,), name=f"load-{i}", daemon=True)
            for i, s in enumerate(self._stats)
        ]
        self.started = 0.0
        self.stopped = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        for t in self._threads:
            t.start()

    def stop(self) -> Stats:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        self.stopped = time.monotonic()
        return self.snapshot()

    def snapshot(self) -> Stats:
        """The counts so far (a copy)."""
        total = Stats()
        with self._lock:
            for s in self._stats:
                total.add(Stats(s.requests, s.ok, list(s.failures), list(s.refused)))
        return total

    def _work(self, stats: Stats) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        period = 1.0 / self.rate if self.rate > 0 else 0.0
        next_at = time.monotonic()
        while not self._stop.is_set():
            if period:
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                # After a stall, carry on at the rate rather than bursting to catch up.
                next_at = max(next_at + period, time.monotonic() - 1.0)
            refused: list[Attempt] = []
            send = partial(self._send, conn, refused)
            try:
                if self.retry:
                    status = self.current.call(send, rejected=lambda s: s in (401, 403))
                else:
                    status = send(self.current.get())
                failure = None if status == 200 else refused[-1] if refused else None
                if status != 200 and failure is None:
                    failure = Attempt(time.time(), "?", status, "http error")
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                failure = Attempt(time.time(), "?", 0, type(exc).__name__)
            with self._lock:
                stats.requests += 1
                stats.refused += refused
                if failure is None:
                    stats.ok += 1
                else:
                    stats.failures.append(failure)
        conn.close()

    def _send(self, conn: http.client.HTTPConnection, refused: list[Attempt], key: str) -> int:
        """One attempt with ``key``; a refusal is noted in ``refused``."""
        status, reason = self._get(conn, key)
        if status in (401, 403):
            refused.append(Attempt(time.time(), key_id(key), status, reason))
        return status

    def _get(self, conn: http.client.HTTPConnection, key: str) -> tuple[int, str]:
        conn.request("GET", self.path, headers={"Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        body = response.read()
        if response.status == 200:
            return 200, ""
        try:
            reason = str(json.loads(body).get("reason", ""))
        except ValueError:
            reason = ""
        return response.status, reason


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--credential", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rate", type=float, default=100.0, help="per thread; 0: flat out")
    parser.add_argument("--refresh", type=float, default=0.5, help="CurrentKey refresh (s)")
    args = parser.parse_args(argv)
    with Workspace(load_config(args.config)) as ws:
        target = ws.target(args.credential)
        current = CurrentKey(target.store, target.path, refresh_interval=args.refresh)
        load = LoadClient(args.url, current, threads=args.threads, rate=args.rate)
        load.start()
        time.sleep(args.seconds)
        stats = load.stop()
    elapsed = load.stopped - load.started
    print(f"requests sent: {stats.requests} ({stats.requests / elapsed:.0f}/s)")
    print(f"failed requests: {len(stats.failures)}")
    print(f"refused attempts (then retried): {len(stats.refused)}")
    return 0 if not stats.failures else 1


if __name__ == "__main__":
    sys.exit(main())
