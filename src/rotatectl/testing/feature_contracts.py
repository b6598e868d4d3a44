"""Contracts of the optional store features (keyring-style: subclass them in a test file).

One class per feature of :data:`rotatectl.ports.STORE_FEATURES` that callers rely
on: :class:`StateContract`, :class:`BatchedReadsContract`, :class:`DriftContract`,
:class:`HistoryContract`, :class:`AccessCheckContract`,
:class:`RollingWindowContract`, :class:`AtomicRecordContract`. Every store
subclasses every one: a store that does not declare a feature in ``features()`` gets
:class:`~rotatectl.ports.StoreBase`'s default, and the contract checks that default
(a loop over one-credential reads, no history, adopt/restore refused, no access
problems, no window, a change and its record as two writes) where the behaviour
differs.

Usage::

    class MyStoreFixture:
        @pytest.fixture
        def store(self) -> Iterator[SecretStore]:
            s = MyStore(...)          # fresh and empty, as for StoreContract
            yield s
            s.close()

        def tamper(self, store: SecretStore, path: str, value: str) -> None:
            ...  # DriftContract: make clients of ``path`` read ``value``, with the
                 # server's own API, behind rotatectl's back

    class TestMyStoreState(MyStoreFixture, StateContract): ...
    class TestMyStoreBatchedReads(MyStoreFixture, BatchedReadsContract): ...
    class TestMyStoreDrift(MyStoreFixture, DriftContract):
        restores = False      # only if the store keeps a single copy of each value
    class TestMyStoreHistory(MyStoreFixture, HistoryContract): ...
    class TestMyStoreAccessCheck(MyStoreFixture, AccessCheckContract):
        def denied(self, store):  # optional: a store missing one permission
            return MyStore(..., token=READ_ONLY), "update"

The versions and rotation records the contracts read are written by the real
engine (:class:`Rotations`: a :class:`~rotatectl.engine.Runner` on a fake clock,
with the fake issuer and probe), so they are what a store holds in production.
The classes are deliberately not named ``Test*``: pytest collects them only
through subclasses.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from .. import keyformat
from ..drift import detect, detect_many, resolve
from ..engine import Outcome, Runner
from ..errors import ConfigError, ConflictError, NotFoundError, UsageError
from ..model import Phase, Policy, Rotation, Version, VersionState
from ..ports import Promote, Publish, SecretStore, SetState, Target
from ..workspace import check_window
from .fakes import FakeClock, FakeIssuer, FakeProbe
from .store_contract import make_version

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
POLICY = Policy(
    propagation=timedelta(seconds=30),
    overlap=timedelta(hours=1),
    usage_quiet=timedelta(minutes=15),
    max_overlap=timedelta(hours=4),
    retain=timedelta(days=30),
    recheck=timedelta(minutes=1),
)
LEASE = timedelta(minutes=2)

PATH = "partners/acme"  # rotated (twice, where a test needs a previous key)
OTHER = "partners/beta"  # rotated once, then a second rotation left in flight
PENDING = "partners/gamma"  # one version published, never promoted
MISSING = "partners/none"  # nothing at all
# Enough unknown paths to cross a batch boundary (AWS reads 20 records a call).
UNKNOWN = [f"partners/unknown-{n:02d}" for n in range(21)]


class Rotations:
    """The real engine over one store: rotations as ``rotatectl rotate`` makes them."""

    def __init__(self, store: SecretStore, policy: Policy = POLICY) -> None:
        self.store = store
        self.policy = policy
        self.clock = FakeClock(T0)
        self.issuer = FakeIssuer(clock=self.clock)
        self.probe = FakeProbe()

    def target(self, path: str) -> Target:
        return Target(
            name=path,
            path=path,
            store=self.store,
            issuer=self.issuer,
            probe=self.probe,
            policy=self.policy,
            store_name="contract",
        )

    def runner(self) -> Runner:
        return Runner(self.clock, holder="contract@feature-contract:1", lock_ttl=LEASE)

    def complete(self, path: str) -> Rotation:
        """One whole rotation of ``path`` (no propagation delay, no overlap); its record."""
        self.clock.advance(timedelta(days=1))
        result = self.runner().rotate(
            self.target(path), propagation=timedelta(0), overlap=timedelta(0)
        )
        assert result.outcome is Outcome.DONE, result
        rotation, _ = self.store.load_rotation(path)
        assert rotation is not None and rotation.phase is Phase.COMPLETED, rotation
        return rotation

    def start(self, path: str) -> Rotation:
        """A rotation of ``path`` left in flight: its new version pending, waiting for
        the propagation delay. ``path`` must have a current version already."""
        self.clock.advance(timedelta(days=1))
        result = self.runner().rotate(self.target(path))
        assert result.outcome is Outcome.WAITING and result.phase is Phase.PROPAGATE, result
        rotation, _ = self.store.load_rotation(path)
        assert rotation is not None and rotation.phase is Phase.PROPAGATE, rotation
        return rotation


def current_or_none(store: SecretStore, path: str) -> str | None:
    """``read_value(path)``, None when there is no current value."""
    try:
        return store.read_value(path)
    except NotFoundError:
        return None


def current_of(versions: Sequence[Version]) -> Version:
    return next(v for v in versions if v.state is VersionState.CURRENT)


@contextmanager
def held_lease(store: SecretStore, path: str, at: datetime) -> Iterator[None]:
    """Someone else holds ``path``'s lease for the block."""
    lease = store.acquire_lock(path, "someone@elsewhere:7", LEASE, at)
    try:
        yield
    finally:
        store.release_lock(lease)


