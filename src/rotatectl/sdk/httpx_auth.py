"""``httpx`` auth for :class:`CurrentKey` (the ``rotatectl[httpx]`` extra).

    client = httpx.Client(auth=CurrentKeyAuth(CurrentKey(store, "partners/acme")))
    # a JSON secret (format = "json"): send the key in its "api_key" field
    current = CurrentKey(store, "partners/db", field="api_key")
    client = httpx.Client(auth=CurrentKeyAuth(current))

Works with ``httpx.Client`` and ``httpx.AsyncClient``: every request carries
the current key; on a 401/403 the key is refreshed once and, if it changed,
the request is sent once more. On an async client, store reads run in a
worker thread so the event loop is never blocked by the store.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection, Generator

try:
    import anyio.to_thread
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "rotatectl.sdk.httpx_auth needs httpx: pip install 'rotatectl[httpx]'"
    ) from exc

from .client import CurrentKey, _same


class CurrentKeyAuth(httpx.Auth):
    """Sets ``header`` to ``"<scheme> <key>"`` (or the bare key when ``scheme``
    is None) on each request; retries once with a fresh key on a status in
    ``retry_on``. The key is ``current``'s: for a JSON secret, the string in
    the field its ``field`` names, never the document."""

    requires_request_body = True  # so that the request can be sent a second time

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

    def _apply(self, request: httpx.Request, key: str) -> None:
        request.headers[self.header] = f"{self.scheme} {key}" if self.scheme else key

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        key = self.current.get()
        self._apply(request, key)
        response = yield request
        if response.status_code in self.retry_on:
            fresh = self.current.on_auth_failure(key)
            if not _same(fresh, key):
                self._apply(request, fresh)
                yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        key = self.current.cached()
        if key is None:
            key = await anyio.to_thread.run_sync(self.current.get)
        self._apply(request, key)
        response = yield request
        if response.status_code in self.retry_on:
            fresh = await anyio.to_thread.run_sync(self.current.on_auth_failure, key)
            if not _same(fresh, key):
                self._apply(request, fresh)
                yield request
