"""The DESIGN.md invariants, checked by reading a store directly (not through the CLI).

:class:`Invariants` takes a snapshot of one credential through a store adapter
of its own plus the server underneath it (a :class:`Server`: SQLite rows,
Secrets Manager versions and labels, KV v2 paths), checks every invariant
that can be observed at that instant, and compares with the previous
snapshot to check that nothing went backwards. Call :meth:`Invariants.check`
after every step: after a kill, after each resume, at the end.

What is checked (numbers are DESIGN.md section 2):

1. From the first promotion on, exactly one version is current; its value is
   what a client reads (the adapter's ``read_value`` and the server's own
   client path / AWSCURRENT label), it parses as a generated key, and the
   SDK's verifier (``rotatectl.sdk.keyring.KeyRing``, hashes only) accepts it.
2. The verifier view is exactly the pending/current/previous versions: the
   KeyRing accepts each of their values and rejects every retired or
   destroyed key ever seen; a promoted version was published (recorded) at
   least the propagation delay before its promotion.
3. An old key is retired only after its overlap has elapsed, and only once its
   successor is current; a key is destroyed only after ``retain``, and its
   value is then unreadable.
8. Overlap after demotion: a retired key stayed accepted for at least the
   effective overlap (the demoting rotation's ``overlap``, else the policy's)
   after it stopped being current (``Version.demoted``), a rollback's demotion
   included. Exempt: keys an emergency retired (its old key and
   ``also_retire``) and the old key of an automatic rollback (``force_retire``);
   keys never current (aborted pending keys) were never demoted.
4. No orphan: nothing on the server that no version accounts for (except the
   in-flight rotation's own write, which the resume adopts), and once settled
   the rotation is finished and the lock free.
5. One writer: at a kill, the lock names the killed process; once settled, no
   one holds it.
6. Idempotent steps: one version per rotation, versions numbered 1..N with no
   gap or duplicate, one value per version on the server, and
   ``len(versions) == seeded + rotations that published``.
7. No value in any rotation record, version metadata or lock document.

Plus monotonicity between snapshots: a version never disappears, never changes
its number/key id/fingerprint/value, and its state only moves forward.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol

from rotatectl import keyformat
from rotatectl.errors import NotFoundError
from rotatectl.model import (
    AcceptedKey,
    Phase,
    Policy,
    Rotation,
    RotationKind,
    Version,
    VersionState,
)
from rotatectl.ports import SecretStore
from rotatectl.sdk.keyring import KeyRing

Problems = list[str]

V = VersionState
STATE_RANK = {V.PENDING: 0, V.CURRENT: 1, V.PREVIOUS: 2, V.RETIRED: 3, V.DESTROYED: 4}
PHASE_RANK = {
    Phase.ISSUE: 0,
    Phase.ABORT: 1,
    Phase.PROPAGATE: 1,
    Phase.OVERLAP: 2,
    Phase.RETIRE: 3,
    Phase.COMPLETED: 4,
    Phase.ABORTED: 4,
    Phase.ROLLED_BACK: 4,
}
# Where the in-flight rotation's new version may stand in each phase (a kill may
# land between the store write and the record write, hence two states for some).
NEW_STATES: dict[Phase, set[VersionState | None]] = {
    Phase.ISSUE: {None, V.PENDING},
    Phase.PROPAGATE: {V.PENDING, V.CURRENT},
    Phase.OVERLAP: {V.CURRENT},
    Phase.RETIRE: {V.CURRENT},
}


@dataclass
class Snapshot:
    versions: list[Version]
    rotation: Rotation | None
    revision: int
    history: list[Rotation]
    values: dict[str, str]  # version id -> value, for every version not destroyed
    accepted: list[AcceptedKey]
    adapter_client_value: str | None  # store.read_value(path)
    server_client_value: str | None  # what a client reads on the server itself
    lock_holder: str | None

    def find(self, version_id: str | None) -> Version | None:
        return next((v for v in self.versions if v.version_id == version_id), None)

    @property
    def current(self) -> list[Version]:
        return [v for v in self.versions if v.state is V.CURRENT]

    @property
    def rotations(self) -> list[Rotation]:
        """Every rotation record the store still has, oldest first, latest last."""
        latest = [self.rotation] if self.rotation is not None else []
        return [r for r in self.history if not latest or r.id != latest[0].id] + latest

    def states(self) -> list[tuple[int, str]]:
        return [(v.number, v.state.value) for v in self.versions]


class Store(SecretStore, Protocol):
    """A store adapter that also keeps earlier rotation records (all of ours do)."""

    def rotation_history(self, path: str) -> list[Rotation]: ...


class Server(Protocol):
    """The server underneath a store adapter (see tests/reliability/conftest.py)."""

    @property
    def kind(self) -> str: ...

    def lock_holder(self, path: str) -> str | None: ...

    def metadata_texts(self, path: str) -> list[str]: ...

    def server_problems(self, path: str, snap: Snapshot, settled: bool) -> Problems: ...

    def client_value(self, path: str) -> str | None: ...


class InvariantError(AssertionError):
    pass


@dataclass
class Invariants:
    """Checks one credential's invariants, step after step."""

    store: Store
    server: Server
    path: str
    credential: str = ""
    policy: Policy = field(default_factory=Policy)
    seeded: int = 0  # versions created without a rotation record (test setup)
    previous: Snapshot | None = None
    values_seen: set[str] = field(default_factory=set)
    value_of: dict[str, str] = field(default_factory=dict)  # every value seen, by version id
    checks: int = 0

    def __post_init__(self) -> None:
        self.credential = self.credential or self.path

    # -- reading ---------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        store, path = self.store, self.path
        versions = store.versions(path)
        rotation, revision = store.load_rotation(path)
        values = {}
        for v in versions:
            if v.state is not V.DESTROYED:
                values[v.version_id] = store.read_value(path, v.version_id)
        try:
            client: str | None = store.read_value(path)
        except NotFoundError:
            client = None
        return Snapshot(
            versions=versions,
            rotation=rotation,
            revision=revision,
            history=store.rotation_history(path),
            values=values,
            accepted=store.accepted_keys(path, self.credential),
            adapter_client_value=client,
            server_client_value=self.server.client_value(path),
            lock_holder=self.server.lock_holder(path),
        )

    # -- checking --------------------------------------------------------------

    def check(
        self,
        where: str,
        *,
        settled: bool = False,
        killed_pid: int | None = None,
        versions: int | None = None,
    ) -> Snapshot:
        """Check everything; raise InvariantError listing every violation.

        ``settled``: no process is running or was killed mid-rotation since the
        last command finished, so the rotation must be terminal, the lock free,
        nothing left over. ``killed_pid``: the process just killed, which must
        hold the lock. ``versions``: the expected number of versions.
        """
        snap = self.snapshot()
        self.values_seen |= set(snap.values.values())
        for vid, value in snap.values.items():
            self.value_of.setdefault(vid, value)
        problems: Problems = []
        problems += self._well_formed(snap)
        problems += self._one_current(snap)
        problems += self._verifier_view(snap)
        problems += self._keyring(snap)
        problems += self._timing(snap)
        problems += self._overlap_after_demotion(snap)
        problems += self._phase(snap, settled)
        problems += self._one_version_per_rotation(snap, settled)
        problems += self._lock(snap, settled, killed_pid)
        problems += self._no_value_in_records(snap)
        problems += self._monotonic(snap)
        problems += self.server.server_problems(self.path, snap, settled)
        if versions is not None and len(snap.versions) != versions:
            problems.append(f"expected {versions} versions, found {snap.states()}")
        self.previous = snap
        self.checks += 1
        if problems:
            raise InvariantError(
                f"{self.server.kind} {self.path} {where}: invariants violated\n  "
                + "\n  ".join(problems)
                + f"\n  versions: {snap.states()}"
                + f"\n  rotation: {snap.rotation.phase if snap.rotation else None}"
            )
        return snap

    def _well_formed(self, snap: Snapshot) -> Problems:
        problems = []
        numbers = [v.number for v in snap.versions]
        if numbers != list(range(1, len(numbers) + 1)):
            problems.append(f"version numbers are not 1..N without gaps: {numbers}")
        ids = [v.version_id for v in snap.versions]
        if len(set(ids)) != len(ids):
            problems.append(f"duplicate version ids: {ids}")
        for v in snap.versions:
            if v.state is V.DESTROYED:
                try:
                    self.store.read_value(self.path, v.version_id)
                    problems.append(f"v{v.number} is destroyed but its value is still readable")
                except NotFoundError:
                    pass
                continue
            value = snap.values[v.version_id]
            if not keyformat.fingerprint_matches(v.fingerprint, value):
                problems.append(f"v{v.number}: the value does not match its fingerprint")
        return problems

    def _one_current(self, snap: Snapshot) -> Problems:
        """Invariant 1."""
        problems = []
        ever_promoted = any(v.promoted for v in snap.versions) or any(
            v.state is not V.PENDING for v in snap.versions
        )
        current = snap.current
        if not ever_promoted:
            if current:
                problems.append("a current version that was never promoted")
            return problems
        if len(current) != 1:
            return [f"exactly one current expected, found {[v.number for v in current]}"]
        cur = current[0]
        value = snap.values[cur.version_id]
        if snap.adapter_client_value != value:
            problems.append(f"read_value(path) is not the value of current v{cur.number}")
        if snap.server_client_value != value:
            problems.append(f"a client reading the server does not get current v{cur.number}")
        try:
            parsed = keyformat.parse(value)
        except keyformat.KeyFormatError as exc:
            return [*problems, f"current v{cur.number} is not a valid generated key: {exc.reason}"]
        works = [
            k
            for k in snap.accepted
            if k.key_id == parsed.key_id
            and k.fingerprint == keyformat.secret_hash(parsed.secret)
            and k.state is V.CURRENT
        ]
        if parsed.key_id != cur.key_id or not works:
            problems.append(f"a verifier does not accept the current key of v{cur.number}")
        return problems

    def _verifier_view(self, snap: Snapshot) -> Problems:
        """Invariant 2 (what verifiers accept) and the 'retired is not accepted' half of 3."""
        problems = []
        accepted = {(k.key_id, k.fingerprint, k.state) for k in snap.accepted}
        expected = {(v.key_id, v.fingerprint, v.state) for v in snap.versions if v.state.accepted}
        if accepted != expected:
            problems.append(f"verifiers accept {sorted(accepted)}, expected {sorted(expected)}")
        refused = {v.key_id for v in snap.versions if not v.state.accepted}
        if refused & {k.key_id for k in snap.accepted}:
            problems.append(f"retired/destroyed keys still accepted: {refused}")
        return problems

    def _keyring(self, snap: Snapshot) -> Problems:
        """The SDK's verifier (KeyRing: key ids and hashes only) accepts every pending,
        current and previous key, and rejects every retired or destroyed one."""
        problems = []
        ring = KeyRing(self.store, [(self.credential, self.path)], start=False)
        try:
            for vid, value in self.value_of.items():
                v = snap.find(vid)
                if v is None:
                    continue
                result = ring.verify(value)
                if v.state.accepted and not (result and result.version_id == vid):
                    problems.append(f"the SDK verifier refuses {v.state} v{v.number}: {result}")
                if not v.state.accepted and result:
                    problems.append(f"the SDK verifier accepts {v.state} v{v.number}")
        finally:
            ring.close()
        return problems

    def _timing(self, snap: Snapshot) -> Problems:
        """Invariants 2 and 3: propagation before promotion, overlap before
        retirement, retain before destruction, disable before destroy."""
        problems = []
        at_once = _retired_at_once(snap)
        for r in snap.rotations:
            if r.kind is RotationKind.ROLLBACK:
                continue
            new, old = snap.find(r.new_version_id), snap.find(r.old_version_id)
            if (
                old is not None
                and r.kind is not RotationKind.EMERGENCY
                and old.version_id in at_once
            ):
                # An emergency retired it at once, superseding this rotation before its
                # successor was promoted, or within its overlap: not this rotation's doing.
                old = None
            if new is not None and new.promoted is not None:
                if r.published is None:
                    # The kill may land after the promote and before the record says so,
                    # but never before the record said "published".
                    problems.append(f"v{new.number} promoted, rotation {r.id} never published")
                elif new.promoted < r.published + r.effective_propagation(self.policy):
                    problems.append(f"v{new.number} promoted before its propagation elapsed")
            if old is not None and old.retired is not None and r.old_version_id is not None:
                if new is None or new.promoted is None:
                    problems.append(f"v{old.number} retired before its successor was promoted")
                elif not r.force_retire and old.retired < (
                    new.promoted + r.effective_overlap(self.policy)
                ):
                    problems.append(f"v{old.number} retired before its overlap elapsed")
        for v in snap.versions:
            if v.state is V.DESTROYED:
                if v.retired is None or v.destroyed is None:
                    problems.append(f"v{v.number} destroyed without being retired first")
                elif v.destroyed < v.retired + self.policy.retain:
                    problems.append(f"v{v.number} destroyed before retain elapsed")
            if v.state in (V.RETIRED, V.DESTROYED) and v.retired is None:
                problems.append(f"v{v.number} is {v.state} with no retirement time")
        return problems

    def _overlap_after_demotion(self, snap: Snapshot) -> Problems:
        """Invariant 8: outside an emergency, a key stays accepted for at least its
        effective overlap after the moment it stopped being current."""
        rotations = snap.rotations
        exempt = _retired_at_once(snap)
        problems = []
        for v in snap.versions:
            if v.state not in (V.RETIRED, V.DESTROYED) or v.version_id in exempt:
                continue
            if v.demoted is None or v.retired is None:
                continue  # never current (an aborted pending key): nothing to overlap
            # The rotation that demoted it promoted its successor at that very moment.
            # Stores keep a bounded history: one no longer kept cannot be judged.
            demoters = [
                r for r in rotations if r.old_version_id == v.version_id and r.promoted == v.demoted
            ]
            if not demoters:
                continue
            by = demoters[-1]
            overlap = by.effective_overlap(self.policy)
            if v.retired < v.demoted + overlap:
                problems.append(
                    f"v{v.number} retired {v.retired - v.demoted} after {by.kind.value} rotation "
                    f"{by.id} demoted it, within its overlap {overlap}"
                )
        return problems

    def _phase(self, snap: Snapshot, settled: bool) -> Problems:
        """The in-flight rotation's record agrees with the versions."""
        r = snap.rotation
        if r is None:
            return ["settled without any rotation record"] if settled and snap.versions else []
        problems = []
        if settled and not r.phase.terminal:
            problems.append(f"settled, but rotation {r.id} is still in phase {r.phase}")
        new, old = snap.find(r.new_version_id), snap.find(r.old_version_id)
        allowed = NEW_STATES.get(r.phase)
        if allowed is not None and r.kind is not RotationKind.ROLLBACK:
            state = new.state if new is not None else None
            if state not in allowed:
                problems.append(f"phase {r.phase}: the new version is {state}")
        completed = r.phase is Phase.COMPLETED and r.kind is not RotationKind.ROLLBACK
        if completed and (new is None or new.state is not V.CURRENT):
            problems.append("completed, but its new version is not current")
        retired = r.phase in (Phase.RETIRE, Phase.COMPLETED) and r.retired is not None
        if retired and old is not None and old.state.accepted:
            problems.append(f"rotation says retired, v{old.number} is {old.state}")
        return problems

    def _one_version_per_rotation(self, snap: Snapshot, settled: bool) -> Problems:
        """Invariant 6: nothing done twice."""
        problems = []
        by_rotation: dict[str, list[int]] = {}
        for v in snap.versions:
            if v.rotation_id is not None:
                by_rotation.setdefault(v.rotation_id, []).append(v.number)
        for rid, numbers in by_rotation.items():
            if len(numbers) > 1:
                problems.append(f"rotation {rid} made {len(numbers)} versions: {numbers}")
        makers = [r for r in snap.rotations if r.kind is not RotationKind.ROLLBACK]
        # Stores keep a bounded history of rotation records (AWS 20, Vault 50 KV
        # versions): versions older than the oldest record kept are not checked.
        window = min((r.new_version_number for r in makers), default=self.seeded + 1)
        ids = {r.id for r in makers}
        checked = [v for v in snap.versions if v.number >= window and v.number > self.seeded]
        unexplained = [v.number for v in checked if v.rotation_id not in ids]
        if unexplained:
            problems.append(f"versions no rotation record accounts for: {unexplained}")
        for r in snap.rotations:
            made_one = r.kind is RotationKind.ROLLBACK or r.id in by_rotation
            if r.phase is Phase.COMPLETED and not made_one:
                problems.append(f"completed rotation {r.id} has no version")
        made = sum(1 for r in makers if r.id in by_rotation)
        if len(checked) != made:
            problems.append(
                f"{len(checked)} versions from v{window} on, but {made} rotations made one"
            )
        seeded = [v.number for v in snap.versions if v.number <= self.seeded]
        if seeded != list(range(1, self.seeded + 1)):
            problems.append(f"expected {self.seeded} seeded versions, found {seeded}")
        return problems

    def _lock(self, snap: Snapshot, settled: bool, killed_pid: int | None) -> Problems:
        """Invariant 5, as far as one snapshot shows it."""
        holder = snap.lock_holder
        if killed_pid is not None and (holder is None or not holder.endswith(f":{killed_pid}")):
            return [f"the killed process {killed_pid} did not hold the lock (holder: {holder})"]
        if settled and holder is not None:
            return [f"settled, but the lock is still held by {holder}"]
        return []

    def _no_value_in_records(self, snap: Snapshot) -> Problems:
        """Invariant 7 for everything the store keeps besides the values."""
        texts = [json.dumps(r.to_dict()) for r in snap.rotations]
        texts += [json.dumps(v.to_dict()) for v in snap.versions]
        texts += self.server.metadata_texts(self.path)
        texts += [snap.lock_holder or ""]
        values = self.values_seen | set(snap.values.values())
        leaked = {v[:6] for v in values for t in texts if v in t}
        return [f"a key value ({p}...) is in a record or metadata" for p in leaked]

    def _monotonic(self, snap: Snapshot) -> Problems:
        before = self.previous
        if before is None:
            return []
        problems = []
        now = {v.version_id: v for v in snap.versions}
        for old in before.versions:
            new = now.get(old.version_id)
            if new is None:
                problems.append(f"v{old.number} disappeared")
                continue
            if (new.number, new.key_id, new.fingerprint) != (
                old.number,
                old.key_id,
                old.fingerprint,
            ):
                problems.append(f"v{old.number} changed its number, key id or fingerprint")
            if STATE_RANK[new.state] < STATE_RANK[old.state]:
                problems.append(f"v{old.number} went back from {old.state} to {new.state}")
            was, is_ = before.values.get(old.version_id), snap.values.get(old.version_id)
            if was is not None and is_ is not None and was != is_:
                problems.append(f"the value of v{old.number} changed")
        if before.rotation is not None and snap.rotation is not None:
            if before.rotation.id == snap.rotation.id:
                if PHASE_RANK[snap.rotation.phase] < PHASE_RANK[before.rotation.phase]:
                    problems.append(
                        f"rotation went back from {before.rotation.phase} to {snap.rotation.phase}"
                    )
                if snap.revision < before.revision:
                    problems.append("the rotation record's revision went back")
            elif not before.rotation.phase.terminal and before.rotation.id not in {
                r.id for r in snap.rotations
            }:
                problems.append(f"in-flight rotation {before.rotation.id} vanished")
        return problems


def _retired_at_once(snap: Snapshot) -> set[str]:
    """Versions retired without an overlap: an emergency's old key and the others it
    retires with it (``also_retire``), and an automatic rollback's old key."""
    at_once: set[str] = set()
    for r in snap.rotations:
        if r.kind is RotationKind.EMERGENCY:
            at_once |= {*r.also_retire, *([r.old_version_id] if r.old_version_id else [])}
        elif r.force_retire and r.old_version_id:
            at_once.add(r.old_version_id)
    return at_once


def policy(propagation: str = "0s", overlap: str = "0s", retain: str = "1s") -> Policy:
    """The Policy the suite's default config (conftest ``Backend.configure``) gives."""
    from rotatectl.durations import parse_duration

    return Policy(
        propagation=parse_duration(propagation),
        overlap=parse_duration(overlap),
        retain=parse_duration(retain),
    )
