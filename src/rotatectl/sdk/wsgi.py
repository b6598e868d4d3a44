"""WSGI middleware: only requests with an accepted key reach the app.

    app = KeyRingWSGIMiddleware(app, keyring)                  # any key of the ring
    app = KeyRingWSGIMiddleware(app, keyring, scope="trade")   # and it must grant "trade"

The key is read from ``Authorization: Bearer <key>`` or ``X-Api-Key`` (see
:class:`KeyHeaders`). A rejected request gets 401 (403 for a missing scope)
with a JSON body ``{"error": ..., "reason": ...}``; an accepted one reaches
the app with the :class:`Verification` in ``environ["rotatectl.verification"]``.
The client in the usage record is ``REMOTE_ADDR``. No framework is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

from .keyring import MISSING, KeyHeaders, KeyRing, Rejection, Result, challenge, rejection_body

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

ENVIRON_KEY = "rotatectl.verification"

_STATUS = {401: "401 Unauthorized", 403: "403 Forbidden"}


class KeyRingWSGIMiddleware:
    """Verifies each request with ``keyring``.

    ``scope``: a scope every key must grant. ``headers``: where the key is
    read. ``exempt``: paths (``PATH_INFO``) served without a key.
    """

    def __init__(
        self,
        app: WSGIApp,
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
        plain = self.headers.header
        self._plain_var = "HTTP_" + plain.upper().replace("-", "_") if plain else None

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in self.exempt:
            return self.app(environ, start_response)
        key = self.headers.extract(
            environ.get("HTTP_AUTHORIZATION"),
            environ.get(self._plain_var) if self._plain_var else None,
        )
        result: Result = (
            MISSING
            if key is None
            else self.keyring.verify(
                key, scope=self.required_scope, client=environ.get("REMOTE_ADDR")
            )
        )
        if isinstance(result, Rejection):
            body = rejection_body(result)
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            if result.http_status == 401:
                headers.append(("WWW-Authenticate", challenge(self.headers, result)))
            start_response(_STATUS[result.http_status], headers)
            return [body]
        environ[ENVIRON_KEY] = result
        return self.app(environ, start_response)
