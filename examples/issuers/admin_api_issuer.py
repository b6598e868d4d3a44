#!/usr/bin/env python3
"""A rotatectl ``command`` issuer for the admin API of ``admin_api.py``.

rotatectl runs it once per operation with one request on stdin and reads one reply
from stdout (``rotatectl.issuers.protocol``, version 1)::

    [credentials."payments/partner"]
    issuer = { type = "command", command = ["./admin_api_issuer.py"] }

Environment: ``ADMIN_API_URL`` (``http://127.0.0.1:8080``) and ``ADMIN_API_TOKEN``
(the admin token). Each key is labelled with the credential and carries
``{"credential": ..., "version_id": ...}`` as metadata, which ``list`` reports.

Exit 75 (try again later) when the API cannot be reached or answers 5xx; exit 1
with one line on stderr for anything else. Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TEMPFAIL = 75  # sysexits.h EX_TEMPFAIL: rotatectl retries with backoff
TIMEOUT = 10.0


class Failed(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class HttpStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the token (or the key) to another address: refuse it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def call(method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    """The JSON answer of ``method path``. HttpStatus for a 4xx, Failed (retryable)
    when the API is down or answers 5xx."""
    base = os.environ.get("ADMIN_API_URL", "").rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise Failed("ADMIN_API_URL must be the admin API's http(s):// URL")
    if token is None:
        token = os.environ.get("ADMIN_API_TOKEN", "")
        if not token:
            raise Failed("ADMIN_API_TOKEN must hold the admin token")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)  # noqa: S310 - checked above
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    what = f"{method} {path.split('?')[0]}"
    try:
        with OPENER.open(request, timeout=TIMEOUT) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise Failed(f"admin API: {what}: HTTP {exc.code}", TEMPFAIL) from None
        raise HttpStatus(exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise Failed(f"admin API unreachable: {what}: {reason}", TEMPFAIL) from None
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        raise Failed(f"admin API: {what}: the answer is not JSON") from None


def admin(method: str, path: str, body: Any = None) -> Any:
    """``call`` for the admin endpoints: any 4xx is a failure."""
    try:
        return call(method, path, body)
    except HttpStatus as exc:
        raise Failed(f"admin API: {method} {path.split('?')[0]}: HTTP {exc.status}") from None


def ref_path(ref: Any) -> str:
    if not isinstance(ref, str) or not ref:
        raise Failed("the request has no issuer_ref")
    return "/keys/" + urllib.parse.quote(ref, safe="")


def handle(request: dict[str, Any]) -> dict[str, Any]:
    if request.get("protocol") != 1:
        raise Failed(f"protocol {request.get('protocol')!r}: only version 1 is spoken")
    operation, credential = request.get("operation"), request.get("credential")
    if not isinstance(credential, str) or not credential:
        raise Failed("the request has no credential")
    if operation == "create":
        # A create repeated after a crash makes a new key: the first cannot be read
        # back (the API shows a secret once), and `list` reports it with its version
        # id, so rotatectl deletes it.
        tag = {"credential": credential, "version_id": str(request.get("version_id"))}
        made = admin("POST", "/keys", {"label": credential, "metadata": tag})
        return {"key": made["secret"], "issuer_ref": made["id"], "key_id": made["id"]}
    if operation == "list":
        query = urllib.parse.urlencode({"label": credential})
        keys = admin("GET", f"/keys?{query}")["keys"]
        return {
            "keys": [
                {
                    "issuer_ref": k["id"],
                    "version_id": k["metadata"].get("version_id"),
                    "active": k["enabled"],
                }
                for k in keys
                if k["metadata"].get("credential") == credential
            ]
        }
    if operation in ("disable", "enable", "delete"):
        path = ref_path(request.get("issuer_ref"))
        method, path = (
            ("DELETE", path) if operation == "delete" else ("POST", f"{path}/{operation}")
        )
        try:
            call(method, path)
        except HttpStatus as exc:
            if exc.status != 404:  # an unknown key is no error: each is idempotent
                raise Failed(f"admin API: {method} /keys/...: HTTP {exc.status}") from None
        return {}
    if operation == "test":
        ref, key = request.get("issuer_ref"), request.get("key")
        if not isinstance(key, str) or not key:
            raise Failed("the test request has no key")
        try:
            who = call("GET", "/whoami", token=key)
        except HttpStatus as exc:
            return {"ok": False, "detail": f"GET /whoami: HTTP {exc.status}"}
        if who.get("key_id") != ref:
            return {"ok": False, "detail": f"GET /whoami takes it for {who.get('key_id')}"}
        return {"ok": True, "detail": f"GET /whoami: 200 as {ref}"}
    return {"unsupported": True}


def main() -> int:
    try:
        request = json.loads(sys.stdin.buffer.read())
        if not isinstance(request, dict):
            raise ValueError
    except ValueError:
        print("admin_api_issuer: the request on stdin is not a JSON object", file=sys.stderr)
        return 1
    try:
        reply = handle(request)
    except Failed as exc:
        print(f"admin_api_issuer: {request.get('operation')}: {exc}", file=sys.stderr)
        return exc.code
    except (KeyError, TypeError, AttributeError):
        print("admin_api_issuer: the admin API's answer is not what it documents", file=sys.stderr)
        return 1
    json.dump(reply, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
