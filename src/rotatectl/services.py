"""What commands do beyond the engine, as functions that return results: the CLI
parses and renders, these decide and act. Each raises rotatectl errors only.

- :func:`read_value`: a key value for ``get``/``exec``, audited before it is revealed.
- :func:`emergency`: the checks around the runner's emergency, and what it reports.
- :func:`supply`, :func:`confirm`: a person's part in a ``manual`` issuer's rotation.
- :func:`check_drift`: drift of one credential, and its repair (``check --adopt``
  or ``--restore``), audited.
- :func:`check`: everything ``check`` checks, as a list of :class:`CheckItem`;
  :func:`check_store`, :func:`check_target`, :func:`check_notifier` are what it
  asks of each adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ExitCode, RotatectlError, UsageError
from .ports import STORE_FEATURES, Target

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from .audit import AuditLog
    from .engine import Result, Runner
    from .workspace import Workspace


def read_value(ws: Workspace, name: str, number: int | None, via: str, audit: AuditLog) -> str:
    """The value of version ``number`` (default: current), audited in ``audit``
    before it is revealed: an audit log that cannot be written refuses (AuditError).
    UnknownCredentialError for a credential that is not there, UsageError for a version
    number it does not have, NotFoundError for a value that is gone (destroyed)."""
    from .machine import numbered

    target = ws.target(name)
    versions = target.store.versions(target.path)
    if not versions:
        raise ws.unknown(name)
    version_id = None if number is None else numbered(name, versions, number).version_id
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


def field_values(name: str, value: str, fields: Sequence[str]) -> list[str]:
    """Each of ``fields`` of the JSON secret ``value`` of credential ``name``, as
    :func:`rotatectl.secretformat.field_text` gives it. UsageError (naming the field
    and the fields there are, never a value) when ``value`` is not a JSON document or
    lacks one."""
    from . import secretformat

    if not fields:
        return []
    secretformat.register(value)
    try:
        there = secretformat.fields(value)
    except secretformat.DocumentError:
        raise UsageError(f"{name}: its value is not a JSON document; it has no fields") from None
    missing = [f for f in fields if f not in there]
    if missing:
        raise UsageError(
            f"{name}: its document has no field {missing[0]!r} (it has "
            f"{', '.join(sorted(there)) or 'none'})"
        )
    return [secretformat.field_text(value, f) for f in fields]


def db_init(ws: Workspace, name: str, dry_run: bool, audit: Callable[[], AuditLog]) -> list[str]:
    """``db init``: the statements credential ``name``'s issuer needs to set up its side
    (its "setup" feature); unless ``dry_run``, audited and then run (an audit log that
    cannot take the record refuses it: AuditError). UsageError when the issuer has
    nothing to set up."""
    from .ports import issuer_features

    target = ws.target(name)
    spec = ws.config.credential(name).issuer
    if "setup" not in issuer_features(target.issuer):
        raise UsageError(f"{name}: issuer type {spec.type!r} has nothing to set up")
    if dry_run:
        return target.issuer.setup(name, apply=False)  # type: ignore[attr-defined, no-any-return]
    planned: list[str] = target.issuer.setup(name, apply=False)  # type: ignore[attr-defined]
    if not planned:
        return []
    audit().append("db-init", name, outcome="ok", reason=f"{len(planned)} statement(s)")
    done: list[str] = target.issuer.setup(name, apply=True)  # type: ignore[attr-defined]
    return done


def emergency(
    ws: Workspace,
    runner: Runner,
    name: str,
    reason: str,
    propagation: timedelta | None,
    *,
    started: float,
    confirm: Callable[[str], None],
) -> Result:
    """``emergency``: check there is a key to replace, ``confirm`` (which raises to
    refuse), then supersede everything with a new key; the result says how long after
    ``started`` (a monotonic time) the old key was revoked, and whether the audit log
    missed part of it. UsageError for an empty reason or an unknown credential."""
    from .errors import UsageError

    if not reason.strip():
        raise UsageError("--reason must say why (it goes into the incident record)")
    target = ws.target(name)
    if not target.store.versions(target.path):
        raise ws.unknown(name)
    confirm(f"Revoke the current key of {name} now? Clients still using it will fail")
    result = runner.emergency(target, reason, propagation, started=started)
    if result.revoked_after is not None and any("AUDIT LOG" in w for w in result.warnings):
        result.message += "; the audit log missed part of this emergency (see the warnings)"
    return result


def supply(ws: Workspace, runner: Runner, name: str, key: str, expires: datetime | None) -> Result:
    """``supply``: hand ``key`` to credential ``name``'s ``manual`` issuer and drive its
    rotation on (start one when none is in flight). UsageError (nothing changed) when
    the issuer is not manual, no rotation waits for a key, or the key is refused."""
    from .issuers.manual import ManualIssuer
    from .machine import person_waiting

    target = ws.target(name)
    issuer = target.issuer
    if not isinstance(issuer, ManualIssuer):
        raise UsageError(f"{name}: its issuer is not manual: it makes its own keys")
    versions = target.store.versions(target.path)
    rotation, _ = target.store.load_rotation(target.path)
    in_flight = rotation is not None and not rotation.phase.terminal
    if in_flight and rotation is not None:
        waiting = person_waiting(rotation)
        if waiting is None or not waiting[0].startswith("supply"):
            raise UsageError(
                f"{name}: rotation {rotation.id} does not wait for a key (it is in "
                f"{rotation.phase.value}): nothing was changed"
            )
    why = issuer.refusal(key, [v.fingerprint for v in versions])
    if why is not None:
        raise UsageError(f"{name}: key refused: {why}; nothing was changed")
    issuer.supply(key, expires)
    if in_flight:
        return runner.advance(target, start_if_due=False)
    return runner.rotate(target, reason="a new key supplied by hand")


def confirm(ws: Workspace, runner: Runner, name: str) -> Result:
    """``confirm``: the person did what credential ``name``'s rotation waits for; drive
    it on. UsageError when the issuer is not manual or nothing waits for a person."""
    from .issuers.manual import ManualIssuer
    from .machine import person_waiting

    target = ws.target(name)
    if not isinstance(target.issuer, ManualIssuer):
        raise UsageError(f"{name}: its issuer is not manual: nothing to confirm")
    rotation, _ = target.store.load_rotation(target.path)
    waiting = person_waiting(rotation)
    if waiting is None or waiting[0].startswith("supply"):
        what = "a key (use supply)" if waiting else "nothing from a person"
        raise UsageError(f"{name}: its rotation waits for {what}: nothing to confirm")
    target.issuer.confirm()
    return runner.advance(target, start_if_due=False)


def where_it_stands(ws: Workspace, names: list[str]) -> str:
    """For an interrupted ``rotate --wait``: each credential's rotation in flight (its
    phase) or that none is, read from the store, and the commands that go on."""
    parts = []
    for name in names:
        try:
            target = ws.target(name)
            _, rotation, _ = target.store.state(target.path)
        except RotatectlError as exc:
            parts.append(f"{name}: state unknown ({exc})")
            continue
        if rotation is None or rotation.phase.terminal:
            parts.append(f"{name}: no rotation in flight")
        else:
            parts.append(
                f"{name}: rotation {rotation.id} is in its {rotation.phase.value} phase "
                f"(v{rotation.new_version_number}); `rotatectl rotate {name} --wait` "
                "follows it again, `rotatectl run` (cron) finishes it"
            )
    return "interrupted; nothing was lost. " + "; ".join(parts)


def adhoc_notes(ws: Workspace, names: list[str]) -> list[str]:
    """One line for each of ``names`` that is an ad-hoc credential (declared nowhere)
    with no key yet, saying so and where its state will live: run from the wrong
    directory, ``rotate`` would otherwise silently start a new credential."""
    notes = []
    for name in names:
        credential = ws.config.credential(name)
        if credential.declared:
            continue
        target = ws.target(name)
        if target.store.versions(target.path):
            continue
        why = (
            f"not declared in {ws.config.file}"
            if ws.config.file is not None
            else f"no config file: {ws.config.source()}"
        )
        notes.append(
            f"{name}: a new ad-hoc credential ({why}); its keys go to store "
            f"{target.store_name!r}, state in {ws.config.state_dir}"
        )
    return notes


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
    return f"{done}: " + "; ".join(problems) + (_adoption_note(target) if how == "adopt" else "")


def _adoption_note(target: Target) -> str:
    """What an adoption left to do, for the operator: the replaced key's way out."""
    from .machine import find_version

    versions, rotation, _ = target.store.state(target.path)
    if rotation is None and len(versions) == 1 and versions[0].rotation_id is None:
        first = versions[0]
        return (
            f"; taken over as v1 ({first.key_id}), current, as it is (the value and its "
            f"format, {target.secret_format.describe()}, unchanged); the next rotation "
            "replaces it through the normal phases"
        )
    if rotation is None or rotation.phase.terminal or rotation.reason != "drift adopted":
        return ""
    new = find_version(versions, rotation.new_version_id)
    old = find_version(versions, rotation.old_version_id)
    if new is None or old is None:
        return ""
    return (
        f"; v{new.number} ({new.key_id}) is current; v{old.number} ({old.key_id}) stays "
        "accepted through the overlap and the usage gate, then `rotatectl run` retires it"
    )


