"""The middlewares and the auth adapters over real HTTP on 127.0.0.1 (ASGI: called directly)."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
import requests

from rotatectl.sdk import (
    CurrentKey,
    KeyHeaders,
    KeyRing,
    KeyRingMiddleware,
    KeyRingWSGIMiddleware,
    Verification,
)
from rotatectl.sdk.asgi import SCOPE_KEY
from rotatectl.sdk.httpx_auth import CurrentKeyAuth as HttpxAuth
from rotatectl.sdk.requests_auth import CurrentKeyAuth as RequestsAuth
from rotatectl.sdk.wsgi import ENVIRON_KEY

from .conftest import Keys, VerifierView

CRED = "partners/acme"


def _app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Echoes who the middleware said the caller is, and the body it received."""
    verification = environ.get(ENVIRON_KEY)
    size = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(size) if size else b""
    payload = {
        "version": verification.version_id if isinstance(verification, Verification) else None,
        "body": body.decode(),
    }
    data = json.dumps(payload).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [data]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Api:
    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.old, self.v_old = keys.current(CRED, scopes=["read"])
        self.v_current = self.v_old
        self.view = VerifierView(keys.store)
        self.ring = KeyRing(self.view, CRED, start=False)
        wrapped = KeyRingWSGIMiddleware(_app, self.ring, exempt=["/health"])
        trade = KeyRingWSGIMiddleware(_app, self.ring, scope="trade")

        def route(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            if environ["PATH_INFO"].startswith("/trade"):
                return trade(environ, start_response)
            return wrapped(environ, start_response)

        self.server: WSGIServer = make_server("127.0.0.1", 0, route, handler_class=_Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def rotate(self) -> str:
        """A new current key; the old one retired, and the server has noticed."""
        new, version = self.keys.current(CRED, scopes=["read"])
        self.keys.retire(CRED, self.v_current)
        self.v_current = version
        self.ring.refresh()
        return new

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.ring.close()


@pytest.fixture
def api(keys: Keys) -> Iterator[Api]:
    server = Api(keys)
    yield server
    server.close()


def test_wsgi_middleware(api: Api) -> None:
    ok = requests.get(api.url + "/x", headers={"Authorization": f"Bearer {api.old}"}, timeout=5)
    assert ok.status_code == 200 and ok.json()["version"] == api.v_old.version_id
    plain = requests.get(api.url + "/x", headers={"X-Api-Key": api.old}, timeout=5)
    assert plain.status_code == 200
    missing = requests.get(api.url + "/x", timeout=5)
    assert (missing.status_code, missing.json()) == (
        401,
        {"error": "unauthorized", "reason": "missing"},
    )
    assert missing.headers["WWW-Authenticate"].startswith("Bearer error=")
    corrupt = api.old[:-1] + ("1" if api.old.endswith("0") else "0")  # one character off
    bad = requests.get(api.url + "/x", headers={"X-Api-Key": corrupt}, timeout=5)
    assert bad.json()["reason"] in ("bad-checksum", "malformed")
    scoped = requests.get(api.url + "/trade", headers={"X-Api-Key": api.old}, timeout=5)
    assert (scoped.status_code, scoped.json()["reason"]) == (403, "wrong-scope")
    assert "WWW-Authenticate" not in scoped.headers
    assert requests.get(api.url + "/health", timeout=5).status_code == 200
    assert api.old not in missing.text + bad.text + scoped.text


def test_requests_adapter_refreshes_once_and_retries(api: Api, keys: Keys) -> None:
    # retry_interval=0: two rotations a moment apart must each allow a forced read.
    current = CurrentKey(keys.store, CRED, refresh_interval=3600, retry_interval=0)
    assert current.get() == api.old
    api.rotate()
    with requests.Session() as session:
        session.auth = RequestsAuth(current)
        seen: list[int] = []
        session.hooks["response"].append(lambda r, **kw: seen.append(r.status_code))
        response = session.post(api.url + "/x", data=b"payload", timeout=5)
        assert response.status_code == 200
        assert [r.status_code for r in response.history] == [401]
        assert seen == [200]  # the application's own hook sees the final response once
        assert response.json()["body"] == "payload"
        # A seekable stream body is rewound for the retry.
        api.rotate()
        stream = session.post(api.url + "/x", data=io.BytesIO(b"streamed"), timeout=5)
        assert stream.status_code == 200 and stream.json()["body"] == "streamed"
        # Refused with the current key: no useless retry.
        refused = session.get(api.url + "/trade", timeout=5)
        assert refused.status_code == 403 and refused.history == []


def test_requests_adapter_plain_header(api: Api, keys: Keys) -> None:
    current = CurrentKey(keys.store, CRED)
    auth = RequestsAuth(current, header="X-Api-Key", scheme=None)
    assert requests.get(api.url + "/x", auth=auth, timeout=5).status_code == 200
    assert api.old not in repr(auth)


def test_httpx_adapter_sync(api: Api, keys: Keys) -> None:
    current = CurrentKey(keys.store, CRED, refresh_interval=3600)
    current.get()
    api.rotate()
    with httpx.Client(auth=HttpxAuth(current)) as client:
        response = client.post(api.url + "/x", content=b"payload")
        assert response.status_code == 200 and response.json()["body"] == "payload"
        assert [r.status_code for r in response.history] == [401]
        refused = client.get(api.url + "/trade")
        assert refused.status_code == 403 and refused.history == []


def test_httpx_adapter_async(api: Api, keys: Keys) -> None:
    current = CurrentKey(keys.store, CRED, refresh_interval=3600)
    current.get()
    api.rotate()

    async def main() -> httpx.Response:
        async with httpx.AsyncClient(auth=HttpxAuth(current)) as client:
            return await client.post(api.url + "/x", content=b"payload")

    response = asyncio.run(main())
    assert response.status_code == 200 and response.json()["body"] == "payload"
    assert [r.status_code for r in response.history] == [401]


# -- ASGI, called directly ----------------------------------------------------


def _asgi(ring: KeyRing, **kw: Any) -> tuple[KeyRingMiddleware, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    return KeyRingMiddleware(app, ring, **kw), seen


def _call(app: KeyRingMiddleware, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def _http(headers: list[tuple[bytes, bytes]], path: str = "/x") -> dict[str, Any]:
    return {
        "type": "http",
        "path": path,
        "headers": headers,
        "client": ("10.1.2.3", 5555),
        "state": {},
    }


def test_asgi_middleware(keys: Keys) -> None:
    value, version = keys.current(CRED, scopes=["read"])
    ring = KeyRing(VerifierView(keys.store), CRED, start=False)
    app, seen = _asgi(ring, exempt=["/health"])
    sent = _call(app, _http([(b"authorization", f"Bearer {value}".encode())]))
    assert sent[0]["status"] == 200
    assert seen[-1][SCOPE_KEY].version_id == version.version_id
    assert seen[-1]["state"]["rotatectl"] is seen[-1][SCOPE_KEY]
    stateless = _http([(b"x-api-key", value.encode())])
    del stateless["state"]
    assert _call(app, stateless)[0]["status"] == 200
    assert seen[-1]["state"] == {"rotatectl": seen[-1][SCOPE_KEY]}
    assert "state" not in stateless  # the server's scope is not mutated
    sent = _call(app, _http([(b"X-Api-Key", value.encode())]))
    assert sent[0]["status"] == 200
    sent = _call(app, _http([]))
    assert sent[0]["status"] == 401
    assert json.loads(sent[1]["body"]) == {"error": "unauthorized", "reason": "missing"}
    assert dict(sent[0]["headers"])[b"www-authenticate"].startswith(b"Bearer ")
    sent = _call(app, _http([(b"authorization", b"Bearer nope")]))
    assert json.loads(sent[1]["body"])["reason"] == "malformed"
    assert _call(app, _http([], path="/health"))[0]["status"] == 200
    lifespan = {"type": "lifespan"}
    _call(app, lifespan)
    assert seen[-1] is lifespan
    socket = {**_http([]), "type": "websocket"}
    assert _call(app, socket) == [{"type": "websocket.close", "code": 1008, "reason": "missing"}]
    scoped, _ = _asgi(ring, scope="trade")
    sent = _call(scoped, _http([(b"x-api-key", value.encode())]))
    assert sent[0]["status"] == 403
    assert json.loads(sent[1]["body"]) == {"error": "forbidden", "reason": "wrong-scope"}


def test_asgi_middleware_custom_headers(keys: Keys) -> None:
    value, _ = keys.current(CRED)
    ring = KeyRing(keys.store, CRED, start=False)
    app, _ = _asgi(ring, headers=KeyHeaders(scheme="Token", header=None))
    assert _call(app, _http([(b"authorization", f"Token {value}".encode())]))[0]["status"] == 200
    assert _call(app, _http([(b"x-api-key", value.encode())]))[0]["status"] == 401
    assert _call(app, _http([(b"authorization", f"Bearer {value}".encode())]))[0]["status"] == 401


def test_key_headers() -> None:
    headers = KeyHeaders()
    assert headers.extract("Bearer  abc ", None) == "abc"
    assert headers.extract("bearer abc", "def") == "abc"
    assert headers.extract("Basic abc", "def") == "def"
    assert headers.extract(None, " ") is None
    assert KeyHeaders(scheme=None).extract("Bearer abc", None) is None
