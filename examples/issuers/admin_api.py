#!/usr/bin/env python3
"""A small admin API for a service's API keys, and the service that checks them.

Standard library only::

    ADMIN_API_TOKEN=... ADMIN_API_HMAC_SECRET=... \\
        python admin_api.py --port 8080 --state keys.json

Admin endpoints (``Authorization: Bearer $ADMIN_API_TOKEN``):

- ``POST /keys`` with ``{"label": "...", "metadata": {"k": "v"}}``: a new key,
  ``{"id", "secret", "label", "metadata", "enabled"}`` (201). The server makes the
  secret and returns it this once: it keeps only its SHA-256.
- ``GET /keys?label=...``: the keys (of that label), without secrets.
- ``POST /keys/<id>/disable``, ``POST /keys/<id>/enable``: the key (200); 404 unknown.
- ``DELETE /keys/<id>``: 204; 404 unknown.

The service: ``GET /whoami`` with ``Authorization: Bearer <api key>`` answers 200
``{"key_id": "..."}`` for an enabled key, else 401.

rotatectl's ``http`` issuer, served directly: ``POST /rotatectl/<operation>`` with
the protocol's JSON request (``rotatectl.issuers.protocol``, version 1), signed with
``$ADMIN_API_HMAC_SECRET`` (``X-Rotatectl-Signature: sha256=HMAC(secret,
"<X-Rotatectl-Timestamp>.<body>")``); a bad signature, or a timestamp more than 300 s
away from now (a replay), is 401. Without ``ADMIN_API_HMAC_SECRET`` that endpoint is
off (404). Keys made through it are labelled with the credential and carry
``{"credential": ..., "version_id": ...}`` as metadata, like those the ``command``
plug-in ``admin_api_issuer.py`` makes through the admin endpoints.

The state is one JSON file, replaced atomically on every change (a restart keeps the
keys). The log names requests and key ids, never a secret or a token.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import urllib.parse
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_BODY = 64 * 1024
REPLAY_WINDOW = 300  # seconds a signed request stays valid
OPERATIONS = ("create", "list", "disable", "enable", "delete", "test")

Key = dict[str, Any]  # id, label, metadata, enabled, created, sha256


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Keys:
    """The keys, kept in ``path`` (written atomically), one lock for every thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.keys: dict[str, Key] = {}
        if path.exists():
            self.keys = json.loads(path.read_text())["keys"]

    def _save(self) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"keys": self.keys}, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)

    def create(self, label: str, metadata: dict[str, str]) -> tuple[Key, str]:
        """A new enabled key and its secret (returned here only)."""
        secret = "sk_" + secrets.token_urlsafe(32)
        with self.lock:
            key_id = "key_" + secrets.token_hex(8)
            self.keys[key_id] = {
                "id": key_id,
                "label": label,
                "metadata": dict(metadata),
                "enabled": True,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "sha256": digest(secret),
            }
            self._save()
            return public(self.keys[key_id]), secret

    def listed(self, label: str | None = None) -> list[Key]:
        with self.lock:
            return [public(k) for k in self.keys.values() if label in (None, k["label"])]

    def set_enabled(self, key_id: str, enabled: bool) -> Key | None:
        with self.lock:
            key = self.keys.get(key_id)
            if key is None:
                return None
            if key["enabled"] != enabled:
                key["enabled"] = enabled
                self._save()
            return public(key)

    def delete(self, key_id: str) -> bool:
        with self.lock:
            if self.keys.pop(key_id, None) is None:
                return False
            self._save()
            return True

    def holder(self, secret: str) -> str | None:
        """The id of the enabled key whose secret this is (hashes compared in constant
        time, every key looked at), else None."""
        wanted = digest(secret)
        found = None
        with self.lock:
            for key in self.keys.values():
                if hmac.compare_digest(key["sha256"], wanted) and key["enabled"]:
                    found = key["id"]
        return found


def public(key: Key) -> Key:
    return {k: v for k, v in key.items() if k != "sha256"}


class Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "admin-api/1"

    # -- routing --------------------------------------------------------------

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/whoami":
            return self.whoami()
        if url.path != "/keys":
            return self.fail(404, "not found")
        if self.admin():
            query = urllib.parse.parse_qs(url.query)
            label = query["label"][0] if "label" in query else None
            self.reply(200, {"keys": self.server.keys.listed(label)})
        return None

    def do_POST(self) -> None:
        parts = self.parts()
        if parts[0] == "rotatectl" and len(parts) == 2:
            return self.rotatectl(parts[1])
        if not self.admin():
            return None
        if parts == ["keys"]:
            return self.create()
        if len(parts) == 3 and parts[0] == "keys" and parts[2] in ("disable", "enable"):
            key = self.server.keys.set_enabled(parts[1], parts[2] == "enable")
            if key is None:
                return self.fail(404, "no such key")
            self.log(f"{parts[2]}d {parts[1]}")
            return self.reply(200, key)
        return self.fail(404, "not found")

    def do_DELETE(self) -> None:
        parts = self.parts()
        if not self.admin():
            return None
        if len(parts) == 2 and parts[0] == "keys":
            if not self.server.keys.delete(parts[1]):
                return self.fail(404, "no such key")
            self.log(f"deleted {parts[1]}")
            self.send_response(204)
            self.end_headers()
            return None
        return self.fail(404, "not found")

    # -- the admin API and the service ----------------------------------------

    def create(self) -> None:
        body = self.json_body()
        if body is None:
            return
        label, metadata = body.get("label"), body.get("metadata", {})
        if not isinstance(label, str) or not label:
            return self.fail(400, "'label' must be a non-empty string")
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            return self.fail(400, "'metadata' must map names to strings")
        key, secret = self.server.keys.create(label, metadata)
        self.log(f"created {key['id']} ({label!r})")
        self.reply(201, {**key, "secret": secret})

    def whoami(self) -> None:
        secret = self.bearer()
        key_id = self.server.keys.holder(secret) if secret else None
        if key_id is None:
            return self.fail(401, "invalid API key")
        self.reply(200, {"key_id": key_id})

    # -- rotatectl's http issuer protocol ---------------------------------------

    def rotatectl(self, operation: str) -> None:
        hmac_secret = self.server.hmac_secret
        if not hmac_secret:
            return self.fail(404, "the rotatectl endpoint is off (no ADMIN_API_HMAC_SECRET)")
        raw = self.raw_body()
        if raw is None:
            return
        stamp = self.headers.get("X-Rotatectl-Timestamp", "")
        given = self.headers.get("X-Rotatectl-Signature", "")
        mac = hmac.new(hmac_secret.encode(), stamp.encode("latin-1") + b"." + raw, hashlib.sha256)
        # Headers arrive as latin-1 text: compare bytes (compare_digest refuses non-ASCII str).
        if not hmac.compare_digest(f"sha256={mac.hexdigest()}".encode(), given.encode("latin-1")):
            return self.fail(401, "bad signature")
        if (
            not (stamp.isascii() and stamp.isdigit())
            or abs(time.time() - int(stamp)) > REPLAY_WINDOW
        ):
            return self.fail(401, "stale timestamp")
        try:
            request = json.loads(raw)
        except ValueError:
            return self.fail(400, "not JSON")
        if not isinstance(request, dict) or request.get("protocol") != 1:
            return self.fail(400, "expected a protocol 1 request")
        if request.get("operation") != operation or operation not in OPERATIONS:
            return self.fail(400, "unknown operation")
        credential = request.get("credential")
        if not isinstance(credential, str) or not credential:
            return self.fail(400, "'credential' must be a non-empty string")
        self.reply(200, self.operate(operation, credential, request))

    def operate(self, operation: str, credential: str, request: dict[str, Any]) -> dict[str, Any]:
        keys = self.server.keys
        if operation == "create":
            tag = {"credential": credential, "version_id": str(request.get("version_id"))}
            key, secret = keys.create(credential, tag)
            self.log(f"created {key['id']} for {credential!r}")
            return {"key": secret, "issuer_ref": key["id"], "key_id": key["id"]}
        mine = {k["id"]: k for k in keys.listed(credential) if is_for(k, credential)}
        if operation == "list":
            return {
                "keys": [
                    {
                        "issuer_ref": k["id"],
                        "version_id": k["metadata"].get("version_id"),
                        "active": k["enabled"],
                    }
                    for k in mine.values()
                ]
            }
        ref = str(request.get("issuer_ref"))
        if operation == "test":
            holder = keys.holder(str(request.get("key", "")))
            if holder == ref and ref in mine:
                return {"ok": True, "detail": f"GET /whoami accepts it as {ref}"}
            return {"ok": False, "detail": f"GET /whoami refuses it (not enabled {ref})"}
        if ref in mine:  # an unknown reference (or another credential's) is no error
            if operation == "delete":
                keys.delete(ref)
            else:
                keys.set_enabled(ref, operation == "enable")
            self.log(f"{operation}d {ref} for {credential!r}")
        return {}

    # -- plumbing -------------------------------------------------------------

    def parts(self) -> list[str]:
        path = urllib.parse.urlsplit(self.path).path
        return [urllib.parse.unquote(part) for part in path.strip("/").split("/")]

    def admin(self) -> bool:
        token = self.bearer()
        if token and hmac.compare_digest(token.encode("latin-1"), self.server.admin_token.encode()):
            return True
        self.fail(401, "admin token required")
        return False

    def bearer(self) -> str:
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""

    def raw_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.fail(413, "body too large")
            return None
        return self.rfile.read(length)

    def json_body(self) -> dict[str, Any] | None:
        raw = self.raw_body()
        if raw is None:
            return None
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.fail(400, "expected a JSON object")
            return None
        return body

    def reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def fail(self, status: int, why: str) -> None:
        self.reply(status, {"error": why})

    def log(self, what: str) -> None:
        sys.stderr.write(f"{self.log_date_time_string()} {what}\n")

    def log_message(self, format: str, *args: Any) -> None:
        # The request line holds no secret (keys travel in headers and bodies only).
        sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")


def is_for(key: Key, credential: str) -> bool:
    metadata: dict[str, str] = key["metadata"]
    return metadata.get("credential") == credential


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, host: str, keys: Keys, admin_token: str, hmac_secret: str):
        super().__init__((host, port), Handler)
        self.keys = keys
        self.admin_token = admin_token
        self.hmac_secret = hmac_secret


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--state", type=Path, default=Path("admin_api_keys.json"))
    args = parser.parse_args(argv)
    token = os.environ.get("ADMIN_API_TOKEN", "")
    if not token:
        parser.error("set ADMIN_API_TOKEN to the admin token")
    server = Server(
        args.port,
        args.host,
        Keys(args.state.resolve()),
        token,
        os.environ.get("ADMIN_API_HMAC_SECRET", ""),
    )
    print(f"admin API on http://{args.host}:{server.server_port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
