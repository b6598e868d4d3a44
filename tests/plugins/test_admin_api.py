"""``examples/issuers/admin_api.py`` as its users see it, and ``admin_api_issuer.py``'s
exits: the admin endpoints need the admin token, a secret is shown once and stored
only as a hash, ``/whoami`` takes enabled keys only, the ``/rotatectl`` endpoint
refuses a bad signature and a replayed request, a restart keeps the keys, and the
log holds no secret."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from rotatectl.issuers.http import sign

from ..vault.conftest import free_port
from .conftest import ADMIN_API_ISSUER, AdminApi, running_admin_api


def make(api: AdminApi, label: str = "billing") -> tuple[str, str]:
    status, body = api.request("POST", "/keys", {"label": label, "metadata": {"team": "ops"}})
    assert status == 201, body
    assert body["enabled"] is True and body["metadata"] == {"team": "ops"}
    return body["id"], body["secret"]


def test_admin_endpoints_need_the_admin_token(admin_api: AdminApi) -> None:
    key_id, secret = make(admin_api)
    for token in ("", "wrong", secret):  # an API key is not an admin token
        assert admin_api.request("GET", "/keys", token=token)[0] == 401
        assert admin_api.request("POST", "/keys", {"label": "x"}, token=token)[0] == 401
        assert admin_api.request("POST", f"/keys/{key_id}/disable", token=token)[0] == 401
        assert admin_api.request("DELETE", f"/keys/{key_id}", token=token)[0] == 401
    assert admin_api.whoami(secret) == 200


def test_a_secret_is_shown_once_and_kept_as_a_hash(admin_api: AdminApi) -> None:
    key_id, secret = make(admin_api, "once")
    [listed] = admin_api.keys("once")
    assert listed["id"] == key_id and listed["label"] == "once" and listed["enabled"] is True
    assert secret not in json.dumps(listed)
    assert secret not in admin_api.state.read_text()
    assert admin_api.state.stat().st_mode & 0o077 == 0  # a temporary file's mode, 0600
    assert admin_api.request("POST", "/keys", {"metadata": {}})[0] == 400
    assert admin_api.request("POST", "/keys", {"label": "x", "metadata": {"n": 1}})[0] == 400


def test_whoami_takes_enabled_keys_only(admin_api: AdminApi) -> None:
    key_id, secret = make(admin_api)
    assert admin_api.request("GET", "/whoami", token=secret) == (200, {"key_id": key_id})
    assert admin_api.whoami(secret + "x") == 401
    assert admin_api.whoami("") == 401
    assert admin_api.request("POST", f"/keys/{key_id}/disable")[0] == 200
    assert admin_api.whoami(secret) == 401
    assert admin_api.request("POST", f"/keys/{key_id}/enable")[1]["enabled"] is True
    assert admin_api.whoami(secret) == 200
    assert admin_api.request("DELETE", f"/keys/{key_id}")[0] == 204
    assert admin_api.whoami(secret) == 401
    for method, path in (("POST", "/disable"), ("POST", "/enable"), ("DELETE", "")):
        assert admin_api.request(method, f"/keys/{key_id}{path}")[0] == 404


def signed(api: AdminApi, operation: str, body: bytes, *, secret: str = "", at: float = 0) -> int:
    stamp = str(int(at or time.time()))
    headers = {
        "X-Rotatectl-Timestamp": stamp,
        "X-Rotatectl-Signature": sign(secret or api.hmac_secret, stamp, body),
        "Content-Type": "application/json",
    }
    return api.request("POST", f"/rotatectl/{operation}", raw=body, headers=headers)[0]


def test_the_rotatectl_endpoint_refuses_bad_signatures_and_replays(admin_api: AdminApi) -> None:
    body = json.dumps({"protocol": 1, "operation": "list", "credential": "a/b"}).encode()
    assert signed(admin_api, "list", body) == 200
    assert signed(admin_api, "list", body, secret="not-the-secret") == 401
    assert signed(admin_api, "list", body, at=time.time() - 301) == 401  # a replay
    assert signed(admin_api, "list", body, at=time.time() + 301) == 401
    unsigned = admin_api.request("POST", "/rotatectl/list", raw=body)
    assert unsigned[0] == 401
    # Signed, but the path's operation is not the body's.
    assert signed(admin_api, "delete", body) == 400
    headers = {"X-Rotatectl-Timestamp": "1", "X-Rotatectl-Signature": "sha256=\u00e9"}
    assert admin_api.request("POST", "/rotatectl/list", raw=body, headers=headers)[0] == 401


def test_a_restart_keeps_the_keys(tmp_path: Path) -> None:
    state = tmp_path / "keys.json"
    with running_admin_api(tmp_path, state=state, token="t0ken") as api:
        key_id, secret = make(api)
        _, gone = make(api)
        assert api.request("POST", f"/keys/{key_id}/disable")[0] == 200
    with running_admin_api(tmp_path, state=state, token="t0ken") as api:
        assert api.whoami(gone) == 200
        assert api.whoami(secret) == 401
        assert api.request("POST", f"/keys/{key_id}/enable")[0] == 200
        assert api.whoami(secret) == 200
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".keys")] == []


def test_the_log_holds_no_secret(admin_api: AdminApi) -> None:
    _, secret = make(admin_api)
    assert admin_api.whoami(secret) == 200
    log = admin_api.log.read_text()
    assert "POST /keys" in log and "GET /whoami" in log
    for value in (secret, admin_api.token, admin_api.hmac_secret):
        assert value not in log


def issuer(env: dict[str, str], request: dict[str, object]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ADMIN_API_ISSUER)],
        input=json.dumps(request),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_command_plugin_exits_75_when_the_api_is_down_and_1_when_refused(
    admin_api: AdminApi,
) -> None:
    request = {"protocol": 1, "operation": "list", "credential": "a/b"}
    down = issuer({**admin_api.env, "ADMIN_API_URL": f"http://127.0.0.1:{free_port()}"}, request)
    assert down.returncode == 75, down.stderr
    assert "unreachable" in down.stderr and len(down.stderr.splitlines()) == 1
    refused = issuer({**admin_api.env, "ADMIN_API_TOKEN": "wrong"}, request)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "admin_api_issuer: list: admin API: GET /keys: HTTP 401"
    ok = issuer(admin_api.env, request)
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"keys": []}
    bad = issuer(admin_api.env, {"protocol": 2, "operation": "list", "credential": "a/b"})
    assert bad.returncode == 1 and "version 1" in bad.stderr
