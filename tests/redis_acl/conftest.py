"""A real Redis server for the redis issuer tests (issue 19). The directory is not
named ``redis``: it would shadow the driver package.

One server per test process (session fixture): Debian's ``redis-server`` (``.ci/run``
installs the ``redis-server`` package when it is missing) on a free loopback port,
nothing saved to disk, its users in an ACL file in a temporary directory, so the
issuer's ``ACL SAVE`` is exercised. The ``default`` user has a password: only
authenticated clients get in. Every command goes to the slow log (threshold 0), which
the tests search for passwords. It fails, never skips, when it cannot start.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rotatectl.redisacl import TAG_KEY

from ..vault.conftest import free_port


@dataclass
class RedisServer:
    """A running server: ``admin_url`` connects as ``default`` with its password."""

    port: int
    password: str
    root: Path

    @property
    def admin_url(self) -> str:
        return f"redis://default:{self.password}@127.0.0.1:{self.port}/0"

    def admin(self) -> Any:
        return self.client("default", self.password)

    def client(self, user: str, password: str) -> Any:
        """One connection authenticated as ``user`` (AuthenticationError when refused;
        no retry: redis-py's default retries a refused login for seconds)."""
        return redis.Redis(
            port=self.port,
            username=user,
            password=password,
            decode_responses=True,
            single_connection_client=True,
            retry=Retry(NoBackoff(), 0),
        )

    def can_auth(self, user: str, password: str) -> bool:
        try:
            self.client(user, password).close()
            return True
        except redis.AuthenticationError:
            return False


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt install redis-server)", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="rotatectl-redis-"))
    password = secrets.token_hex(16)
    digest = hashlib.sha256(password.encode()).hexdigest()
    (root / "users.acl").write_text(f"user default on #{digest} ~* &* +@all\n")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    args += ["no", "--dir", str(root), "--aclfile", str(root / "users.acl")]
    args += ["--logfile", str(root / "log"), "--slowlog-log-slower-than", "0"]
    args += ["--slowlog-max-len", "100000", "--daemonize", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = RedisServer(port, password, root)
    try:
        _wait_ready(server, proc)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(server: RedisServer, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = server.root / "log"
            text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            pytest.fail(f"redis-server exited: {err}\n{text}", pytrace=False)
        with contextlib.suppress(redis.ConnectionError), server.admin() as admin:
            if admin.ping():
                # Unauthenticated clients are refused: the default user has a password.
                with pytest.raises(redis.AuthenticationError):
                    redis.Redis(port=server.port, retry=Retry(NoBackoff(), 0)).ping()
                return
        time.sleep(0.05)
    pytest.fail("redis-server did not answer within 20 s", pytrace=False)


@dataclass
class Users:
    """One test's ACL users (names unique to the test) and its tag key."""

    server: RedisServer
    names: tuple[str, str]
    tag_key: str

    def acl(self, user: str) -> dict[str, Any]:
        with self.server.admin() as admin:
            info: dict[str, Any] = admin.acl_getuser(user)
            return info


@pytest.fixture
def users(redis_server: RedisServer) -> Iterator[Users]:
    token = secrets.token_hex(4)
    made = Users(redis_server, (f"app_{token}", f"app_{token}_b"), f"rotatectl:tags:{token}")
    yield made
    with redis_server.admin() as admin:
        for user in made.names:
            with contextlib.suppress(redis.ResponseError):  # no such user: nothing to kill
                admin.execute_command("CLIENT", "KILL", "USER", user)
            admin.acl_deluser(user)
        admin.delete(made.tag_key)
        admin.hdel(TAG_KEY, *made.names)  # the CLI tests use the default tag key
        admin.execute_command("ACL", "SAVE")