class FeatureContract:
    """What every feature contract shares: the engine and a world of credentials."""

    def rotations(self, store: SecretStore) -> Rotations:
        return Rotations(store)

    def world(self, store: SecretStore) -> Rotations:
        """PATH rotated twice (v1 retired, v2 current), OTHER rotated once with a
        second rotation in flight (v1 current, v2 pending), PENDING with one
        published version and no current, MISSING absent."""
        engine = self.rotations(store)
        engine.complete(PATH)
        engine.complete(PATH)
        engine.complete(OTHER)
        engine.start(OTHER)
        value = keyformat.generate(engine.issuer.prefix)
        pending = make_version(1, fingerprint=keyformat.fingerprint_of(value))
        store.publish(PENDING, replace(pending, key_id=keyformat.parse(value).key_id), value)
        states = {p: [v.state.value for v in store.versions(p)] for p in (PATH, OTHER, PENDING)}
        assert states == {
            PATH: ["retired", "current"],
            OTHER: ["current", "pending"],
            PENDING: ["pending"],
        }
        return engine


# -- state ---------------------------------------------------------------------------


class StateContract(FeatureContract):
    """``state(path)`` is ``(versions(path), *load_rotation(path))``, whether the store
    reads them together ("state" declared) or StoreBase reads them one after the other."""

    def test_state_of_nothing(self, store: SecretStore) -> None:
        assert store.state(MISSING) == ([], None, 0)

    def test_state_agrees_with_the_one_by_one_reads(self, store: SecretStore) -> None:
        engine = self.world(store)
        for path in (PATH, OTHER, PENDING, MISSING):
            assert store.state(path) == (store.versions(path), *store.load_rotation(path)), path
        # A store may answer from what it wrote itself under a lease it holds.
        with held_lease(store, OTHER, engine.clock.now()):
            assert store.state(OTHER) == (store.versions(OTHER), *store.load_rotation(OTHER))

    def test_state_follows_each_step_of_a_rotation(self, store: SecretStore) -> None:
        engine = self.rotations(store)
        engine.complete(PATH)
        first = store.state(PATH)
        engine.start(PATH)
        started = store.state(PATH)
        assert started == (store.versions(PATH), *store.load_rotation(PATH))
        assert started != first
        assert [v.state for v in started[0]] == [VersionState.CURRENT, VersionState.PENDING]
        assert started[1] is not None and started[1].phase is Phase.PROPAGATE
        assert started[2] > first[2]


