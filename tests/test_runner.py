"""The runner against the in-memory fakes: full rotations, the usage gate, crashes, locks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rotatectl.engine import BOUNDARIES, Outcome, Runner, Target
from rotatectl.errors import StoreUnavailableError
from rotatectl.model import OnStillUsed, Phase, Policy, VersionState
from rotatectl.testing.fakes import FakeClock, FakeIssuer, FakeProbe, RecordingNotifier
from rotatectl.testing.memory import MemoryStore

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
POLICY = Policy(
    propagation=timedelta(seconds=30),
    overlap=timedelta(hours=1),
    usage_quiet=timedelta(minutes=15),
    max_overlap=timedelta(hours=4),
    retain=timedelta(days=7),
    recheck=timedelta(minutes=1),
)
TTL = timedelta(minutes=2)


class Crash(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the runner catches it."""


class World:
    def __init__(self, policy: Policy = POLICY) -> None:
        self.clock = FakeClock(T0)
        self.store = MemoryStore()
        self.issuer = FakeIssuer(clock=self.clock)
        self.probe = FakeProbe()
        self.notifier = RecordingNotifier()
        self.policy = policy
        self.rotations_started = 0

    def target(self, name: str = "partners/acme") -> Target:
        return Target(
            name=name,
            path=name,
            store=self.store,
            issuer=self.issuer,
            probe=self.probe,
            policy=self.policy,
            notifiers=[("rec", self.notifier)],
        )

    def runner(self, holder: str = "tester@host:1", boundary=None) -> Runner:
        return Runner(self.clock, holder=holder, lock_ttl=TTL, boundary=boundary)

    def states(self, name: str = "partners/acme") -> list[tuple[int, str]]:
        return [(v.number, v.state.value) for v in self.store.versions(name)]

    def check_invariants(self, name: str = "partners/acme", *, quiescent: bool = False) -> None:
        versions = self.store.versions(name)
        currents = [v for v in versions if v.state is VersionState.CURRENT]
        if any(v.promoted for v in versions):
            # Invariant 1: exactly one current, and its key works at the issuer.
            assert len(currents) == 1, versions
            assert self.issuer.works(self.store.read_value(name))
        # Invariant 6: one version per rotation, never two.
        rotation, _ = self.store.load_rotation(name)
        assert len(versions) <= self.rotations_started
        assert len({v.version_id for v in versions}) == len(versions)
        # Retired keys are disabled at the issuer; verifiers accept pending/current/previous only.
        accepted = {k.version_id for k in self.store.accepted_keys(name, name)}
        assert accepted == {v.version_id for v in versions if v.state.accepted}
        for v in versions:
            if v.state in (VersionState.RETIRED, VersionState.DESTROYED) and v.issuer_ref:
                key = self.issuer.keys[v.issuer_ref]
                assert not key.active or key.deleted
        if quiescent:
            # Invariant 4: every live issuer key is a recorded version (no orphans).
            refs = {v.issuer_ref for v in versions}
            assert set(self.issuer.live(name)) <= refs
        # Invariant 7: no value in the rotation record.
        if rotation is not None:
            record = json.dumps(rotation.to_dict())
            for v in versions:
                if v.state is not VersionState.DESTROYED:
                    assert self.store.read_value(name, v.version_id) not in record


def rotate(world: World, runner: Runner | None = None, **kw):
    world.rotations_started += 1
    return (runner or world.runner()).rotate(world.target(), **kw)


def run_until_done(world: World, runner: Runner | None = None, limit: int = 50):
    runner = runner or world.runner()
    for _ in range(limit):
        result = runner.advance(world.target(), start_if_due=False)
        world.check_invariants()
        if result.outcome is Outcome.WAITING and result.until:
            world.clock.advance(max(result.until - world.clock.now(), timedelta(0)))
            continue
        if result.outcome is Outcome.LOCKED:
            world.clock.advance(TTL + timedelta(seconds=1))
            continue
        return result
    raise AssertionError("rotation did not finish")


def test_first_rotation_makes_one_current_key_without_waiting() -> None:
    w = World()
    result = rotate(w)
    assert result.outcome is Outcome.DONE
    assert w.states() == [(1, "current")]
    assert w.notifier.kinds() == ["started", "published", "promoted", "completed"]
    w.check_invariants(quiescent=True)


