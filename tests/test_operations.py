"""Abort, rollback, emergency, hooks, the pre-promotion test and the failed-auth watch."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rotatectl.engine import Outcome
from rotatectl.errors import UsageError
from rotatectl.hooks import HookSpec
from rotatectl.model import Phase, RotationKind, VersionState
from rotatectl.pretest import PrePromotionTest

from .test_runner import POLICY, World, rotate, run_until_done

NAME = "partners/acme"


def rotated_once(world: World, **kw) -> None:
    rotate(world)
    rotate(world, propagation=timedelta(0), **kw)


def test_abort_before_promotion_revokes_the_new_key() -> None:
    w = World()
    rotate(w)
    old_value = w.store.read_value(NAME)
    rotate(w)
    assert w.states() == [(1, "current"), (2, "pending")]
    new = w.store.versions(NAME)[1]
    r = w.runner().abort(w.target(), "wrong scopes")
    assert r.outcome is Outcome.DONE and r.phase is Phase.ABORTED
    assert w.states() == [(1, "current"), (2, "retired")]
    assert w.store.read_value(NAME) == old_value
    assert not w.issuer.keys[new.issuer_ref].active
    assert "aborted" in w.notifier.kinds()
    w.check_invariants(quiescent=True)
    # Nothing in flight any more.
    with pytest.raises(UsageError, match="no rotation in flight"):
        w.runner().abort(w.target())


def test_abort_after_promotion_is_refused() -> None:
    w = World()
    rotated_once(w)
    with pytest.raises(UsageError, match="use `rotatectl rollback`"):
        w.runner().abort(w.target())


def test_rollback_during_overlap_repromotes_the_old_key_and_retires_the_new_one_later() -> None:
    w = World()
    rotated_once(w)
    assert w.states() == [(1, "previous"), (2, "current")]
    v1 = w.store.versions(NAME)[0]
    r = w.runner().rollback(w.target(), "clients broke")
    assert r.phase is Phase.OVERLAP, r
    assert w.states() == [(1, "current"), (2, "previous")]
    assert w.issuer.works(w.store.read_value(NAME, v1.version_id))
    rotation, _ = w.store.load_rotation(NAME)
    assert rotation is not None and rotation.kind is RotationKind.ROLLBACK
    final = run_until_done(w)
    assert final.outcome in (Outcome.DONE, Outcome.IDLE)
    assert w.states() == [(1, "current"), (2, "retired")]
    rotation, _ = w.store.load_rotation(NAME)
    assert rotation is not None and rotation.phase is Phase.ROLLED_BACK
    w.check_invariants(quiescent=True)


def test_rollback_after_retirement_reenables_the_old_key() -> None:
    w = World()
    rotated_once(w, overlap=timedelta(0))
    run_until_done(w)
    assert w.states() == [(1, "retired"), (2, "current")]
    v1 = w.store.versions(NAME)[0]
    assert not w.issuer.keys[v1.issuer_ref].active
    r = w.runner().rollback(w.target())
    # A retired key must propagate to verifiers again before clients get it.
    assert r.outcome is Outcome.WAITING and r.phase is Phase.PROPAGATE
    assert w.states() == [(1, "pending"), (2, "current")]
    assert w.issuer.keys[v1.issuer_ref].active
    run_until_done(w)
    assert w.states() == [(1, "current"), (2, "retired")]
    w.check_invariants(quiescent=True)


def test_rollback_of_a_destroyed_key_is_refused() -> None:
    w = World()
    rotated_once(w, overlap=timedelta(0))
    run_until_done(w)
    w.clock.advance(POLICY.retain)
    w.runner().advance(w.target())
    assert w.states()[0] == (1, "destroyed")
    with pytest.raises(UsageError, match="destroyed"):
        w.runner().rollback(w.target())


def test_emergency_replaces_and_retires_the_current_key_at_once() -> None:
    w = World()
    rotate(w)
    leaked = w.store.read_value(NAME)
    w.rotations_started += 1
    r = w.runner().emergency(w.target(), "key pasted in a public channel")
    assert r.outcome is Outcome.DONE, r
    assert w.states() == [(1, "retired"), (2, "current")]
    assert not w.issuer.works(leaked)
    assert r.revoked_after is not None
    kinds = w.notifier.kinds()
    assert kinds[-1] == "emergency"
    incident = w.notifier.events[-1]
    assert incident.severity == "critical" and incident.message == "key pasted in a public channel"
    assert any("retired v1" in s for s in incident.data["steps"])
    rotation, _ = w.store.load_rotation(NAME)
    assert rotation is not None and rotation.kind is RotationKind.EMERGENCY
    # The compromised key can never come back.
    with pytest.raises(UsageError, match="compromised"):
        w.runner().rollback(w.target())
    w.check_invariants(quiescent=True)


@pytest.mark.parametrize("phase", ["propagate", "overlap"])
def test_emergency_supersedes_an_in_flight_rotation(phase: str) -> None:
    w = World()
    rotate(w)
    rotate(w)  # v2 pending
    if phase == "overlap":
        w.clock.advance(POLICY.propagation)
        w.runner().advance(w.target())
        assert w.states() == [(1, "previous"), (2, "current")]
    w.rotations_started += 1
    r = w.runner().emergency(w.target(), "leak")
    assert r.outcome is Outcome.DONE, r
    states = dict(w.states())
    assert states == {1: "retired", 2: "retired", 3: "current"}
    assert any("supersedes" in s for s in r.steps)
    w.check_invariants(quiescent=True)


def test_emergency_promotes_over_a_key_a_preempted_run_promoted_meanwhile() -> None:
    """The run an emergency pre-empted notices only at its next write: in between it
    may promote its own key. The emergency replaces whatever is current, and
    retires that key too, instead of failing its promotion."""
    w = World()
    rotate(w)
    rotate(w)  # v2 pending, its run about to promote it
    v1, v2 = (v.version_id for v in w.store.versions("partners/acme"))

    def preempted_run_promotes(name: str) -> None:
        if name == "after-publish-record":  # the emergency's v3 is pending
            w.store.promote("partners/acme", v2, v1, w.clock.now())

    w.rotations_started += 1
    r = w.runner(boundary=preempted_run_promotes).emergency(w.target(), "leak")
    assert r.outcome is Outcome.DONE, r
    assert dict(w.states()) == {1: "retired", 2: "retired", 3: "current"}
    w.check_invariants(quiescent=True)


def hook_script(tmp_path: Path, body: str) -> tuple[str, ...]:
    script = tmp_path / "hook.py"
    script.write_text(body)
    return (sys.executable, str(script))


def test_on_promote_hook_gets_the_key_on_stdin_only(tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    argv = hook_script(
        tmp_path,
        f"""