# -- atomic record -------------------------------------------------------------------


class AtomicRecordContract(FeatureContract):
    """``commit(path, change, rotation, revision)`` ends where the change and then
    ``save_rotation`` end. With "atomic-record" declared it is one write: a refused
    change or a moved revision leaves versions and record as they were, and a commit
    repeated after it landed (a lost reply) changes nothing."""

    def in_flight(self, store: SecretStore) -> tuple[Rotations, list[Version], Rotation, int]:
        """PATH with v1 current and v2 pending in a rotation waiting to promote it."""
        engine = self.rotations(store)
        engine.complete(PATH)
        engine.start(PATH)
        versions, rotation, revision = store.state(PATH)
        assert rotation is not None
        return engine, versions, rotation, revision

    def atomic(self, store: SecretStore) -> bool:
        return "atomic-record" in store.features()

    def test_a_promotion_and_its_record(self, store: SecretStore) -> None:
        engine, (old, new), rotation, revision = self.in_flight(store)
        at = engine.clock.now()
        record = rotation.advance(Phase.OVERLAP, at, promoted=at)
        saved = store.commit(PATH, Promote(new.version_id, old.version_id, at), record, revision)
        assert saved > revision
        assert store.load_rotation(PATH) == (record, saved)
        assert [v.state for v in store.versions(PATH)] == [
            VersionState.PREVIOUS,
            VersionState.CURRENT,
        ]
        assert store.read_value(PATH) == store.read_value(PATH, new.version_id)

    def test_a_publish_and_a_retirement_with_their_records(self, store: SecretStore) -> None:
        engine, (old, new), rotation, revision = self.in_flight(store)
        at = engine.clock.now()
        promoted = rotation.advance(Phase.OVERLAP, at, promoted=at)
        revision = store.commit(
            PATH, Promote(new.version_id, old.version_id, at), promoted, revision
        )
        done = promoted.advance(promoted.final_phase, at, retired=at, finished=at)
        change = SetState(old.version_id, VersionState.RETIRED, VersionState.PREVIOUS, at)
        revision = store.commit(PATH, change, done, revision)
        assert store.load_rotation(PATH) == (done, revision)
        assert store.versions(PATH)[0].state is VersionState.RETIRED
        value = keyformat.generate(engine.issuer.prefix)
        third = replace(
            make_version(3, fingerprint=keyformat.fingerprint_of(value), created=at),
            key_id=keyformat.parse(value).key_id,
        )
        noted = done.noted("note", at, "a record saved with a publish")
        saved = store.commit(PATH, Publish(third, value), noted, revision)
        assert store.load_rotation(PATH) == (noted, saved)
        assert store.read_value(PATH, third.version_id) == value
        assert [v.number for v in store.versions(PATH)] == [1, 2, 3]

    def test_a_refused_change_saves_no_record(self, store: SecretStore) -> None:
        engine, (old, new), rotation, revision = self.in_flight(store)
        at = engine.clock.now()
        record = rotation.advance(Phase.OVERLAP, at, promoted=at)
        with pytest.raises(ConflictError):  # v2 is not current: the compare-and-set fails
            store.commit(PATH, Promote(old.version_id, new.version_id, at), record, revision)
        assert store.state(PATH) == ([old, new], rotation, revision)

    def test_a_moved_revision_changes_nothing_where_atomic(self, store: SecretStore) -> None:
        engine, (old, new), rotation, revision = self.in_flight(store)
        at = engine.clock.now()
        record = rotation.advance(Phase.OVERLAP, at, promoted=at)
        with pytest.raises(ConflictError):
            store.commit(PATH, Promote(new.version_id, old.version_id, at), record, revision + 7)
        assert store.load_rotation(PATH) == (rotation, revision)
        if self.atomic(store):
            assert store.versions(PATH) == [old, new]

    def test_a_repeated_commit_changes_nothing_where_atomic(self, store: SecretStore) -> None:
        engine, (old, new), rotation, revision = self.in_flight(store)
        if not self.atomic(store):
            return  # two writes: the repeat's record save is refused (its revision moved)
        at = engine.clock.now()
        record = rotation.advance(Phase.OVERLAP, at, promoted=at)
        change = Promote(new.version_id, old.version_id, at)
        saved = store.commit(PATH, change, record, revision)
        before = store.state(PATH)
        assert store.commit(PATH, change, record, revision) == saved
        assert store.state(PATH) == before


