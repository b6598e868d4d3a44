"""Zero downtime for a PostgreSQL connection pool across password rotations.

    ROTATECTL_POSTGRES_DSN='host=... user=postgres password=...' \\
        python examples/database/pg_pool_demo.py --host 127.0.0.1 --port 5432 [--rotations 5]

Several client threads run queries through a small pool that takes its credentials
from rotatectl's store (the JSON secret ``{"username", "password", ...}``), rereads
it every ``--refresh`` seconds, recycles a connection after ``--recycle`` seconds,
and reconnects with the current secret when a connection is refused or ended.
Meanwhile ``rotatectl rotate --wait`` runs ``--rotations`` times with the
``postgres`` issuer (two alternating roles) and the ``postgres`` usage probe: the
old role is retired only once none of its sessions is open. After each rotation
the demo checks the server refuses the old username and password. It prints the
figures and exits 0 when no query failed and every old password was refused.

It needs a PostgreSQL server and an admin DSN in ``$ROTATECTL_POSTGRES_DSN``; it
creates the roles ``demo_app``, ``demo_app_b`` and ``demo_app_group`` (``--users``
to change them) and a local store in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

NAME = "db/demo"


def config(args: argparse.Namespace) -> str:
    users = json.dumps(args.users)
    server = f'host = "{args.host}", port = {args.port}, dbname = "{args.dbname}"'
    return f"""
[defaults]
propagation = "{args.propagation}s"
overlap = "{args.overlap}s"
retain = "1h"
recheck = "1s"   # how often a gate held by an open session looks again

