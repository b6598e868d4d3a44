"""Shared AWS plumbing for the Secrets Manager store, the IAM issuer and the IAM probe.

One place builds botocore sessions and clients (region, profile, ``endpoint_url``,
the standard AWS environment variables, botocore's *standard* retry mode with
bounded attempts, backoff and jitter) and one place translates botocore
exceptions into rotatectl errors, so every adapter reports failures the same
way: one line naming the credential or path, the operation and the AWS error
code, never a value. botocore is imported here, and this module is imported
only by the AWS adapters, so commands that do not touch AWS never load it.
boto3's session layer is not used: clients come from botocore directly, which
saves ~60 ms of every AWS command's start-up (boto3 is what installs botocore).
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import botocore.config
import botocore.exceptions
import botocore.loaders
import botocore.session

from .durations import parse_duration
from .errors import (
    ConfigError,
    IssuerError,
    NotFoundError,
    PermissionDeniedError,
    ProbeError,
    RotatectlError,
    StoreError,
    StoreUnavailableError,
)
from .registry import AdapterContext

Kind = Literal["store", "issuer", "probe"]

# Settings every AWS adapter accepts, with their TOML types.
SETTINGS: dict[str, type | tuple[type, ...]] = {
    "region": str,
    "profile": str,
    "endpoint_url": str,
    "max_attempts": int,
    "connect_timeout": str,
    "read_timeout": str,
}

DEFAULT_MAX_ATTEMPTS = 4  # botocore "standard" mode: 1 call + 3 retries, backoff with jitter
DEFAULT_CONNECT_TIMEOUT = timedelta(seconds=5)
DEFAULT_READ_TIMEOUT = timedelta(seconds=30)
MAX_POOL = 64  # connections a client keeps: `run --jobs` up to 64 never waits for one

# Error codes, as the AWS services (and moto) return them.
DENIED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnauthorizedAccess",
        "AuthorizationError",
    }
)
BAD_CREDENTIALS = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "AuthFailure",
        "InvalidAccessKeyId",
    }
)
NOT_FOUND = frozenset({"ResourceNotFoundException", "NoSuchEntity", "NoSuchEntityException"})
TRANSIENT = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServiceError",
        "InternalServiceErrorException",
        "InternalError",
        "ServiceFailure",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
    }
)


@functools.cache
def _user_agent() -> str:
    """``rotatectl/<v> Botocore/<v> Python/<v> <system>/<release>``, as botocore's
    legacy form (what a ``user_agent`` in its Config gives)."""
    import platform

    from . import __version__

    return (
        f"rotatectl/{__version__} Botocore/{botocore.__version__} "
        f"Python/{platform.python_version()} {platform.system()}/{platform.release()}"
    )


_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
_XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
_XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")
_PARAM_VALUE = re.compile(r"value: .*?(?=, (valid|type)|$)")
_NOT_AUTHORIZED = re.compile(r"not authorized to perform:?\s+([A-Za-z0-9-]+:[A-Za-z0-9*]+)")


@dataclass(frozen=True)
class AwsSettings:
    """Connection settings shared by the AWS adapters (all optional)."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    connect_timeout: timedelta = DEFAULT_CONNECT_TIMEOUT
    read_timeout: timedelta = DEFAULT_READ_TIMEOUT