# -- batched reads -------------------------------------------------------------------


class BatchedReadsContract(FeatureContract):
    """``snapshot_many`` and ``current_values_many`` give what the one-credential reads
    give, for every path asked (duplicates once, unknown ones empty).

    The lease flag: a store declaring "batched-reads" reads the lease with its
    snapshot (``locks=True``) and reports a held one (local, AWS, Vault/OpenBao, and
    a fan-out over one of them, which answers from its primary); StoreBase's loop
    does not read leases and reports False (the memory store): ``run`` then reports
    a held credential as what it would do, and the holder advances it.
    """

    def expected(self, store: SecretStore, path: str) -> tuple[list[Version], Rotation | None, int]:
        return (store.versions(path), *store.load_rotation(path))

    def reads_locks(self, store: SecretStore) -> bool:
        return "batched-reads" in store.features()

    def test_nothing_asked_nothing_read(self, store: SecretStore) -> None:
        assert store.snapshot_many([]) == {}
        assert store.current_values_many([]) == {}

    def test_snapshot_equals_the_one_by_one_reads(self, store: SecretStore) -> None:
        self.world(store)
        paths = [PATH, OTHER, PENDING, MISSING, PATH, *UNKNOWN]
        for locks in (True, False):
            snapshot = store.snapshot_many(paths, locks=locks)
            assert set(snapshot) == set(paths)
            for path in dict.fromkeys(paths):
                versions, rotation, revision, locked = snapshot[path]
                assert (versions, rotation, revision) == self.expected(store, path), path
                if locks:
                    assert locked is False, f"{path}: nobody holds its lease"
        assert snapshot[MISSING] == ([], None, 0, False)
        in_flight = snapshot[OTHER][1]
        assert in_flight is not None and in_flight.phase is Phase.PROPAGATE

    def test_snapshot_reports_a_held_lease(self, store: SecretStore) -> None:
        engine = self.world(store)
        paths = [PATH, OTHER, MISSING]
        with held_lease(store, OTHER, engine.clock.now()):
            snapshot = store.snapshot_many(paths, locks=True)
            assert {p: s[3] for p, s in snapshot.items()} == {
                PATH: False,
                OTHER: self.reads_locks(store),
                MISSING: False,
            }
            for path in paths:  # the lease changes nothing else
                assert snapshot[path][:3] == self.expected(store, path), path
        released = store.snapshot_many(paths, locks=True)
        assert {p: s[3] for p, s in released.items()} == dict.fromkeys(paths, False)

    def test_current_values_equal_read_value(self, store: SecretStore) -> None:
        engine = self.world(store)
        paths = [PATH, OTHER, PENDING, MISSING, OTHER, *UNKNOWN[:3]]
        values = store.current_values_many(paths)
        assert values == {p: current_or_none(store, p) for p in paths}
        assert values[PENDING] is None and values[MISSING] is None
        for path in (PATH, OTHER):  # the key the issuer minted for the current version
            value = values[path]
            assert value is not None and engine.issuer.works(value)
            current = current_of(store.versions(path))
            assert keyformat.fingerprint_matches(current.fingerprint, value)


# -- drift ---------------------------------------------------------------------------


