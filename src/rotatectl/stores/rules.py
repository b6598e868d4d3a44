"""Store rules shared by every store implementation: pure decisions, no I/O.

Each store reads its current rows, asks a ``plan_*`` function what the
operation means (or which error it raises), and writes the answer with its
own compare-and-set. Sharing the rules keeps the in-memory fake, the local
store and the remote stores in agreement about the SecretStore contract.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ..errors import ConflictError, LockedError, NotFoundError, UsageError
from ..model import AcceptedKey, Lease, Rotation, Version, VersionState, iso

RESERVED = ".rotatectl"
"""Path segments starting with this are the stores' own: the AWS record secret
``<path>/.rotatectl`` (and its access probe ``<path>/.rotatectl-access-check``),
Vault's ``P/.rotatectl/index``, ``.../versions/<id>``, ``.../rotation``, ``.../lock``."""

_PATH_CHARS = re.compile(r"[A-Za-z0-9/_.+=@-]{1,200}")


def path_problem(path: object) -> str | None:
    """Why ``path`` cannot be a credential name or a credential's path in any store,
    or None when it can: the one rule of config load, the command line and every store.

    Names become store paths (secret names, KV paths, file names), so they keep to
    a character set every store accepts, cannot climb out of a folder (no ``.`` or
    ``..`` segment) and cannot name a store's own records (no segment starting
    with :data:`RESERVED`). A parent path (``svc/a`` of ``svc/a/b``) is fine: what
    a store keeps for ``svc/a`` besides ``svc/a`` itself is under
    ``svc/a/.rotatectl``, which no credential can name.
    """
    if not isinstance(path, str) or not _PATH_CHARS.fullmatch(path):
        return "use 1-200 characters of A-Z a-z 0-9 / _ . + = @ -"
    if path.startswith("/") or path.endswith("/"):
        return "must not start or end with '/'"
    if "//" in path:
        return "must not contain '//'"
    segments = path.split("/")
    if any(part in (".", "..") for part in segments):
        return "must not contain a '.' or '..' segment"
    if any(part.startswith(RESERVED) for part in segments):
        return f"no segment may start with {RESERVED!r}: the stores keep their own records there"
    return None


def check_path(path: str) -> str:
    """Return ``path`` if :func:`path_problem` finds nothing, else raise UsageError."""
    problem = path_problem(path)
    if problem:
        raise UsageError(f"invalid credential path {path!r}: {problem}")
    return path


# The only moves set_state makes: retire (abort or end of overlap), destroy,
# and reinstate (rollback to a retired key).
# Destroy only from RETIRED: disable before destroy (invariant 3).
_MOVES = {
    # Reinstate a retired key for a rollback: accepted again, then promoted.
    (VersionState.RETIRED, VersionState.PENDING),
    (VersionState.PENDING, VersionState.RETIRED),
    (VersionState.PREVIOUS, VersionState.RETIRED),
    (VersionState.RETIRED, VersionState.DESTROYED),
}


@dataclass(frozen=True)
class LockRow:
    """The stored state of one lease lock; ``holder`` is None once released."""

    holder: str | None
    token: int
    acquired: datetime | None
    expires: datetime | None


def plan_publish(path: str, existing: Sequence[Version], version: Version) -> Version | None:
    """The version to add, or None when it is already there (idempotent publish)."""
    for v in existing:
        if v.version_id == version.version_id:
            if v.fingerprint == version.fingerprint:
                return None
            raise ConflictError(
                f"{path}: version {version.version_id} already exists with another fingerprint"
            )
    for v in existing:
        if v.number == version.number:
            raise ConflictError(
                f"{path}: version number {version.number} is taken by {v.version_id}"
            )
    return replace(version, state=VersionState.PENDING)


def plan_promote(
    path: str,
    existing: Sequence[Version],
    version_id: str,
    expected_current: str | None,
    at: datetime,
) -> list[Version]:
    """The versions to rewrite (old current first), [] for a no-op."""
    by_id = {v.version_id: v for v in existing}
    target = by_id.get(version_id)
    if target is None:
        raise NotFoundError(f"{path}: no version {version_id}")
    current = next((v for v in existing if v.state is VersionState.CURRENT), None)
    current_id = current.version_id if current else None
    if target.state is VersionState.CURRENT:
        # Already done: a resumed promotion (the expected old current is now
        # PREVIOUS), or a resumed first promotion (expected None).
        prior = by_id.get(expected_current) if expected_current else None
        if expected_current in (None, version_id) or (
            prior is not None and prior.state is VersionState.PREVIOUS
        ):
            return []
    if current_id != expected_current:
        raise ConflictError(
            f"{path}: expected current version {expected_current or 'none'}, "
            f"found {current_id or 'none'}"
        )
    if target.state not in (VersionState.PENDING, VersionState.PREVIOUS):
        raise ConflictError(
            f"{path}: version {version_id} is {target.state}; "
            "only a pending or previous version can be promoted"
        )
    changed = [target.with_state(VersionState.CURRENT, at)]
    if current is not None:
        # Demote first: at no point may two versions be current.
        changed.insert(0, current.with_state(VersionState.PREVIOUS, at))
    return changed


