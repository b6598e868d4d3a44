"""The steps: one function per action kind of the machine, looked up in :data:`STEPS`.

Each step checks whether it was already done before doing it (invariant 6),
persists its intent before a side effect and its result after it, and passes
the side-effect boundaries (``Step.boundary``) that the crash tests kill at.
A step gets everything through its :class:`Step`; the session builds one per
action and reads back ``usage`` and ``driving`` when the step changes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from .. import redact, secretformat
from ..errors import ConflictError, ProbeError, UsageError
from ..machine import (
    Action,
    ActionKind,
    current_version,
    find_version,
    gated_version,
    plan_rollback,
    watches_failed_auth,
)
from ..model import (
    KeyUsage,
    Phase,
    Result,
    Rotation,
    RotationKind,
    UsageStatus,
    Version,
    VersionState,
)
from ..ports import Promote, Publish, SetState, VersionChange, apply_change, issuer_features
from .effects import Effects

if TYPE_CHECKING:
    from ..ports import Clock, Target

T = TypeVar("T")


@dataclass
class Step:
    """One action to execute, with what the session read just before it."""

    target: Target
    clock: Clock
    effects: Effects
    retrying: Callable[[Callable[[], Any]], Any]
    boundary: Callable[[str], None]
    save: Callable[[Rotation, int], int]
    result: Result
    action: Action
    rotation: Rotation | None  # None only between rotations (a destroy)
    revision: int
    versions: Sequence[Version]
    now: datetime
    # Set by the step for the session: the probe's answers, and the id of the
    # rotation the session drives from now on (an automatic rollback replaces it).
    usage: dict[str, KeyUsage] | None = None
    driving: str | None = None
    retired: list[Version] = field(default_factory=list)
    promoted: Version | None = None

    def retry(self, fn: Callable[[], T]) -> T:
        """``fn`` under the runner's retry policy for transient store errors."""
        answer: T = self.retrying(fn)
        return answer

    @property
    def atomic(self) -> bool:
        """Whether the store saves a version change and the record in one write."""
        return "atomic-record" in self.target.store.features()

    def commit(
        self, change: VersionChange, rotation: Rotation, revision: int, boundary: str
    ) -> int:
        """Make ``change`` and save ``rotation`` (at ``revision``); the new revision.

        One write where the store is atomic: then nothing lies between the two, and
        ``boundary`` is passed after it. Otherwise the change, ``boundary``, the record.
        """
        t = self.target
        if self.atomic:
            saved = self.retry(lambda: t.store.commit(t.path, change, rotation, revision))
            self.boundary(boundary)
            return int(saved)
        self.retry(lambda: apply_change(t.store, t.path, change))
        self.boundary(boundary)
        return self.save(rotation, revision)

    @property
    def record(self) -> Rotation:
        """The rotation this step advances (every step but a destroy has one)."""
        assert self.rotation is not None
        return self.rotation

    @property
    def emergency(self) -> bool:
        return self.record.kind is RotationKind.EMERGENCY


# -- publish ---------------------------------------------------------------------


def publish(st: Step) -> None:
    """Mint the new key and publish it as pending in every destination (a rollback
    makes the earlier key accepted again instead); propagation counts from now."""
    t, rotation = st.target, st.record
    saved: list[Rotation] = []  # the record, when the publish saved it with the version
    if rotation.kind is RotationKind.ROLLBACK:
        new = _reinstate(st)
    else:
        found = find_version(st.versions, rotation.new_version_id)
        if found is None:
            known: list[Sequence[Version]] = [st.versions]  # what this step just read
            found = st.retry(lambda: _mint(st, known.pop() if known else None, saved))
        new = found
    if saved:
        rotation = saved[0]
    else:
        if "destinations" in t.store.features():  # pending in every destination first
            st.retry(lambda: t.store.replicate(t.path, rotation.new_version_id))
        published = st.clock.now()
        rotation = rotation.advance(Phase.PROPAGATE, published, published=published)
        st.save(rotation, st.revision)
    st.boundary("after-publish-record")
    if rotation.kind is not RotationKind.ROLLBACK:
        st.result.steps.append(f"published v{new.number} ({new.key_id}) as pending")
    st.effects.event(st.result, "published", rotation=rotation, version=new)