class DriftContract(FeatureContract):
    """Drift (DESIGN.md, "Drift"): none after a rotation; a change made behind
    rotatectl's back is found by the generic check (``rotatectl.drift.detect``) and its
    batched form; ``adopt`` takes the store's value, ``restore`` puts rotatectl's back.
    A store without "drift" refuses both (UsageError: StoreBase's default).

    Hooks: :meth:`tamper` (make drift with the server's own API; without it the tests
    that need drift skip, saying so) and :attr:`restores`.
    """

    restores = True
    """False for a store that declares "drift" but keeps a single copy of each value
    (local, memory): ``restore`` raises ConflictError and changes nothing."""

    def tamper(self, store: SecretStore, path: str, value: str) -> None:
        """Make clients of ``path`` read ``value`` instead of its current key, as an
        operator would with the store's own tools (not through rotatectl)."""
        raise NotImplementedError

    def drifted(self, store: SecretStore) -> tuple[Rotations, str, str]:
        """PATH rotated twice and then changed outside: (engine, our value, theirs)."""
        engine = self.rotations(store)
        engine.complete(PATH)
        engine.complete(PATH)
        engine.complete(OTHER)
        ours = store.read_value(PATH)
        theirs = keyformat.generate(engine.issuer.prefix)
        try:
            self.tamper(store, PATH, theirs)
        except NotImplementedError:
            pytest.skip(f"{type(self).__name__} has no tamper() hook: it cannot make drift")
        return engine, ours, theirs

    def problems(self, engine: Rotations, path: str) -> list[str]:
        """detect() of ``path``, checked against detect_many() and drift_many()."""
        store = engine.store
        one = detect(engine.target(path))
        snapshot = store.snapshot_many([path])
        many = detect_many([engine.target(path)], {path: snapshot[path][0]})
        assert many == {path: one}
        assert store.drift_many([path]) == {path: store.drift(path)}
        return one

    def assert_destinations_agree(self, store: SecretStore) -> None:
        """Several destinations ("destinations"): after a repair each one has the
        primary's versions in the primary's states."""
        if "destinations" not in store.features():
            return
        views = store.views(PATH)
        primary = [(v.version_id, v.state) for v in store.versions(PATH)]
        for name, view in views:
            assert not isinstance(view, str), f"destination {name}: {view}"
            assert [(v.version_id, v.state) for v in view] == primary, f"destination {name}"

    def assert_no_value_in(self, lines: Sequence[str], *values: str) -> None:
        for line in lines:
            for value in values:
                assert value not in line, f"a key value in the drift report: {line!r}"

    def test_no_drift_after_rotations(self, store: SecretStore) -> None:
        engine = self.world(store)
        paths = [PATH, OTHER, PENDING, MISSING]
        assert store.drift_many(paths) == {p: store.drift(p) for p in paths}
        assert store.drift_many(paths) == {p: [] for p in paths}
        for path in paths:
            assert detect(engine.target(path)) == [], path
        snapshot = store.snapshot_many(paths)
        targets = [engine.target(p) for p in paths]
        versions = {p: s[0] for p, s in snapshot.items()}
        assert detect_many(targets, versions) == {p: [] for p in paths}

    def test_drift_made_outside_is_found(self, store: SecretStore) -> None:
        engine, ours, theirs = self.drifted(store)
        problems = self.problems(engine, PATH)
        assert problems, "a value changed behind rotatectl's back is drift"
        self.assert_no_value_in(problems, ours, theirs)
        assert self.problems(engine, OTHER) == []  # one credential's drift is its own

    def test_adopt_takes_the_value_clients_read(self, store: SecretStore) -> None:
        engine, _, theirs = self.drifted(store)
        before = store.versions(PATH)
        if "drift" not in store.features():
            with pytest.raises(UsageError):
                resolve(engine.target(PATH), "adopt", engine.clock.now())
            assert store.versions(PATH) == before
            assert self.problems(engine, PATH)
            return
        resolve(engine.target(PATH), "adopt", engine.clock.now())
        self.assert_destinations_agree(store)
        assert self.problems(engine, PATH) == []
        assert store.read_value(PATH) == theirs
        current = current_of(store.versions(PATH))
        assert keyformat.fingerprint_matches(current.fingerprint, theirs)
        assert current.key_id == keyformat.parse(theirs).key_id
        assert current.key_id in {k.key_id for k in store.accepted_keys(PATH, PATH)}
        assert self.problems(engine, OTHER) == []

    def test_adopt_puts_the_replaced_key_through_overlap_and_gate(self, store: SecretStore) -> None:
        """The one meaning of adopt: the store's value is a new current version, the
        replaced key stays accepted as previous until the overlap has passed and the
        usage gate says quiet, then the engine retires it."""
        engine, ours, theirs = self.drifted(store)
        if "drift" not in store.features():
            return  # refused: test_adopt_takes_the_value_clients_read
        replaced = current_of(store.versions(PATH))
        resolve(engine.target(PATH), "adopt", engine.clock.now())
        self.assert_destinations_agree(store)
        adopted = current_of(store.versions(PATH))
        assert adopted.version_id != replaced.version_id, "adopt rewrote the key in place"
        assert adopted.number > replaced.number
        old = next(v for v in store.versions(PATH) if v.version_id == replaced.version_id)
        assert old.state is VersionState.PREVIOUS
        assert {old.key_id, adopted.key_id} <= {k.key_id for k in store.accepted_keys(PATH, PATH)}
        rotation, _ = store.load_rotation(PATH)
        assert rotation is not None and rotation.phase is Phase.OVERLAP
        assert (rotation.old_version_id, rotation.new_version_id) == (
            replaced.version_id,
            adopted.version_id,
        )
        # A second adopt finds nothing to do.
        resolve(engine.target(PATH), "adopt", engine.clock.now())
        assert [v.version_id for v in store.versions(PATH)].count(adopted.version_id) == 1
        assert store.load_rotation(PATH)[0] == rotation

        def advance() -> None:
            result = engine.runner().advance(engine.target(PATH), start_if_due=False)
            assert result.outcome is not Outcome.FAILED, result

        advance()  # inside the overlap: kept
        assert old.version_id in {v.version_id for v in store.versions(PATH) if v.state.accepted}
        engine.clock.advance(POLICY.overlap + timedelta(seconds=1))
        engine.probe.see(old.key_id, engine.clock.now())
        advance()  # past the overlap, still presented: the gate holds
        state = {v.version_id: v.state for v in store.versions(PATH)}
        assert state[old.version_id] is VersionState.PREVIOUS
        engine.clock.advance(POLICY.usage_quiet + timedelta(seconds=1))
        advance()  # quiet: retired
        state = {v.version_id: v.state for v in store.versions(PATH)}
        assert state[old.version_id] is VersionState.RETIRED
        assert state[adopted.version_id] is VersionState.CURRENT
        assert store.read_value(PATH) == theirs
        assert old.key_id not in {k.key_id for k in store.accepted_keys(PATH, PATH)}
        rotation, _ = store.load_rotation(PATH)
        assert rotation is not None and rotation.phase is Phase.COMPLETED
        self.assert_destinations_agree(store)
        assert self.problems(engine, PATH) == []
        del ours

    def test_restore_puts_our_value_back(self, store: SecretStore) -> None:
        engine, ours, _ = self.drifted(store)
        before = store.versions(PATH)
        if "drift" not in store.features() or not self.restores:
            refused = UsageError if "drift" not in store.features() else ConflictError
            with pytest.raises(refused):
                resolve(engine.target(PATH), "restore", engine.clock.now())
            assert store.versions(PATH) == before
            assert self.problems(engine, PATH), "a refused restore leaves the drift"
            return
        resolve(engine.target(PATH), "restore", engine.clock.now())
        self.assert_destinations_agree(store)
        assert self.problems(engine, PATH) == []
        assert store.read_value(PATH) == ours
        assert store.versions(PATH) == before
        assert self.problems(engine, OTHER) == []

    @pytest.mark.parametrize("how", ["adopt", "restore"])
    def test_rotations_go_on_after_a_repair(self, store: SecretStore, how: str) -> None:
        """After ``check --adopt`` or ``--restore``, ``rotate`` works again."""
        engine, _, _ = self.drifted(store)
        if "drift" not in store.features() or (how == "restore" and not self.restores):
            with pytest.raises((UsageError, ConflictError)):
                resolve(engine.target(PATH), how, engine.clock.now())
            assert engine.runner().rotate(engine.target(PATH)).outcome is Outcome.ATTENTION
            return
        resolve(engine.target(PATH), how, engine.clock.now())
        # An adoption may leave a rotation in its overlap (the replaced key on its way
        # out): the engine finishes it first, as `run` would.
        rotation, _ = store.load_rotation(PATH)
        if rotation is not None and not rotation.phase.terminal:
            engine.clock.advance(POLICY.max_overlap)
            result = engine.runner().advance(engine.target(PATH), start_if_due=False)
            assert result.outcome is Outcome.DONE, result
        engine.complete(PATH)
        assert self.problems(engine, PATH) == []
        assert engine.issuer.works(store.read_value(PATH))


