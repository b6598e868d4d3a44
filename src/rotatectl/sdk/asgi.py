"""ASGI middleware: only requests with an accepted key reach the app.

    app = KeyRingMiddleware(app, keyring)                  # any key of the ring
    app = KeyRingMiddleware(app, keyring, scope="trade")   # and it must grant "trade"

The key is read from ``Authorization: Bearer <key>`` or ``X-Api-Key`` (see
:class:`KeyHeaders`). A rejected HTTP request gets 401 (403 for a missing
scope) with a JSON body ``{"error": ..., "reason": ...}``; a rejected
WebSocket is closed before it is accepted. An accepted request reaches the
app with the :class:`Verification` in ``scope["rotatectl.verification"]``
and in ``scope["state"]["rotatectl"]`` (Starlette's ``request.state.rotatectl``).
No framework is needed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

from .keyring import MISSING, KeyHeaders, KeyRing, Rejection, challenge, rejection_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPE_KEY = "rotatectl.verification"


class KeyRingMiddleware:
    """Verifies each HTTP and WebSocket request with ``keyring``.

    ``scope``: a scope every key must grant. ``headers``: where the key is
    read. ``exempt``: paths served without a key (e.g. a health check).
    Lifespan and other scope types pass through untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
        keyring: KeyRing,
        *,
        scope: str | None = None,
        headers: KeyHeaders | None = None,
        exempt: Collection[str] = (),
    ) -> None:
        self.app = app
        self.keyring = keyring
        self.required_scope = scope
        self.headers = headers or KeyHeaders()
        self.exempt = frozenset(exempt)
        self._auth_name = b"authorization"
        self._plain_name = (self.headers.header or "").lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        authorization = plain = None
        for name, value in scope.get("headers", ()):
            lowered = bytes(name).lower()
            if lowered == self._auth_name:
                authorization = bytes(value).decode("latin-1")
            elif self._plain_name and lowered == self._plain_name:
                plain = bytes(value).decode("latin-1")
        key = self.headers.extract(authorization, plain)
        client = scope.get("client")
        host = str(client[0]) if client else None
        if key is None:
            result: Any = MISSING
        else:
            result = await self.keyring.averify(key, scope=self.required_scope, client=host)
        if isinstance(result, Rejection):
            await self._reject(kind, result, send)
            return
        scope = dict(scope)
        scope[SCOPE_KEY] = result
        # scope["state"] is what Starlette shows as request.state; copied, not
        # mutated, because servers share it between requests (lifespan state).
        state = scope.get("state")
        scope["state"] = {**(state if isinstance(state, dict) else {}), "rotatectl": result}
        await self.app(scope, receive, send)

    async def _reject(self, kind: str, rejection: Rejection, send: Send) -> None:
        if kind == "websocket":
            # Closing before accept makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008, "reason": rejection.reason})
            return
        body = rejection_body(rejection)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if rejection.http_status == 401:
            headers.append(
                (b"www-authenticate", challenge(self.headers, rejection).encode("latin-1"))
            )
        await send(
            {"type": "http.response.start", "status": rejection.http_status, "headers": headers}
        )
        await send({"type": "http.response.body", "body": body})