def _mint(st: Step, versions: Sequence[Version] | None, saved: list[Rotation]) -> Version:
    """Mint the key and publish it. ``versions``: what the step has just read;
    None (a retry) re-reads, as the write may have landed although its reply was lost.
    An atomic store (with a single destination) saves the published record in the same
    write: it is appended to ``saved``."""
    t, rotation = st.target, st.record
    if versions is None:
        # Fresh reads (state() may answer from this store's own copy).
        versions = t.store.versions(t.path)
        stored, _ = t.store.load_rotation(t.path)
        existing = find_version(versions, rotation.new_version_id)
        if existing is not None and stored is not None and stored.id == rotation.id:
            if stored.phase is Phase.PROPAGATE and stored.published is not None:
                saved.append(stored)  # an atomic commit landed, its reply lost
            return existing
    existing = find_version(versions, rotation.new_version_id)
    if existing is not None:
        return existing
    sweep_orphans(st, versions)
    base = _current_document(st, versions)
    if "keep" in issuer_features(t.issuer):
        # The keys that must keep working: every accepted one this rotation does not retire.
        keep = [
            v.issuer_ref
            for v in versions
            if v.issuer_ref
            and v.state.accepted
            and v.version_id not in rotation.also_retire
            and v.version_id != rotation.new_version_id
        ]
        issued = t.issuer.create(t.name, rotation.new_version_id, t.scopes, keep=keep)  # type: ignore[call-arg]
    else:
        issued = t.issuer.create(t.name, rotation.new_version_id, t.scopes)
    redact.register(issued.value)
    for extra in issued.extra.values():
        redact.register(extra)
    st.boundary("after-issue")
    try:
        value = t.secret_format.compose(base, issued.value, issued.extra)
    except ValueError as exc:  # the message names fields, never a value
        raise UsageError(f"{t.name}: {exc}") from None
    version = Version(
        version_id=rotation.new_version_id,
        number=rotation.new_version_number,
        key_id=issued.key_id,
        fingerprint=issued.fingerprint,
        state=VersionState.PENDING,
        created=st.now,
        rotation_id=rotation.id,
        issuer_ref=issued.issuer_ref,
        expires=issued.expires,
        scopes=t.scopes,
        field=t.secret_format.field,
    )
    if st.atomic and "destinations" not in t.store.features():
        published = st.clock.now()  # propagation counts from this write
        record = rotation.advance(Phase.PROPAGATE, published, published=published)
        t.store.commit(t.path, Publish(version, value), record, st.revision)
        saved.append(record)
    else:
        t.store.publish(t.path, version, value)
    del issued, value  # the value is in the store now; drop our reference to it
    st.boundary("after-publish")
    return version


def _current_document(st: Step, versions: Sequence[Version]) -> str | None:
    """The document a new version's is made from: the current version's, whose other
    fields it keeps byte for byte (None: a bare format, or no current version yet).
    ConflictError when the current document cannot be read or has no such field."""
    fmt = st.target.secret_format
    current = current_version(versions)
    if not fmt.document or current is None:
        return None
    t = st.target
    base = st.retry(lambda: t.store.read_value(t.path, current.version_id))
    secretformat.register(base)
    try:
        secretformat.key_of(base, current.field)
    except secretformat.DocumentError as exc:
        raise ConflictError(f"{t.name}: v{current.number}'s document: {exc}") from None
    return base