# -- history -------------------------------------------------------------------------


class HistoryContract(FeatureContract):
    """``rotation_history``: the earlier rotations' records, oldest first, never the
    latest one; [] for a store without "history" (StoreBase's default)."""

    def test_no_history_before_a_second_rotation(self, store: SecretStore) -> None:
        assert store.rotation_history(MISSING) == []
        self.rotations(store).complete(PATH)
        assert store.rotation_history(PATH) == []

    def test_earlier_rotations_oldest_first(self, store: SecretStore) -> None:
        engine = self.rotations(store)
        first = engine.complete(PATH)
        second = engine.complete(PATH)
        if "history" in store.features():
            assert [r.id for r in store.rotation_history(PATH)] == [first.id]
        third = engine.complete(PATH)
        assert len({first.id, second.id, third.id}) == 3
        history = store.rotation_history(PATH)
        latest, _ = store.load_rotation(PATH)
        assert latest is not None and latest.id == third.id
        if "history" not in store.features():
            assert history == []
            return
        assert [r.id for r in history] == [first.id, second.id]
        for record, done in zip(history, (first, second), strict=True):
            assert record.phase is Phase.COMPLETED  # each rotation's last record
            assert (record.kind, record.new_version_id) == (done.kind, done.new_version_id)
        assert store.rotation_history(OTHER) == []

    def test_an_in_flight_rotation_is_not_history(self, store: SecretStore) -> None:
        engine = self.rotations(store)
        first = engine.complete(PATH)
        started = engine.start(PATH)
        expected = [first.id] if "history" in store.features() else []
        assert [r.id for r in store.rotation_history(PATH)] == expected
        assert started.id not in {r.id for r in store.rotation_history(PATH)}