def parse_settings(settings: Mapping[str, Any], ctx: AdapterContext) -> AwsSettings:
    """Validate the shared keys of an AWS adapter table (other keys are left to the caller).

    Raises ConfigError naming ``ctx.table`` and the key.
    """
    region = settings.get("region")
    if region is not None:
        region = region.strip()
        if not _REGION.fullmatch(region):
            raise ctx.error("region", f"{region!r} is not an AWS region name (e.g. 'us-east-1')")
        known = known_regions()
        if known and region not in known:
            import difflib

            close = difflib.get_close_matches(region, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ctx.error("region", f"unknown AWS region {region!r}{hint}")
    endpoint = settings.get("endpoint_url")
    if endpoint is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", endpoint):
        raise ctx.error("endpoint_url", f"expected an http(s):// URL, got {endpoint!r}")
    attempts = settings.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
    if not 1 <= attempts <= 10:
        raise ctx.error("max_attempts", f"must be between 1 and 10, got {attempts}")
    timeouts = {}
    for key, default in (
        ("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        ("read_timeout", DEFAULT_READ_TIMEOUT),
    ):
        raw = settings.get(key)
        if raw is None:
            timeouts[key] = default
            continue
        try:
            value = parse_duration(raw)
        except ValueError as exc:
            raise ctx.error(key, str(exc)) from None
        if value <= timedelta(0):
            raise ctx.error(key, "must be longer than 0s")
        timeouts[key] = value
    profile = settings.get("profile")
    if profile is not None and not profile.strip():
        raise ctx.error("profile", "must not be empty")
    return AwsSettings(
        region=region,
        profile=profile,
        endpoint_url=endpoint,
        max_attempts=attempts,
        connect_timeout=timeouts["connect_timeout"],
        read_timeout=timeouts["read_timeout"],
    )


@functools.cache
def _loader() -> botocore.loaders.Loader:
    # One data loader per process: every session then parses botocore's JSON
    # service models once, not once per adapter (the store, issuer and probe of
    # one CLI run each build a session).
    return botocore.loaders.create_loader()


def _botocore_session() -> botocore.session.Session:
    session = botocore.session.Session()
    session.register_component("data_loader", _loader())
    return session


@functools.cache
def known_regions() -> frozenset[str]:
    """Every region botocore knows in any partition (empty if it cannot tell).

    From botocore's ``partitions.json`` (7 KB, what its endpoint rules resolve
    regions with), not ``endpoints.json`` through a session: that took ~140 ms
    of every AWS command's start-up.
    """
    try:
        data = _loader().load_data("partitions")
    except botocore.exceptions.DataNotFoundError:
        return frozenset()
    return frozenset(
        region
        for partition in data.get("partitions", [])
        for region in partition.get("regions", {})
        if not region.endswith("-global")  # aws-global etc.: endpoint aliases
    )


def make_session(aws: AwsSettings, ctx: AdapterContext) -> botocore.session.Session:
    """A botocore session honouring ``profile`` and the standard AWS environment variables."""
    try:
        session = _botocore_session()
        if aws.profile is not None:
            if aws.profile not in session.available_profiles:
                raise botocore.exceptions.ProfileNotFound(profile=aws.profile)
            session.set_config_variable("profile", aws.profile)
        return session
    except botocore.exceptions.ProfileNotFound as exc:
        raise ctx.error("profile", f"AWS profile {aws.profile!r} not found ({exc})") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise ctx.error(None, f"cannot set up an AWS session: {_one_line(str(exc))}") from None


class AwsConnection:
    """Lazily built botocore clients for one adapter, plus error translation.

    Thread-safe: botocore clients are; building them is guarded by a lock.
    """

    def __init__(
        self,
        session: botocore.session.Session,
        aws: AwsSettings,
        *,
        table: str,
        kind: Kind,
        default_region: str | None = None,
    ) -> None:
        self.session = session
        self.settings = aws
        self.table = table
        self.kind = kind
        self.region = aws.region or session.get_config_variable("region") or default_region
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Mapping[str, Any],
        ctx: AdapterContext,
        *,
        kind: Kind,
        default_region: str | None = None,
    ) -> AwsConnection:
        """Build from the shared keys of an adapter table. ConfigError when no region is known."""
        aws = parse_settings(settings, ctx)
        session = make_session(aws, ctx)
        conn = cls(session, aws, table=ctx.table, kind=kind, default_region=default_region)
        if conn.region is None:
            raise ctx.error(
                "region", "no AWS region: set it here or in AWS_REGION / the AWS profile"
            )
        return conn

    def client(self, service: str) -> Any:
        """The botocore client for ``service`` (built once), with a fixed User-Agent
        (rotatectl's, botocore's and Python's versions) and a pool of MAX_POOL
        connections."""
        with self._lock:
            found = self._clients.get(service)
            if found is None:
                config = botocore.config.Config(
                    region_name=self.region,
                    retries={"mode": "standard", "total_max_attempts": self.settings.max_attempts},
                    connect_timeout=self.settings.connect_timeout.total_seconds(),
                    read_timeout=self.settings.read_timeout.total_seconds(),
                    # A fixed User-Agent: botocore's own builder re-sanitises some thirty
                    # components on every request (~0.7 ms of CPU a call, issue 21).
                    user_agent=_user_agent(),
                    # Room for every thread of `run --jobs` (connections open lazily).
                    max_pool_connections=MAX_POOL,
                )
                try:
                    found = self.session.create_client(
                        service,
                        region_name=self.region,
                        endpoint_url=self.settings.endpoint_url,
                        config=config,
                    )
                except botocore.exceptions.BotoCoreError as exc:
                    raise ConfigError(
                        f"[{self.table}]: cannot create the AWS {service} client: "
                        f"{_one_line(str(exc))}"
                    ) from exc
                self._clients[service] = found
            return found

    def close(self) -> None:
        """Close every client's connection pool. Safe to call twice."""
        with self._lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            close = getattr(client, "close", None)
            if close is not None:
                close()

    def endpoint(self, service: str) -> str:
        """Where calls to ``service`` go (for messages)."""
        return str(self.client(service).meta.endpoint_url)

    def call(
        self,
        service: str,
        method: str,
        *,
        where: str,
        expect: frozenset[str] | set[str] = frozenset(),
        **params: Any,
    ) -> dict[str, Any]:
        """Call ``client(service).method(**params)``; translate every failure.

        ``where`` names what the call is about (credential, path, user) for
        the message. Error codes in ``expect`` are raised as
        :class:`AwsExpected` for the caller to handle; everything else becomes
        the rotatectl error for this adapter's kind (see :func:`translate`).
        """
        client = self.client(service)
        try:
            result: dict[str, Any] = getattr(client, method)(**params)
            return result
        except botocore.exceptions.ClientError as exc:
            code = error_code(exc)
            if code in expect:
                raise AwsExpected(code, _one_line(error_message(exc))) from exc
            raise self.translate(exc, service=service, method=method, where=where) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self.translate(exc, service=service, method=method, where=where) from exc

    def action(self, service: str, method: str) -> str:
        """The IAM action a boto3 method needs, e.g. ``secretsmanager:PutSecretValue``."""
        client = self.client(service)
        mapping: dict[str, str] = client.meta.method_to_api_mapping
        prefix = client.meta.service_model.signing_name or service
        return f"{prefix}:{mapping.get(method, method)}"

    def translate(self, exc: Exception, *, service: str, method: str, where: str) -> RotatectlError:
        """Map a botocore exception to this adapter's rotatectl error (one line, no values).
        A transient one was already retried by botocore's standard mode (``max_attempts``):
        it is marked ``retried``, so the runner does not retry it again."""
        error = self._translate(exc, service=service, method=method, where=where)
        if error.retryable and self.settings.max_attempts > 1:
            error.retried = True
        return error

    def _translate(
        self, exc: Exception, *, service: str, method: str, where: str
    ) -> RotatectlError:
        action = self.action(service, method)
        op = action.partition(":")[2]
        head = f"{where}: {op}"
        if isinstance(exc, botocore.exceptions.ClientError):
            code = error_code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            message = _one_line(error_message(exc))
            if code in DENIED:
                named = _NOT_AUTHORIZED.search(message)
                missing = named.group(1) if named else action
                return self._denied(
                    f"{where}: {missing} denied by AWS ({code}); allow it for the principal "
                    f"rotatectl runs as (policies in examples/aws/)"
                )
            if code in BAD_CREDENTIALS:
                return self._denied(
                    f"{head}: AWS rejected the credentials ({code}); check AWS_PROFILE / "
                    f"AWS_ACCESS_KEY_ID or `profile` in [{self.table}]"
                )
            if code in NOT_FOUND:
                return self._not_found(f"{head}: not found in region {self.region} ({code})")
            transient = code in TRANSIENT or status >= 500
            return self._failure(f"{head} failed ({code}): {message}", retryable=transient)
        if isinstance(
            exc,
            botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError,
        ):
            return ConfigError(
                f"{head}: no usable AWS credentials ({_one_line(str(exc))}); set AWS_PROFILE or "
                f"AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or `profile` in [{self.table}]"
            )
        if isinstance(exc, botocore.exceptions.NoRegionError):
            return ConfigError(f"{head}: no AWS region; set `region` in [{self.table}]")
        if isinstance(
            exc,
            botocore.exceptions.EndpointConnectionError
            | botocore.exceptions.ConnectTimeoutError
            | botocore.exceptions.ConnectionClosedError,
        ):
            url = getattr(exc, "kwargs", {}).get("endpoint_url") or self._safe_endpoint(service)
            return self._unavailable(
                f"{head}: cannot reach AWS {service} at {url} (region {self.region}); "
                f"check `endpoint_url`/`region` in [{self.table}] and the network"
            )
        if isinstance(exc, botocore.exceptions.ReadTimeoutError):
            return self._unavailable(f"{head}: AWS {service} did not answer in time")
        if isinstance(exc, botocore.exceptions.ParamValidationError):
            # botocore quotes parameter values in these messages: keep only the shape.
            reason = _PARAM_VALUE.sub("", _one_line(str(exc)))
            return self._failure(f"{head}: invalid request: {reason}", retryable=False)
        return self._failure(f"{head} failed: {_one_line(str(exc))}", retryable=False)

    def _safe_endpoint(self, service: str) -> str:
        try:
            return self.endpoint(service)
        except RotatectlError:
            return "its endpoint"

    def _failure(self, message: str, *, retryable: bool) -> RotatectlError:
        if self.kind == "store":
            return (
                StoreUnavailableError(message)
                if retryable
                else StoreError(message, retryable=False)
            )
        if self.kind == "issuer":
            return IssuerError(message, retryable=retryable)
        return ProbeError(message, retryable=retryable)

    def _denied(self, message: str) -> RotatectlError:
        # A probe that cannot read keeps the usage gate closed (the runner turns
        # a ProbeError into "usage unknown"); stores and issuers fail the step.
        if self.kind == "probe":
            return ProbeError(message)
        return PermissionDeniedError(message)

    def _unavailable(self, message: str) -> RotatectlError:
        return self._failure(message, retryable=True)

    def _not_found(self, message: str) -> RotatectlError:
        if self.kind == "store":
            return NotFoundError(message)
        return self._failure(message, retryable=False)


class AwsExpected(Exception):
    """An AWS error code the caller asked to handle itself (see :meth:`AwsConnection.call`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _error(exc: botocore.exceptions.ClientError) -> tuple[str, str]:
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "Unknown")), str(error.get("Message", ""))
    # moto answers IAM auth failures of JSON-protocol services (Secrets Manager)
    # with an XML body, which botocore reports as Code "403" and the XML as the
    # message: read the real code and message out of it.
    inner_code, inner_message = _XML_CODE.search(message), _XML_MESSAGE.search(message)
    if code.isdigit() and inner_code:
        code = inner_code.group(1)
        message = inner_message.group(1) if inner_message else ""
    return code, message


def error_code(exc: botocore.exceptions.ClientError) -> str:
    """The AWS error code of ``exc`` (e.g. ``AccessDeniedException``)."""
    return _error(exc)[0]


def error_message(exc: botocore.exceptions.ClientError) -> str:
    """The AWS error message of ``exc`` (AWS messages name resources, never values)."""
    return _error(exc)[1]


def _one_line(text: str) -> str:
    return " ".join(text.split())
