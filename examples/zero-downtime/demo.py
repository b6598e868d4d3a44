"""Zero-downtime demo: rotations, a store outage and an emergency under live traffic.

    python examples/zero-downtime/demo.py [--rotations 10] [--cli] [--json summary.json]

On the local store in a scratch directory it starts the API server
(server.py, a separate process verifying keys with a KeyRing) and load
client threads (client.py, CurrentKey, a few hundred requests per second),
then, while traffic flows:

1. runs ``--rotations`` rotations with short propagation and overlap, and
   after each one measures how long the server kept accepting the retired key;
2. simulates a store outage on the server's side: the server keeps accepting
   the keys it has and reports staleness; a rotation is started meanwhile;
   once the store is back the server catches up with the new key and the
   rotation completes;
3. runs an emergency rollover: the compromised key is revoked at once.

Rotations go through the Runner API in this process (sub-second durations),
or with ``--cli`` through ``python -m rotatectl`` (whole seconds). It prints
requests sent, failures and rotations completed, and exits non-zero if any
request failed other than one made with the compromised key after its
revocation reached the server, or if a retired key stayed accepted longer
than one refresh interval (plus a small measuring allowance).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from client import Attempt, LoadClient

from rotatectl.config import load_config
from rotatectl.model import Version, VersionState, parse_iso
from rotatectl.ports import SystemClock
from rotatectl.engine import Outcome, Result, Runner
from rotatectl.sdk import CurrentKey
from rotatectl.workspace import Workspace

HERE = Path(__file__).resolve().parent
NAME = "demo/api"
# A retired key is refused at the server's next refresh: within one interval,
# plus the refresh itself and, on a loaded machine, a late-running thread.
SLACK = 0.25

CONFIG = """\
# Written by examples/zero-downtime/demo.py.
[defaults]
max_age = "90d"
retain = "1h"

[stores.local]
type = "local"
path = "state.db"

