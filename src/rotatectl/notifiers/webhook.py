"""Notifier that POSTs each event as JSON to a URL, HMAC-signed.

The body is ``Event.to_dict()`` as compact JSON with sorted keys. Headers:

- ``X-Rotatectl-Signature: sha256=<hex>``: HMAC-SHA256 of the exact body
  bytes with the secret read from the environment variable ``secret_env``
  (omitted when no ``secret_env`` is configured). Receivers recompute it over
  the raw body and compare in constant time.
- ``X-Rotatectl-Event``: the event kind; ``X-Rotatectl-Delivery``: an id
  that stays the same across retries of one event, so receivers can drop
  duplicates.

Connection errors, timeouts, HTTP 5xx and 429 are retried ``retries`` times
with exponential backoff and jitter (honouring ``Retry-After`` up to the
backoff cap); redirects are not followed. A final failure raises
NotifierError naming the notifier, the host and the status, never the
secret, the full URL (it may hold a token) or the body.

The delivery helpers here are shared with the Slack notifier.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Self

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from ..errors import NotifierError
from ..model import Event
from ..registry import AdapterContext, check_settings, positive_seconds
from .base import NotifierBase, host_of, reach_url, scrub, unset

MAX_WAIT = 8.0  # seconds: cap of one backoff sleep
MAX_TOTAL = 60.0  # seconds: no more retries once this much time has passed
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Permanent(Exception):
    """A delivery failure another try will not fix (4xx, a refused message).

    ``status`` is safe to show (a status code, a reason); ``attempts`` is set by
    :func:`deliver`.
    """

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status
        self.attempts = 1

    def describe(self) -> str:
        tries = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        return f"{self.status} (after {tries})"


class Transient(Permanent):
    """A delivery failure worth another try (network, timeout, 5xx, 429)."""

    def __init__(self, status: str, retry_after: float | None = None) -> None:
        super().__init__(status)
        self.retry_after = retry_after


def deliver(send: Callable[[], object], *, attempts: int, sleep: Callable[[float], None]) -> int:
    """Call ``send`` until it succeeds, retrying Transient failures with bounded backoff.

    Returns the number of attempts made. Raises the last Transient or the
    first Permanent failure, with ``attempts`` set to the number of tries.
    """
    tries = 0

    def attempt() -> None:
        nonlocal tries
        tries += 1
        try:
            send()
        except Permanent as exc:  # Transient too
            exc.attempts = tries
            raise

    backoff = wait_exponential(multiplier=0.5, max=MAX_WAIT) + wait_random(0, 0.5)

    def wait(state: RetryCallState) -> float:
        delay = backoff(state)
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, Transient) and failure.retry_after is not None:
            delay = max(delay, min(failure.retry_after, MAX_WAIT))
        return delay

    Retrying(
        stop=stop_after_attempt(attempts) | stop_after_delay(MAX_TOTAL),
        wait=wait,
        retry=retry_if_exception_type(Transient),
        sleep=sleep,
        reraise=True,
    )(attempt)
    return tries


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib turns a redirected POST into a GET without the body: refuse instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> bytes:
    """POST once; return the response body. Raises Transient or Permanent."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310 - scheme checked at config time
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        status = f"HTTP {exc.code}"
        if exc.code == 429 or exc.code >= 500:
            raise Transient(status, _retry_after(exc.headers.get("Retry-After"))) from exc
        raise Permanent(status) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise Transient(f"no answer: {reason}") from exc


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the capped backoff will do


def check_url(url: object, ctx: AdapterContext, key: str) -> str:
    """The URL if it is http(s) with a host, else ConfigError naming ``key``."""
    if not isinstance(url, str) or not url:
        raise ctx.error(key, "required: the URL to POST events to")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ctx.error(key, f"expected an http:// or https:// URL, got {host_of(url)}")
    return url


def env_name(settings: Mapping[str, Any], ctx: AdapterContext, key: str) -> str | None:
    """An environment variable name setting, validated (ConfigError names ``key``)."""
    value = settings.get(key)
    if value is not None and not ENV_NAME.fullmatch(value):
        raise ctx.error(key, f"not an environment variable name: {value!r}")
    return value


def delivery_settings(settings: Mapping[str, Any], ctx: AdapterContext) -> dict[str, Any]:
    """``timeout`` (default 5s) and ``retries`` (default 3) as constructor arguments."""
    timeout = positive_seconds(settings, ctx, "timeout", "5s")
    retries = settings.get("retries", 3)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        raise ctx.error("retries", "expected a whole number from 0 to 10")
    return {"timeout": timeout, "retries": retries}


def serialise(event: Event) -> bytes:
    """The canonical body: compact JSON, sorted keys. Raises NotifierError if impossible."""
    try:
        text = json.dumps(event.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError, RecursionError) as exc:
        raise NotifierError(f"cannot serialise the {event.kind} event: {exc}") from exc
    return text.encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    """The X-Rotatectl-Signature header value for ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def url_secrets(url: str) -> list[str]:
    """The parts of ``url`` that may hold a token or password (path, query, user info)."""
    parts = urllib.parse.urlsplit(url)
    return [parts.path, parts.query, parts.fragment, parts.netloc.rpartition("@")[0]]


class WebhookNotifier(NotifierBase):
    """POSTs each event as signed JSON; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        secret_env: str | None = None,
        env: Mapping[str, str] | None = None,
        name: str = "webhook",
        timeout: float = 5.0,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.secret_env = secret_env
        self.env = env if env is not None else {}
        self.name = name
        self.timeout = timeout
        self.attempts = retries + 1
        self.sleep = sleep

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: ``url`` (required), ``secret_env``, ``timeout`` (default 5s),
        ``retries`` (default 3). ConfigError names the offending key."""
        check_settings(
            settings, ctx, {"url": str, "secret_env": str, "timeout": str, "retries": int}
        )
        return cls(
            check_url(settings.get("url"), ctx, "url"),
            secret_env=env_name(settings, ctx, "secret_env"),
            env=ctx.env,
            name=ctx.table,
            **delivery_settings(settings, ctx),
        )

    def check_access(self) -> list[str]:
        """Problems ``rotatectl check`` should report, found without posting: an
        unset ``secret_env`` variable, an endpoint (or proxy) that cannot be
        reached within the timeout. Lines show only scheme://host[:port]."""
        problems = unset([("secret_env", self.secret_env)], self.env)
        unreachable = reach_url(self.url, self.timeout)
        if unreachable:
            problems.append(unreachable)
        secret = self.env.get(self.secret_env) if self.secret_env else None
        return scrub(problems, [*url_secrets(self.url), secret])

    def notify(self, event: Event) -> None:
        """POST the event. Raises NotifierError once retries are exhausted."""
        where = f"webhook notifier {self.name}"
        body = serialise(event)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "rotatectl",
            "X-Rotatectl-Event": event.kind,
            "X-Rotatectl-Delivery": uuid.uuid4().hex,
        }
        if self.secret_env:
            secret = self.env.get(self.secret_env)
            if not secret:
                # Never send unsigned what the receiver expects signed.
                raise NotifierError(
                    f"{where}: environment variable {self.secret_env} (secret_env) is not set"
                )
            headers["X-Rotatectl-Signature"] = signature(secret, body)
        try:
            deliver(
                lambda: post(self.url, body, headers, self.timeout),
                attempts=self.attempts,
                sleep=self.sleep,
            )
        except Permanent as exc:
            raise NotifierError(
                f"{where}: {event.kind} event not delivered to {host_of(self.url)}:"
                f" {exc.describe()}"
            ) from exc
