"""Hypothesis stateful testing of the machine and runner against the fakes.

Random interleavings of time, usage, rotations, crashes at any boundary,
emergencies, rollbacks (also shortly after a promotion), aborts, failing
``on_promote`` hooks and a ``rotate --wait`` that holds the lease while an
emergency pre-empts it never violate an invariant of DESIGN.md.

    ROTATECTL_STATEFUL_EXAMPLES=20000 pytest tests/test_stateful.py   # the long profile

A failure prints the seed (``--hypothesis-seed``) and a ``@reproduce_failure``
blob to replay it exactly.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rotatectl.engine import BOUNDARIES, Outcome, Result, Runner, Session, StartRequest
from rotatectl.engine.fleet import RENEW_EVERY
from rotatectl.errors import UsageError
from rotatectl.hooks import HookResult, HookSpec
from rotatectl.machine import retry_after
from rotatectl.model import (
    Event,
    OnStillUsed,
    Phase,
    Policy,
    Rotation,
    RotationKind,
    Version,
    VersionState,
)

from .test_runner import TTL, Crash, World

NAME = "partners/acme"
POLICY = Policy(
    propagation=timedelta(seconds=30),
    overlap=timedelta(minutes=10),
    # Short, so that `run` starts scheduled rotations (and meets their backoff).
    max_age=timedelta(hours=1),
    usage_quiet=timedelta(minutes=5),
    max_overlap=timedelta(hours=1),
    on_still_used=OnStillUsed.WAIT,
    retain=timedelta(hours=2),
    recheck=timedelta(minutes=1),
    backoff=timedelta(minutes=10),
    backoff_max=timedelta(hours=1),
)
EXAMPLES = int(os.environ.get("ROTATECTL_STATEFUL_EXAMPLES", "2000"))
HOOK_ERROR = "deploy failed: nginx reload"
HOOKS = HookSpec(on_promote=("deploy",), on_retire=("cleanup",), on_failure=("page",))
# How often a waiting `rotate --wait` renews its lease (engine.fleet._sleep_until).
RENEW = min(RENEW_EVERY, TTL / 3)
OPERATOR, WAITER, RESPONDER = "tester@host:1", "waiter@host-w:7", "responder@host-e:9"
RETIRED = (VersionState.RETIRED, VersionState.DESTROYED)


class FakeHooks:
    """Runs hooks as :func:`rotatectl.hooks.run_hook` would (same signature), without
    a process: ``on_promote`` fails while ``failing`` > 0 (each failure uses one up);
    every other hook succeeds. ``calls`` keeps (event, metadata) of every call."""

    def __init__(self) -> None:
        self.failing = 0
        self.calls: list[tuple[str, dict[str, str]]] = []

    def __call__(
        self,
        event: str,
        argv: tuple[str, ...],
        metadata: Mapping[str, str],
        *,
        timeout: timedelta,
        stdin_value: str | None = None,
    ) -> HookResult:
        self.calls.append((event, dict(metadata)))
        if event == "on_promote" and self.failing > 0:
            self.failing -= 1
            return HookResult(event, argv[0], 1, HOOK_ERROR, 0.0)
        return HookResult(event, argv[0], 0, "", 0.0)


@dataclass(frozen=True)
class Stored:
    """Everything a writer can change, to compare around a pre-empted drive."""

    versions: list[Version]
    rotation: Rotation | None
    revision: int
    history: list[Rotation]
    issuer: dict[str, Any]
    events: list[Event]


class Rotations(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = World(POLICY)
        self.t = replace(self.w.target(NAME), hooks=HOOKS)
        self.hooks = FakeHooks()
        self.crash_at: str | None = None
        self.ever_promoted = False
        # Keys retired without the usage gate (emergency, automatic rollback, abort).
        self.exempt: set[str] = set()
        # A `rotate --wait` holding the lease while it waits (engine.fleet.follow): a
        # live process, so it renews its lease as time passes and drives at its deadline.
        self.waiter: Session | None = None
        self.waiter_exit = contextlib.ExitStack()
        self.waiter_until: datetime | None = None
        self.waiter_preempted = False  # an emergency took its lease since it started
        self.runner().rotate(self.t)

    # -- helpers -----------------------------------------------------------

    def runner(self, holder: str = OPERATOR) -> Runner:
        target = self.crash_at

        def boundary(name: str) -> None:
            if name == target:
                raise Crash(name)

        self.crash_at = None
        return Runner(
            self.w.clock, holder=holder, lock_ttl=TTL, boundary=boundary, run_hooks=self.hooks
        )

    def attempt(self, fn: Callable[[], Result]) -> Result | None:
        """``fn()``'s result; None when it crashed or was refused as a usage error."""
        try:
            return fn()
        except Crash:
            # A killed process never releases its lease: it expires.
            self.elapse(TTL + timedelta(seconds=1))
        except UsageError:
            pass  # refused clearly (nothing to abort, destroyed key, ...): allowed
        return None

    def routine(self, fn: Callable[[], Result]) -> Result | None:
        """Any command but an emergency: while the waiter holds the lease, it is
        locked out, names the holder and changes nothing (invariant 5)."""
        held = self.waiter is not None and not self.waiter_preempted
        before = self.stored() if held else None
        result = self.attempt(fn)
        if held:
            assert result is not None and result.outcome is Outcome.LOCKED, result
            assert WAITER in result.message and int(result.exit_code) == 4, result
            assert self.stored() == before
        return result

    def elapse(self, delta: timedelta) -> None:
        """Time passes; the waiter renews its lease every RENEW meanwhile, and drives
        when its deadline comes or its renewal says it lost the lease."""
        clock = self.w.clock
        end = clock.now() + delta
        while self.waiter is not None and clock.now() < end:
            clock.advance(min(RENEW, end - clock.now()))
            if not self.waiter.renew():
                assert self.waiter_preempted, "the waiter lost its lease, and not to an emergency"
                self.waiter_drives()
            elif self.waiter_until is None or self.waiter_until <= clock.now():
                self.waiter_drives()
        if clock.now() < end:
            clock.advance(end - clock.now())

    def waiter_drives(self) -> None:
        """The waiter drives again. Once an emergency took its lease, it must stop,
        say so (exit 4) and write nothing more (invariant 5)."""
        assert self.waiter is not None
        before = self.stored()
        result = self.waiter.drive()
        if self.waiter_preempted:
            assert result.outcome is Outcome.PREEMPTED, (result, self.w.states())
            assert int(result.exit_code) == 4 and "pre-empted by emergency" in result.message
            assert self.stored() == before, "the pre-empted waiter changed the store"
            event("a pre-empted waiter stopped")
        else:
            assert result.outcome is not Outcome.PREEMPTED, result
        if result.outcome is Outcome.WAITING:
            self.waiter_until = result.until
        else:
            self.close_waiter()

    def close_waiter(self) -> None:
        """The waiter's process exits (its session releases the lease, unless lost)."""
        self.waiter_exit.close()
        self.waiter, self.waiter_until, self.waiter_preempted = None, None, False

    def stored(self) -> Stored:
        rotation, revision = self.w.store.load_rotation(NAME)
        return Stored(
            versions=self.w.store.versions(NAME),
            rotation=rotation,
            revision=revision,
            history=self.w.store.rotation_history(NAME),
            issuer=dict(self.w.issuer.keys),
            events=list(self.w.notifier.events),
        )

    def rotations(self) -> list[Rotation]:
        """Every rotation record, in the order they were started; the latest last."""
        latest, _ = self.w.store.load_rotation(NAME)
        return [*self.w.store.rotation_history(NAME), *([latest] if latest else [])]

    def latest_failed(self) -> Rotation | None:
        """The latest rotation record, when it failed (run backs off)."""
        latest, _ = self.w.store.load_rotation(NAME)
        return latest if latest is not None and latest.failed else None

    def current_key(self) -> str | None:
        cur = [v for v in self.w.store.versions(NAME) if v.state is VersionState.CURRENT]
        return cur[0].key_id if cur else None

    # -- rules -------------------------------------------------------------

    @rule(seconds=st.integers(0, 4 * 3600))
    def time_passes(self, seconds: int) -> None:
        self.elapse(timedelta(seconds=seconds))

    @rule(which=st.sampled_from(["current", "previous", "pending"]), client=st.sampled_from("ab"))
    def a_client_presents_a_key(self, which: str, client: str) -> None:
        for v in self.w.store.versions(NAME):
            if v.state.value == which:
                self.w.probe.see(v.key_id, self.w.clock.now(), client=client)

    @rule(boundary=st.sampled_from([None, *BOUNDARIES]))
    def arm_a_crash(self, boundary: str | None) -> None:
        self.crash_at = boundary

    @rule(times=st.sampled_from([0, 1, 2, 50]))
    def on_promote_fails(self, times: int) -> None:
        """The next ``times`` on_promote hooks fail (0: they work again)."""
        self.hooks.failing = times

    @rule()
    def cron_run(self) -> None:
        before = self.latest_failed()
        current = self.w.store.versions(NAME)
        result = self.routine(lambda: self.runner().advance(self.t))
        if before is None or result is None or result.outcome is Outcome.LOCKED:
            return
        # That it starts nothing in the backoff is run_never_starts_during_a_backoff's.
        now = self.w.clock.now()
        after, _ = self.w.store.load_rotation(NAME)
        started = after is not None and after.id != before.id
        retry = retry_after(before, POLICY)
        held = retry is not None and now < retry
        promoted = [v.promoted or v.created for v in current if v.state is VersionState.CURRENT]
        due = not promoted or promoted[0] + POLICY.max_age <= now
        event(f"run after a failure: due={due}, in backoff={held}, started={started}")
        if due and not held:
            assert started, f"run did not retry {before.id} once its backoff was over: {result}"

    @rule()
    def run_starts_a_due_rotation_that_fails(self) -> None:
        """Time passes until the credential is due; run starts it and on_promote fails."""
        self.hooks.failing = max(self.hooks.failing, 1)
        current = [v for v in self.w.store.versions(NAME) if v.state is VersionState.CURRENT]
        if current:
            due = (current[0].promoted or current[0].created) + POLICY.max_age
            if due > self.w.clock.now():
                self.elapse(due - self.w.clock.now())
        self.cron_run()

    @precondition(lambda self: self.latest_failed() is not None)
    @rule(offset=st.sampled_from([-1, 0, 1]) | st.integers(-3600, 3600))
    def cron_runs_around_the_retry_time(self, offset: int) -> None:
        """`run` just before, at or after the end of the backoff of a failed rotation."""
        failed = self.latest_failed()
        assert failed is not None
        retry = retry_after(failed, POLICY)
        assert retry is not None
        at = retry + timedelta(seconds=offset)
        if at > self.w.clock.now():
            self.elapse(at - self.w.clock.now())
        self.cron_run()

    @rule(prop=st.sampled_from([0, 30]), over=st.sampled_from([0, 600]))
    def operator_rotates(self, prop: int, over: int) -> None:
        before, _ = self.w.store.load_rotation(NAME)
        result = self.routine(
            lambda: self.runner().rotate(
                self.t, propagation=timedelta(seconds=prop), overlap=timedelta(seconds=over)
            )
        )
        failed = before is not None and before.failed
        if failed and result is not None and result.outcome is not Outcome.LOCKED:
            # A manual rotate is never held by run's backoff: it tries at once.
            after, _ = self.w.store.load_rotation(NAME)
            assert before is not None and after is not None and after.id != before.id, result

    @precondition(lambda self: self.waiter is None)
    @rule(prop=st.sampled_from([0, 30]), over=st.sampled_from([0, 600]))
    def operator_rotates_and_waits(self, prop: int, over: int) -> None:
        """`rotate --wait` from another host: it keeps its lease while it waits."""
        runner = Runner(
            self.w.clock,
            holder=WAITER,
            lock_ttl=TTL,
            boundary=lambda name: None,
            run_hooks=self.hooks,
        )
        self.waiter = self.waiter_exit.enter_context(runner.session(self.t))
        request = StartRequest(
            RotationKind.MANUAL, timedelta(seconds=prop), timedelta(seconds=over)
        )
        try:
            result = self.waiter.drive(start=request)
        except UsageError:
            self.close_waiter()
            return
        assert result.outcome is not Outcome.LOCKED, result  # every other lease ended
        if result.outcome is Outcome.WAITING:
            self.waiter_until = result.until
        else:
            self.close_waiter()

    @precondition(lambda self: self.waiter is not None)
    @rule(renew_first=st.booleans())
    def the_waiter_wakes(self, renew_first: bool) -> None:
        """The waiter's deadline comes now (having renewed just before, or not)."""
        assert self.waiter is not None
        if renew_first:
            assert self.waiter.renew() is not self.waiter_preempted
        self.waiter_drives()

    @rule()
    def emergency(self) -> None:
        leaked = self.current_key()
        pending_or_previous = {
            v.key_id
            for v in self.w.store.versions(NAME)
            if v.state in (VersionState.PENDING, VersionState.PREVIOUS)
        }
        self.exempt |= pending_or_previous | ({leaked} if leaked else set())
        held = self.waiter is not None and not self.waiter_preempted
        # Set first: a crash of the emergency lets time pass, and the waiter wakes.
        self.waiter_preempted = self.waiter is not None
        result = self.attempt(lambda: self.runner(RESPONDER).emergency(self.t, "leak"))
        if result is None:
            return
        # Never locked out, and never stopped by a failing on_promote hook.
        assert result.outcome is Outcome.DONE, result
        if held:
            assert any(f"pre-empted {WAITER}" in w for w in result.warnings), result.warnings

    @rule()
    def rollback(self) -> None:
        self.routine(lambda: self.runner().rollback(self.t))

    @rule(gap=st.integers(0, 599))
    def rollback_shortly_after_a_promotion(self, gap: int) -> None:
        """The operator rotates (overlap 600 s, no propagation), then rolls back less
        than the overlap later: the key clients just moved to stays accepted."""
        rotated = self.routine(
            lambda: self.runner().rotate(
                self.t, propagation=timedelta(0), overlap=timedelta(seconds=600)
            )
        )
        if rotated is None or rotated.outcome is not Outcome.WAITING:
            return
        if rotated.phase is not Phase.OVERLAP:
            return
        moved_to = self.current_key()
        self.elapse(timedelta(seconds=gap))
        rolled = self.routine(lambda: self.runner().rollback(self.t))
        if rolled is None or rolled.outcome in (Outcome.LOCKED, Outcome.FAILED):
            return
        latest, _ = self.w.store.load_rotation(NAME)
        if latest is None or latest.kind is not RotationKind.ROLLBACK:
            return
        demoted = next(v for v in self.w.store.versions(NAME) if v.key_id == moved_to)
        assert demoted.state is VersionState.PREVIOUS, (rolled, self.w.states())
        event("rolled back shortly after a promotion")

    @rule()
    def abort(self) -> None:
        self.exempt |= {
            v.key_id for v in self.w.store.versions(NAME) if v.state is VersionState.PENDING
        }
        self.routine(lambda: self.runner().abort(self.t))

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
            if v.state in RETIRED and v.issuer_ref:
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
        # A key its own rotation aborted (an operator's abort, a failed hook) was never
        # made current in that rotation: no client was told to use it. An abort killed
        # after retiring that key and before its record says ABORTED is still in ABORT.
        aborted = {
            (r.new_version_id, r.started)
            for r in self.rotations()
            if r.phase in (Phase.ABORT, Phase.ABORTED)
        }
        for v in self.w.store.versions(NAME):
            # A rollback can reinstate a retired key; only keys retired now are judged.
            if v.state not in RETIRED or v.retired is None or v.key_id in self.exempt:
                continue
            retired = v.retired
            if any(vid == v.version_id and started <= retired for vid, started in aborted):
                continue
            window_start = retired - POLICY.usage_quiet
            seen = [
                s.at
                for s in self.w.probe.sightings
                if s.key_id == v.key_id and window_start < s.at <= retired
            ]
            assert not seen, f"v{v.number} retired while seen at {seen}"

    @invariant()
    def overlap_after_demotion(self) -> None:
        """Invariant 8: outside an emergency, a key stays accepted for at least the
        effective overlap of the rotation that demoted it (a rollback included),
        counted from its demotion. Exempt: keys an emergency or an automatic rollback
        retired at once; keys never current (aborted pending keys) have no demotion."""
        rotations = self.rotations()
        exempt: set[str | None] = set()
        for r in rotations:
            if r.kind is RotationKind.EMERGENCY:
                exempt |= {r.old_version_id, *r.also_retire}
            elif r.force_retire:
                exempt.add(r.old_version_id)
        for v in self.w.store.versions(NAME):
            if v.state not in RETIRED or v.demoted is None or v.version_id in exempt:
                continue
            assert v.retired is not None, v
            demoters = [
                r for r in rotations if r.old_version_id == v.version_id and r.promoted == v.demoted
            ]
            assert demoters, f"v{v.number} demoted at {v.demoted} by no recorded rotation"
            overlap = demoters[-1].effective_overlap(POLICY)
            assert v.retired - v.demoted >= overlap, (
                f"v{v.number} retired {v.retired - v.demoted} after its demotion by "
                f"{demoters[-1].kind.value} rotation {demoters[-1].id} (overlap {overlap})"
            )

    @invariant()
    def run_never_starts_during_a_backoff(self) -> None:
        """Invariant 9: after a failed rotation, `run` (the only starter of scheduled
        rotations) starts none before the backoff, doubling per consecutive failure
        up to backoff_max; counted here from the records, not the machine."""
        rotations = self.rotations()
        streak = 0
        for earlier, later in itertools.pairwise(rotations):
            streak = streak + 1 if earlier.failed else 0
            if not streak:
                continue
            assert earlier.finished is not None
            wait = min(POLICY.backoff * 2 ** min(streak - 1, 16), POLICY.backoff_max)
            assert retry_after(earlier, POLICY) == earlier.finished + wait, (earlier, streak)
            if later.kind is RotationKind.SCHEDULED:
                assert later.started >= earlier.finished + wait, (
                    f"run started {later.id} {later.started - earlier.finished} after "
                    f"{earlier.id} failed (its {streak}. failure in a row; backoff {wait})"
                )

    @invariant()
    def a_failure_is_told_once(self) -> None:
        """Invariant 9: a failed rotation sends one `failed` event and runs on_failure once."""
        for r in self.rotations():
            if not r.failed:
                continue
            assert r.failure and HOOK_ERROR in r.failure, r.failure
            told = [
                e for e in self.w.notifier.events if e.kind == "failed" and e.rotation_id == r.id
            ]
            hooked = [
                m for event, m in self.hooks.calls
                if event == "on_failure" and m.get("rotation_id") == r.id
            ]  # fmt: skip
            assert len(told) == 1 and len(hooked) == 1, (r.id, told, hooked)
            event(f"a {r.kind.value} rotation failed")

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
        # The waiter's operator gives up (Ctrl-C: the session releases its lease).
        self.close_waiter()
        self.crash_at = None
        # Whatever happened, cron finishes it: no rotation stays stuck.
        runner = self.runner()
        for _ in range(40):
            r = runner.advance(self.t, start_if_due=False)
            if r.outcome is Outcome.WAITING and r.until is not None:
                self.w.clock.advance(max(r.until - self.w.clock.now(), timedelta(seconds=1)))
                # Clients stop using old keys eventually.
                self.w.probe.sightings.clear()
                continue
            if r.outcome is Outcome.LOCKED:
                self.w.clock.advance(TTL + timedelta(seconds=1))
                continue
            # FAILED: an on_promote hook still fails, and the rotation ended failed.
            assert r.outcome in (Outcome.DONE, Outcome.IDLE, Outcome.FAILED), r
            break
        rotation, _ = self.w.store.load_rotation(NAME)
        assert rotation is None or rotation.phase.terminal, rotation
        # And no key stays accepted for ever: once every rotation has finished, the
        # keys they replaced were retired (through the gate, or by an emergency).
        accepted = [
            (v.number, v.state.value) for v in self.w.store.versions(NAME) if v.state.accepted
        ]
        assert [state for _, state in accepted] in ([], ["current"]), (accepted, rotation)


TestRotations = Rotations.TestCase
TestRotations.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