[credentials."demo/api"]
store = "local"
issuer = { type = "generated", prefix = "rk_demo" }
scopes = ["read"]
"""


def say(text: str) -> None:
    print(text, flush=True)


class ApiRotator:
    """Rotations through the Runner API, in this process."""

    def __init__(self, config: Path) -> None:
        self.ws = Workspace(load_config(str(config)))
        self.target = self.ws.target(NAME)
        self.runner = Runner(SystemClock())

    def first_key(self) -> None:
        self._check(self.runner.rotate(self.target))

    def rotate(self, propagation: float, overlap: float) -> None:
        self.start(propagation, overlap)
        self.finish()

    def start(self, propagation: float, overlap: float) -> None:
        self._last = self.runner.rotate(
            self.target,
            propagation=timedelta(seconds=propagation),
            overlap=timedelta(seconds=overlap),
        )
        self._check(self._last)

    def finish(self) -> None:
        result = self._last
        while result.outcome is Outcome.WAITING:
            assert result.until is not None
            delay = (result.until - self.runner.clock.now()).total_seconds()
            time.sleep(max(0.0, delay) + 0.005)
            result = self.runner.advance(self.target, start_if_due=False)
            self._check(result)
        self._last = result

    def emergency(self, reason: str) -> None:
        self._check(self.runner.emergency(self.target, reason))

    def _check(self, result: Result) -> None:
        if result.outcome in (Outcome.FAILED, Outcome.LOCKED, Outcome.ATTENTION):
            raise RuntimeError(f"rotation: {result.outcome.value}: {result.message}")
        self._last = result

    def close(self) -> None:
        self.ws.close()


class CliRotator:
    """Rotations through the rotatectl CLI (durations rounded up to whole seconds)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log

    def _run(self, *args: str) -> None:
        argv = [sys.executable, "-m", "rotatectl", "--config", str(self.config), *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        with self.log.open("a") as f:
            f.write(f"$ rotatectl {' '.join(args)}\n{proc.stdout}{proc.stderr}")
        if proc.returncode != 0:
            raise RuntimeError(f"rotatectl {args[0]} exited {proc.returncode}: {proc.stderr}")

    @staticmethod
    def _secs(value: float) -> str:
        return f"{max(1, math.ceil(value))}s"

    def first_key(self) -> None:
        self._run("rotate", NAME)

    def rotate(self, propagation: float, overlap: float) -> None:
        self._run(
            "-q", "rotate", NAME, "--propagation", self._secs(propagation),
            "--overlap", self._secs(overlap), "--wait",
        )  # fmt: skip

    def start(self, propagation: float, overlap: float) -> None:
        self._run(
            "-q", "rotate", NAME, "--propagation", self._secs(propagation),
            "--overlap", self._secs(overlap), "--no-wait",
        )  # fmt: skip

    def finish(self) -> None:
        self._run("-q", "rotate", NAME, "--wait")  # continues the rotation in flight

    def emergency(self, reason: str) -> None:
        self._run("emergency", NAME, "--reason", reason, "--yes")

    def close(self) -> None:
        pass


class Server:
    """server.py in its own process."""

    def __init__(self, work: Path, config: Path, refresh: float, max_staleness: float) -> None:
        self.flag = work / "outage.flag"
        self.usage_log = work / "usage.jsonl"
        self.log = work / "server.log"
        argv = [
            sys.executable, str(HERE / "server.py"), "--config", str(config),
            "--credential", NAME, "--refresh", str(refresh),
            "--max-staleness", str(max_staleness), "--usage-log", str(self.usage_log),
            "--outage-flag", str(self.flag),
        ]  # fmt: skip
        self._stderr = self.log.open("w")
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=self._stderr, text=True, cwd=work
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the server did not start: {self.log.read_text()}")
        self.url = line.removeprefix("listening on ")

    def _get(self, path: str, key: str | None = None) -> tuple[int, Any]:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
        try:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def status(self) -> dict[str, Any]:
        code, data = self._get("/_status")
        assert code == 200 and isinstance(data, dict)
        return data

    def key_ids(self) -> set[str]:
        return {k["key_id"] for c in self.status()["credentials"] for k in c["keys"]}

    def call(self, key: str) -> tuple[int, str]:
        """``GET /hello`` with ``key``: the status and, when refused, the reason."""
        code, data = self._get("/hello", key)
        return code, "" if code == 200 else str(data.get("reason", ""))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


def wait_for(what: str, check: Any, timeout: float, step: float = 0.01) -> float:
    """Poll ``check()`` until true; the time.time() at which it was first seen true."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return time.time()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(step)


def version(ws: Workspace, version_id: str) -> Version:
    target = ws.target(NAME)
    return next(v for v in target.store.versions(target.path) if v.version_id == version_id)


def current_version(ws: Workspace) -> Version:
    target = ws.target(NAME)
    return next(v for v in target.store.versions(target.path) if v.state is VersionState.CURRENT)


def retire_lag(server: Server, ws: Workspace, old: Version, old_key: str, timeout: float) -> float:
    """Seconds from the old key's retirement in the store to the server refusing it.

    The server's status says when its key ring dropped the key (its clock and
    ours are the same machine's); a real request then confirms the refusal.
    """
    noticed: list[str] = []

    def dropped() -> bool:
        noticed[:] = [r["noticed"] for r in server.status()["retired"] if r["key_id"] == old.key_id]
        return bool(noticed)

    wait_for(f"the server to drop retired key {old.key_id}", dropped, timeout)
    refused = server.call(old_key)
    if refused != (401, "retired"):
        raise RuntimeError(f"retired key {old.key_id} was answered {refused}")
    retired = version(ws, old.version_id).retired
    when = parse_iso(noticed[0])
    assert retired is not None and when is not None
    return (when - retired).total_seconds()


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    config = work / "rotatectl.toml"
    config.write_text(CONFIG)
    rotator: ApiRotator | CliRotator = (
        CliRotator(config, work / "cli.log") if args.cli else ApiRotator(config)
    )
    rotator.first_key()
    checks = Workspace(load_config(str(config)))  # the demo's own view of the store
    clients = Workspace(load_config(str(config)))
    server = Server(work, config, args.refresh, args.max_staleness)
    target = clients.target(NAME)
    current = CurrentKey(target.store, target.path, refresh_interval=args.refresh)
    load = LoadClient(server.url, current, threads=args.threads, rate=args.rate)
    summary: dict[str, Any] = {"refresh_interval": args.refresh, "threads": args.threads}
    lags: list[float] = []
    completed = 0
    try:
        load.start()
        time.sleep(1.0)
        say(f"server {server.url}; {args.threads} client threads at {args.rate:g}/s each")

        for i in range(1, args.rotations + 1):
            old = current_version(checks)
            old_key = checks.target(NAME).store.read_value(NAME)
            rotator.rotate(args.propagation, args.overlap)
            completed += 1
            lag = retire_lag(server, checks, old, old_key, timeout=args.refresh * 10)
            lags.append(lag)
            new = current_version(checks)
            say(
                f"rotation {i}/{args.rotations}: v{new.number} ({new.key_id}) current; "
                f"v{old.number} retired, refused by the server {lag:.2f}s later; "
                f"{load.snapshot().requests} requests so far, "
                f"{len(load.snapshot().failures)} failed"
            )

        outage: dict[str, Any] = {}
        if args.outage > 0:
            before = load.snapshot()
            server.flag.touch()
            wait_for("the server to notice the outage", lambda: server.status()["degraded"], 5)
            old = current_version(checks)
            old_key = checks.target(NAME).store.read_value(NAME)
            rotator.start(args.propagation, args.overlap)
            pending = next(
                v
                for v in checks.target(NAME).store.versions(NAME)
                if v.state is VersionState.PENDING
            )
            time.sleep(args.outage)
            status = server.status()
            during = load.snapshot()
            outage = {
                "seconds": args.outage,
                "stale_reported": bool(status["stale"]),
                "staleness_seconds": status["staleness_seconds"],
                "new_key_unseen_while_down": pending.key_id not in server.key_ids(),
                "requests_during": during.requests - before.requests,
                "failures_during": len(during.failures) - len(before.failures),
            }
            server.flag.unlink()
            back = time.time()
            seen = wait_for(
                "the server to catch up", lambda: pending.key_id in server.key_ids(), 10
            )
            outage["caught_up_after"] = round(seen - back, 3)
            rotator.finish()
            completed += 1
            lag = retire_lag(server, checks, old, old_key, timeout=args.refresh * 10)
            lags.append(lag)
            say(
                f"store outage of {args.outage:g}s: the server accepted "
                f"{outage['requests_during']} requests meanwhile "
                f"({outage['failures_during']} failed), reported stale="
                f"{outage['stale_reported']} ({outage['staleness_seconds']:.1f}s old keys), "
                f"and caught up {outage['caught_up_after']:.2f}s after the store returned; "
                f"the rotation started during the outage completed"
            )
        summary["outage"] = outage

        emergency: dict[str, Any] = {}
        if args.emergency:
            compromised = current_version(checks)
            compromised_key = checks.target(NAME).store.read_value(NAME)
            rotator.emergency("demo: the key leaked")
            completed += 1
            lag = retire_lag(server, checks, compromised, compromised_key, args.refresh * 10)
            time.sleep(args.refresh * 2 + 0.5)  # traffic after the rollover
            emergency = {"compromised_key_id": compromised.key_id, "revocation_lag": lag}
            say(
                f"emergency: v{compromised.number} ({compromised.key_id}) revoked; "
                f"the server refused it {lag:.2f}s after its revocation"
            )
        summary["emergency"] = emergency
    finally:
        stats = load.stop()
        server.stop()
        rotator.close()
        clients.close()

    compromised_id = summary["emergency"].get("compromised_key_id")

    def allowed(attempt: Attempt) -> bool:
        # The compromised key, refused because the server had its revocation.
        return attempt.key_id == compromised_id and attempt.reason == "retired"

    unexpected = [f for f in stats.failures if not allowed(f)]
    odd_refusals = [a for a in stats.refused if not allowed(a)]
    elapsed = load.stopped - load.started
    usage_lines = server.usage_log.read_text().splitlines() if server.usage_log.exists() else []
    rotation_lag_limit = args.refresh + SLACK
    summary.update(
        {
            "requests": stats.requests,
            "ok": stats.ok,
            "failures": len(stats.failures),
            "unexpected_failures": len(unexpected),
            "refused_attempts": dict(Counter(f"{a.reason}" for a in stats.refused)),
            "refused_with_compromised_key": sum(allowed(a) for a in stats.refused),
            "unexpected_refusals": len(odd_refusals),
            "seconds": round(elapsed, 2),
            "requests_per_second": round(stats.requests / elapsed, 1),
            "rotations": completed,
            "scheduled_rotations": args.rotations,
            "retire_lags": [round(x, 3) for x in lags],
            "max_retire_lag": round(max(lags, default=0.0), 3),
            "retire_lag_limit": rotation_lag_limit,
            "usage_records": len(usage_lines),
        }
    )
    outage = summary["outage"]
    summary["checks"] = {
        "no_unexpected_failures": not unexpected,
        "no_unexpected_refusals": not odd_refusals,
        "retired_keys_refused_within_one_refresh": all(x <= rotation_lag_limit for x in lags),
        "rotations_completed": completed
        == args.rotations + (args.outage > 0) + bool(args.emergency),
        "outage_stale_reported": not outage or outage["stale_reported"],
        "outage_no_failures": not outage or outage["failures_during"] == 0,
        "outage_caught_up_within_one_refresh": not outage
        or outage["caught_up_after"] <= rotation_lag_limit,
    }
    summary["passed"] = all(summary["checks"].values())
    checks.close()
    return summary


def report(summary: dict[str, Any]) -> None:
    say("")
    say(
        f"requests sent:        {summary['requests']} ({summary['requests_per_second']:.0f}/s "
        f"from {summary['threads']} threads over {summary['seconds']:.0f}s)"
    )
    say(
        f"failed requests:      {summary['failures']} "
        f"({summary['unexpected_failures']} not explained by the compromised key)"
    )
    say(
        f"rotations completed:  {summary['rotations']} ({summary['scheduled_rotations']} "
        f"scheduled, {'1' if summary['outage'] else '0'} across a store outage, "
        f"{'1' if summary['emergency'] else '0'} emergency)"
    )
    say(
        f"retired keys refused: at most {summary['max_retire_lag']:.2f}s after retirement "
        f"(refresh interval {summary['refresh_interval']:g}s)"
    )
    if summary["emergency"]:
        say(
            f"compromised key:      {summary['refused_with_compromised_key']} attempts refused "
            "after its revocation, each retried at once with the new key"
        )
    failed = [name for name, ok in summary["checks"].items() if not ok]
    say("PASSED" if not failed else f"FAILED: {', '.join(failed)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rotations", type=int, default=10)
    parser.add_argument("--propagation", type=float, default=1.0, help="seconds")
    parser.add_argument("--overlap", type=float, default=1.0, help="seconds")
    parser.add_argument("--refresh", type=float, default=0.5, help="server and client (s)")
    parser.add_argument("--max-staleness", type=float, default=1.5, help="server warns after")
    parser.add_argument("--outage", type=float, default=2.5, help="seconds (0: none)")
    parser.add_argument("--no-emergency", dest="emergency", action="store_false")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s per thread")
    parser.add_argument("--cli", action="store_true", help="rotate with the rotatectl CLI")
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    if args.refresh * 2 > min(args.propagation, args.overlap):
        parser.error("--propagation and --overlap must each be at least twice --refresh")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="rotatectl-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        summary = run(args, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    report(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