def _reinstate(st: Step) -> Version:
    """Rollback's publish: make the earlier key work and be accepted again."""
    t = st.target
    earlier = find_version(st.versions, st.record.new_version_id)
    if earlier is None or earlier.state is VersionState.DESTROYED:
        raise ConflictError(f"version {st.record.new_version_id} is gone; cannot roll back")
    if earlier.issuer_ref:
        # Also for a previous key: a crash between disabling it and recording the
        # retirement leaves it previous in the store but disabled at the issuer.
        st.retry(lambda: t.issuer.enable(t.name, earlier.issuer_ref or ""))
    if earlier.state is VersionState.RETIRED:
        st.retry(
            lambda: t.store.set_state(
                t.path, earlier.version_id, VersionState.PENDING, VersionState.RETIRED, st.now
            )
        )
        st.result.steps.append(f"re-enabled v{earlier.number} ({earlier.key_id})")
    return earlier


def sweep_orphans(st: Step, versions: Sequence[Version]) -> None:
    """Revoke keys minted by rotatectl that no version records (invariant 4).

    They were minted for this rotation, or for one it superseded (an emergency
    or abort after a crash), and their publish never happened. Untagged keys
    are not rotatectl's to judge and are left alone.
    """
    t = st.target
    keys = t.issuer.list_keys(t.name)
    if not keys:
        return
    known = {v.issuer_ref for v in versions if v.issuer_ref}
    for key in keys:
        if key.tag is not None and key.issuer_ref not in known:
            t.issuer.delete(t.name, key.issuer_ref)
            st.result.steps.append(
                f"revoked orphan key {key.issuer_ref} left by an interrupted run"
            )


# -- test and promote ---------------------------------------------------------------


def pre_promotion_test(st: Step) -> None:
    """The pre-promotion test: does every server accept the new key? A failure
    aborts the rotation (an emergency goes on, saying so)."""
    t, rotation = st.target, st.record
    assert t.pretest is not None
    from ..pretest import run_test

    new = find_version(st.versions, rotation.new_version_id)
    field = new.field if new is not None else t.secret_format.field
    key = _key_of(st, rotation.new_version_id, field, "the new version")
    outcome = run_test(
        t.pretest, key, sleep=st.clock.sleep, monotonic=lambda: st.clock.now().timestamp()
    )
    del key
    now = st.clock.now()
    intervention = rotation.kind in (RotationKind.EMERGENCY, RotationKind.ROLLBACK)
    if outcome.ok or intervention:
        if outcome.ok:
            detail = f"pre-promotion test passed: {outcome.detail}"
            st.result.steps.append(f"pre-promotion test passed ({outcome.detail})")
        else:
            detail = (
                f"pre-promotion test failed ({outcome.detail}); a {rotation.kind.value} goes on"
            )
            st.result.warnings.append(detail)
        st.save(
            replace(rotation, tested=now).advance(Phase.PROPAGATE, now, detail=detail), st.revision
        )
        return
    _fail_before_promotion(st, f"pre-promotion test failed: {outcome.detail}")


def _key_of(st: Step, version_id: str, field: str, which: str) -> str:
    """The key a client presents for ``version_id`` (of a JSON secret, its ``field``),
    read from the store and registered as secret. ConflictError naming ``which``
    when the document has no such field."""
    t = st.target
    value = st.retry(lambda: t.store.read_value(t.path, version_id))
    secretformat.register(value)
    try:
        return secretformat.key_of(value, field)
    except secretformat.DocumentError as exc:
        raise ConflictError(f"{t.name}: {which}'s document: {exc}") from None


def _fail_before_promotion(st: Step, why: str) -> None:
    """Move the rotation to ABORT (its new key is revoked next) as a failure."""
    now = st.clock.now()
    st.save(st.record.advance(Phase.ABORT, now, detail=why, reason=why, failure=why), st.revision)