def test_full_rotation_step_by_step_with_exact_store_contents() -> None:
    w = World()
    rotate(w)
    old_value = w.store.read_value("partners/acme")
    w.clock.advance(timedelta(days=1))

    r = rotate(w)
    assert r.outcome is Outcome.WAITING and r.phase is Phase.PROPAGATE
    assert r.until == w.clock.now() + POLICY.propagation
    assert w.states() == [(1, "current"), (2, "pending")]
    # The pending key is accepted by verifiers before any client is told to use it.
    assert {k.state for k in w.store.accepted_keys("partners/acme", "partners/acme")} == {
        VersionState.CURRENT,
        VersionState.PENDING,
    }
    assert w.store.read_value("partners/acme") == old_value

    w.clock.advance(timedelta(seconds=29))
    assert w.runner().advance(w.target()).phase is Phase.PROPAGATE
    w.clock.advance(timedelta(seconds=1))
    r = w.runner().advance(w.target())
    assert r.phase is Phase.OVERLAP and r.outcome is Outcome.WAITING
    assert w.states() == [(1, "previous"), (2, "current")]
    new_value = w.store.read_value("partners/acme")
    assert new_value != old_value and w.issuer.works(old_value)

    w.clock.advance(POLICY.overlap)
    r = w.runner().advance(w.target())
    assert r.outcome is Outcome.DONE
    assert w.states() == [(1, "retired"), (2, "current")]
    assert not w.issuer.works(old_value) and w.issuer.works(new_value)
    accepted = w.store.accepted_keys("partners/acme", "partners/acme")
    assert [k.state for k in accepted] == [VersionState.CURRENT]

    # Destroy after the retention window, and only then.
    w.clock.advance(POLICY.retain - timedelta(seconds=1))
    assert w.runner().advance(w.target()).outcome is Outcome.IDLE
    assert w.states() == [(1, "retired"), (2, "current")]
    w.clock.advance(timedelta(seconds=1))
    w.runner().advance(w.target())
    assert w.states() == [(1, "destroyed"), (2, "current")]
    assert w.issuer.count("delete") == 1
    w.check_invariants(quiescent=True)
    assert w.notifier.kinds() == [
        *("started", "published", "promoted", "completed"),
        *("started", "published", "promoted", "retired", "completed"),
        "destroyed",
    ]


def test_usage_gate_holds_until_old_key_is_quiet() -> None:
    w = World()
    rotate(w)
    old = w.store.versions("partners/acme")[0]
    rotate(w, propagation=timedelta(0))
    w.runner().advance(w.target())
    assert w.states() == [(1, "previous"), (2, "current")]

    w.clock.advance(POLICY.overlap)
    w.probe.see(old.key_id, w.clock.now() - timedelta(minutes=1), client="10.0.0.7")
    r = w.runner().advance(w.target())
    assert r.outcome is Outcome.WAITING and "10.0.0.7" in r.message
    assert r.until == w.clock.now() + timedelta(minutes=14)
    assert w.states() == [(1, "previous"), (2, "current")]

    w.clock.advance(timedelta(minutes=10))
    w.probe.see(old.key_id, w.clock.now(), client="10.0.0.7")
    assert w.runner().advance(w.target()).outcome is Outcome.WAITING

    w.clock.advance(timedelta(minutes=15))
    r = w.runner().advance(w.target())
    assert r.outcome is Outcome.DONE
    assert w.states() == [(1, "retired"), (2, "current")]


@pytest.mark.parametrize(
    ("policy", "outcome", "exit_code", "state"),
    [
        (OnStillUsed.FAIL, Outcome.ATTENTION, 3, "previous"),
        (OnStillUsed.WAIT, Outcome.WAITING, 3, "previous"),
        (OnStillUsed.FORCE, Outcome.DONE, 0, "retired"),
    ],
)
def test_still_used_past_max_overlap(policy, outcome, exit_code, state) -> None:
    from dataclasses import replace

    w = World(replace(POLICY, on_still_used=policy))
    rotate(w)
    old = w.store.versions("partners/acme")[0]
    rotate(w, propagation=timedelta(0))
    w.runner().advance(w.target())
    w.clock.advance(POLICY.max_overlap)
    w.probe.see(old.key_id, w.clock.now(), client="batch-job")
    r = w.runner().advance(w.target())
    assert r.outcome is outcome
    assert int(r.exit_code) == exit_code
    assert w.states()[0] == (1, state)


def test_unknown_usage_keeps_the_gate_closed() -> None:
    w = World()
    rotate(w)
    old = w.store.versions("partners/acme")[0]
    rotate(w, propagation=timedelta(0))
    w.runner().advance(w.target())
    w.clock.advance(POLICY.overlap)
    w.probe.unknown.add(old.key_id)
    assert w.runner().advance(w.target()).outcome is Outcome.WAITING
    w.probe.fail = True
    r = w.runner().advance(w.target())
    assert r.outcome is Outcome.WAITING and any("probe" in x for x in r.warnings)
    assert w.states()[0] == (1, "previous")


def test_second_session_is_locked_and_names_the_holder() -> None:
    w = World()
    first = w.runner("alice@host-a:10")
    with first.session(w.target()) as s:
        r = w.runner("bob@host-b:20").rotate(w.target())
        assert r.outcome is Outcome.LOCKED and int(r.exit_code) == 4
        assert "alice@host-a:10" in r.message
        assert s.lease is not None
    assert w.states() == []
    # Released: the next one proceeds.
    assert rotate(w, w.runner("bob@host-b:20")).outcome is Outcome.DONE


def test_expired_lease_is_taken_over() -> None:
    w = World()
    w.store.acquire_lock("partners/acme", "ghost@elsewhere:1", TTL, w.clock.now())
    assert rotate(w).outcome is Outcome.LOCKED
    w.rotations_started -= 1
    w.clock.advance(TTL)
    assert rotate(w).outcome is Outcome.DONE


