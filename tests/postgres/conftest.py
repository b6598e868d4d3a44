"""A real PostgreSQL server for the database issuer tests (issue 19).

One server per test process (session fixture): Debian's PostgreSQL binaries
(``/usr/lib/postgresql/<N>/bin``; ``.ci/run`` installs the ``postgresql`` package
when they are missing), ``initdb`` in a temporary directory, listening on a free
loopback port with SCRAM password authentication for everyone but the admin. The
server refuses to run as root, so it runs as ``nobody`` when the tests are root.
It fails, never skips, when it cannot start.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..vault.conftest import free_port


def pg_bin() -> Path:
    """The newest Debian PostgreSQL bin directory, else the one of ``initdb`` on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    pytest.fail("PostgreSQL is not installed (apt install postgresql)", pytrace=False)


def _major(path: str) -> int:
    return int(Path(path).parent.parent.name)


@dataclass
class PgServer:
    """A running server: ``admin_dsn`` connects as the superuser ``postgres``."""

    port: int
    password: str
    data: Path
    log: Path

    @property
    def admin_dsn(self) -> str:
        return (
            f"host=127.0.0.1 port={self.port} user=postgres password={self.password} "
            "dbname=postgres"
        )

    def dsn(self, user: str, password: str, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={user} password={password} dbname={dbname}"

    def admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.admin_dsn, autocommit=True)


def _as_server_user(args: list[str]) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    root = Path(tempfile.mkdtemp(prefix="rotatectl-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "nobody")
    os.chmod(root, 0o700)
    data = root / "data"
    password = secrets.token_hex(16)
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(pwfile, "nobody")
    bindir = pg_bin()
    init = subprocess.run(
        _as_server_user(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--pwfile",
                str(pwfile),
                "--auth=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        pytest.fail(f"initdb failed: {init.stderr[-2000:]}", pytrace=False)
    port = free_port()
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
        # Every statement logged: the tests prove no password ever reaches the log.
        "-c log_statement=all "
        # Connections logged in UTC: the probe's connection_log reads them.
        "-c log_connections=on -c log_timezone=UTC"
    )
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", options]
    start = subprocess.run(
        _as_server_user([*pg_ctl, "-w", "-t", "60", "start"]),
        capture_output=True,
        text=True,
        check=False,
    )
    if start.returncode != 0:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        pytest.fail(f"PostgreSQL did not start: {start.stderr}\n{log[-2000:]}", pytrace=False)
    try:
        yield PgServer(port, password, data, root / "log")
    finally:
        subprocess.run(
            _as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Pair:
    """One test's alternating pair: role names unique to the test."""

    server: PgServer
    users: tuple[str, str]
    group: str

    def can_login(self, user: str, password: str) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.server.dsn(user, password), connect_timeout=10):
                return True
        except psycopg.OperationalError:
            return False


@pytest.fixture
def pair(pg_server: PgServer) -> Iterator[Pair]:
    token = secrets.token_hex(4)
    made = Pair(pg_server, (f"app_{token}", f"app_{token}_b"), f"app_{token}_group")
    yield made
    with pg_server.admin() as conn:
        for role in (*made.users, made.group):
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            if _exists(conn, role):
                conn.execute(f'DROP OWNED BY "{role}" CASCADE')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def _exists(conn: Any, role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None
