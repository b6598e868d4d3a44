"""The ``http`` issuer: the plug-in protocol as signed HTTPS requests (issue 20), for
teams that run a small rotation endpoint in front of their own admin API.

Each operation is one POST of the protocol's JSON request
(:mod:`rotatectl.issuers.protocol`) to ``url``, where ``{operation}`` is replaced by
the operation's name (``https://admin.internal/rotatectl/{operation}``); the reply is
the protocol's JSON in a 200 response. Headers:

- ``X-Rotatectl-Timestamp``: the Unix time of the request, in seconds;
- ``X-Rotatectl-Signature: sha256=<hex>``: HMAC-SHA256, with the secret read from the
  environment variable ``secret_env``, of ``<timestamp>.<body>`` (the exact bytes).
  The endpoint recomputes it, compares in constant time, and refuses a timestamp more
  than a few minutes old (a replayed request).

``https://`` is required, except to a loopback address (a sidecar, the tests).
Redirects are not followed. Connection errors, timeouts, 429 and 5xx are retryable
IssuerErrors (the engine tries again with backoff); any other status is one line
naming the host, the operation and the status: never the URL's path or query, the
secret or a body.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Self

from ..errors import IssuerError
from ..notifiers.base import host_of
from ..notifiers.webhook import ENV_NAME, Permanent, Transient, post
from ..registry import AdapterContext, check_settings, positive_seconds
from .protocol import ProtocolIssuer


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Rotatectl-Signature`` value of a request."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class HttpTransport:
    """POSTs each request, signed (see the module docstring)."""

    def __init__(
        self,
        url: str,
        secret: Callable[[], str],
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._secret = secret
        self.timeout = timeout
        self._clock = clock
        self.where = host_of(url)  # https://host[:port]: never the path or query

    def __repr__(self) -> str:  # the URL's path may hold a token
        return f"HttpTransport({host_of(self.url)})"

    def exchange(self, credential: str, operation: str, body: bytes) -> bytes:
        """The 200 response's body. IssuerError on any other answer; retryable for no
        answer, 429 and 5xx."""
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            "X-Rotatectl-Timestamp": timestamp,
            "X-Rotatectl-Signature": sign(self._secret(), timestamp, body),
            "X-Rotatectl-Operation": operation,
        }
        url = self.url.replace("{operation}", operation)
        try:
            return post(url, body, headers, self.timeout)
        except Transient as exc:
            raise IssuerError(
                f"{credential}: {self.where}: {operation}: {exc.status}", retryable=True
            ) from None
        except Permanent as exc:
            raise IssuerError(f"{credential}: {self.where}: {operation}: {exc.status}") from None


class HttpIssuer(ProtocolIssuer):
    """The protocol over signed HTTPS POSTs."""

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: ``url`` (required; ``{operation}`` in it is replaced by the
        operation), ``secret_env`` (required: the environment variable holding the HMAC
        secret), ``timeout`` (default ``10s``). ConfigError names the offending key."""
        check_settings(settings, ctx, {"url": str, "secret_env": str, "timeout": str})
        url = settings.get("url")
        if not url:
            raise ctx.error(
                "url", "required: the endpoint, e.g. https://admin.internal/{operation}"
            )
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ctx.error("url", f"expected an https:// URL, got {host_of(url)}")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ctx.error(
                "url",
                f"{host_of(url)}: keys travel in the replies: use https:// (http:// "
                "only to a loopback address)",
            )
        variable = settings.get("secret_env")
        if not variable or not ENV_NAME.fullmatch(variable):
            raise ctx.error(
                "secret_env", "required: the environment variable holding the HMAC secret"
            )
        env = ctx.env
        if not env.get(variable):
            raise ctx.error("secret_env", f"${variable} is not set: it must hold the HMAC secret")
        timeout = positive_seconds(settings, ctx, "timeout", "10s")
        return cls(HttpTransport(url, lambda: env[variable], timeout=timeout))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
