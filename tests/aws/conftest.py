"""Fixtures for the AWS adapters: moto in process, and moto_server over HTTP.

``moto_server`` starts the real ``moto_server`` executable (installed next to
the interpreter by ``moto[server]``) on a free loopback port, the way a user
points ``endpoint_url`` at an AWS-compatible endpoint. A server that cannot
start is a test failure, never a skip.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from rotatectl.registry import AdapterContext
from rotatectl.stores.aws import SecretsManagerStore

REGION = "us-east-1"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# Anything that could point boto3 somewhere else than the test's endpoint.
CLEARED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL")


def aws_env() -> dict[str, str]:
    """os.environ with fake credentials and nothing that points at real AWS."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in CLEARED and not k.startswith("AWS_ENDPOINT_URL")
    }
    env.update(FAKE_ENV)
    return env


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may reach real AWS, whatever the developer's environment holds."""
    for key in list(os.environ):
        if key in CLEARED or key.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.delenv(key, raising=False)
    for key, value in FAKE_ENV.items():
        monkeypatch.setenv(key, value)


def context(tmp: Path, table: str = "stores.aws") -> AdapterContext:
    return AdapterContext(table=table, base_dir=tmp, state_dir=tmp, env=aws_env())


def make_store(tmp: Path, endpoint_url: str | None = None, **settings: Any) -> SecretsManagerStore:
    config: dict[str, Any] = {"region": REGION, **settings}
    if endpoint_url:
        config["endpoint_url"] = endpoint_url
    return SecretsManagerStore.from_config(config, context(tmp))


@pytest.fixture
def mocked() -> Iterator[None]:
    """moto in process: every boto3 call in the test goes to moto's in-memory backends."""
    with mock_aws():
        yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1):  # noqa: S310
            return True
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class MotoServer:
    url: str
    process: subprocess.Popen[bytes]

    def post(self, path: str, data: bytes = b"") -> Any:
        # Not form-encoded: moto reads the raw body (werkzeug would parse a form away).
        request = urllib.request.Request(  # noqa: S310 - our own loopback server
            f"{self.url}{path}",
            data=data,
            method="POST",
            headers={"Content-Type": "application/octet-stream"},
        )
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310
            return json.loads(reply.read() or b"{}")

    def reset(self) -> None:
        """Drop every resource (all services, all regions)."""
        self.post("/moto-api/reset")

    def client(self, service: str, **kw: Any) -> Any:
        # Explicit credentials: session fixtures run before the per-test fake env.
        kw.setdefault("aws_access_key_id", "testing")
        kw.setdefault("aws_secret_access_key", "testing")
        return boto3.client(service, region_name=REGION, endpoint_url=self.url, **kw)


def start_moto_server(env: dict[str, str] | None = None) -> MotoServer:
    """Start moto_server on a free loopback port; pytest.fail if it does not answer."""
    executable = Path(sys.executable).parent / "moto_server"
    if not executable.exists():
        pytest.fail(f"moto_server not found next to {sys.executable} (install moto[server])")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(executable), "-H", "127.0.0.1", "-p", str(port)],
        env={**aws_env(), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not _answers(url):
        if process.poll() is not None:
            pytest.fail(f"moto_server exited with {process.returncode} before answering")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"moto_server did not answer on {url} within 30s")
        time.sleep(0.1)
    return MotoServer(url, process)


def stop(server: MotoServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = start_moto_server()
    yield server
    stop(server)


@pytest.fixture
def moto(moto_server: MotoServer) -> MotoServer:
    """The shared moto_server, emptied for this test."""
    moto_server.reset()
    return moto_server


@dataclass
class AuthServer:
    """A moto_server that enforces IAM policies (its own, so the shared one stays open)."""

    server: MotoServer
    admin: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, service: str, keys: dict[str, str] | None = None) -> Any:
        creds = keys or self.admin
        return self.server.client(
            service,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
        )

    def user(self, name: str, statements: list[dict[str, Any]]) -> dict[str, str]:
        """Create IAM user ``name`` with an inline policy; return its access key."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        iam.put_user_policy(
            UserName=name,
            PolicyName="rotatectl-test",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}


@pytest.fixture(scope="session")
def moto_auth() -> Iterator[AuthServer]:
    """moto_server with IAM authorization switched on after an admin user exists."""
    server = start_moto_server()
    try:
        iam = server.client("iam")
        iam.create_user(UserName="admin")
        iam.put_user_policy(
            UserName="admin",
            PolicyName="all",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        # From now on every request is authenticated and authorized (moto's
        # INITIAL_NO_AUTH_ACTION_COUNT, set through its /moto-api/reset-auth).
        server.post("/moto-api/reset-auth", b"0")
        yield AuthServer(
            server,
            {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]},
        )
    finally:
        stop(server)