def promote(st: Step) -> None:
    """Make the new key current (the old one becomes previous), after on_promote."""
    rotation = st.record
    new = find_version(st.versions, rotation.new_version_id)
    assert new is not None
    promoted = new.promoted or st.now
    revision = st.revision
    if new.state is not VersionState.CURRENT:
        if not _pre_promote_hook(st, new):
            return
        expected = rotation.old_version_id
        if st.emergency:
            rotation, revision, expected = _displaced(st, rotation, revision)
        # A service that holds one key at a time switches first: should it fail,
        # nothing has changed and clients keep the key in force.
        _promote_at_issuer(st, new)
        # Now, not the version's earlier promotion: a rollback re-promotes an old key,
        # and the key it demotes gets its overlap from this moment (invariant 8).
        rotation = rotation.advance(Phase.OVERLAP, st.now, promoted=st.now)
        change = Promote(rotation.new_version_id, expected, st.now)
        st.commit(change, rotation, revision, "after-promote")
    else:  # promoted before a crash; the record was not saved
        st.boundary("after-promote")
        rotation = rotation.advance(Phase.OVERLAP, st.now, promoted=promoted)
        st.save(rotation, revision)
    st.boundary("after-promote-record")
    st.result.steps.append(f"promoted v{new.number} ({new.key_id}) to current")
    st.promoted = new
    st.effects.event(
        st.result,
        "promoted",
        rotation=rotation,
        version=new,
        severity="critical" if st.emergency else "info",
    )


def _promote_at_issuer(st: Step, version: Version | None) -> None:
    """Tell an issuer with the ``promote`` feature that ``version``'s key is the one in
    force (idempotent); nothing for other issuers."""
    t = st.target
    if version is None or not version.issuer_ref or "promote" not in issuer_features(t.issuer):
        return
    key = _key_of(st, version.version_id, version.field, f"v{version.number}")
    ref = version.issuer_ref
    st.retry(lambda: t.issuer.promote(t.name, ref, key))  # type: ignore[attr-defined]


def _displaced(st: Step, rotation: Rotation, revision: int) -> tuple[Rotation, int, str | None]:
    """An emergency replaces whatever is current. A run it pre-empted may have
    promoted its own key after the emergency was planned (it notices the lost lease
    only at its next write): that key is current now, so the emergency promotes
    over it and retires it with the others (recorded first, for a resume)."""
    current = current_version(st.versions)
    if current is None or current.version_id in (rotation.old_version_id, rotation.new_version_id):
        return rotation, revision, rotation.old_version_id
    if current.version_id not in rotation.also_retire:
        rotation = rotation.noted(
            "displaced", st.now, f"v{current.number} ({current.key_id}) became current meanwhile"
        )
        rotation = replace(rotation, also_retire=(*rotation.also_retire, current.version_id))
        revision = st.save(rotation, revision)
    return rotation, revision, current.version_id


def _pre_promote_hook(st: Step, new: Version) -> bool:
    """Run on_promote with the new key on stdin. False when it failed and the
    rotation was moved to abort (an emergency goes on with a warning)."""
    t = st.target
    if t.hooks is None or not t.hooks.on_promote:
        return True
    value = t.store.read_value(t.path, new.version_id)
    secretformat.register(value)
    hook = st.effects.hook(
        st.result, "on_promote", {"version": str(new.number), "key_id": new.key_id}, stdin=value
    )
    del value
    if hook is None or hook.ok or not t.hooks.abort_on_failure:
        return True
    if st.record.kind in (RotationKind.EMERGENCY, RotationKind.ROLLBACK):
        # An intervention is not held by a hook: an emergency must revoke the leaked
        # key, and a rollback re-promotes a key that was in use moments ago.
        kind = st.record.kind.value
        st.result.warnings.append(f"on_promote failed; a {kind} promotes the key anyway")
        return True
    _fail_before_promotion(st, hook.summary())
    return False


# -- after promotion -------------------------------------------------------------------