def _denied(adapter: object) -> None:
    from .errors import PermissionDeniedError
    from .ports import AccessCheck

    problems = adapter.check_access() if isinstance(adapter, AccessCheck) else []
    if problems:
        raise PermissionDeniedError("; ".join(problems))


def check_store(ws: Workspace, name: str) -> str:
    """Reach store ``name`` and check its permissions (on the declared credentials'
    paths too); "N credentials", or PermissionDeniedError naming what is missing."""
    from .errors import PermissionDeniedError

    store = ws.store(name)
    paths = store.list_paths()
    # Also the declared credentials that do not exist in the store yet.
    declared = [c.path for c in ws.config.credentials.values() if name in c.stores]
    problems = store.check_access(paths=sorted(set(declared) | set(paths)))
    if problems:
        raise PermissionDeniedError("; ".join(problems))
    lacks = sorted(set(STORE_FEATURES) - {"destinations"} - store.features())
    count = f"{len(paths)} credential" + ("" if len(paths) == 1 else "s")
    return count + (f"; optional features it lacks: {', '.join(lacks)}" if lacks else "")


def check_target(ws: Workspace, name: str) -> str:
    """Build credential ``name``'s adapters, check the issuer's and probe's
    permissions, and that the secret format the config declares is the current
    version's; "store S, path P" (and the format of a JSON secret), PermissionDeniedError,
    or UsageError for a format the next rotation would refuse to change."""
    from .machine import current_version, format_refusal

    target = ws.target(name)
    for adapter in (target.issuer, target.probe):
        _denied(adapter)
    fmt = target.secret_format
    current = current_version(target.store.versions(target.path))
    if current is not None and current.field != fmt.field:
        raise UsageError(format_refusal(name, current, fmt.field))
    shape = f", {fmt.describe()}" if fmt.document else ""
    return f"store {target.store_name}, path {target.path}{shape}"


