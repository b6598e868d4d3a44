"""Adapter discovery through entry points.

Built-ins register in the same groups a third-party plugin uses
(``rotatectl.stores``, ``rotatectl.issuers``, ``rotatectl.probes``,
``rotatectl.notifiers``). Every adapter class offers::

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self

which validates ``settings`` (the config table minus ``type``) and raises
ConfigError naming ``ctx.table`` and the offending key.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

GROUPS = {
    "store": "rotatectl.stores",
    "issuer": "rotatectl.issuers",
    "probe": "rotatectl.probes",
    "notifier": "rotatectl.notifiers",
}

# Fallback for running from a source tree that was not installed (no entry points).
# Test doubles (rotatectl.testing) are not adapters: tests construct them themselves.
_BUILTINS = {
    "store": {
        "local": "rotatectl.stores.local:LocalStore",
        "aws-secretsmanager": "rotatectl.stores.aws:SecretsManagerStore",
        "aws-ssm": "rotatectl.stores.ssm:ParameterStore",
        "vault": "rotatectl.stores.vault:VaultStore",
    },
    "issuer": {
        "generated": "rotatectl.issuers.generated:GeneratedIssuer",
        "aws-iam": "rotatectl.issuers.aws_iam:IamIssuer",
        "aws-apigateway": "rotatectl.issuers.aws_apigateway:ApiGatewayIssuer",
        "postgres": "rotatectl.issuers.postgres:PostgresIssuer",
        "redis": "rotatectl.issuers.redis:RedisIssuer",
        "mysql": "rotatectl.issuers.mysql:MySQLIssuer",
        "command": "rotatectl.issuers.command:CommandIssuer",
        "http": "rotatectl.issuers.http:HttpIssuer",
        "manual": "rotatectl.issuers.manual:ManualIssuer",
    },
    "probe": {
        "none": "rotatectl.probes.none:NoProbe",
        "access-log": "rotatectl.probes.access_log:AccessLogProbe",
        "aws-iam": "rotatectl.probes.aws_iam:IamLastUsedProbe",
        "postgres": "rotatectl.probes.postgres:PostgresSessionsProbe",
        "redis": "rotatectl.probes.redis:RedisClientsProbe",
        "mysql": "rotatectl.probes.mysql:MySQLSessionsProbe",
        "prometheus": "rotatectl.probes.prometheus:PrometheusProbe",
        "http": "rotatectl.probes.http:HttpProbe",
    },
    "notifier": {
        "log": "rotatectl.notifiers.log:LogNotifier",
        "webhook": "rotatectl.notifiers.webhook:WebhookNotifier",
        "slack": "rotatectl.notifiers.slack:SlackNotifier",
        "email": "rotatectl.notifiers.email:EmailNotifier",
    },
}


@dataclass(frozen=True)
class AdapterContext:
    """What an adapter may need to build itself from its config table.

    ``table`` names the config table for error messages (e.g. ``stores.aws``);
    ``base_dir`` is the directory relative paths resolve against (the config
    file's directory, or the working directory); ``state_dir`` is where local
    state lives by default, and ``state_hint`` what to set when it cannot be used
    (for error messages: "set ROTATECTL_STATE_DIR to a directory this user can write").
    """

    table: str
    base_dir: Path
    state_dir: Path
    config_file: Path | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    state_hint: str = "set ROTATECTL_STATE_DIR to a directory this user can write"
    # The current value of another credential of the config, by name, read when called
    # (an admin connection that rotatectl manages too); None: not available here.
    credential_value: Callable[[str], str] | None = None

    def error(self, key: str | None, message: str) -> ConfigError:
        """A ConfigError naming the file, the table and the key."""
        where = str(self.config_file) if self.config_file else "defaults"
        at = f"[{self.table}]" + (f" {key}" if key else "")
        return ConfigError(f"{where}: {at}: {message}")


def is_builtin(kind: str, type_name: str) -> bool:
    """Whether ``type_name`` is one of rotatectl's own adapters of ``kind`` (always installed)."""
    return type_name in _BUILTINS[kind]


def available(kind: str) -> dict[str, str]:
    """Adapter type name -> 'module:attr' for ``kind`` (store/issuer/probe/notifier)."""
    return dict(_scan(kind))


@functools.cache
def _scan(kind: str) -> tuple[tuple[str, str], ...]:
    from importlib.metadata import entry_points  # costly at start-up; only when asked

    found = dict(_BUILTINS[kind])
    for ep in entry_points(group=GROUPS[kind]):
        found[ep.name] = ep.value
    return tuple(sorted(found.items()))


def load(kind: str, type_name: str, ctx: AdapterContext) -> type[Any]:
    """Import the adapter class registered as ``type_name``. ConfigError if unknown."""
    builtin = _BUILTINS[kind].get(type_name)
    target = builtin
    if target is None:
        from importlib.metadata import entry_points

        for ep in entry_points(group=GROUPS[kind], name=type_name):
            target = ep.value
            break
    if target is None:
        known = ", ".join(available(kind))
        raise ctx.error("type", f"unknown {kind} type {type_name!r} (installed: {known})")
    module_name, _, attr = target.partition(":")
    try:
        module = __import__(module_name, fromlist=[attr])
        cls: type[Any] = getattr(module, attr)
    except ImportError as exc:
        from .extras import missing

        extra = missing(exc, f"{kind} type {type_name!r}")
        if extra is not None:
            raise ctx.error("type", str(extra)) from None
        raise ctx.error("type", f"{kind} type {type_name!r} cannot be loaded: {exc}") from exc
    return cls


def build(kind: str, settings: Mapping[str, Any], ctx: AdapterContext) -> Any:
    """Build an adapter from a config table that has a ``type`` key."""
    type_name = settings.get("type")
    if not isinstance(type_name, str):
        raise ctx.error("type", f"missing {kind} type")
    cls = load(kind, type_name, ctx)
    rest = {k: v for k, v in settings.items() if k != "type"}
    return cls.from_config(rest, ctx)


def check_settings(
    settings: Mapping[str, Any], ctx: AdapterContext, types: Mapping[str, type | tuple[type, ...]]
) -> None:
    """Reject keys not in ``types`` and values of the wrong type (ConfigError)."""
    for key, value in settings.items():
        if key not in types:
            allowed = ", ".join(sorted(types)) or "none"
            raise ctx.error(key, f"unknown key (allowed: {allowed})")
        expected = types[key]
        # bool is an int in Python; a number where a flag is expected is a mistake.
        wrong_bool = isinstance(value, bool) and expected in (int, float)
        if wrong_bool or not isinstance(value, expected):
            names = (
                "/".join(t.__name__ for t in expected)
                if isinstance(expected, tuple)
                else expected.__name__
            )
            raise ctx.error(key, f"expected {names}, got {type(value).__name__}")


def positive_seconds(
    settings: Mapping[str, Any], ctx: AdapterContext, key: str, default: str
) -> float:
    """The duration setting ``key`` (``default`` when absent) in seconds; ConfigError
    naming ``key`` when it is not a duration or not longer than 0s."""
    from .durations import parse_duration

    try:
        seconds = parse_duration(settings.get(key, default)).total_seconds()
    except ValueError as exc:
        raise ctx.error(key, str(exc)) from None
    if seconds <= 0:
        raise ctx.error(key, "must be longer than 0s")
    return seconds
