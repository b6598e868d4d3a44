"""``requests`` auth for :class:`CurrentKey` (the ``rotatectl[requests]`` extra).

    session.auth = CurrentKeyAuth(CurrentKey(store, "partners/acme"))
    # a JSON secret (format = "json"): send the key in its "api_key" field
    session.auth = CurrentKeyAuth(CurrentKey(store, "partners/db", field="api_key"))

Every request carries the current key; on a 401/403 the key is refreshed once
and, if it changed, the request is sent once more (as ``HTTPDigestAuth``
resends after its challenge: the first response is in ``history``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

try:
    from requests.auth import AuthBase
    from requests.models import PreparedRequest, Response
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "rotatectl.sdk.requests_auth needs requests: pip install 'rotatectl[requests]'"
    ) from exc

from .client import CurrentKey, _same


class CurrentKeyAuth(AuthBase):
    """Sets ``header`` to ``"<scheme> <key>"`` (or the bare key when ``scheme``
    is None) on each request; retries once with a fresh key on a status in
    ``retry_on``. The key is ``current``'s: for a JSON secret, the string in
    the field its ``field`` names, never the document."""

    def __init__(
        self,
        current: CurrentKey,
        *,
        header: str = "Authorization",
        scheme: str | None = "Bearer",
        retry_on: Collection[int] = (401, 403),
    ) -> None:
        self.current = current
        self.header = header
        self.scheme = scheme
        self.retry_on = frozenset(retry_on)

    def __repr__(self) -> str:
        return f"CurrentKeyAuth({self.current!r}, header={self.header!r})"

    def _apply(self, request: PreparedRequest, key: str) -> None:
        request.headers[self.header] = f"{self.scheme} {key}" if self.scheme else key

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        key = self.current.get()
        self._apply(r, key)
        tell = getattr(r.body, "tell", None)
        r.register_hook("response", _RetryHook(self, key, tell() if tell else None))
        return r


class _RetryHook:
    """The response hook of one request: knows which key it sent."""

    def __init__(self, auth: CurrentKeyAuth, key: str, body_position: int | None) -> None:
        self.auth = auth
        self.key = key
        self.body_position = body_position

    def __call__(self, response: Response, **kwargs: Any) -> Response:
        auth = self.auth
        if response.status_code not in auth.retry_on:
            return response
        fresh = auth.current.on_auth_failure(self.key)
        if _same(fresh, self.key):
            return response
        request = response.request
        if not isinstance(request, PreparedRequest):  # pragma: no cover - requests invariant
            return response
        if request.body is not None and not isinstance(request.body, bytes | str):
            seek = getattr(request.body, "seek", None)
            if seek is None or self.body_position is None:
                return response  # a stream already consumed cannot be sent again
            seek(self.body_position)
        # Consume and release the first response so the retry can reuse the connection.
        _ = response.content
        response.close()
        retry = request.copy()
        # copy() shares the hooks dict with the request being dispatched right
        # now: give the retry its own, without this hook (retry once, not forever).
        retry.hooks = {
            event: [h for h in hooks if h is not self] for event, hooks in request.hooks.items()
        }
        auth._apply(retry, fresh)
        second: Response = response.connection.send(retry, **kwargs)
        second.history.append(response)
        second.request = retry
        return second