def check_usage(st: Step) -> None:
    """Ask the probe about the key the gate is about (:func:`gated_version`: the old
    key, or the one leaving a rolling window), and the new one for the failed-auth
    watch."""
    t, rotation = st.target, st.record
    old = gated_version(rotation, st.versions, t.policy)
    new = find_version(st.versions, rotation.new_version_id)
    # The old key: any sighting since before the rotation started counts.
    queries = [(old, rotation.started - t.policy.usage_quiet)]
    if watches_failed_auth(rotation, t.policy) and rotation.promoted is not None:
        # The new key: only rejections since its promotion count.
        queries.append((new, rotation.promoted))
    usage: dict[str, KeyUsage] = {}
    for version, since in queries:
        if version is None:
            continue
        key_id = version.key_id
        try:
            answer = st.retry(
                lambda k=key_id, s=since: t.probe.usage(t.name, [k], s, st.now)  # type: ignore[misc]
            )
            usage[key_id] = answer.get(key_id, KeyUsage(UsageStatus.UNKNOWN))
        except ProbeError as exc:
            # A probe that cannot answer keeps the gate closed (unknown is not quiet).
            st.result.warnings.append(f"usage probe failed: {exc}")
            usage[key_id] = KeyUsage(UsageStatus.UNKNOWN, detail=str(exc))
    st.usage = usage


def retire(st: Step) -> None:
    """Disable the key the gate let go (and the others the rotation retires), finish."""
    rotation, revision = st.record, st.revision
    leaving = gated_version(rotation, st.versions, st.target.policy)
    retiring: dict[str, Version] = {}
    for version_id in (leaving.version_id if leaving else None, *rotation.also_retire):
        old = find_version(st.versions, version_id)
        if old is not None and old.state in (VersionState.PREVIOUS, VersionState.PENDING):
            retiring.setdefault(old.version_id, old)
    if rotation.phase is not Phase.RETIRE:
        rotation = rotation.advance(Phase.RETIRE, st.now, detail=st.action.reason)
        if len(retiring) > 1 or any(_disables(st, old) for old in retiring.values()):
            revision = st.save(rotation, revision)
        # else the intent protects nothing: the one write below retires and finishes.
        st.boundary("after-retire-intent")
    finished = rotation.advance(rotation.final_phase, st.now, retired=st.now, finished=st.now)
    last = list(retiring)[-1] if retiring else None
    for version_id, old in retiring.items():
        if version_id == last:
            # The last one's retirement and the finished record: one write where it can.
            _disable(st, old)
            st.boundary("after-disable")
            change = SetState(version_id, VersionState.RETIRED, old.state, st.now)
            revision = st.commit(change, finished, revision, "after-retire")
        else:
            retire_version(st, old)
        st.retired.append(old)
        st.result.steps.append(f"retired v{old.number} ({old.key_id}): {st.action.reason}")
        st.effects.event(
            st.result, "retired", rotation=rotation, version=old, message=st.action.reason
        )
    if last is None:
        st.save(finished, revision)
    st.boundary("after-retire-record")
    st.result.steps.append(finished.final_phase.value)
    st.result.finished = True
    st.effects.event(st.result, "completed", rotation=finished)
    for old in st.retired:
        st.effects.hook(st.result, "on_retire", {"version": str(old.number), "key_id": old.key_id})


def _disables(st: Step, version: Version) -> bool:
    """Whether retiring ``version`` changes something at the issuer (a store-only
    issuer's keys exist only in the store)."""
    return bool(version.issuer_ref) and "store-only" not in issuer_features(st.target.issuer)


def _disable(st: Step, version: Version) -> None:
    """Disable ``version``'s key at the issuer (nothing for a key it has no ref of)."""
    t, ref = st.target, version.issuer_ref
    if ref:
        st.retry(lambda: t.issuer.disable(t.name, ref))


def retire_version(st: Step, old: Version, *, disable: bool = True) -> None:
    """Disable ``old`` at the issuer (unless ``disable`` is False: it never worked
    there), then mark it retired (disable before destroy)."""
    t = st.target
    if old.issuer_ref and disable:
        _disable(st, old)
        st.boundary("after-disable")
    st.retry(
        lambda: t.store.set_state(t.path, old.version_id, VersionState.RETIRED, old.state, st.now)
    )
    st.boundary("after-retire")


