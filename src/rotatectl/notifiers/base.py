"""What notifiers share: a base class with the optional access check's default,
and the helpers the built-in notifiers' checks use.

A notifier implements :class:`rotatectl.ports.Notifier` (``notify``); for
``rotatectl check`` it also answers :class:`rotatectl.ports.AccessCheck`
(``check_access``): one line per thing that would make a delivery fail now —
an unset variable, an endpoint that cannot be reached, a refused login —
found without sending an event. Subclassing :class:`NotifierBase` gives a
plug-in the default (no problems); the contract in
:mod:`rotatectl.testing.notifier_contract` expects a real check.

Problem lines never hold a secret: no token, no secret part of a URL (only
``scheme://host[:port]`` is shown), no HMAC secret, no password. Lines do not
repeat the notifier's name: ``check`` prints them after it.
"""

from __future__ import annotations

import socket
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping


class NotifierBase:
    """Base class for notifiers (a subclass adds ``notify``): ``check_access``
    defaults to "no problems"."""

    def check_access(self) -> list[str]:
        """One line per problem that would make delivery fail; [] by default."""
        return []


def host_of(url: str) -> str:
    """scheme://host[:port]: all of a URL a message may show (a path or query may
    hold a token, user info a password)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def failure(exc: BaseException, timeout: float) -> str:
    """A short reason for a failed connection, safe to show (no URL, no secret)."""
    if isinstance(exc, socket.gaierror):
        return f"host not found ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError):  # socket.timeout too
        return f"no answer within {timeout:g}s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def reach(host: str, port: int, timeout: float) -> str | None:
    """Open (and close) a TCP connection to ``host:port``: None when it works,
    else the reason (:func:`failure`). Nothing is sent."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:  # gaierror, refused, timeout, unreachable network
        return failure(exc, timeout)


def reach_url(url: str, timeout: float) -> str | None:
    """Reach the host and port an HTTP(S) POST to ``url`` would connect to — the
    proxy urllib would use, when one is set for it: None when it works, else a
    problem line naming only ``scheme://host[:port]`` of the URL (and proxy)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return f"cannot reach {host_of(url)}: not a valid port"
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy = proxy if "://" in proxy else f"http://{proxy}"
        via = urllib.parse.urlsplit(proxy)
        try:
            proxy_host, proxy_port = via.hostname or "", via.port or 80
        except ValueError:
            return f"cannot reach {host_of(url)}: proxy {host_of(proxy)} has no valid port"
        reason = reach(proxy_host, proxy_port, timeout)
        if reason:
            return f"cannot reach {host_of(url)} through proxy {host_of(proxy)}: {reason}"
        return None
    reason = reach(host, port, timeout)
    return f"cannot reach {host_of(url)}: {reason}" if reason else None


def unset(variables: Iterable[tuple[str, str | None]], env: Mapping[str, str]) -> list[str]:
    """Problem lines for the ``(setting, variable)`` pairs whose variable is unset."""
    return [
        f"environment variable {var} ({key}) is not set"
        for key, var in variables
        if var and not env.get(var)
    ]


def scrub(lines: Iterable[str], secrets: Iterable[str | None]) -> list[str]:
    """``lines`` with every non-empty secret replaced by ``***``: a second guard
    (the lines are built not to hold any) against a server echoing one back."""
    hidden = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
    out = []
    for line in lines:
        for secret in hidden:
            line = line.replace(secret, "***")
        out.append(" ".join(line.split()))  # one line each
    return out
