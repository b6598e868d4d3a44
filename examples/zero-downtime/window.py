"""Slow-refreshing clients and a rolling window of previous keys, under live traffic.

    python examples/zero-downtime/window.py [--keep-previous 3] [--rotations 6]

Clients that fetch the key only every ``--client-refresh`` seconds and cannot
refresh on demand (a device, a partner's quarterly deploy: a refused request is
not retried) hold a key for longer than two rotations. With ``keep_previous``
large enough to cover the rotations between two of their refreshes, rotatectl
keeps their key accepted and no request fails; with ``keep_previous = 1`` each
rotation retires the key they still hold once the overlap has elapsed (no usage
probe is configured here, so the overlap alone decides), and requests fail until
their next refresh, which is what the window exists to prevent.

It reuses the zero-downtime demo's server (``server.py``: a KeyRing refreshing
every ``--refresh`` seconds) and load client (``client.py``). It prints the
requests sent and failed, and exits 0 when none failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from client import LoadClient
from demo import CONFIG, NAME, ApiRotator, Server, current_version, say

from rotatectl.config import load_config
from rotatectl.sdk import CurrentKey
from rotatectl.workspace import Workspace


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    config = work / "rotatectl.toml"
    config.write_text(CONFIG.replace("[defaults]\n", f"[defaults]\nkeep_previous = {args.keep}\n"))
    rotator = ApiRotator(config)
    rotator.first_key()
    checks = Workspace(load_config(str(config)))
    clients = Workspace(load_config(str(config)))
    server = Server(work, config, args.refresh, max_staleness=args.refresh * 4)
    target = clients.target(NAME)
    current = CurrentKey(target.store, target.path, refresh_interval=args.client_refresh)
    load = LoadClient(server.url, current, threads=args.threads, rate=args.rate, retry=False)
    try:
        load.start()
        time.sleep(args.refresh * 2)
        say(
            f"server {server.url}; {args.threads} clients refreshing every "
            f"{args.client_refresh:g}s, no retry; keep_previous = {args.keep}"
        )
        started = time.monotonic()
        for i in range(1, args.rotations + 1):
            rotator.rotate(args.propagation, args.overlap)
            now = current_version(checks)
            say(
                f"rotation {i}/{args.rotations}: v{now.number} current; "
                f"{len(load.snapshot().failures)} requests failed so far"
            )
        per_rotation = (time.monotonic() - started) / args.rotations
        time.sleep(args.client_refresh + args.refresh * 2)  # every client refreshed since
    finally:
        stats = load.stop()
        server.stop()
        rotator.close()
        clients.close()
    states = Counter(v.state.value for v in checks.target(NAME).store.versions(NAME))
    checks.close()
    return {
        "keep_previous": args.keep,
        "client_refresh": args.client_refresh,
        "seconds_per_rotation": round(per_rotation, 3),
        "rotations_per_client_refresh": round(args.client_refresh / per_rotation, 2),
        "requests": stats.requests,
        "failures": len(stats.failures),
        "refused": dict(Counter(a.reason for a in stats.failures)),
        "versions": dict(states),
        "passed": not stats.failures,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-previous", dest="keep", type=int, default=3)
    parser.add_argument("--rotations", type=int, default=6)
    # A rotation takes at least the propagation delay, so a key stays in a window of
    # N previous keys for at least (N + 1) x propagation: longer than --client-refresh.
    parser.add_argument("--propagation", type=float, default=1.0, help="seconds")
    parser.add_argument("--overlap", type=float, default=0.6, help="seconds")
    parser.add_argument("--refresh", type=float, default=0.25, help="the server's (s)")
    parser.add_argument("--client-refresh", type=float, default=3.0, help="the clients' (s)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s per client")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rotatectl-window-"))
    try:
        summary = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say("")
    say(
        f"requests sent:   {summary['requests']}; failed: {summary['failures']} "
        f"{summary['refused'] or ''}".rstrip()
    )
    say(
        f"one rotation every {summary['seconds_per_rotation']:.2f}s: "
        f"{summary['rotations_per_client_refresh']:.1f} rotations between two client refreshes; "
        f"versions {summary['versions']}"
    )
    say("PASSED" if summary["passed"] else "FAILED: requests failed")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