# -- rolling window ------------------------------------------------------------------


class RollingWindowContract(FeatureContract):
    """``keep_previous = 3``: after five rotations the store holds the current key and
    the three newest previous keys, accepted by verifiers and readable by their
    version, with no drift; the older ones were retired, each only after the usage
    gate said quiet. A store without "rolling-window" is never given such a policy:
    the workspace refuses it (:func:`rotatectl.workspace.check_window`)."""

    KEEP = 3

    def window_rotations(self, store: SecretStore) -> Rotations:
        return Rotations(store, replace(POLICY, keep_previous=self.KEEP))

    def test_five_rotations_keep_the_current_and_three_previous_keys(
        self, store: SecretStore
    ) -> None:
        if "rolling-window" not in store.features():
            with pytest.raises(ConfigError, match="keep_previous = 3: store 'contract'"):
                check_window(PATH, self.KEEP, "contract", store)
            return
        check_window(PATH, self.KEEP, "contract", store)  # accepted
        engine = self.window_rotations(store)
        engine.complete(PATH)  # v1, the first key
        for _ in range(5):
            engine.complete(PATH)
        states = {v.number: v.state for v in store.versions(PATH)}
        assert states == {
            1: VersionState.RETIRED,
            2: VersionState.RETIRED,
            3: VersionState.PREVIOUS,
            4: VersionState.PREVIOUS,
            5: VersionState.PREVIOUS,
            6: VersionState.CURRENT,
        }
        by_number = {v.number: v for v in store.versions(PATH)}
        accepted = store.accepted_keys(PATH, PATH)
        assert sorted(k.key_id for k in accepted) == sorted(
            by_number[n].key_id for n in (3, 4, 5, 6)
        )
        assert current_or_none(store, PATH) == store.read_value(PATH, by_number[6].version_id)
        for n in (3, 4, 5):  # a previous key is still there to be read
            assert store.read_value(PATH, by_number[n].version_id)
        assert detect(engine.target(PATH)) == []  # the window is not drift

    def test_a_key_leaving_the_window_waits_for_the_gate(self, store: SecretStore) -> None:
        if "rolling-window" not in store.features():
            return  # refused, as the test above checks
        engine = self.window_rotations(store)
        engine.complete(PATH)
        for _ in range(3):
            engine.complete(PATH)  # v1..v3 previous, v4 current: the window is full
        oldest = next(v for v in store.versions(PATH) if v.number == 1)
        engine.probe.see(oldest.key_id, engine.clock.now())  # a client still holds v1
        engine.clock.advance(timedelta(days=1))
        engine.probe.see(oldest.key_id, engine.clock.now())
        result = engine.runner().rotate(
            engine.target(PATH), propagation=timedelta(0), overlap=timedelta(0)
        )
        assert result.outcome is Outcome.WAITING, result  # v5 current; v1 in use
        states = {v.number: v.state for v in store.versions(PATH)}
        assert states[1] is VersionState.PREVIOUS and states[5] is VersionState.CURRENT
        assert len(store.accepted_keys(PATH, PATH)) == 5  # v1 still accepted
        assert detect(engine.target(PATH)) == []
        engine.clock.advance(POLICY.usage_quiet + timedelta(minutes=1))
        done = engine.runner().advance(engine.target(PATH), start_if_due=False)
        assert done.outcome is Outcome.DONE, done
        states = {v.number: v.state for v in store.versions(PATH)}
        assert states == {
            1: VersionState.RETIRED,
            2: VersionState.PREVIOUS,
            3: VersionState.PREVIOUS,
            4: VersionState.PREVIOUS,
            5: VersionState.CURRENT,
        }