import json, os, sys
key = sys.stdin.read()
json.dump({{"stdin": key, "argv": sys.argv, "env": dict(os.environ)}}, open({str(seen)!r}, "w"))
print("reloaded", key)
""",
    )
    w = World()
    rotate(w)
    target = replace(w.target(), hooks=HookSpec(on_promote=argv))
    w.rotations_started += 1
    r = w.runner().rotate(target, propagation=timedelta(0))
    assert r.phase is Phase.OVERLAP
    data = json.loads(seen.read_text())
    new_value = w.store.read_value(NAME)
    assert data["stdin"] == new_value
    assert new_value not in json.dumps(data["argv"]) and new_value not in json.dumps(data["env"])
    assert data["env"]["ROTATECTL_CREDENTIAL"] == NAME
    assert data["env"]["ROTATECTL_EVENT"] == "on_promote"
    assert data["env"]["ROTATECTL_VERSION"] == "2"
    # The hook echoed the key: the record of its output is redacted.
    assert any("hook on_promote" in s and "<redacted>" in s for s in r.steps)
    assert all(new_value not in s for s in r.steps)


def test_failing_on_promote_hook_aborts_before_promotion(tmp_path: Path) -> None:
    argv = hook_script(
        tmp_path, "import sys; sys.stdin.read(); print('reload failed'); sys.exit(3)"
    )
    w = World()
    rotate(w)
    old_value = w.store.read_value(NAME)
    target = replace(w.target(), hooks=HookSpec(on_promote=argv))
    w.rotations_started += 1
    r = w.runner().rotate(target, propagation=timedelta(0))
    # A failed rotation is a failure (exit 1), named by the hook's own error.
    assert r.outcome is Outcome.FAILED and r.phase is Phase.ABORTED and int(r.exit_code) == 1
    assert "hook on_promote (python): exit 3: reload failed" in r.message
    assert w.states() == [(1, "current"), (2, "retired")]
    assert w.store.read_value(NAME) == old_value


def test_failing_hook_with_continue_policy_promotes(tmp_path: Path) -> None:
    argv = hook_script(tmp_path, "import sys; sys.exit(1)")
    w = World()
    rotate(w)
    target = replace(w.target(), hooks=HookSpec(on_promote=argv, abort_on_failure=False))
    w.rotations_started += 1
    r = w.runner().rotate(target, propagation=timedelta(0))
    assert r.phase is Phase.OVERLAP
    assert w.states() == [(1, "previous"), (2, "current")]


class KeyServer:
    """A local API server that accepts a key only after it 'learned' it (a delay)."""

    def __init__(self, learn_after: float | None) -> None:
        self.learn_after = learn_after
        self.started = time.monotonic()
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                learned = server.learn_after is not None and (
                    time.monotonic() - server.started >= server.learn_after
                )
                ok = learned and self.headers.get("Authorization", "").startswith("Bearer rk_")
                self.send_response(200 if ok else 401)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/health"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    made: list[KeyServer] = []

    def make(learn_after: float | None) -> KeyServer:
        made.append(KeyServer(learn_after))
        return made[-1]

    yield make
    for s in made:
        s.close()


def real_world() -> World:
    """The pre-promotion test sleeps between rounds: give it real time."""
    from rotatectl.ports import SystemClock

    w = World()
    w.clock = SystemClock()  # type: ignore[assignment]
    return w


def test_pre_promotion_test_waits_for_every_server(servers) -> None:
    fast, slow = servers(0.0), servers(1.0)
    test = PrePromotionTest(
        urls=(fast.url, slow.url),
        passes=2,
        interval=timedelta(milliseconds=200),
        deadline=timedelta(seconds=10),
    )
    w = real_world()
    rotate(w)
    w.rotations_started += 1
    r = w.runner().rotate(replace(w.target(), pretest=test), propagation=timedelta(0))
    assert r.phase is Phase.OVERLAP, r
    assert any("pre-promotion test passed" in s for s in r.steps)
    assert slow.requests >= 3  # refused at first, then twice in a row accepted
    rotation, _ = w.store.load_rotation(NAME)
    assert rotation is not None and rotation.tested is not None


def test_pre_promotion_test_aborts_and_names_the_refusing_endpoint(servers) -> None:
    good, never = servers(0.0), servers(None)
    test = PrePromotionTest(
        urls=(good.url, never.url),
        passes=1,
        interval=timedelta(milliseconds=100),
        deadline=timedelta(seconds=1),
    )
    w = real_world()
    rotate(w)
    old_value = w.store.read_value(NAME)
    w.rotations_started += 1
    r = w.runner().rotate(replace(w.target(), pretest=test), propagation=timedelta(0))
    assert r.phase is Phase.ABORTED and r.outcome is Outcome.FAILED
    assert never.url in r.message and "401" in r.message
    assert good.url not in r.message
    assert w.states() == [(1, "current"), (2, "retired")]
    assert w.store.read_value(NAME) == old_value


def test_rejections_after_promotion_roll_back_automatically() -> None:
    w = World(replace(POLICY, rollback_on_rejections=5, rejection_window=timedelta(minutes=10)))
    rotated_once(w)
    new = w.store.versions(NAME)[1]
    w.clock.advance(timedelta(seconds=30))
    for _ in range(4):
        w.probe.see(new.key_id, w.clock.now(), client="10.0.0.9", result="rejected")
    r = w.runner().advance(w.target())
    assert r.outcome is Outcome.WAITING and w.states() == [(1, "previous"), (2, "current")]
    assert r.until is not None and r.until <= w.clock.now() + timedelta(seconds=10)
    w.probe.see(new.key_id, w.clock.now(), client="10.0.0.9", result="rejected")
    r = w.runner().advance(w.target())
    assert r.outcome is Outcome.DONE, r
    assert w.states() == [(1, "current"), (2, "retired")]
    assert any("rejected 5 times" in x for x in r.warnings)
    assert "rolled-back" in w.notifier.kinds()
    rotation, _ = w.store.load_rotation(NAME)
    assert rotation is not None and rotation.phase is Phase.ROLLED_BACK
    w.check_invariants(quiescent=True)


def test_destroyed_state_after_emergency_and_retain() -> None:
    w = World()
    rotate(w)
    w.rotations_started += 1
    w.runner().emergency(w.target(), "leak")
    w.clock.advance(POLICY.retain)
    w.runner().advance(w.target())
    assert [s for _, s in w.states()] == [VersionState.DESTROYED.value, "current"]


def test_a_retired_key_still_presented_raises_an_alert() -> None:
    w = World()
    rotated_once(w, overlap=timedelta(0))
    v1 = w.store.versions(NAME)[0]
    assert v1.state is VersionState.RETIRED
    assert int(w.runner().advance(w.target()).exit_code) == 0
    w.clock.advance(timedelta(minutes=1))
    w.probe.see(v1.key_id, w.clock.now(), client="10.9.9.9")
    r = w.runner().advance(w.target())
    assert int(r.exit_code) == 3
    assert any("retired key v1" in x and "10.9.9.9" in x for x in r.warnings)
    event = w.notifier.events[-1]
    assert (event.kind, event.severity, event.key_id) == (
        "retired-key-presented",
        "warning",
        v1.key_id,
    )


def test_a_compromised_key_presented_after_an_emergency_is_critical() -> None:
    w = World()
    rotate(w)
    leaked = w.store.versions(NAME)[0]
    w.rotations_started += 1
    w.runner().emergency(w.target(), "leak")
    w.clock.advance(timedelta(seconds=5))
    w.probe.see(leaked.key_id, w.clock.now(), client="203.0.113.9")
    r = w.runner().advance(w.target())
    assert int(r.exit_code) == 3 and any("compromised key v1" in x for x in r.warnings)
    assert w.notifier.events[-1].severity == "critical"


def test_laggards_are_named_once_then_reminded() -> None:
    from rotatectl.machine import REMINDER_INTERVAL

    w = World()
    rotated_once(w)
    old = w.store.versions(NAME)[0]
    w.clock.advance(POLICY.overlap)
    for _ in range(3):  # cron every few minutes while the client lags
        w.probe.see(old.key_id, w.clock.now(), client="batch-7")
        w.runner().advance(w.target())
        w.clock.advance(timedelta(minutes=5))
    notices = [e for e in w.notifier.events if e.kind in ("laggards", "reminder")]
    assert [e.kind for e in notices] == ["laggards"]
    assert "batch-7" in notices[0].message and old.key_id in notices[0].message
    w.clock.advance(REMINDER_INTERVAL)
    w.probe.see(old.key_id, w.clock.now(), client="batch-7")
    w.runner().advance(w.target())
    assert [e.kind for e in w.notifier.events if e.kind in ("laggards", "reminder")] == [
        "laggards",
        "reminder",
    ]
    rotation, _ = w.store.load_rotation(NAME)
    assert rotation is not None and "reminder" in [e.what for e in rotation.history]
