"""Usage probe that asks an HTTP endpoint (an API gateway's analytics) about each key id.

One GET per key id to ``url``, a template in which ``{key_id}``,
``{credential}``, ``{since}`` and ``{now}`` (ISO-8601 UTC) are replaced,
URL-quoted. The endpoint answers with a JSON object::

    {"last_seen": "2026-11-27T11:58:00Z" | null, "count": 12,
     "clients": ["10.0.0.7", "billing"], "rejected": 0}

``clients`` and ``rejected`` are optional. An endpoint that ignores
``{since}`` may count beyond the window; ``last_seen`` decides:

- ``last_seen`` in ``[since, now]``: SEEN (count at least 1);
- ``last_seen`` before ``since``: NOT_SEEN;
- ``last_seen`` after ``now`` (clock skew): SEEN at ``now``;
- ``last_seen`` null and ``count`` 0: NOT_SEEN;
- ``last_seen`` null and ``count`` > 0: SEEN at ``now`` (when is unknown: assume the worst);
- HTTP 404: UNKNOWN, because an unknown key id and a wrong URL look the same
  and only the first would be safe to call quiet;
- any other non-2xx, no answer, a timeout, or not the JSON above: ProbeError
  (retryable for 5xx, 429 and network errors).

Authentication: the token in the environment variable ``token_env`` goes in
the ``header`` (default ``Authorization``), after ``scheme`` (default
``Bearer`` for Authorization, none for other headers). The token is read
when a request is made, so a missing variable fails the probe (the gate
stays closed) rather than every command; ``rotatectl check`` reports it.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from ..durations import parse_duration
from ..errors import ProbeError
from ..model import KeyUsage, UsageStatus, iso, parse_iso
from ..registry import AdapterContext, check_settings

MAX_CLIENTS = 10
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
URL_FIELDS = frozenset({"key_id", "credential", "since", "now"})


class HttpProbe:
    """Asks ``url`` (a template) about each key id; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        header: str = "Authorization",
        scheme: str | None = None,
        token_env: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Raises ValueError for a URL template with unknown placeholders."""
        check_template(url, URL_FIELDS)
        self.url = url
        self.auth = Auth(header, scheme, token_env, env or {})
        self.timeout = timeout

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: ``url`` (required), ``header``, ``scheme``, ``token_env``,
        ``timeout`` (default ``10s``). ConfigError names the offending key."""
        check_settings(
            settings,
            ctx,
            {"url": str, "header": str, "scheme": str, "token_env": str, "timeout": str},
        )
        url = settings.get("url")
        if not url:
            raise ctx.error("url", "required: the endpoint, e.g. https://gw/usage?key={key_id}")
        try:
            check_template(url, URL_FIELDS)
            check_url(url)
        except ValueError as exc:
            raise ctx.error("url", str(exc)) from None
        auth = auth_settings(settings, ctx)
        return cls(url, timeout=timeout_setting(settings, ctx), **auth)

    def check_access(self) -> list[str]:
        """Problems ``rotatectl check`` should report (a missing token variable)."""
        return self.auth.problems()

    def usage(
        self, credential: str, key_ids: Sequence[str], since: datetime, now: datetime
    ) -> dict[str, KeyUsage]:
        """One request per key id; every id gets an answer.

        Raises ProbeError when the endpoint cannot be asked or answers nonsense.
        """
        since, now = _utc(since), _utc(now)
        values = {"credential": credential, "since": iso(since) or "", "now": iso(now) or ""}
        result: dict[str, KeyUsage] = {}
        for key_id in dict.fromkeys(key_ids):
            url = fill(self.url, {**values, "key_id": key_id}, quote=True)
            status, body = request_json(url, self.auth.headers(), self.timeout, "http probe")
            if status == 404:
                result[key_id] = KeyUsage(
                    status=UsageStatus.UNKNOWN,
                    detail="the endpoint answered 404 (an unknown key id or a wrong url)",
                )
                continue
            result[key_id] = _judge(body, since, now, redact(url))
        return result


def _judge(body: object, since: datetime, now: datetime, where: str) -> KeyUsage:
    """Turn the endpoint's answer into a KeyUsage (see the module docstring's table)."""

    def bad(why: str) -> ProbeError:
        return ProbeError(f"http probe: unexpected answer from {where}: {why}")

    if not isinstance(body, dict):
        raise bad("expected a JSON object")
    count = body.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise bad("count must be a non-negative integer")
    rejected = body.get("rejected", 0)
    if isinstance(rejected, bool) or not isinstance(rejected, int) or rejected < 0:
        raise bad("rejected must be a non-negative integer")
    clients = body.get("clients", [])
    if not isinstance(clients, list) or not all(isinstance(c, str) for c in clients):
        raise bad("clients must be a list of strings")
    raw_seen = body.get("last_seen")
    if raw_seen is not None and not isinstance(raw_seen, str):
        raise bad("last_seen must be an ISO-8601 time or null")
    try:
        last_seen = parse_iso(raw_seen)
    except ValueError:
        raise bad("last_seen must be an ISO-8601 time or null") from None
    note = ""
    if last_seen is None:
        if count == 0:
            return KeyUsage(status=UsageStatus.NOT_SEEN)
        last_seen, note = now, "no last_seen in the answer: taken as now"
    elif last_seen < since:
        return KeyUsage(status=UsageStatus.NOT_SEEN)
    elif last_seen > now:
        last_seen, note = now, "last seen after now (clock skew?): taken as now"
    named = sorted({c for c in clients if c})
    notes = [note] if note else []
    if len(named) > MAX_CLIENTS:
        notes.append(f"more than {MAX_CLIENTS} clients")
    count = max(count, 1)
    return KeyUsage(
        status=UsageStatus.SEEN,
        last_seen=last_seen.astimezone(UTC),
        count=count,
        clients=tuple(named[:MAX_CLIENTS]),
        rejected=min(rejected, count),
        detail="; ".join(notes),
    )


