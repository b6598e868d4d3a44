"""A real MariaDB server for the ``mysql`` issuer and probe tests (issue 19).

One server per test process (session fixture): Debian's MariaDB (``mariadbd``;
``.ci/run`` installs the ``mariadb-server`` package when it is missing),
``mariadb-install-db`` in a temporary directory, listening on a free loopback port
with real password authentication (the grant tables are loaded: no
``--skip-grant-tables``) and every statement in the general log. The server refuses
to run as root, so it runs as ``nobody`` (``--user``) when the tests are root. It
fails, never skips, when it cannot start, and is stopped at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from ..vault.conftest import free_port


def binary(*names: str) -> str:
    """The first of ``names`` on PATH or in /usr/sbin, /usr/bin."""
    for name in names:
        for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
            if candidate and os.access(candidate, os.X_OK):
                return candidate
    pytest.fail(
        f"MariaDB is not installed ({names[0]} not found; apt install mariadb-server)",
        pytrace=False,
    )


@dataclass
class MariaServer:
    """A running server: ``admin_url`` connects as ``root`` over TCP."""

    port: int
    password: str
    general_log: Path
    version: str

    @property
    def admin_url(self) -> str:
        return f"mysql://root:{self.password}@127.0.0.1:{self.port}/"

    def connect(self, user: str, password: str, **kwargs: Any) -> Any:
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user=user,
            password=password,
            connect_timeout=10,
            autocommit=True,
            **kwargs,
        )

    def admin(self) -> Any:
        return self.connect("root", self.password)


def _user_flag() -> list[str]:
    return ["--user=nobody"] if os.geteuid() == 0 else []


@pytest.fixture(scope="session")
def maria() -> Iterator[MariaServer]:
    root = Path(tempfile.mkdtemp(prefix="rotatectl-mariadb-"))
    if os.geteuid() == 0:
        shutil.chown(root, "nobody")
    os.chmod(root, 0o700)
    data, sock, log = root / "data", root / "sock", root / "general.log"
    install = subprocess.run(
        [
            binary("mariadb-install-db", "mysql_install_db"),
            "--no-defaults",
            f"--datadir={data}",
            *_user_flag(),
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if install.returncode != 0:
        pytest.fail(f"mariadb-install-db failed: {install.stderr[-2000:]}", pytrace=False)
    port = free_port()
    proc = subprocess.Popen(
        [
            binary("mariadbd", "mysqld"),
            "--no-defaults",
            f"--datadir={data}",
            *_user_flag(),
            f"--socket={sock}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={root / 'pid'}",
            f"--log-error={root / 'error.log'}",
            f"--tmpdir={root}",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--max-connections=200",
            "--innodb-buffer-pool-size=32M",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
            # Every statement logged: the tests prove no password ever reaches the log.
            "--general-log=1",
            f"--general-log-file={log}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        password = secrets.token_hex(16)
        version = _set_root_password(proc, sock, password, root / "error.log")
        yield MariaServer(port, password, log, version)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _set_root_password(proc: subprocess.Popen[bytes], sock: Path, password: str, err: Path) -> str:
    """Wait (60 s at most) for the socket to accept root, which has no password yet;
    give every root account ``password``. The server's version."""
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"mariadbd exited ({proc.returncode}):\n{_tail(err)}", pytrace=False)
        try:
            conn = pymysql.connect(unix_socket=str(sock), user="root", connect_timeout=2)
            break
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                pytest.fail(f"mariadbd did not start in 60 s:\n{_tail(err)}", pytrace=False)
            time.sleep(0.1)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT Host FROM mysql.user WHERE User = 'root'")
        for (host,) in cur.fetchall():
            if host in ("localhost", "127.0.0.1", "::1"):
                cur.execute("ALTER USER 'root'@%s IDENTIFIED BY %s", (host, password))
            else:  # root@<this machine's name>: a name, ignored with --skip-name-resolve
                cur.execute("DROP USER 'root'@%s", (host,))
        cur.execute("SELECT VERSION()")
        return str(cur.fetchone()[0])


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@dataclass
class Pair:
    """One test's alternating pair: user and role names unique to the test."""

    server: MariaServer
    users: tuple[str, str]
    group: str

    def can_login(self, user: str, password: str) -> bool:
        try:
            with self.server.connect(user, password):
                return True
        except pymysql.err.OperationalError:  # 1045 wrong password, 4151 locked
            return False


@pytest.fixture
def pair(maria: MariaServer) -> Iterator[Pair]:
    token = secrets.token_hex(4)
    made = Pair(maria, (f"app_{token}", f"app_{token}_b"), f"app_{token}_group")
    yield made
    with maria.admin() as conn, conn.cursor() as cur:
        for user in made.users:
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (user,))
            for (ident,) in cur.fetchall():
                with contextlib.suppress(pymysql.err.MySQLError):  # ended meanwhile
                    cur.execute("KILL CONNECTION %s", (ident,))
            cur.execute("DROP USER IF EXISTS %s@'%%'", (user,))
        cur.execute(f"DROP ROLE IF EXISTS `{made.group}`")
        cur.execute(
            "SELECT 1 FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = 'rotatectl' AND TABLE_NAME = 'rotatectl_tags'"
        )
        if cur.fetchone():
            cur.execute("DELETE FROM rotatectl.rotatectl_tags WHERE user IN (%s, %s)", made.users)
