"""Vault/OpenBao connection settings, authentication and error translation.

Used by :mod:`rotatectl.stores.vault`. hvac is imported lazily (only when a
client is built), so loading the config never pays for it.

Settings resolve like the ``vault``/``bao`` CLIs: the config table first, then
``VAULT_*`` variables, then their ``BAO_*`` aliases. hvac does not read
``VAULT_NAMESPACE``; we do and pass it on.

Authentication methods (``auth.method``):

- ``token``: ``$VAULT_TOKEN``, else ``$BAO_TOKEN``, else ``~/.vault-token``.
- ``approle``: ``role_id`` plus a secret id read from ``secret_id_file`` or
  ``secret_id_env`` at each login (so an agent may rotate the file).
- ``kubernetes``: ``role`` plus the service account JWT at ``jwt_path``.

:class:`Authenticator` tracks the token's expiry and renews it (or logs in
again, for approle and kubernetes) before a wait would outlive it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RotatectlError,
    StoreError,
    StoreUnavailableError,
)
from .registry import AdapterContext, check_settings

log = logging.getLogger(__name__)

METHODS = ("token", "approle", "kubernetes")
DEFAULT_JWT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"
DEFAULT_TIMEOUT = 10.0

# The marker hvac passes through from the server when a KV v2 check-and-set fails.
CAS_MISMATCH = "check-and-set parameter did not match"

_AUTH_KEYS: dict[str, tuple[str, ...]] = {
    "token": ("method",),
    "approle": ("method", "mount_point", "role_id", "secret_id_file", "secret_id_env"),
    "kubernetes": ("method", "mount_point", "role", "jwt_path"),
}


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


@dataclass(frozen=True)
class AuthSettings:
    """How to obtain a token. ``token`` is secret and never shown in reprs."""

    method: str = "token"
    mount_point: str = ""
    role_id: str | None = None
    secret_id_file: Path | None = None
    secret_id_env: str | None = None
    role: str | None = None
    jwt_path: Path = Path(DEFAULT_JWT_PATH)
    token: str | None = field(default=None, repr=False)
    token_source: str = ""


@dataclass(frozen=True)
class Connection:
    """Where the server is and how to talk to it."""

    url: str
    namespace: str | None = None
    verify: bool | str = True
    cert: tuple[str, str] | None = None
    timeout: float = DEFAULT_TIMEOUT
    auth: AuthSettings = field(default_factory=AuthSettings)


def _file(raw: str, ctx: AdapterContext, key: str, *, directory: bool = False) -> str:
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = ctx.base_dir / path
    ok = path.is_dir() if directory else path.is_file()
    if not ok:
        raise ctx.error(key, f"{'directory' if directory else 'file'} {path} does not exist")
    return str(path)


def parse_connection(settings: Mapping[str, Any], ctx: AdapterContext) -> Connection:
    """Resolve url, namespace, TLS, timeout and auth from ``settings`` and ``ctx.env``.

    Raises ConfigError naming the table and key for anything missing or invalid.
    """
    env = ctx.env
    url = settings.get("url") or _first(env, "VAULT_ADDR", "BAO_ADDR")
    if not url:
        raise ctx.error("url", "no server address: set url or $VAULT_ADDR (or $BAO_ADDR)")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ctx.error("url", f"expected an http:// or https:// address, got {url!r}")
    namespace = settings.get("namespace") or _first(env, "VAULT_NAMESPACE", "BAO_NAMESPACE")

    verify: bool | str = True
    if "ca_cert" in settings:
        verify = _file(settings["ca_cert"], ctx, "ca_cert")
    elif "ca_path" in settings:
        verify = _file(settings["ca_path"], ctx, "ca_path", directory=True)
    elif ca := _first(env, "VAULT_CACERT", "BAO_CACERT"):
        verify = _file(ca, ctx, "ca_cert ($VAULT_CACERT)")
    elif ca_dir := _first(env, "VAULT_CAPATH", "BAO_CAPATH"):
        verify = _file(ca_dir, ctx, "ca_path ($VAULT_CAPATH)", directory=True)

    cert_file = settings.get("client_cert") or _first(env, "VAULT_CLIENT_CERT", "BAO_CLIENT_CERT")
    key_file = settings.get("client_key") or _first(env, "VAULT_CLIENT_KEY", "BAO_CLIENT_KEY")
    cert: tuple[str, str] | None = None
    if bool(cert_file) != bool(key_file):
        raise ctx.error("client_cert", "client_cert and client_key must be given together")
    if cert_file and key_file:
        cert = (_file(cert_file, ctx, "client_cert"), _file(key_file, ctx, "client_key"))

    timeout = float(settings.get("timeout", DEFAULT_TIMEOUT))
    if timeout <= 0:
        raise ctx.error("timeout", "must be positive")
    auth = parse_auth(settings.get("auth", {"method": "token"}), ctx)
    return Connection(str(url).rstrip("/"), namespace or None, verify, cert, timeout, auth)


def parse_auth(raw: Mapping[str, Any], ctx: AdapterContext) -> AuthSettings:
    """Validate the ``auth`` table; for ``token``, find the token now (ConfigError if none)."""
    method = raw.get("method", "token")
    if method not in METHODS:
        raise ctx.error("auth.method", f"expected one of {', '.join(METHODS)}, got {method!r}")
    allowed = _AUTH_KEYS[method]
    for key, value in raw.items():
        if key not in allowed:
            raise ctx.error(
                f"auth.{key}", f"not used by auth method {method!r} (allowed: {', '.join(allowed)})"
            )
        if not isinstance(value, str) or not value.strip():
            raise ctx.error(f"auth.{key}", "expected a non-empty string")
    if method == "token":
        token = _first(ctx.env, "VAULT_TOKEN", "BAO_TOKEN")
        source = "$VAULT_TOKEN" if ctx.env.get("VAULT_TOKEN") else "$BAO_TOKEN"
        if token is None:
            home = Path(ctx.env.get("HOME") or Path.home())
            file = home / ".vault-token"
            if file.is_file():
                token = file.read_text().strip() or None
                source = str(file)
        if token is None:
            raise ctx.error(
                "auth", "no token: set $VAULT_TOKEN (or $BAO_TOKEN), or log in (~/.vault-token)"
            )
        return AuthSettings(method="token", token=token, token_source=source)
    if method == "approle":
        if "role_id" not in raw:
            raise ctx.error("auth.role_id", "required for auth method 'approle'")
        if ("secret_id_file" in raw) == ("secret_id_env" in raw):
            raise ctx.error("auth", "approle needs exactly one of secret_id_file, secret_id_env")
        secret_file = raw.get("secret_id_file")
        env_name = raw.get("secret_id_env")
        if env_name is not None and not ctx.env.get(env_name):
            raise ctx.error("auth.secret_id_env", f"${env_name} is not set")
        return AuthSettings(
            method="approle",
            mount_point=raw.get("mount_point", "approle"),
            role_id=raw["role_id"],
            secret_id_file=(
                Path(_file(secret_file, ctx, "auth.secret_id_file")) if secret_file else None
            ),
            secret_id_env=env_name,
        )
    if "role" not in raw:
        raise ctx.error("auth.role", "required for auth method 'kubernetes'")
    return AuthSettings(
        method="kubernetes",
        mount_point=raw.get("mount_point", "kubernetes"),
        role=raw["role"],
        jwt_path=Path(_file(raw.get("jwt_path", DEFAULT_JWT_PATH), ctx, "auth.jwt_path")),
    )


CONNECTION_KEYS: dict[str, type | tuple[type, ...]] = {
    "url": str,
    "namespace": str,
    "ca_cert": str,
    "ca_path": str,
    "client_cert": str,
    "client_key": str,
    "timeout": (int, float),
    "auth": dict,
}


def check_connection_settings(
    settings: Mapping[str, Any], ctx: AdapterContext, extra: Mapping[str, type | tuple[type, ...]]
) -> None:
    """check_settings for the connection keys plus the store's own ``extra`` keys."""
    check_settings(settings, ctx, {**CONNECTION_KEYS, **extra})