def plan_set_state(
    path: str,
    existing: Sequence[Version],
    version_id: str,
    state: VersionState,
    expected: VersionState,
    at: datetime,
) -> Version | None:
    """The version after the move, or None when it is already in ``state``."""
    if (expected, state) not in _MOVES:
        raise ConflictError(f"{path}: a version cannot move from {expected} to {state}")
    target = next((v for v in existing if v.version_id == version_id), None)
    if target is None:
        raise NotFoundError(f"{path}: no version {version_id}")
    if target.state is state:
        return None
    if target.state is VersionState.CURRENT:
        raise ConflictError(f"{path}: version {version_id} is current; promote another first")
    if target.state is not expected:
        raise ConflictError(f"{path}: version {version_id} is {target.state}, not {expected}")
    return target.with_state(state, at)


def accepted(versions: Iterable[Version], credential: str) -> list[AcceptedKey]:
    """The verifier view of ``versions``: accepted states only, no values."""
    return [
        AcceptedKey(
            credential=credential,
            version_id=v.version_id,
            key_id=v.key_id,
            fingerprint=v.fingerprint,
            state=v.state,
            scopes=v.scopes,
            expires=v.expires,
        )
        for v in versions
        if v.state.accepted
    ]


def plan_acquire(
    path: str,
    row: LockRow | None,
    holder: str,
    ttl: timedelta,
    now: datetime,
    steal_token: int | None,
) -> Lease:
    """The new lease, or LockedError while someone else validly holds it."""
    if row is not None and row.holder is not None:
        live = row.expires is None or row.expires > now
        if live and (steal_token is None or steal_token != row.token):
            raise LockedError(path, row.holder, iso(row.acquired) or "unknown", row.token)
    token = (row.token if row else 0) + 1
    return Lease(credential=path, holder=holder, token=token, acquired=now, expires=now + ttl)


def plan_renew(row: LockRow | None, lease: Lease, ttl: timedelta, now: datetime) -> Lease:
    """The extended lease. Renewing an expired lease nobody took over is fine."""
    if row is None or row.token != lease.token or row.holder != lease.holder:
        raise ConflictError(f"{lease.credential}: lease {lease.token} was lost")
    return replace(lease, expires=now + ttl)


def plan_release(row: LockRow | None, lease: Lease) -> bool:
    """Whether to release; False when already released with this very token."""
    if row is None or row.token != lease.token:
        raise ConflictError(f"{lease.credential}: lease {lease.token} is stale")
    if row.holder is None:
        return False
    if row.holder != lease.holder:
        raise ConflictError(f"{lease.credential}: lease {lease.token} is held by {row.holder}")
    return True


def lost_values(versions: Sequence[Version], values: Mapping[str, str]) -> list[str]:
    """The versions (ids) other than the current one whose value in ``values`` (by
    version id) is not the one they were recorded with: in a store that keeps one copy
    a value changed in place and then adopted as a new version. Their values are lost
    (wiped, never handed out again); they stay accepted by fingerprint until retired."""
    from .. import secretformat  # pure; imported here to keep rules' imports small

    lost = []
    for v in versions:
        value = values.get(v.version_id)
        if v.state is VersionState.CURRENT or value is None:
            continue
        secretformat.register(value)
        if not secretformat.matches(v, value):
            lost.append(v.version_id)
    return lost


def check_revision(path: str, revision: int, expected: int) -> None:
    """save_rotation's compare-and-set: ConflictError unless the rotation record is at
    revision ``expected``."""
    if revision != expected:
        raise ConflictError(f"{path}: rotation record is at revision {revision}, not {expected}")


def landed(stored: Rotation | None, revision: int, rotation: Rotation, expected: int) -> bool:
    """Whether a commit of ``rotation`` at ``expected`` is stored already (``stored`` at
    ``revision``): repeated after its reply was lost, it has nothing to write."""
    return stored == rotation and revision == expected + 1


def check_has_value(path: str, version_id: str, has_value: bool) -> None:
    """Promote's guard in a store that keeps one copy: ConflictError when the version
    to make current has no value (lost: see :func:`lost_values`)."""
    if not has_value:
        raise ConflictError(
            f"{path}: version {version_id} has no value (it was changed outside rotatectl "
            "and then replaced); it cannot be current again"
        )


SINGLE_COPY = (
    "this store keeps a single copy of each value, so there is nothing to restore from; "
    "adopt the store's value (--adopt) or rotate"
)