[credentials."{NAME}"]
format = "json"
field = "password"
static = {{ engine = "postgres", {server} }}
issuer = {{ type = "postgres", users = {users}, group = "{args.users[0]}_group" }}
usage = {{ type = "postgres", users = {users} }}
"""


class Secret:
    """The current database secret from the store, reread every ``refresh`` seconds or
    at once after a refusal (what a client library's credential provider does)."""

    def __init__(self, store: Any, path: str, refresh: float) -> None:
        self._store, self._path, self._refresh = store, path, refresh
        self._lock = threading.Lock()
        self._value: dict[str, Any] | None = None
        self._read_at = 0.0

    def get(self, *, fresh: bool = False) -> dict[str, Any]:
        with self._lock:
            if fresh or self._value is None or time.monotonic() - self._read_at > self._refresh:
                self._value = json.loads(self._store.read_value(self._path))
                self._read_at = time.monotonic()
            return self._value


class Pool:
    """One connection per thread, recycled after ``recycle`` seconds and replaced
    (with the current secret) when the server refuses or ends it."""

    def __init__(self, secret: Secret, recycle: float) -> None:
        self.secret, self.recycle = secret, recycle
        self.local = threading.local()

    def _connect(self, *, fresh: bool = False) -> psycopg.Connection[Any]:
        s = self.secret.get(fresh=fresh)
        return psycopg.connect(
            host=s["host"],
            port=s["port"],
            dbname=s["dbname"],
            user=s["username"],
            password=s["password"],
            connect_timeout=5,
            autocommit=True,
        )

    def query(self) -> int:
        """One query; returns how many retries it needed. Raises when it failed."""
        conn, born = getattr(self.local, "conn", None), getattr(self.local, "born", 0.0)
        if conn is not None and time.monotonic() - born > self.recycle:
            conn.close()
            conn = None
        retries = 0
        for attempt in range(3):
            try:
                if conn is None:
                    conn = self._connect(fresh=attempt > 0)
                    self.local.born = time.monotonic()
                self.local.conn = conn
                conn.execute("SELECT 1").fetchone()
                return retries
            except psycopg.OperationalError:
                # Refused (a retired password) or ended (a retired role's session):
                # reconnect with the secret as the store has it now.
                if conn is not None:
                    conn.close()
                conn = None
                self.local.conn = None
                retries += 1
        raise RuntimeError("query failed after 3 attempts")

    def close(self) -> None:
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            conn.close()


def refused(s: dict[str, Any]) -> bool:
    try:
        with psycopg.connect(
            host=s["host"],
            port=s["port"],
            dbname=s["dbname"],
            user=s["username"],
            password=s["password"],
            connect_timeout=5,
        ):
            return False
    except psycopg.OperationalError:
        return True


def rotatectl(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        [sys.executable, "-m", "rotatectl", *args],
        cwd=work,
        env={**os.environ, "ROTATECTL_STATE_DIR": str(work / "state")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if run.returncode != 0:
        raise SystemExit(f"rotatectl {' '.join(args)} exited {run.returncode}: {run.stderr}")
    return run


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from rotatectl.config import load_config
    from rotatectl.workspace import Workspace

    (work / "rotatectl.toml").write_text(config(args))
    rotatectl(work, "rotate", NAME, "--wait")
    os.environ["ROTATECTL_STATE_DIR"] = str(work / "state")
    ws = Workspace(load_config(str(work / "rotatectl.toml")))
    target = ws.target(NAME)
    secret = Secret(target.store, target.path, args.refresh)
    stop = threading.Event()
    counts = {"queries": 0, "failed": 0, "retried": 0}
    lock = threading.Lock()

    def client() -> None:
        pool = Pool(secret, args.recycle)
        try:
            while not stop.is_set():
                try:
                    retries = pool.query()
                    with lock:
                        counts["queries"] += 1
                        counts["retried"] += bool(retries)
                except Exception:  # counted: a failed query is what the demo measures
                    with lock:
                        counts["queries"] += 1
                        counts["failed"] += 1
                time.sleep(1 / args.rate)
        finally:
            pool.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.threads)]
    for t in threads:
        t.start()
    old_refused = []
    started = time.monotonic()
    try:
        for i in range(1, args.rotations + 1):
            before = json.loads(target.store.read_value(target.path))
            rotatectl(work, "rotate", NAME, "--wait")
            after = json.loads(target.store.read_value(target.path))
            old_refused.append(refused(before))
            with lock:
                print(
                    f"rotation {i}/{args.rotations}: {before['username']} -> "
                    f"{after['username']}; old password refused: {old_refused[-1]}; "
                    f"{counts['queries']} queries, {counts['failed']} failed",
                    flush=True,
                )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        ws.close()
    return {
        "rotations": args.rotations,
        "seconds": round(time.monotonic() - started, 1),
        "threads": args.threads,
        **counts,
        "old_passwords_refused": sum(old_refused),
        "passed": counts["failed"] == 0 and all(old_refused),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--dbname", default="postgres")
    parser.add_argument("--users", nargs=2, default=["demo_app", "demo_app_b"])
    parser.add_argument("--rotations", type=int, default=5)
    parser.add_argument("--propagation", type=int, default=1, help="seconds")
    parser.add_argument("--overlap", type=int, default=2, help="seconds")
    parser.add_argument("--refresh", type=float, default=0.25, help="secret reread (s)")
    parser.add_argument("--recycle", type=float, default=1.0, help="connection age (s)")
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--rate", type=float, default=50.0, help="queries/s per thread")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    if not os.environ.get("ROTATECTL_POSTGRES_DSN"):
        parser.error("set ROTATECTL_POSTGRES_DSN to the admin connection's DSN")
    work = Path(tempfile.mkdtemp(prefix="rotatectl-pg-demo-"))
    try:
        summary = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n{summary['queries']} queries in {summary['seconds']}s by {summary['threads']} "
        f"threads across {summary['rotations']} rotations: {summary['failed']} failed, "
        f"{summary['retried']} reconnected with the new secret; old passwords refused "
        f"after retirement: {summary['old_passwords_refused']}/{summary['rotations']}"
    )
    print("PASSED" if summary["passed"] else "FAILED")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
