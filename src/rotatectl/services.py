"""What commands do beyond the engine, as functions that return results: the CLI
parses and renders, these decide and act. Each raises rotatectl errors only.

- :func:`read_value`: a key value for ``get``/``exec``, audited before it is revealed.
- :func:`check_drift`: drift of one credential, and its repair (``check --adopt``
  or ``--restore``), audited.
- :func:`check_store`, :func:`check_target`: what ``check`` asks of each adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .audit import AuditLog
    from .workspace import Workspace


def read_value(ws: Workspace, name: str, number: int | None, via: str, audit: AuditLog) -> str:
    """The value of version ``number`` (default: current), audited in ``audit``
    before it is revealed: an audit log that cannot be written refuses (AuditError).
    UnknownCredentialError / NotFoundError for a credential or version that is not there."""
    from .errors import NotFoundError, UnknownCredentialError

    target = ws.target(name)
    versions = target.store.versions(target.path)
    if not versions:
        raise UnknownCredentialError(f"unknown credential {name!r}: no versions in its store")
    version_id = None
    if number is not None:
        match = [v for v in versions if v.number == number]
        if not match:
            raise NotFoundError(f"{name}: no version v{number}")
        version_id = match[0].version_id
    value: str = target.store.read_value(target.path, version_id)
    wanted = version_id or next(
        (v.version_id for v in versions if v.state.value == "current"), None
    )
    shown = next((v for v in versions if v.version_id == wanted), None)
    audit.append(
        "read-value",
        name,
        outcome="ok",
        via=via,
        version=shown.number if shown else None,
        key_id=shown.key_id if shown else None,
        fingerprint=shown.fingerprint if shown else None,
    )
    return value


def check_drift(ws: Workspace, name: str, how: str | None, audit: Callable[[], AuditLog]) -> str:
    """Report drift (AttentionError); with ``how`` (adopt or restore), resolve it and
    check again. The repair is audited before the store is touched, so an audit
    log that cannot be written refuses it (AuditError)."""
    from .drift import detect, resolve
    from .errors import AttentionError
    from .ports import SystemClock

    target = ws.target(name)
    problems = detect(target)
    if not problems:
        return "none"
    if how is None:
        raise AttentionError(
            "DRIFT: " + "; ".join(problems) + f" (resolve: check {name} --adopt | --restore)"
        )
    done = {"adopt": "adopted", "restore": "restored"}[how]
    audit().append(f"drift-{done}", name, outcome="ok", reason="; ".join(problems))
    resolve(target, how, SystemClock().now())
    left = detect(target)
    if left:
        raise AttentionError(f"still drifting after {how}: " + "; ".join(left))
    return f"{done}: " + "; ".join(problems)


def _denied(adapter: object) -> None:
    from .errors import PermissionDeniedError
    from .ports import AccessCheck

    problems = adapter.check_access() if isinstance(adapter, AccessCheck) else []
    if problems:
        raise PermissionDeniedError("; ".join(problems))


def check_store(ws: Workspace, name: str) -> str:
    """Reach store ``name`` and check its permissions (on the declared credentials'
    paths too); "N credentials", or PermissionDeniedError naming what is missing."""
    import inspect

    from .errors import PermissionDeniedError

    store = ws.store(name)
    count = len(store.list_paths())
    check = getattr(store, "check_access", None)
    if check is not None and "paths" in inspect.signature(check).parameters:
        # Also the declared credentials that do not exist in the store yet.
        declared = [c.path for c in ws.config.credentials.values() if name in c.stores]
        problems = check(paths=sorted(set(declared) | set(store.list_paths())))
        if problems:
            raise PermissionDeniedError("; ".join(problems))
    else:
        _denied(store)
    return f"{count} credentials"


def check_target(ws: Workspace, name: str) -> str:
    """Build credential ``name``'s adapters and check the issuer's and probe's
    permissions; "store S, path P", or PermissionDeniedError."""
    target = ws.target(name)
    for adapter in (target.issuer, target.probe):
        _denied(adapter)
    return f"store {target.store_name}, path {target.path}"