def test_dead_holder_on_this_host_is_taken_over_at_once() -> None:
    import socket

    w = World()
    dead = f"ghost@{socket.gethostname()}:999999"
    w.store.acquire_lock("partners/acme", dead, TTL, w.clock.now())
    r = rotate(w)
    assert r.outcome is Outcome.DONE
    assert any("no longer running" in x for x in r.warnings)


def test_rotate_continues_the_rotation_in_flight() -> None:
    w = World()
    rotate(w)
    r1 = rotate(w)
    r2 = rotate(w)
    w.rotations_started -= 1
    assert r1.rotation_id == r2.rotation_id
    assert w.states() == [(1, "current"), (2, "pending")]


def test_notifier_failure_never_fails_the_rotation() -> None:
    w = World()
    w.notifier.fail = True
    r = rotate(w)
    assert r.outcome is Outcome.DONE
    assert any("notifier rec failed" in x for x in r.warnings)


def test_retryable_store_errors_are_retried() -> None:
    w = World()
    rotate(w)
    real = w.store.promote
    calls = {"n": 0}

    def flaky(*args, **kw):
        calls["n"] += 1
        if calls["n"] < 3:
            raise StoreUnavailableError("busy")
        return real(*args, **kw)

    w.store.promote = flaky  # type: ignore[method-assign]
    r = rotate(w, propagation=timedelta(0))
    assert r.phase is Phase.OVERLAP and calls["n"] == 3


def test_lost_response_after_issue_leaves_no_orphan_and_no_second_version() -> None:
    w = World()
    rotate(w)
    w.issuer.fail_after.add("create")  # the key is minted, the reply is lost
    r = rotate(w, propagation=timedelta(0))
    assert r.outcome is Outcome.FAILED  # every retry loses its reply too
    w.issuer.fail_after.clear()
    run_until_done(w)
    w.check_invariants(quiescent=True)
    assert w.states() == [(1, "retired"), (2, "current")]
    assert w.issuer.count("delete") >= 1  # the orphans were revoked


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_crash_at_every_boundary_is_resumed_to_completion(boundary: str) -> None:
    w = World()
    rotate(w)
    w.clock.advance(timedelta(days=8))
    # An earlier retired version to exercise the destroy boundaries as well.
    rotate(w, propagation=timedelta(0), overlap=timedelta(0))
    run_until_done(w)
    w.clock.advance(POLICY.retain)

    crashed = {"n": 0}

    def crash_at(name: str) -> None:
        if name == boundary and not crashed["n"]:
            crashed["n"] += 1
            raise Crash(name)

    try:
        rotate(w, w.runner("victim@host:1", boundary=crash_at), propagation=timedelta(0))
        run_until_done(w, w.runner("victim@host:1", boundary=crash_at))
    except Crash:
        pass
    assert crashed["n"] == 1, f"boundary {boundary} was never crossed"
    w.check_invariants()
    w.clock.advance(TTL + timedelta(seconds=1))  # a killed holder's lease expires
    final = run_until_done(w, w.runner("rescuer@host:2"))
    assert final.outcome in (Outcome.DONE, Outcome.IDLE)
    w.check_invariants(quiescent=True)
    states = dict(w.states())
    assert states[3] == "current" and states[2] == "retired"
    assert states[1] == "destroyed"
    assert len(w.store.versions("partners/acme")) == 3
    # A crash between minting and publishing costs one extra key, which the resume revoked.
    orphaned = 1 if boundary == "after-issue" else 0
    assert w.issuer.count("create") == 3 + orphaned
    assert len(w.issuer.live()) == 2  # v2 (retired, disabled) and v3; v1 and any orphan deleted


class LostReplies(MemoryStore):
    """A memory store whose next ``lose`` commits land, then answer as if the server
    was unreachable (the reply was lost): the runner's retry finds them done."""

    def __init__(self, lose: int) -> None:
        super().__init__()
        self.lose = lose

    def commit(self, path, change, rotation, expected_revision):  # type: ignore[no-untyped-def]
        revision = super().commit(path, change, rotation, expected_revision)
        if self.lose:
            self.lose -= 1
            raise StoreUnavailableError("the reply was lost")
        return revision


def test_an_atomic_commit_whose_reply_was_lost_is_not_redone() -> None:
    """Issue 21: the publish (version and record in one write) landed, its reply was
    lost; the retry finds the version and the record saved with it, so the rotation
    goes on: one key minted, no conflict, no failure."""
    w = World()
    rotate(w)
    w.store = LostReplies(lose=0)
    rotate(w)  # a first key on the new store
    w.store.lose = 1
    result = w.runner().rotate(w.target())
    assert result.outcome is Outcome.WAITING, result.message
    assert w.states() == [(1, "current"), (2, "pending")]
    rotation, _ = w.store.load_rotation("partners/acme")
    assert rotation is not None and rotation.phase is Phase.PROPAGATE
    assert not rotation.error
    assert len(w.issuer.live("partners/acme")) == 2  # no second key for v2
