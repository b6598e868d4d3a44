"""Load and validate ``rotatectl.toml`` (DESIGN.md section 4, "Config file").

Hand-written checks on stdlib ``tomllib`` rather than a schema library: the CLI
starts on every cron tick, so import time matters. Every failure is a single
line ``<file>: [<table>] <key>: <problem>`` raised as ConfigError. Adapter
settings are only carried here; each adapter's ``from_config`` checks them.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import registry
from .durations import format_duration, parse_duration
from .errors import ConfigError, UnknownCredentialError, UsageError
from .files import denied, reason
from .model import OnStillUsed, Policy
from .registry import AdapterContext
from .schedule import Window, parse_window
from .secretformat import BARE, FORMATS, SecretFormat
from .stores.rules import path_problem

if TYPE_CHECKING:
    # Imported where used: status never needs the audit log, hooks or HTTP tests.
    from .audit import AuditLog
    from .hooks import HookSpec
    from .pretest import PrePromotionTest

CONFIG_NAME = "rotatectl.toml"
# What to set when the state directory cannot be used, by where it came from.
_STATE_HINT = "set ROTATECTL_STATE_DIR to a directory this user can write"
_XDG_STATE_HINT = "set XDG_STATE_HOME or ROTATECTL_STATE_DIR to a directory this user can write"

_TOP_LEVEL = ("audit", "credentials", "defaults", "notifiers", "stores")
_DURATION_KEYS = (
    "propagation",
    "overlap",
    "max_age",
    "usage_quiet",
    "max_overlap",
    "retain",
    "recheck",
    "rejection_window",
    "backoff",
    "backoff_max",
    "renew_before",
)
_POLICY_KEYS = (
    *_DURATION_KEYS,
    "window",
    "on_still_used",
    "keep_previous",
    "unknown_usage",
    "rollback_on_rejections",
)
_DEFAULTS_KEYS = frozenset((*_POLICY_KEYS, "store", "issuer", "usage", "notify"))
_CREDENTIAL_KEYS = frozenset(
    (
        *_POLICY_KEYS,
        *("store", "path", "issuer", "usage", "scopes", "notify", "hooks", "test"),
        *("format", "field", "static"),
    )
)
_HOOK_KEYS = frozenset(("on_promote", "on_retire", "on_failure", "if_failed", "timeout"))
_TEST_KEYS = frozenset(
    (
        "url",
        "urls",
        "method",
        "header",
        "value",
        "expect",
        "passes",
        "interval",
        "deadline",
        "timeout",
    )
)
_UNKNOWN_USAGE = {"busy": False, "quiet": True}

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

# TOML's own names for value types: the user wrote TOML, not Python.
_TOML_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "array"),
    (dict, "table"),
    (datetime, "datetime"),
    (date, "date"),
    (time, "time"),
)


def _toml_type(value: object) -> str:
    for py_type, name in _TOML_TYPES:
        if isinstance(value, py_type):
            return name
    return type(value).__name__


@dataclass(frozen=True)
class AdapterSpec:
    """An adapter table: its ``type``, the other keys, and where it was written."""

    type: str
    settings: dict[str, Any]
    table: str


@dataclass(frozen=True)
class CredentialConfig:
    """One credential, declared in ``[credentials."NAME"]`` or built from the defaults."""

    name: str
    stores: tuple[str, ...]
    path: str
    issuer: AdapterSpec
    usage: AdapterSpec
    policy: Policy
    scopes: tuple[str, ...]
    notify: tuple[str, ...]
    declared: bool
    hooks: HookSpec | None = None
    pretest: PrePromotionTest | None = None
    secret_format: SecretFormat = BARE  # a bare key, or a JSON document with the key in a field


@dataclass(frozen=True)
class Config:
    """The validated configuration. Adapters are not built here, only described."""

    file: Path | None
    base_dir: Path
    state_dir: Path
    defaults: Policy
    default_store: str
    default_issuer: AdapterSpec
    default_usage: AdapterSpec
    default_notify: tuple[str, ...]
    stores: dict[str, AdapterSpec]
    notifiers: dict[str, AdapterSpec]
    credentials: dict[str, CredentialConfig]
    audit_path: Path | None = None  # None: <state_dir>/audit.jsonl
    audit_key_env: str = "ROTATECTL_AUDIT_KEY"
    looked_at: tuple[Path, ...] = ()  # where a config file was looked for, when none was found
    state_hint: str = _STATE_HINT  # what to set when the state directory is unusable
    # The local store the config did not declare (always there, for a file-less setup).
    implicit_local: bool = False
    # Kept out of repr and equality: the environment may hold secrets.
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def credential(self, name: str, *, allow_adhoc: bool = True) -> CredentialConfig:
        """Declared credential, or an ad hoc one from the defaults when none is declared.

        Once the file declares any credential, an undeclared name is an error
        (with close matches) so that a typo never rotates a fresh, unused key.
        """
        found = self.credentials.get(name)
        if found is not None:
            return found
        validate_name(name)
        where = str(self.file) if self.file else "the defaults (no config file)"
        if self.credentials:
            import difflib  # only on this error path: keeps start-up fast

            close = difflib.get_close_matches(name, list(self.credentials), n=3, cutoff=0.6)
            hint = f" (did you mean: {', '.join(close)}?)" if close else ""
            raise UnknownCredentialError(
                f"unknown credential {name!r}: not declared in {where}{hint}"
            )
        if not allow_adhoc:
            raise UnknownCredentialError(
                f"unknown credential {name!r}: no credentials are declared in {where}"
            )
        return CredentialConfig(
            name=name,
            stores=(self.default_store,),
            path=name,
            issuer=self.default_issuer,
            usage=self.default_usage,
            policy=self.defaults,
            scopes=(),
            notify=self.default_notify,
            declared=False,
        )

    @property
    def audit_file(self) -> Path:
        """Where the audit log is written."""
        return self.audit_path or self.state_dir / "audit.jsonl"

    def source(self) -> str:
        """The config file, or that none was found and where it was looked for."""
        if self.file is not None:
            return str(self.file)
        places = ", ".join(str(p) for p in self.looked_at)
        return f"none found (looked at {places})" if places else "none found"

    def used_stores(self) -> list[str]:
        """The stores ``check`` reaches: every declared one, and the implicit local
        store only when something uses it (the default store, or a credential's)."""
        used = {self.default_store, *(s for c in self.credentials.values() for s in c.stores)}
        return sorted(
            n for n in self.stores if n in used or not (n == "local" and self.implicit_local)
        )

    def audit_log(self, via: str = "api") -> AuditLog:
        """The audit log this config names; HMAC-keyed when its key variable is set.
        ``via`` names who writes (the CLI subcommand) in each record's actor."""
        from .audit import AuditLog

        key = self.env.get(self.audit_key_env)
        return AuditLog(self.audit_file, key.encode() if key else None, via)

    def context(self, table: str) -> AdapterContext:
        """The AdapterContext for building the adapter written at ``table``."""
        return AdapterContext(
            table=table,
            base_dir=self.base_dir,
            state_dir=self.state_dir,
            state_hint=self.state_hint,
            config_file=self.file,
            env=self.env,
        )


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid credential name, else raise UsageError.

    Names become store paths, so they follow the one rule every store applies
    (:func:`rotatectl.stores.rules.path_problem`): a safe character set, no
    ``.`` or ``..`` segment, no segment that a store uses for its own records.
    """
    problem = path_problem(name)
    if problem:
        raise UsageError(f"invalid credential name {name!r}: {problem}")
    return name


def _home(env: Mapping[str, str]) -> Path | None:
    """$HOME, or None when it is unset or empty (never guessed from the password
    database: a service without HOME must say where its state goes)."""
    home = env.get("HOME")
    return Path(home) if home else None


def _expand(raw: str | Path, env: Mapping[str, str], cwd: Path) -> Path:
    """``~`` from env's HOME (tests pass their own env), relative to ``cwd``.

    ConfigError for a ``~`` when HOME is not set."""
    text = str(raw)
    if text == "~" or text.startswith("~/"):
        home = _home(env)
        if home is None:
            raise ConfigError(f"{text}: cannot expand ~: HOME is not set")
        text = str(home) + text[1:]
    path = Path(text)
    return path if path.is_absolute() else cwd / path


def _xdg(env: Mapping[str, str], var: str, fallback: str) -> Path | None:
    """``$var``, else ``$HOME/fallback``; None when neither is set."""
    # The XDG spec says to ignore empty or relative values.
    value = env.get(var, "")
    if value and Path(value).is_absolute():
        return Path(value)
    home = _home(env)
    return None if home is None else home / fallback


def _blocked(path: Path) -> Path:
    """The directory this user cannot search on the way to ``path`` (its parent when
    none can be found, e.g. the permissions changed meanwhile)."""
    for step in (*reversed(path.parents[:-1]), path):
        try:
            os.stat(step)
        except PermissionError:
            return step.parent
        except OSError:
            break
    return path.parent


def _exists(path: Path, *, is_file: bool, what: str, hint: str) -> bool:
    """``path.is_file()`` (or ``exists()``), with ConfigError naming the directory in
    the way when this user cannot look (``what`` leads the message)."""
    try:
        return path.is_file() if is_file else path.exists()
    except OSError as exc:
        where = _blocked(path) if denied(exc) else path
        message = f"{what}: {where}: {reason(exc)}"
        if denied(exc):
            message += f"; give this user access to {where}{hint}"
        raise ConfigError(message) from None


def find_config_file(explicit: str | Path | None, env: Mapping[str, str], cwd: Path) -> Path | None:
    """The config file to use: ``--config``, ``$ROTATECTL_CONFIG``, ``./``, then XDG.

    A file named explicitly (option or variable) must exist; the implicit
    places are only looked at. ConfigError when a file named is missing, or a
    directory on the way to one of these places cannot be searched by this user.
    """
    for source, raw in (("--config", explicit), ("$ROTATECTL_CONFIG", env.get("ROTATECTL_CONFIG"))):
        if raw is not None and str(raw) != "":
            path = _expand(raw, env, cwd)
            what = f"{source}: config file {path}: cannot look for it"
            if not _exists(path, is_file=False, what=what, hint=""):
                raise ConfigError(f"{source}: config file {path} not found")
            return path
    for candidate in config_places(env, cwd):
        what = f"{candidate}: cannot look for a config file"
        hint = ", or name a config file with --config or $ROTATECTL_CONFIG"
        if _exists(candidate, is_file=True, what=what, hint=hint):
            return candidate
    return None


def config_places(env: Mapping[str, str], cwd: Path) -> tuple[Path, ...]:
    """Where a config file is looked for when none is named, in order (the XDG place
    only when $XDG_CONFIG_HOME or $HOME says where it is)."""
    xdg = _xdg(env, "XDG_CONFIG_HOME", ".config")
    if xdg is None:
        return (cwd / CONFIG_NAME,)
    return (cwd / CONFIG_NAME, xdg / "rotatectl" / CONFIG_NAME)


def _state_dir(file: Path | None, env: Mapping[str, str], cwd: Path) -> tuple[Path, str]:
    """The state directory, and what to set when it cannot be used.

    ConfigError when it is the XDG default under a HOME that is unset, missing or not
    a directory: it cannot be created there (and rotatectl never creates a home).
    """
    explicit = env.get("ROTATECTL_STATE_DIR", "")
    if explicit:
        return _expand(explicit, env, cwd), _STATE_HINT
    if file is not None:
        return file.parent / ".rotatectl", _STATE_HINT
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "rotatectl", _XDG_STATE_HINT
    home = _home(env)
    if home is None:
        raise ConfigError(
            "HOME is not set, so there is no default state directory "
            f"(~/.local/state/rotatectl); {_XDG_STATE_HINT}"
        )
    state = home / ".local" / "state" / "rotatectl"
    try:
        problem = (
            "" if home.is_dir() else "is not a directory" if home.exists() else "does not exist"
        )
    except OSError:
        problem = ""  # cannot tell from here: creating the directory will say why
    if problem:
        raise ConfigError(
            f"HOME={home} {problem}, so the default state directory {state} cannot be "
            f"created; {_XDG_STATE_HINT}, or HOME to an existing one"
        )
    return state, _XDG_STATE_HINT


def load_config(
    explicit: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Find, read and validate the config. No file found means all defaults.

    Raises ConfigError (one line naming the file, the table and the key; or the path
    and what to do when a file or HOME cannot be used)."""
    env = dict(os.environ) if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    file = find_config_file(explicit, env, cwd)
    data: dict[str, Any] = {}
    if file is not None:
        try:
            raw = file.read_bytes()
        except OSError as exc:
            hint = ""
            if denied(exc):
                hint = (
                    "; give this user read access to it, or name another config file with --config"
                )
            raise ConfigError(f"{file}: cannot read: {reason(exc)}{hint}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start})") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message = " ".join(str(exc).split())
            raise ConfigError(f"{file}: invalid TOML: {message}") from None
    base_dir = file.parent if file is not None else cwd
    state_dir, state_hint = _state_dir(file, env, cwd)
    config = _Builder(file, env).build(data, base_dir, state_dir)
    config = replace(config, state_hint=state_hint)
    if file is None:
        config = replace(config, looked_at=config_places(env, cwd))
    return config


def _table_name(*parts: str) -> str:
    """``credentials."partners/acme".issuer``: quote parts that are not bare TOML keys."""
    return ".".join(p if _BARE_KEY.fullmatch(p) else json.dumps(p) for p in parts)


class _Builder:
    """Validation state for one file: turns parsed TOML into a Config."""

    def __init__(self, file: Path | None, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env

    def error(self, table: str | None, key: str | None, problem: str) -> ConfigError:
        where = str(self.file) if self.file else "defaults"
        at = f"[{table}]" if table else ""
        if key:
            at = f"{at} {key}" if at else key
        # One line, whatever the value held (a TOML string may contain newlines).
        return ConfigError(" ".join(f"{where}: {at}: {problem}".splitlines()))

    # -- typed getters ------------------------------------------------------

    def _table(self, value: object, table: str | None, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(table, key, f"expected a table, got {_toml_type(value)}")
        return value

    def _check_keys(self, data: Mapping[str, Any], table: str, allowed: frozenset[str]) -> None:
        for key, value in data.items():
            if key not in allowed:
                hint = ""
                if isinstance(value, dict) and table.startswith("credentials."):
                    # [credentials.partners.acme] nests a table; the name needed quotes.
                    hint = "; quote credential names that contain '.'"
                raise self.error(
                    table, key, f"unknown key (allowed: {', '.join(sorted(allowed))}){hint}"
                )

    def _str(self, value: object, table: str, key: str) -> str:
        if not isinstance(value, str):
            raise self.error(table, key, f"expected a string, got {_toml_type(value)}")
        if not value:
            raise self.error(table, key, "must not be empty")
        return value

    def _int(self, value: object, table: str, key: str, minimum: int) -> int:
        # bool is an int in Python; `keep_previous = true` is a mistake.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(table, key, f"expected an integer, got {_toml_type(value)}")
        if value < minimum:
            raise self.error(table, key, f"must be at least {minimum}, got {value}")
        return value

    def _duration(self, value: object, table: str, key: str) -> timedelta:
        try:
            return parse_duration(value)  # type: ignore[arg-type]
        except ValueError as exc:
            raise self.error(table, key, str(exc)) from None

    def _command(self, value: object, table: str, key: str) -> tuple[str, ...]:
        """A hook command: an argv array, or a string split like a shell would (no shell runs)."""
        if isinstance(value, str):
            import shlex

            try:
                argv = tuple(shlex.split(value))
            except ValueError as exc:
                raise self.error(table, key, f"cannot split the command: {exc}") from None
        else:
            argv = self._str_list(value, table, key) if isinstance(value, list) else ()
            if not isinstance(value, list):
                raise self.error(
                    table, key, f"expected a string or an array, got {_toml_type(value)}"
                )
        if not argv:
            raise self.error(table, key, "empty command")
        return argv

    def _window(self, value: object, table: str) -> Window:
        where = f"{table}.window"
        data = self._table(value, table, "window")
        self._check_keys(data, where, frozenset(("days", "hours", "timezone")))
        days = list(self._str_list(data["days"], where, "days")) if "days" in data else None
        hours = self._str(data["hours"], where, "hours") if "hours" in data else None
        zone = self._str(data["timezone"], where, "timezone") if "timezone" in data else None
        try:
            return parse_window(days, hours, zone)
        except ValueError as exc:
            key = (
                "timezone"
                if "time zone" in str(exc)
                else "hours"
                if "hours" in str(exc)
                else "days"
            )
            raise self.error(where, key, str(exc)) from None

    def _hooks(self, value: object, table: str) -> HookSpec:
        where = f"{table}.hooks"
        data = self._table(value, table, "hooks")
        self._check_keys(data, where, _HOOK_KEYS)
        spec: dict[str, Any] = {
            event: self._command(data[event], where, event)
            for event in ("on_promote", "on_retire", "on_failure")
            if event in data
        }
        if "if_failed" in data:
            choice = self._str(data["if_failed"], where, "if_failed")
            if choice not in ("abort", "continue"):
                raise self.error(where, "if_failed", f"expected abort or continue, got {choice!r}")
            spec["abort_on_failure"] = choice == "abort"
        if "timeout" in data:
            spec["timeout"] = self._duration(data["timeout"], where, "timeout")
        from .hooks import HookSpec

        return HookSpec(**spec)

    def _pretest(self, value: object, table: str) -> PrePromotionTest:
        where = f"{table}.test"
        data = self._table(value, table, "test")
        self._check_keys(data, where, _TEST_KEYS)
        if ("url" in data) == ("urls" in data):
            raise self.error(where, "url", "give exactly one of url or urls")
        urls = (
            (self._str(data["url"], where, "url"),)
            if "url" in data
            else self._str_list(data["urls"], where, "urls")
        )
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise self.error(where, "url", f"expected an http(s) URL, got {url!r}")
        spec: dict[str, Any] = {"urls": urls}
        for key in ("method", "header", "value"):
            if key in data:
                spec[key] = self._str(data[key], where, key)
        if "value" in spec and "{key}" not in spec["value"]:
            raise self.error(where, "value", "must contain {key} where the new key goes")
        if "expect" in data:
            spec["expect"] = self._int(data["expect"], where, "expect", 100)
        if "passes" in data:
            spec["passes"] = self._int(data["passes"], where, "passes", 1)
        for key in ("interval", "deadline", "timeout"):
            if key in data:
                spec[key] = self._duration(data[key], where, key)
        from .pretest import PrePromotionTest

        return PrePromotionTest(**spec)

    def _str_list(self, value: object, table: str, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.error(table, key, f"expected an array of strings, got {_toml_type(value)}")
        items = tuple(self._str(item, table, key) for item in value)
        if len(set(items)) != len(items):
            raise self.error(table, key, "lists the same name twice")
        return items

    def _adapter(self, value: object, kind: str, table: str, key: str | None) -> AdapterSpec:
        """An adapter table with a known ``type``; the rest is left to the adapter."""
        where = f"{table}.{key}" if key else table
        spec = self._table(value, table if key else None, key or table)
        type_name = spec.get("type")
        if type_name is None:
            raise self.error(where, "type", f"missing (the {kind} type to use)")
        if not isinstance(type_name, str):
            raise self.error(where, "type", f"expected a string, got {_toml_type(type_name)}")
        # A built-in type needs no entry-point scan (importlib.metadata is slow to start).
        if not registry.is_builtin(kind, type_name):
            installed = registry.available(kind)
            if type_name not in installed:
                raise self.error(
                    where,
                    "type",
                    f"unknown {kind} type {type_name!r} (installed: {', '.join(installed)})",
                )
        settings = {k: v for k, v in spec.items() if k != "type"}
        return AdapterSpec(type=type_name, settings=settings, table=where)

    def _policy(self, data: Mapping[str, Any], table: str, base: Policy) -> Policy:
        changes: dict[str, Any] = {}
        for key in _DURATION_KEYS:
            if key in data:
                try:
                    changes[key] = parse_duration(data[key])
                except ValueError as exc:
                    raise self.error(table, key, str(exc)) from None
        if changes.get("max_age") == timedelta(0):
            raise self.error(table, "max_age", "must be longer than 0s")
        if changes.get("backoff") == timedelta(0):
            # A zero backoff would let every cron run start a failing rotation again.
            raise self.error(table, "backoff", "must be longer than 0s")
        if changes.get("recheck") == timedelta(0):
            # A zero recheck would make a waiting `rotate --wait` spin.
            raise self.error(table, "recheck", "must be longer than 0s")
        if "on_still_used" in data:
            value = self._str(data["on_still_used"], table, "on_still_used")
            try:
                changes["on_still_used"] = OnStillUsed(value)
            except ValueError:
                allowed = ", ".join(m.value for m in OnStillUsed)
                raise self.error(
                    table, "on_still_used", f"expected one of {allowed}, got {value!r}"
                ) from None
        if "keep_previous" in data:
            changes["keep_previous"] = self._int(data["keep_previous"], table, "keep_previous", 1)
        if "window" in data:
            changes["window"] = self._window(data["window"], table)
        if "rollback_on_rejections" in data:
            changes["rollback_on_rejections"] = self._int(
                data["rollback_on_rejections"], table, "rollback_on_rejections", 0
            )
        if "unknown_usage" in data:
            value = self._str(data["unknown_usage"], table, "unknown_usage")
            if value not in _UNKNOWN_USAGE:
                raise self.error(
                    table, "unknown_usage", f"expected one of busy, quiet, got {value!r}"
                )
            changes["unknown_usage_is_quiet"] = _UNKNOWN_USAGE[value]
        policy = replace(base, **changes)
        if policy.overlap > policy.max_overlap:
            # Name the key this table set, so the message points at the line to fix.
            key = (
                "overlap" if "overlap" in changes or "max_overlap" not in changes else "max_overlap"
            )
            raise self.error(
                table,
                key,
                f"overlap {format_duration(policy.overlap)} is longer than "
                f"max_overlap {format_duration(policy.max_overlap)}",
            )
        return policy

    def _refs(
        self, names: tuple[str, ...], defined: Mapping[str, Any], what: str, table: str, key: str
    ) -> None:
        for name in names:
            if name not in defined:
                known = ", ".join(sorted(defined)) or "none"
                raise self.error(table, key, f"unknown {what} {name!r} (defined: {known})")

    # -- the file -----------------------------------------------------------

    def build(self, data: dict[str, Any], base_dir: Path, state_dir: Path) -> Config:
        for key in data:
            if key not in _TOP_LEVEL:
                raise self.error(
                    None, key, f"unknown top-level table (allowed: {', '.join(_TOP_LEVEL)})"
                )
        stores = self._adapters(data, "stores", "store")
        # The local store is always there, so a file-less setup works out of the box.
        implicit_local = "local" not in stores
        stores.setdefault("local", AdapterSpec("local", {}, "stores.local"))
        notifiers = self._adapters(data, "notifiers", "notifier")

        defaults = self._table(data.get("defaults", {}), None, "defaults")
        self._check_keys(defaults, "defaults", _DEFAULTS_KEYS)
        policy = self._policy(defaults, "defaults", Policy())
        default_store = "local"
        if "store" in defaults:
            default_store = self._str(defaults["store"], "defaults", "store")
            self._refs((default_store,), stores, "store", "defaults", "store")
        default_issuer = AdapterSpec("generated", {}, "defaults.issuer")
        if "issuer" in defaults:
            default_issuer = self._adapter(defaults["issuer"], "issuer", "defaults", "issuer")
        default_usage = AdapterSpec("none", {}, "defaults.usage")
        if "usage" in defaults:
            default_usage = self._adapter(defaults["usage"], "probe", "defaults", "usage")
        default_notify: tuple[str, ...] = ()
        if "notify" in defaults:
            default_notify = self._str_list(defaults["notify"], "defaults", "notify")
            self._refs(default_notify, notifiers, "notifier", "defaults", "notify")

        credentials: dict[str, CredentialConfig] = {}
        for name, body in self._table(data.get("credentials", {}), None, "credentials").items():
            table = _table_name("credentials", name)
            problem = path_problem(name)
            if problem:
                raise self.error(table, None, f"invalid credential name: {problem}")
            cred = self._table(body, None, table)
            self._check_keys(cred, table, _CREDENTIAL_KEYS)
            cred_stores: tuple[str, ...] = (default_store,)
            if "store" in cred:
                raw = cred["store"]
                cred_stores = (
                    (self._str(raw, table, "store"),)
                    if isinstance(raw, str)
                    else self._str_list(raw, table, "store")
                )
                if not cred_stores:
                    raise self.error(table, "store", "must name at least one store")
                self._refs(cred_stores, stores, "store", table, "store")
            notify = default_notify
            if "notify" in cred:
                notify = self._str_list(cred["notify"], table, "notify")
                self._refs(notify, notifiers, "notifier", table, "notify")
            credentials[name] = CredentialConfig(
                name=name,
                stores=cred_stores,
                path=self._path(cred["path"], table) if "path" in cred else name,
                issuer=(
                    self._adapter(cred["issuer"], "issuer", table, "issuer")
                    if "issuer" in cred
                    else default_issuer
                ),
                usage=(
                    self._adapter(cred["usage"], "probe", table, "usage")
                    if "usage" in cred
                    else default_usage
                ),
                policy=self._policy(cred, table, policy),
                scopes=self._str_list(cred["scopes"], table, "scopes") if "scopes" in cred else (),
                notify=notify,
                declared=True,
                hooks=self._hooks(cred["hooks"], table) if "hooks" in cred else None,
                pretest=self._pretest(cred["test"], table) if "test" in cred else None,
                secret_format=self._secret_format(cred, table),
            )
        self._one_credential_per_store_path(credentials)
        audit = self._table(data.get("audit", {}), None, "audit")
        self._check_keys(audit, "audit", frozenset(("path", "key_env")))
        audit_path = None
        if "path" in audit:
            audit_path = _expand(self._str(audit["path"], "audit", "path"), self.env, base_dir)
        return Config(
            audit_path=audit_path,
            audit_key_env=(
                self._str(audit["key_env"], "audit", "key_env")
                if "key_env" in audit
                else "ROTATECTL_AUDIT_KEY"
            ),
            file=self.file,
            base_dir=base_dir,
            state_dir=state_dir,
            defaults=policy,
            default_store=default_store,
            default_issuer=default_issuer,
            default_usage=default_usage,
            default_notify=default_notify,
            stores=stores,
            notifiers=notifiers,
            credentials=credentials,
            implicit_local=implicit_local,
            env=self.env,
        )

    def _secret_format(self, cred: Mapping[str, Any], table: str) -> SecretFormat:
        """``format``, ``field`` and ``static``: a bare key (the default), or a JSON
        document with the key in ``field`` (``field`` alone means json)."""
        kind = self._str(cred["format"], table, "format") if "format" in cred else None
        if kind is not None and kind not in FORMATS:
            raise self.error(table, "format", f"expected one of {', '.join(FORMATS)}, got {kind!r}")
        if kind == "bare" or (kind is None and "field" not in cred):
            for key in ("field", "static"):
                if key in cred:
                    raise self.error(table, key, 'only for a JSON document (format = "json")')
            return BARE
        if "field" not in cred:
            raise self.error(
                table,
                "field",
                'format = "json" needs the field that holds the key, e.g. field = "api_key"',
            )
        name = self._str(cred["field"], table, "field")
        static = self._table(cred["static"], table, "static") if "static" in cred else {}
        if name in static:
            raise self.error(table, "static", f"names {name!r}, the field that holds the key")
        for key, value in static.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise self.error(
                    table, f"static.{key}", f"a JSON value is needed, got {_toml_type(value)}"
                ) from None
        return SecretFormat(field=name, static=dict(static))

    def _path(self, value: object, table: str) -> str:
        """A credential's ``path``: the same rule as a name, since it is the name in the store."""
        path = self._str(value, table, "path")
        problem = path_problem(path)
        if problem:
            raise self.error(table, "path", f"invalid path {path!r}: {problem}")
        return path

    def _one_credential_per_store_path(self, credentials: Mapping[str, CredentialConfig]) -> None:
        """Two credentials at one (store, path) would be one secret with two issuers:
        rotating the second would rotate the first's secret. Any shared destination
        of a credential kept in several stores counts."""
        seen: dict[tuple[str, str], str] = {}
        for name, cred in credentials.items():
            for store in cred.stores:
                first = seen.setdefault((store, cred.path), name)
                if first != name:
                    # Point at a `path` line: this one's, or else the earlier one's
                    # (this credential's path is its name, the default).
                    blamed = name if cred.path != name else first
                    raise self.error(
                        _table_name("credentials", blamed),
                        "path",
                        f"credentials {json.dumps(first)} and {json.dumps(name)} are both at "
                        f"store {json.dumps(store)}, path {json.dumps(cred.path)}: one secret "
                        "cannot be rotated by two credentials",
                    )

    def _adapters(self, data: Mapping[str, Any], section: str, kind: str) -> dict[str, AdapterSpec]:
        tables = self._table(data.get(section, {}), None, section)
        return {
            name: self._adapter(body, kind, _table_name(section, name), None)
            for name, body in tables.items()
        }