# -- shared by the HTTP-based probes (this one and prometheus) ---------------------------------


class Auth:
    """An optional auth header whose token is read from the environment when used."""

    def __init__(
        self, header: str, scheme: str | None, token_env: str | None, env: Mapping[str, str]
    ) -> None:
        self.header = header
        self.scheme = (
            ("Bearer" if header.lower() == "authorization" else "") if scheme is None else scheme
        )
        self.token_env = token_env
        self.env = env

    def problems(self) -> list[str]:
        if self.token_env and not self.env.get(self.token_env):
            return [f"environment variable {self.token_env} (token_env) is not set"]
        return []

    def headers(self) -> dict[str, str]:
        """The header to send; ProbeError if the token variable is not set."""
        if not self.token_env:
            return {}
        token = self.env.get(self.token_env)
        if not token:
            raise ProbeError(f"probe: environment variable {self.token_env} (token_env) is not set")
        return {self.header: f"{self.scheme} {token}" if self.scheme else token}


def auth_settings(settings: Mapping[str, Any], ctx: AdapterContext) -> dict[str, Any]:
    """Validate ``header``/``scheme``/``token_env``; keyword arguments for the probe."""
    header = settings.get("header", "Authorization")
    if not re.fullmatch(r"[A-Za-z0-9-]+", header):
        raise ctx.error("header", f"not a valid HTTP header name: {header!r}")
    token_env = settings.get("token_env")
    if token_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token_env):
        raise ctx.error("token_env", f"not an environment variable name: {token_env!r}")
    if "header" in settings and token_env is None:
        raise ctx.error("header", "has no effect without token_env")
    return {
        "header": header,
        "scheme": settings.get("scheme"),
        "token_env": token_env,
        "env": ctx.env,
    }


def timeout_setting(
    settings: Mapping[str, Any], ctx: AdapterContext, default: str = "10s"
) -> float:
    try:
        timeout = parse_duration(settings.get("timeout", default))
    except ValueError as exc:
        raise ctx.error("timeout", str(exc)) from None
    if timeout <= timedelta(0):
        raise ctx.error("timeout", "must be longer than 0s")
    return timeout.total_seconds()


def check_template(template: str, allowed: frozenset[str]) -> None:
    """ValueError unless every ``{name}`` in ``template`` is one of ``allowed``."""
    unknown = sorted(set(PLACEHOLDER.findall(template)) - allowed)
    if unknown:
        raise ValueError(
            f"unknown placeholder {{{unknown[0]}}} (known: {', '.join(sorted(allowed))})"
        )


def check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(PLACEHOLDER.sub("x", url))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http:// or https:// URL, got {redact(url)!r}")


def fill(template: str, values: Mapping[str, str], *, quote: bool) -> str:
    """Replace the placeholders in one pass (so a value cannot inject another)."""

    def one(match: re.Match[str]) -> str:
        value = values[match.group(1)]
        return urllib.parse.quote(value, safe="") if quote else value

    return PLACEHOLDER.sub(one, template)


def redact(url: str) -> str:
    """The URL without user info, query or fragment: fit for an error message."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return urllib.parse.urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def request_json(
    url: str,
    headers: Mapping[str, str],
    timeout: float,
    who: str,
    data: bytes | None = None,
    *,
    explain: bool = False,
) -> tuple[int, Any]:
    """GET (or POST ``data`` as a form) and decode JSON: (status, body).

    A 404 returns (404, None). Any other non-2xx, a network error, a timeout
    or a body that is not JSON raises ProbeError naming ``who`` and the
    redacted URL (never a header), retryable when a retry may help. With
    ``explain``, an ``{"error": ...}`` body's message is added (Prometheus
    says what is wrong with a query that way).
    """
    where = redact(url)
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked at config time
        url,
        data=data,
        headers={"Accept": "application/json", "User-Agent": "rotatectl", **headers},
    )
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return 404, None
        detail = _error_detail(exc) if explain else ""
        retry = exc.code >= 500 or exc.code == 429
        raise ProbeError(
            f"{who}: {where} answered HTTP {exc.code}{detail}", retryable=retry
        ) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ProbeError(f"{who}: cannot reach {where}: {reason}", retryable=True) from exc
    try:
        return status, json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ProbeError(f"{who}: {where} did not answer JSON") from exc


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """Prometheus-style ``{"error": ...}`` bodies say what was wrong (e.g. a bad query)."""
    try:
        body = json.loads(exc.read(4096))
    except (ValueError, OSError, RecursionError):
        return ""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return f": {body['error'][:300]}"
    return ""


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