# -- access check --------------------------------------------------------------------


class AccessCheckContract(FeatureContract):
    """``check_access``: [] with every permission (StoreBase's default for a store
    without "access-check"), harmless (it changes nothing) and never raising; with
    :meth:`denied` (optional), a problem line names the missing permission."""

    def denied(self, store: SecretStore) -> tuple[SecretStore, str] | None:
        """A store like ``store`` whose principal lacks one permission rotatectl needs,
        and a word its problem line must hold (the action or capability); None: no
        such store can be made here."""
        return None

    def test_every_permission(self, store: SecretStore) -> None:
        assert store.check_access() == []
        assert store.check_access(paths=[PATH, MISSING]) == []
        self.rotations(store).complete(PATH)
        assert store.check_access() == []
        assert store.check_access(paths=[PATH, MISSING]) == []

    def test_checking_changes_nothing(self, store: SecretStore) -> None:
        self.rotations(store).complete(PATH)
        before = (store.list_paths(), store.state(PATH), store.read_value(PATH))
        store.check_access(paths=[PATH, MISSING, *UNKNOWN[:2]])
        store.check_access()
        assert (store.list_paths(), store.state(PATH), store.read_value(PATH)) == before
        assert store.versions(MISSING) == []

    def test_a_missing_permission_is_named(self, store: SecretStore) -> None:
        self.rotations(store).complete(PATH)
        found = self.denied(store)
        if found is None:
            if "access-check" in store.features():
                pytest.skip(f"{type(self).__name__} has no denied() hook")
            return  # StoreBase's check: nothing to deny (test_every_permission)
        weak, permission = found
        problems = weak.check_access(paths=[PATH])
        assert problems, "a missing permission is reported"
        assert any(permission in line for line in problems), problems
        value = store.read_value(PATH)
        assert all(value not in line for line in problems)