def complete(st: Step) -> None:
    """Close a rotation with nothing to retire (the credential's first key)."""
    rotation = st.record.advance(
        st.record.final_phase, st.now, finished=st.now, detail=st.action.reason
    )
    st.save(rotation, st.revision)
    st.result.steps.append(f"completed: {st.action.reason}")
    st.result.finished = True
    st.effects.event(st.result, "completed", rotation=rotation)


def abort(st: Step) -> None:
    """Revoke the unpromoted new key and end the rotation: aborted by the operator,
    or failed (a hook, the pre-promotion test), which counts toward run's backoff."""
    rotation = st.record
    new = find_version(st.versions, rotation.new_version_id)
    if new is None:
        sweep_orphans(st, st.versions)
    elif new.state is VersionState.PENDING:
        current = current_version(st.versions)
        if "promote" in issuer_features(st.target.issuer) and current is not None:
            # The new key works only once promoted: undo a promotion a crash cut short
            # by putting the current key back in force, rather than disabling the new.
            _promote_at_issuer(st, current)
            retire_version(st, new, disable=False)
        else:
            retire_version(st, new)
        st.result.steps.append(f"revoked the new key v{new.number} ({new.key_id})")
    elif new.state is VersionState.CURRENT:
        raise ConflictError("the new key is already current; use rollback")
    failures = rotation.failures + 1 if rotation.failure else rotation.failures
    rotation = rotation.advance(
        Phase.ABORTED, st.now, finished=st.now, detail=rotation.reason, failures=failures
    )
    st.save(rotation, st.revision)
    st.result.finished = True
    if rotation.failed:
        st.effects.event(
            st.result, "failed", rotation=rotation, severity="critical", message=rotation.failure
        )
        st.effects.hook(st.result, "on_failure", {"error": rotation.failure})
        return
    st.result.steps.append(f"aborted: {rotation.reason}")
    st.effects.event(
        st.result, "aborted", rotation=rotation, severity="warning", message=rotation.reason
    )


def rollback(st: Step) -> None:
    """The failed-auth watch fired: re-promote the old key at once."""
    replacement = plan_rollback(
        st.target.name, st.record, st.versions, st.now, st.action.reason, auto=True
    )
    st.save(replacement, st.revision)
    st.driving = replacement.id
    st.result.steps.append(replacement.history[-1].detail)
    st.result.warnings.append(f"rolled back automatically: {st.action.reason}")
    st.effects.event(
        st.result,
        "rolled-back",
        rotation=replacement,
        severity="critical",
        message=st.action.reason,
    )


def destroy(st: Step) -> None:
    """Delete a retired key for good once its retention window has passed."""
    t = st.target
    version_id = st.action.version_id
    v = find_version(st.versions, version_id)
    if v is None or v.state is not VersionState.RETIRED or version_id is None:
        raise ConflictError(f"version {version_id} is no longer retired")
    if v.issuer_ref:
        st.retry(lambda: t.issuer.delete(t.name, v.issuer_ref or ""))
        st.boundary("after-destroy-issuer")
    st.retry(
        lambda: t.store.set_state(
            t.path, version_id, VersionState.DESTROYED, VersionState.RETIRED, st.now
        )
    )
    st.boundary("after-destroy")
    st.result.steps.append(f"destroyed v{v.number} ({v.key_id})")
    st.effects.event(st.result, "destroyed", version=v)


STEPS: dict[ActionKind, Callable[[Step], None]] = {
    ActionKind.PUBLISH: publish,
    ActionKind.TEST: pre_promotion_test,
    ActionKind.PROMOTE: promote,
    ActionKind.CHECK_USAGE: check_usage,
    ActionKind.RETIRE: retire,
    ActionKind.COMPLETE: complete,
    ActionKind.ABORT: abort,
    ActionKind.ROLLBACK: rollback,
    ActionKind.DESTROY: destroy,
}
