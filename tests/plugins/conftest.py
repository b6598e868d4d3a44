"""The plug-in issuer examples (issue 20) against a real ``examples/issuers/admin_api.py``.

One admin API per test process (session fixture): the example run as a subprocess on
a free loopback port, with a random admin token and HMAC secret and its state in a
temporary file; each test works on credentials of its own name, so tests never see
each other's keys. :class:`AdminApi` reads the API as an operator would (the admin
endpoints, ``/whoami``).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..vault.conftest import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "issuers"
ADMIN_API = EXAMPLES / "admin_api.py"
ADMIN_API_ISSUER = EXAMPLES / "admin_api_issuer.py"
FILE_ISSUER = EXAMPLES / "file_issuer.sh"

# No proxy from the environment: the server is on loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class AdminApi:
    url: str
    token: str
    hmac_secret: str
    state: Path
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def env(self) -> dict[str, str]:
        """What the plug-in (``ADMIN_API_*``) needs to reach this server."""
        return {
            "ADMIN_API_URL": self.url,
            "ADMIN_API_TOKEN": self.token,
            "ADMIN_API_HMAC_SECRET": self.hmac_secret,
        }

    @property
    def rotatectl_url(self) -> str:
        return self.url + "/rotatectl/{operation}"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        """``method path`` with the admin token (or ``token``): the status and JSON body."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        req.add_header("Authorization", f"Bearer {self.token if token is None else token}")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with _OPENER.open(req, timeout=10) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read()
        return status, json.loads(text) if text else None

    def whoami(self, key: str) -> int:
        """The status ``GET /whoami`` answers the key with: 200 accepted, 401 refused."""
        return self.request("GET", "/whoami", token=key)[0]

    def keys(self, credential: str) -> list[dict[str, Any]]:
        """The keys the API holds labelled ``credential`` (never their secrets)."""
        query = urllib.parse.urlencode({"label": credential})
        status, body = self.request("GET", f"/keys?{query}")
        assert status == 200, body
        found: list[dict[str, Any]] = body["keys"]
        return found

    def enabled(self, credential: str) -> set[str]:
        return {k["id"] for k in self.keys(credential) if k["enabled"]}


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"admin_api.py exited ({proc.returncode}):\n{log.read_text()}")
        try:
            _OPENER.open(url + "/whoami", timeout=1)
        except urllib.error.HTTPError as exc:
            if exc.code == 401:  # up: it refuses a request without a key
                return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail(f"admin_api.py did not answer in {timeout}s:\n{log.read_text()}")


@contextlib.contextmanager
def running_admin_api(
    root: Path, *, state: Path | None = None, token: str = "", hmac_secret: str = ""
) -> Iterator[AdminApi]:
    """``admin_api.py`` on a free loopback port, answering when entered, stopped on exit."""
    port = free_port()
    token = token or secrets.token_urlsafe(16)
    hmac_secret = hmac_secret or secrets.token_urlsafe(16)
    state = state or root / "keys.json"
    log = root / f"admin-api-{port}.log"
    env = {"ADMIN_API_TOKEN": token, "ADMIN_API_HMAC_SECRET": hmac_secret, "PATH": "/usr/bin:/bin"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ADMIN_API), "--port", str(port), "--state", str(state)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log)
        yield AdminApi(url, token, hmac_secret, state, log, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="session")
def admin_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminApi]:
    with running_admin_api(tmp_path_factory.mktemp("admin-api")) as api:
        yield api


@pytest.fixture
def api_env(admin_api: AdminApi, monkeypatch: pytest.MonkeyPatch) -> AdminApi:
    """The admin API, its ``ADMIN_API_*`` variables set in this process (the command
    issuer passes its environment to the plug-in)."""
    for name, value in admin_api.env.items():
        monkeypatch.setenv(name, value)
    return admin_api


@pytest.fixture
def name() -> str:
    """A credential name of the test's own."""
    return f"svc/{uuid.uuid4().hex[:10]}"
