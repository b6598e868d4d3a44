"""Hypothesis stateful testing of the machine and runner against the fakes.

Random interleavings of time, usage, rotations, crashes at any boundary,
emergencies, rollbacks and aborts never violate an invariant of DESIGN.md.

    ROTATECTL_STATEFUL_EXAMPLES=20000 pytest tests/test_stateful.py   # the long profile

A failure prints the seed (``--hypothesis-seed``) and a ``@reproduce_failure``
blob to replay it exactly.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from rotatectl.engine import BOUNDARIES, Outcome
from rotatectl.errors import UsageError
from rotatectl.model import OnStillUsed, Policy, RotationKind, VersionState

from .test_runner import TTL, Crash, World

NAME = "partners/acme"
POLICY = Policy(
    propagation=timedelta(seconds=30),
    overlap=timedelta(minutes=10),
    max_age=timedelta(days=1),
    usage_quiet=timedelta(minutes=5),
    max_overlap=timedelta(hours=1),
    on_still_used=OnStillUsed.WAIT,
    retain=timedelta(hours=2),
    recheck=timedelta(minutes=1),
)
EXAMPLES = int(os.environ.get("ROTATECTL_STATEFUL_EXAMPLES", "2000"))


class Rotations(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = World(POLICY)
        self.crash_at: str | None = None
        self.ever_promoted = False
        # Keys retired without the usage gate (emergency, automatic rollback, abort).
        self.exempt: set[str] = set()
        self.w.runner().rotate(self.w.target())

    # -- helpers -----------------------------------------------------------

    def runner(self):  # type: ignore[no-untyped-def]
        target = self.crash_at

        def boundary(name: str) -> None:
            if name == target:
                raise Crash(name)

        self.crash_at = None
        return self.w.runner(boundary=boundary)

    def attempt(self, fn) -> None:  # type: ignore[no-untyped-def]
        try:
            fn()
        except Crash:
            # A killed process never releases its lease: it expires.
            self.w.clock.advance(TTL + timedelta(seconds=1))
        except UsageError:
            pass  # refused clearly (nothing to abort, destroyed key, ...): allowed

    def current_key(self) -> str | None:
        cur = [v for v in self.w.store.versions(NAME) if v.state is VersionState.CURRENT]
        return cur[0].key_id if cur else None

    # -- rules -------------------------------------------------------------

    @rule(seconds=st.integers(0, 4 * 3600))
    def time_passes(self, seconds: int) -> None:
        self.w.clock.advance(timedelta(seconds=seconds))

    @rule(which=st.sampled_from(["current", "previous", "pending"]), client=st.sampled_from("ab"))
    def a_client_presents_a_key(self, which: str, client: str) -> None:
        for v in self.w.store.versions(NAME):
            if v.state.value == which:
                self.w.probe.see(v.key_id, self.w.clock.now(), client=client)

    @rule(boundary=st.sampled_from([None, *BOUNDARIES]))
    def arm_a_crash(self, boundary: str | None) -> None:
        self.crash_at = boundary

    @rule()
    def cron_run(self) -> None:
        self.attempt(lambda: self.runner().advance(self.w.target()))

    @rule(prop=st.sampled_from([0, 30]), over=st.sampled_from([0, 600]))
    def operator_rotates(self, prop: int, over: int) -> None:
        self.attempt(
            lambda: self.runner().rotate(
                self.w.target(),
                propagation=timedelta(seconds=prop),
                overlap=timedelta(seconds=over),
            )
        )

    @rule()
    def emergency(self) -> None:
        leaked = self.current_key()
        pending_or_previous = {
            v.key_id
            for v in self.w.store.versions(NAME)
            if v.state in (VersionState.PENDING, VersionState.PREVIOUS)
        }
        self.exempt |= pending_or_previous | ({leaked} if leaked else set())
        self.attempt(lambda: self.runner().emergency(self.w.target(), "leak"))

    @rule()
    def rollback(self) -> None:
        self.attempt(lambda: self.runner().rollback(self.w.target()))

    @rule()
    def abort(self) -> None:
        self.exempt |= {
            v.key_id for v in self.w.store.versions(NAME) if v.state is VersionState.PENDING
        }
        self.attempt(lambda: self.runner().abort(self.w.target()))

    # -- invariants --------------------------------------------------------

    @invariant()
    def always_one_current_that_works(self) -> None:
        versions = self.w.store.versions(NAME)
        currents = [v for v in versions if v.state is VersionState.CURRENT]
        if any(v.promoted for v in versions):
            self.ever_promoted = True
        if self.ever_promoted:
            assert len(currents) == 1, versions
            assert self.w.issuer.works(self.w.store.read_value(NAME))

    @invariant()
    def verifiers_accept_exactly_the_accepted_states(self) -> None:
        versions = self.w.store.versions(NAME)
        accepted = {k.version_id for k in self.w.store.accepted_keys(NAME, NAME)}
        assert accepted == {v.version_id for v in versions if v.state.accepted}
        for v in versions:
            if v.state in (VersionState.RETIRED, VersionState.DESTROYED) and v.issuer_ref:
                assert not self.w.issuer.keys[v.issuer_ref].active

    @invariant()
    def one_version_per_rotation_and_no_stray_keys(self) -> None:
        versions = self.w.store.versions(NAME)
        assert len({v.number for v in versions}) == len(versions)
        rotation, _ = self.w.store.load_rotation(NAME)
        in_flight = rotation is not None and not rotation.phase.terminal
        recorded = {v.issuer_ref for v in versions}
        # Only a key minted by the in-flight rotation, or by one it superseded (an
        # emergency after a crash between issue and publish), may be unrecorded:
        # the in-flight rotation's resume revokes it before minting its own.
        minted_for: set[str] = set()
        if in_flight and rotation is not None:
            minted_for.add(rotation.new_version_id)
            earlier = {r.id: r for r in self.w.store.rotation_history(NAME)}
            superseded = earlier.get(rotation.supersedes or "")
            while superseded is not None:
                minted_for.add(superseded.new_version_id)
                superseded = earlier.get(superseded.supersedes or "")
        for ref in self.w.issuer.live(NAME):
            if ref not in recorded:
                assert self.w.issuer.keys[ref].tag in minted_for, (ref, rotation)

    @invariant()
    def no_retirement_while_in_use(self) -> None:
        for v in self.w.store.versions(NAME):
            retired_now = v.state in (VersionState.RETIRED, VersionState.DESTROYED)
            # A rollback can reinstate a retired key; only keys retired now are judged.
            if not retired_now or v.retired is None or v.key_id in self.exempt:
                continue
            window_start = v.retired - POLICY.usage_quiet
            seen = [
                s for s in self.w.probe.sightings
                if s.key_id == v.key_id and window_start < s.at <= v.retired
            ]  # fmt: skip
            assert not seen, f"v{v.number} retired while seen at {[s.at for s in seen]}"

    @invariant()
    def destroyed_only_after_retain(self) -> None:
        for v in self.w.store.versions(NAME):
            if v.state is VersionState.DESTROYED:
                assert v.retired is not None and v.destroyed is not None
                assert v.destroyed - v.retired >= POLICY.retain

    @invariant()
    def rollback_never_resurrects_a_compromised_key(self) -> None:
        rotation, _ = self.w.store.load_rotation(NAME)
        if rotation is not None and rotation.kind is RotationKind.ROLLBACK:
            history = self.w.store.rotation_history(NAME)
            superseded = next((r for r in history if r.id == rotation.supersedes), None)
            assert superseded is None or superseded.kind is not RotationKind.EMERGENCY

    def teardown(self) -> None:
        # Whatever happened, cron finishes it: no rotation stays stuck.
        runner = self.w.runner()
        for _ in range(40):
            r = runner.advance(self.w.target(), start_if_due=False)
            if r.outcome is Outcome.WAITING and r.until is not None:
                self.w.clock.advance(max(r.until - self.w.clock.now(), timedelta(seconds=1)))
                # Clients stop using old keys eventually.
                self.w.probe.sightings.clear()
                continue
            if r.outcome is Outcome.LOCKED:
                self.w.clock.advance(TTL + timedelta(seconds=1))
                continue
            assert r.outcome in (Outcome.DONE, Outcome.IDLE), r
            break
        rotation, _ = self.w.store.load_rotation(NAME)
        assert rotation is None or rotation.phase.terminal, rotation


TestRotations = Rotations.TestCase
TestRotations.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
