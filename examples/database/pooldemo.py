"""The engine-independent part of the pool demos (``pg_pool_demo.py``, ...): the
secret as the store has it, a one-connection-per-thread pool, the client threads
that count queries, the rotations through the ``rotatectl`` CLI, the summary.

A demo supplies its :class:`Engine` (how to connect, query, close and which errors
mean "refused or ended"), its config file and its command-line defaults.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAME = "db/demo"


@dataclass(frozen=True)
class Engine:
    """What the demo needs of a driver: ``connect`` with a secret's credentials, run
    one ``query`` on a connection, ``close`` it (never raising), and the ``errors``
    that mean the server refused or ended a connection (then: reconnect)."""

    connect: Callable[[dict[str, Any]], Any]
    query: Callable[[Any], object]
    close: Callable[[Any], None]
    errors: tuple[type[BaseException], ...]

    def refused(self, s: dict[str, Any]) -> bool:
        """Whether the server refuses a login with ``s``'s username and password."""
        try:
            conn = self.connect(s)
        except self.errors:
            return True
        self.close(conn)
        return False


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

    def __init__(self, engine: Engine, secret: Secret, recycle: float) -> None:
        self.engine, self.secret, self.recycle = engine, secret, recycle
        self.local = threading.local()

    def query(self) -> int:
        """One query; returns how many retries it needed. Raises when it failed."""
        conn, born = getattr(self.local, "conn", None), getattr(self.local, "born", 0.0)
        if conn is not None and time.monotonic() - born > self.recycle:
            self.engine.close(conn)
            conn = None
        retries = 0
        for attempt in range(3):
            try:
                if conn is None:
                    conn = self.engine.connect(self.secret.get(fresh=attempt > 0))
                    self.local.born = time.monotonic()
                self.local.conn = conn
                self.engine.query(conn)
                return retries
            except self.engine.errors:
                # Refused (a retired password) or ended (a retired user's session):
                # reconnect with the secret as the store has it now.
                if conn is not None:
                    self.engine.close(conn)
                conn = None
                self.local.conn = None
                retries += 1
        raise RuntimeError("query failed after 3 attempts")

    def close(self) -> None:
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            self.engine.close(conn)


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


def parser(doc: str) -> argparse.ArgumentParser:
    """The arguments every demo takes; a demo adds its server's (host, port, ...)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rotations", type=int, default=5)
    parser.add_argument("--propagation", type=int, default=1, help="seconds")
    parser.add_argument("--overlap", type=int, default=2, help="seconds")
    parser.add_argument("--refresh", type=float, default=0.25, help="secret reread (s)")
    parser.add_argument("--recycle", type=float, default=1.0, help="connection age (s)")
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--rate", type=float, default=50.0, help="queries/s per thread")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    return parser


def defaults(args: argparse.Namespace) -> str:
    """The config file's ``[defaults]`` table."""
    return f"""
[defaults]
propagation = "{args.propagation}s"
overlap = "{args.overlap}s"
retain = "1h"
recheck = "1s"   # how often a gate held by an open session looks again
"""


def run(args: argparse.Namespace, work: Path, config: str, engine: Engine) -> dict[str, Any]:
    from rotatectl.config import load_config
    from rotatectl.workspace import Workspace

    (work / "rotatectl.toml").write_text(config)
    rotatectl(work, "rotate", NAME, "--wait")
    os.environ["ROTATECTL_STATE_DIR"] = str(work / "state")
    ws = Workspace(load_config(str(work / "rotatectl.toml")))
    target = ws.target(NAME)
    secret = Secret(target.store, target.path, args.refresh)
    stop = threading.Event()
    counts = {"queries": 0, "failed": 0, "retried": 0}
    lock = threading.Lock()

    def client() -> None:
        pool = Pool(engine, secret, args.recycle)
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
            old_refused.append(engine.refused(before))
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


def main(args: argparse.Namespace, config: str, engine: Engine, *, prefix: str) -> int:
    """Run the demo in a temporary directory (``prefix``), print the summary, write
    ``--json``; 0 when no query failed and every old password was refused."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        summary = run(args, work, config, engine)
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
