"""Error hierarchy. Every error carries the exit code the CLI returns for it.

Adapters translate their SDK's exceptions into these at the boundary, chained
with ``raise ... from exc``. Messages name the credential and the operation,
never a key value.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import timedelta


class ExitCode(IntEnum):
    """Process exit codes, as documented in the README."""

    OK = 0
    FAILED = 1
    USAGE = 2
    ATTENTION = 3
    LOCKED = 4
    COMMAND_NOT_FOUND = 127  # `exec` of a program that is not there, as shells say
    INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells say


class RotatectlError(Exception):
    """Base class. ``retryable`` marks transient failures worth another try;
    ``retried`` that they were already retried where the request was made (botocore,
    :func:`rotatectl.retry.retry_call`), so no caller retries them again (retries
    would multiply: one retry policy, applied once)."""

    exit_code: ExitCode = ExitCode.FAILED
    retryable: bool = False
    retried: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return self.message


class ConfigError(RotatectlError):
    """The config file, a command-line option or an adapter setting is invalid."""

    exit_code = ExitCode.USAGE


class UsageError(RotatectlError):
    """The command was asked for something that cannot be done as asked."""

    exit_code = ExitCode.USAGE


class Interrupted(RotatectlError):
    """The operator pressed Ctrl-C; the message says where things stand (exit 130)."""

    exit_code = ExitCode.INTERRUPTED


class CommandNotFoundError(UsageError):
    """``exec`` was given a program that is not on PATH (exit 127, as shells do)."""

    exit_code = ExitCode.COMMAND_NOT_FOUND


class UnknownCredentialError(UsageError):
    """The named credential is neither declared nor present in its store."""


class OperationError(RotatectlError):
    """A step of an operation failed (store, issuer, probe or notifier)."""


class StoreError(OperationError):
    """A store call failed. Retryable when the cause is transient."""


class StoreUnavailableError(StoreError):
    """The store could not be reached (network, sealed, file missing)."""

    retryable = True


class PermissionDeniedError(StoreError):
    """The store or issuer refused the call for lack of permission."""


class NotFoundError(StoreError):
    """A credential or version the caller named does not exist in the store."""


class CorruptRecordError(StoreError):
    """A record in a store is not what rotatectl wrote (edited by hand, another tool)."""


class ConflictError(StoreError):
    """A compare-and-set failed: someone else changed the record first."""


class IssuerError(OperationError):
    """The issuer could not create, disable or delete a key."""


class PersonNeeded(IssuerError):
    """The issuer waits for a person (the ``manual`` issuer): a key to be created and
    handed over with ``rotatectl supply``, or one to be revoked at the service and
    confirmed with ``rotatectl confirm``. Not a failure: the rotation waits, ``run``
    returns at once, and the person is told (then reminded, then escalated).

    ``ask`` names what is awaited ("supply v3", "revoke v2"); the message is the
    instructions, one line; ``remind_every`` and ``deadline`` (timedeltas or None) say
    when to remind and when to escalate."""

    exit_code = ExitCode.ATTENTION

    def __init__(
        self,
        ask: str,
        instructions: str,
        *,
        owner: str = "",
        remind_every: timedelta | None = None,
        deadline: timedelta | None = None,
    ) -> None:
        super().__init__(instructions)
        self.ask = ask
        self.instructions = instructions
        self.owner = owner
        self.remind_every = remind_every
        self.deadline = deadline


class ProbeError(OperationError):
    """The usage probe could not answer."""


class AuditError(OperationError):
    """The audit log could not be read or written (full disk, file too large, permissions).

    One line, ``audit log <path>: <reason>``, then what to do when the reason is a
    permission. A failed append leaves the log as it was, so a caller can refuse the
    action it was about to record.
    """


class NotifierError(OperationError):
    """A notifier could not deliver an event. Never fails a rotation."""


class AttentionError(RotatectlError):
    """Needs a human: the old key is still used past max_overlap, or drift."""

    exit_code = ExitCode.ATTENTION


class LockedError(RotatectlError):
    """Another run holds the credential's lease lock."""

    exit_code = ExitCode.LOCKED

    def __init__(self, credential: str, holder: str, since: str, token: int | None = None) -> None:
        super().__init__(f"{credential}: locked by {holder} since {since}")
        self.credential = credential
        self.holder = holder
        self.since = since
        # The holder's fencing token, so a caller that proves the holder dead can steal it.
        self.token = token