# -- errors -----------------------------------------------------------------


def translate(
    exc: Exception,
    where: str,
    *,
    url: str,
    api_path: str = "",
    capability: str = "",
) -> RotatectlError:
    """Map an hvac/requests exception to a rotatectl error.

    ``where`` names the operation and credential path (e.g. ``publish
    partners/acme``). Messages use the server's error strings only, never a
    response body, so no value can leak into them.
    """
    import hvac.exceptions as hx
    import requests

    if isinstance(exc, RotatectlError):
        return exc
    if isinstance(exc, hx.VaultError):
        errors = "; ".join(str(e) for e in (exc.errors or ()) if e) or ""
        if isinstance(exc, hx.Forbidden):
            needs = f": needs '{capability}' on {api_path}" if capability and api_path else ""
            return PermissionDeniedError(f"{where}: permission denied{needs}")
        if isinstance(exc, hx.Unauthorized):
            return PermissionDeniedError(f"{where}: not authenticated ({errors or '401'})")
        if isinstance(exc, hx.InvalidPath):
            if "no handler for route" in errors:
                # A mount that does not exist: not "no such secret" (that would look empty).
                return StoreError(f"{where}: nothing is mounted at {api_path.split('/')[0]}/")
            return NotFoundError(f"{where}: nothing at {api_path or 'the path'}")
        if isinstance(exc, hx.InvalidRequest):
            if CAS_MISMATCH in errors:
                return CasMismatch(f"{where}: {api_path} was changed concurrently (check-and-set)")
            return StoreError(f"{where}: the server rejected the request: {errors or '400'}")
        if isinstance(exc, hx.VaultDown):
            if "sealed" in errors.lower():
                return StoreUnavailableError(f"{where}: the server at {url} is sealed")
            detail = f" ({errors})" if errors else ""
            return StoreUnavailableError(f"{where}: the server at {url} is unavailable{detail}")
        if isinstance(exc, hx.VaultNotInitialized):
            return StoreUnavailableError(
                f"{where}: the server at {url} is not initialized", retryable=False
            )
        if isinstance(
            exc, hx.InternalServerError | hx.BadGateway | hx.RateLimitExceeded | hx.UnexpectedError
        ):
            return StoreUnavailableError(
                f"{where}: server error at {url} ({errors or 'no detail'})"
            )
        return StoreError(f"{where}: {type(exc).__name__} ({errors or 'no detail'})")
    if isinstance(exc, requests.exceptions.SSLError):
        return StoreError(f"{where}: TLS handshake with {url} failed (check ca_cert/client_cert)")
    if isinstance(exc, requests.exceptions.Timeout):
        return StoreUnavailableError(f"{where}: the server at {url} did not answer in time")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return StoreUnavailableError(f"{where}: cannot reach the server at {url}")
    if isinstance(exc, requests.exceptions.RequestException):
        return StoreUnavailableError(f"{where}: request to {url} failed ({type(exc).__name__})")
    raise exc


