from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rotatectl import keyformat
from rotatectl.errors import IssuerError, NotifierError, ProbeError
from rotatectl.model import Event, UsageStatus
from rotatectl.ports import KeyIssuer, Notifier, UsageProbe
from rotatectl.testing.fakes import FakeClock, FakeIssuer, FakeProbe, RecordingNotifier
from rotatectl.testing.issuer_contract import IssuerContract

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class TestFakeIssuerContract(IssuerContract):
    @pytest.fixture
    def issuer(self) -> KeyIssuer:
        return FakeIssuer()


# -- FakeClock ---------------------------------------------------------------


def test_clock_moves_only_when_told() -> None:
    clock = FakeClock(T0)
    assert clock.now() == T0
    clock.sleep(30)
    assert clock.now() == T0 + timedelta(seconds=30)
    clock.sleep(-5)  # like time.sleep callers that computed a negative wait
    assert clock.now() == T0 + timedelta(seconds=30)
    assert clock.advance(timedelta(minutes=1)) == T0 + timedelta(seconds=90)
    clock.advance(10)
    assert clock.now() == T0 + timedelta(seconds=100)
    assert clock.sleeps == [30, -5]


def test_clock_rejects_naive_start_and_going_back() -> None:
    with pytest.raises(ValueError):
        FakeClock(datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        FakeClock(T0).advance(-1)


# -- FakeIssuer ----------------------------------------------------------------


def test_issuer_state_and_works() -> None:
    clock = FakeClock(T0)
    issuer = FakeIssuer(prefix="rk_fake", clock=clock)
    key = issuer.create("c", "v1", ["read"])
    assert keyformat.parse(key.value).prefix == "rk_fake"
    assert key.fingerprint == keyformat.fingerprint(key.value)
    assert issuer.works(key.value)
    assert issuer.keys[key.issuer_ref].tag == "v1"
    listed = issuer.list_keys("c")
    assert listed is not None and listed[0].created == T0

    issuer.disable("c", key.issuer_ref)
    assert not issuer.works(key.value)
    issuer.enable("c", key.issuer_ref)
    assert issuer.works(key.value)
    issuer.delete("c", key.issuer_ref)
    assert not issuer.works(key.value)
    assert issuer.keys[key.issuer_ref].deleted
    assert issuer.live("c") == []
    assert not issuer.works("not-a-key")


def test_issuer_records_calls_without_values() -> None:
    issuer = FakeIssuer()
    key = issuer.create("c", "v1", ("read",))
    issuer.disable("c", key.issuer_ref)
    issuer.disable("c", key.issuer_ref)
    issuer.delete("c", key.issuer_ref)
    assert issuer.count("create") == 1
    assert issuer.count("disable") == 2
    assert issuer.count("delete") == 1
    assert issuer.calls[0] == ("create", ("c", "v1", ("read",)))
    assert key.value not in repr(issuer.calls)


def test_issuer_keys_are_per_credential() -> None:
    issuer = FakeIssuer()
    key = issuer.create("a", "v1", ())
    assert issuer.list_keys("b") == []
    with pytest.raises(IssuerError):
        issuer.disable("b", key.issuer_ref)
    issuer.delete("b", key.issuer_ref)  # not an error, and does not touch "a"
    assert issuer.works(key.value)


def test_issuer_unknown_or_deleted_refs() -> None:
    issuer = FakeIssuer()
    with pytest.raises(IssuerError):
        issuer.disable("c", "nope")
    key = issuer.create("c", "v1", ())
    issuer.delete("c", key.issuer_ref)
    issuer.disable("c", key.issuer_ref)  # already stopped working: fine
    with pytest.raises(IssuerError):
        issuer.enable("c", key.issuer_ref)


def test_issuer_failure_injection() -> None:
    issuer = FakeIssuer()
    issuer.fail.add("create")
    with pytest.raises(IssuerError) as info:
        issuer.create("c", "v1", ())
    assert info.value.retryable
    assert issuer.keys == {}

    issuer.fail.clear()
    issuer.fail_after.add("create")
    with pytest.raises(IssuerError):
        issuer.create("c", "v1", ())
    listed = issuer.list_keys("c")  # minted although the caller saw an error: an orphan
    assert listed is not None and [k.tag for k in listed] == ["v1"]


# -- FakeProbe -------------------------------------------------------------------


def test_probe() -> None:
    probe = FakeProbe()
    assert isinstance(probe, UsageProbe)
    probe.see("k1", T0, client="10.0.0.1")
    probe.see("k1", T0 + timedelta(minutes=5), client="10.0.0.2")
    probe.see("k1", T0 + timedelta(minutes=5), client="10.0.0.1")
    probe.see("k2", T0 - timedelta(hours=1))
    probe.see("k4", T0, credential="other")
    probe.unknown.add("k3")
    got = probe.usage("c", ["k1", "k2", "k3", "k4"], T0, T0 + timedelta(minutes=5))
    assert got["k1"].status is UsageStatus.SEEN
    assert got["k1"].last_seen == T0 + timedelta(minutes=5)
    assert got["k1"].count == 3
    assert got["k1"].clients == ("10.0.0.1", "10.0.0.2")
    assert got["k2"].status is UsageStatus.NOT_SEEN
    assert got["k3"].status is UsageStatus.UNKNOWN
    assert got["k4"].status is UsageStatus.NOT_SEEN
    probe.fail = True
    with pytest.raises(ProbeError):
        probe.usage("c", ["k1"], T0, T0)
    assert probe.calls == 2


# -- RecordingNotifier -----------------------------------------------------------


def test_recording_notifier() -> None:
    notifier = RecordingNotifier()
    assert isinstance(notifier, Notifier)
    notifier.notify(Event(kind="started", credential="c", at=T0))
    notifier.fail = True
    with pytest.raises(NotifierError):
        notifier.notify(Event(kind="failed", credential="c", at=T0))
    assert notifier.kinds() == ["started"]
    assert [e.kind for e in notifier.attempts] == ["started", "failed"]
