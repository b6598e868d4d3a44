"""Drift: a store changed behind rotatectl's back.

Generic check: the current value no longer matches the current version's
fingerprint. A store adds checks of its own layout (a label moved, a field
overwritten) and repairs through the drift feature of
:class:`rotatectl.ports.SecretStore` (``drift``, ``drift_many``, ``adopt``,
``restore``; defaults on :class:`rotatectl.ports.StoreBase`).
While a credential has drift, ``run`` and ``rotate`` refuse to start a
rotation on it (exit 3) until the operator adopts the store's state (the
store's value becomes a new current version; the replaced key goes through the
overlap and the usage gate: :func:`adopt`) or restores rotatectl's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from . import secretformat
from .errors import NotFoundError, RotatectlError, UsageError
from .keyformat import fingerprint_of, key_id_of
from .machine import current_version, plan_adoption

if TYPE_CHECKING:
    from .model import Version
    from .ports import Target


def detect(target: Target, versions: Sequence[Version] | None = None) -> list[str]:
    """One line per difference between the store and rotatectl's records; [] when none.

    ``versions``: the credential's versions when the caller has just read them
    (``status`` reads many at once), so they are not read again.
    """
    store = target.store
    if store.immutable_versions:
        # A version's value cannot change (AWS): the store's own check of which
        # version clients get proves the value; reading it adds nothing.
        return store.drift(target.path)
    if versions is None:
        versions = store.versions(target.path)
    if "batched-reads" in store.features():
        # The batched form reads the current value once for both checks (OpenBao: the
        # client path, which its drift check reads too).
        found = detect_many([target], {target.name: versions})
        if target.name in found:
            return found[target.name]
    value: str | None = None
    if current_version(versions) is not None:
        try:
            value = store.read_value(target.path)
        except NotFoundError:
            value = None
    problems = value_problems(versions, value)
    problems.extend(store.drift(target.path))
    return problems


def value_problems(versions: Sequence[Version], value: str | None) -> list[str]:
    """The generic check: the current value (None: gone) against the current version."""
    current = current_version(versions)
    if current is None:
        return []
    if value is None:
        return [f"v{current.number} is current but its value is gone"]
    secretformat.register(value)
    if secretformat.matches(current, value):
        return []
    return [
        f"the current value does not match v{current.number} ({current.key_id}): "
        "it was changed outside rotatectl"
    ]


def detect_many(
    targets: Sequence[Target], versions: Mapping[str, Sequence[Version]]
) -> dict[str, list[str]]:
    """:func:`detect` of many credentials (by name) whose ``versions`` were read in a
    batch, one ``current_values_many`` (not needed with ``immutable_versions``) and one
    ``drift_many`` per store. Credentials without versions read, or of a store whose
    batch failed, are left out: :func:`detect` them one at a time.
    """
    by_store: dict[int, list[Target]] = {}
    for t in targets:
        if t.name in versions:
            by_store.setdefault(id(t.store), []).append(t)
    found: dict[str, list[str]] = {}
    for group in by_store.values():
        store = group[0].store
        paths = [t.path for t in group]
        proven = store.immutable_versions
        try:
            values: dict[str, str | None] = {}
            if not proven:
                values = store.current_values_many(
                    [t.path for t in group if current_version(versions[t.name]) is not None]
                )
            extra = store.drift_many(paths)
        except RotatectlError:
            continue
        for t in group:
            checked = [] if proven else value_problems(versions[t.name], values.get(t.path))
            found[t.name] = [*checked, *extra.get(t.path, [])]
        values.clear()  # drop the values as soon as they are checked
    return found


def resolve(target: Target, how: str, at: datetime) -> None:
    """``adopt`` (take the store as truth: :func:`adopt`) or ``restore`` (put
    rotatectl's state back: the store's ``restore``), under the credential's lease
    (taken here, never by the store), so no rotation step interleaves. Raises
    LockedError when a run holds the lease, UsageError when the store has no "drift"
    feature or the adoption is refused, ConflictError when the store cannot repair."""
    from .engine.lease import LeaseHolder, default_holder
    from .ports import SystemClock

    store = target.store
    if "drift" not in store.features():
        raise UsageError(f"{target.path}: this store cannot {how} drift")
    lease = LeaseHolder(store, target.path, default_holder(), timedelta(minutes=5), SystemClock())
    lease.acquire()
    try:
        if how == "adopt":
            adopt(target, at)
        elif how == "restore":
            store.restore(target.path, at)
        else:  # pragma: no cover - the CLI offers only these two
            raise UsageError(f"unknown drift resolution {how!r}")
    finally:
        lease.release()


def adopt(target: Target, at: datetime) -> None:
    """The one meaning of adopting drift, for every store (the caller holds the lease).

    The value clients read (``client_value``), when it is not the current version's,
    becomes a new current version (:func:`rotatectl.machine.plan_adoption`): recorded
    (``adopt_value``), a rotation record in its overlap written, then promoted, so the
    replaced key goes through the overlap and the usage gate like any old key and
    ``run`` retires it. Each write is idempotent and the plan is made again from what
    the store holds, so an adoption interrupted anywhere is finished by the next one.
    Then the store takes the rest of its layout as the truth (``adopt``).
    """
    store, path = target.store, target.path
    versions, rotation, revision = store.state(path)
    value = store.client_value(path)
    if value is not None:
        secretformat.register(value)
        key = adoptable_key(target, value)
        field = target.secret_format.field
        fingerprint = fingerprint_of(key)
        plan = plan_adoption(
            target.name,
            rotation,
            versions,
            lambda v: secretformat.matches(v, value),
            fingerprint,
            key_id_of(key, fingerprint),
            at,
            field=field,
        )
        if plan is not None:
            if plan.new:
                store.adopt_value(path, plan.target, value)
            if plan.record is not None:
                store.save_rotation(path, plan.record, revision)
            replaced = plan.replaced.version_id if plan.replaced is not None else None
            store.promote(path, plan.target.version_id, replaced, at)
        del value
    store.adopt(path, at)


def adoptable_key(target: Target, value: str) -> str:
    """The key in ``value``, which clients read, when it has the format the config
    declares for ``target``: never is a document taken as a bare key, or the reverse,
    so that no later rotation changes the shape clients read. UsageError otherwise
    (naming the problem, never the value)."""
    fmt = target.secret_format
    if not fmt.document:
        try:
            secretformat.spans(value)
        except secretformat.DocumentError:
            return value
        raise UsageError(
            f"{target.name}: clients read a JSON document, but the config declares a bare "
            'key; declare format = "json" and the field that holds the key, then adopt'
        )
    try:
        return secretformat.key_of(value, fmt.field)
    except secretformat.DocumentError as exc:
        raise UsageError(
            f"{target.name}: clients read a value that is not the configured "
            f"{fmt.describe()}: {exc}; it cannot be adopted"
        ) from None