def check_notifier(ws: Workspace, name: str) -> str:
    """Build notifier ``name`` and ask it what would make a delivery fail now (an
    unset variable, an unreachable endpoint, a refused login), without sending an
    event; its type (a plug-in without a check says so), or NotifierError with one
    "; "-joined line of problems."""
    from .errors import NotifierError
    from .ports import AccessCheck

    notifier = ws.notifier(name)
    kind = ws.config.notifiers[name].type
    if not isinstance(notifier, AccessCheck):
        return f"{kind}; without access-check"
    problems = notifier.check_access()
    if problems:
        raise NotifierError("; ".join(problems))
    return kind


@dataclass(frozen=True)
class CheckItem:
    """One line of ``check``'s report: what was checked, and its error if it failed."""

    item: str
    detail: str = ""
    error: RotatectlError | None = None

    def to_dict(self) -> dict[str, str]:
        status = "error" if self.error else "ok"
        return {"item": self.item, "status": status, "detail": self.detail}


def check(
    ws: Workspace, names: list[str], how: str | None, audit: Callable[[], AuditLog]
) -> list[CheckItem]:
    """Everything ``check`` checks, in order: that the audit log can take a record,
    every store, notifier and declared credential, then drift of ``names`` (default:
    every credential), resolved as ``how`` says ("adopt", "restore" or None). Each
    failure is an item, not raised."""
    items: list[CheckItem] = []

    def probe(item: str, fn: Callable[[], str | None]) -> None:
        try:
            items.append(CheckItem(item, fn() or ""))
        except RotatectlError as exc:
            items.append(CheckItem(item, str(exc), exc))

    cfg = ws.config
    probe("audit log", lambda: _check_audit(audit(), cfg.audit_key_env))
    for name in cfg.used_stores():
        probe(f"store {name}", lambda n=name: check_store(ws, n))  # type: ignore[misc]
    for name in sorted(cfg.notifiers):
        probe(f"notifier {name}", lambda n=name: check_notifier(ws, n))  # type: ignore[misc]
    for name in sorted(cfg.credentials):
        probe(f"credential {name}", lambda n=name: check_target(ws, n))  # type: ignore[misc]
    for name in names or ws.names():
        probe(f"drift {name}", lambda n=name: check_drift(ws, n, how, audit))  # type: ignore[misc]
    return items


def _check_audit(log: AuditLog, key_env: str) -> str:
    log.check_writable()
    return "writable" + ("" if log.key else f" (not HMAC-keyed: set ${key_env} to key it)")


def check_exit(items: list[CheckItem]) -> int:
    """``check``'s exit code: a settings mistake first (2), then an operation failure
    such as an unreachable store (1), a lock (4), then drift that needs a decision (3)."""
    codes = {item.error.exit_code for item in items if item.error is not None}
    for code in (ExitCode.USAGE, ExitCode.FAILED, ExitCode.LOCKED, ExitCode.ATTENTION):
        if code in codes:
            return int(code)
    return int(ExitCode.OK)