class CasMismatch(ConflictError):
    """A KV v2 check-and-set failed: the path's version moved under us."""


# -- authentication -----------------------------------------------------------


class Authenticator:
    """Gives a client a token and keeps it alive.

    Thread-safe. ``clock`` is monotonic seconds (a parameter for tests).
    """

    def __init__(
        self,
        settings: AuthSettings,
        env: Mapping[str, str],
        url: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._env = env
        self._url = url
        self._clock = clock
        self._mutex = threading.Lock()
        self._ready = False
        self._expires: float | None = None  # monotonic deadline; None: never expires
        self._ttl = 0.0  # the TTL the token had when last issued or renewed
        self._renewable = False
        self.logged_in = False  # True when we created the token (and so may revoke it)
        self.hint = ""  # added to permission errors when the token itself is suspect

    @property
    def can_login(self) -> bool:
        return self.settings.method != "token"

    def denial_hint(self) -> str:
        """Why a denial may be the token's fault rather than the policy's ("" if no reason)."""
        left = self.ttl_left()
        if left is not None and left <= 0:
            return "the vault token has expired"
        return self.hint

    def ttl_left(self) -> float | None:
        """Seconds until the token expires, None if it never does (or is not known yet)."""
        return None if self._expires is None else self._expires - self._clock()

    def ensure(self, client: Any, within: float | None = None) -> bool:
        """Authenticate if not yet done; renew (or log in again) if the token
        expires within ``within`` seconds (default: a third of its TTL, at most
        15s: the margin a single call needs). Returns True if the token changed
        or was renewed. Raises rotatectl errors (PermissionDeniedError for a
        refused login)."""
        with self._mutex:
            if not self._ready:
                self._authenticate(client)
                return True
            left = self.ttl_left()
            if left is None:
                return False
            margin = min(15.0, self._ttl / 3) if within is None else within
            if left > margin:
                return False
            if self._renewable and left > 0 and self._renew(client, margin):
                return True
            if self.can_login:
                log.info("vault: logging in again (%s): the token expires soon", self.method_name)
                self._login(client)
                return True
            return False

    @property
    def method_name(self) -> str:
        return self.settings.method

    def _authenticate(self, client: Any) -> None:
        if self.settings.method == "token":
            client.token = self.settings.token
            self._lookup(client)
        else:
            self._login(client)
        self._ready = True

    def _where(self, what: str) -> str:
        return f"vault {what}"

    def _lookup(self, client: Any) -> None:
        """Learn the token's TTL. A token that may not look itself up is taken as non-expiring."""
        import hvac.exceptions as hx

        try:
            data = client.auth.token.lookup_self()["data"]
        except hx.Forbidden as exc:
            # Either the token is invalid, or its policy lacks the default
            # lookup-self grant; a denied call later says which it may be.
            log.debug("vault: token lookup refused: %s", exc.errors)
            self.hint = (
                f"the token from {self.settings.token_source} cannot look itself up: is it valid?"
            )
            return
        except Exception as exc:
            raise translate(exc, self._where("token lookup"), url=self._url) from exc
        self._track(int(data.get("ttl") or 0), bool(data.get("renewable")))

    def _track(self, ttl: int, renewable: bool) -> None:
        self._expires = self._clock() + ttl if ttl > 0 else None
        self._ttl = float(ttl)
        self._renewable = renewable

    def _renew(self, client: Any, within: float) -> bool:
        import hvac.exceptions as hx

        try:
            # Ask for the token's usual TTL, or more if the wait needs it; the
            # server caps it at the token's max TTL.
            increment = max(int(within) + 1, int(self._ttl))
            auth = client.auth.token.renew_self(increment=f"{increment}s")["auth"]
        except (hx.Forbidden, hx.InvalidRequest) as exc:
            log.info("vault: token renewal refused: %s", "; ".join(exc.errors or ()))
            return False
        except Exception as exc:
            raise translate(exc, self._where("token renewal"), url=self._url) from exc
        ttl = int(auth.get("lease_duration") or 0)
        self._track(ttl, bool(auth.get("renewable")))
        log.info("vault: renewed the token for %ss", ttl)
        # Renewal is capped by the token's max TTL: not enough means log in again.
        return ttl == 0 or ttl > within or not self.can_login

    def _secret(self, what: str, read: Callable[[], str]) -> str:
        try:
            value = read().strip()
        except OSError as exc:
            raise ConfigError(
                f"vault {self.settings.method} login: cannot read {what}: {exc.strerror}"
            ) from exc
        if not value:
            raise ConfigError(f"vault {self.settings.method} login: {what} is empty")
        return value

    def _login(self, client: Any) -> None:
        s = self.settings
        where = self._where(f"{s.method} login at auth/{s.mount_point}/login")
        if s.method == "approle":
            if s.secret_id_file is not None:
                file = s.secret_id_file
                secret_id = self._secret(f"secret id file {file}", file.read_text)
            else:
                name = s.secret_id_env or ""
                secret_id = self._secret(f"${name}", lambda: self._env.get(name, ""))

            def call() -> Any:
                return client.auth.approle.login(
                    role_id=s.role_id, secret_id=secret_id, mount_point=s.mount_point
                )
        else:
            jwt = self._secret(f"service account token {s.jwt_path}", s.jwt_path.read_text)

            def call() -> Any:
                return client.auth.kubernetes.login(role=s.role, jwt=jwt, mount_point=s.mount_point)

        import hvac.exceptions as hx

        try:
            auth = call()["auth"]
        except (hx.InvalidRequest, hx.Forbidden, hx.Unauthorized) as exc:
            # A refused login is a permission problem, whatever status the method uses.
            detail = "; ".join(str(e) for e in (exc.errors or ()) if e) or "refused"
            raise PermissionDeniedError(f"{where}: {detail}") from exc
        except Exception as exc:
            raise translate(
                exc,
                where,
                url=self._url,
                api_path=f"auth/{s.mount_point}/login",
                capability="update",
            ) from exc
        self.logged_in = True
        self._track(int(auth.get("lease_duration") or 0), bool(auth.get("renewable")))
        log.info("vault: logged in with %s (token ttl %ss)", s.method, auth.get("lease_duration"))
