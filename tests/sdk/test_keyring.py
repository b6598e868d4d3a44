"""KeyRing: verification, reasons, refresh, fail-static, retired keys, no plaintext."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rotatectl import keyformat
from rotatectl.errors import StoreUnavailableError
from rotatectl.model import AcceptedKey, UsageStatus, VersionState
from rotatectl.probes.access_log import AccessLogProbe
from rotatectl.sdk import (
    KeyRing,
    Rejection,
    RejectReason,
    UsageLog,
    Verification,
    require_scope,
)
from rotatectl.sdk import keyring as keyring_module
from rotatectl.testing.fakes import FakeClock

from .conftest import T0, Keys, VerifierView, later

CRED = "partners/acme"


def _flip(key: str, index: int) -> str:
    """``key`` with one base62 character changed (a typo the checksum must catch)."""
    i = index % len(key)
    new = "A" if key[i] != "A" else "B"
    return key[:i] + new + key[i + 1 :]


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every SHA-256 the key ring computes."""
    calls: list[int] = []
    real = hashlib.sha256

    def counting(data: bytes = b"") -> Any:
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(keyring_module, "sha256", counting)
    return calls


def _ring(keys: Keys, clock: FakeClock, **kw: Any) -> tuple[KeyRing, VerifierView]:
    view = VerifierView(keys.store)
    kw.setdefault("refresh_interval", 30)
    ring = KeyRing(view, CRED, clock=clock, start=False, **kw)
    return ring, view


def test_accepts_pending_current_and_previous_keys(keys: Keys, clock: FakeClock) -> None:
    old, v_old = keys.current(CRED, scopes=["read"])
    cur, v_cur = keys.current(CRED, scopes=["read", "trade"])
    pending, v_pending = keys.publish(CRED)
    ring, _ = _ring(keys, clock)
    for value, version, state in (
        (old, v_old, VersionState.PREVIOUS),
        (cur, v_cur, VersionState.CURRENT),
        (pending, v_pending, VersionState.PENDING),
    ):
        result = ring.verify(value)
        assert isinstance(result, Verification) and result
        assert (result.credential, result.version_id, result.key_id, result.state) == (
            CRED,
            version.version_id,
            version.key_id,
            state,
        )
        assert result.scopes == version.scopes
        assert ring.verify(value) is result  # prebuilt: no allocation per request


@pytest.mark.parametrize(
    ("presented", "reason"),
    [
        ("", "malformed"),
        ("Bearer", "malformed"),
        ("rk_test_" + "a" * 56, "malformed"),  # one char short
        ("rk_test_" + "a" * 58, "malformed"),
        ("RK_test_" + "a" * 57, "malformed"),  # bad prefix
        ("rk_test-" + "a" * 57, "malformed"),  # no separator
        ("rk_test_" + "a" * 50 + "é" + "a" * 6, "malformed"),  # not ASCII
        ("rk_test_" + "a" * 50 + "\udcff" + "a" * 6, "malformed"),  # not even UTF-8
        ("rk_test_" + "a" * 50 + "-" + "a" * 6, "malformed"),
        (None, "malformed"),
        (b"rk_test_" + b"a" * 57, "malformed"),
    ],
)
def test_malformed_keys_are_rejected_without_hashing(
    keys: Keys, clock: FakeClock, hashes: list[int], presented: Any, reason: RejectReason
) -> None:
    keys.current(CRED)
    ring, view = _ring(keys, clock)
    loads = view.calls
    result = ring.verify(presented)
    assert result == Rejection(reason)
    assert not result
    assert hashes == []
    assert view.calls == loads  # and without asking the store


@pytest.mark.parametrize("index", [-1, -6, -7, -30, -49, -50, -57, 0])
def test_a_typo_anywhere_is_a_bad_checksum_without_hashing(
    keys: Keys, clock: FakeClock, hashes: list[int], index: int
) -> None:
    value, _ = keys.current(CRED)
    ring, _ = _ring(keys, clock)
    assert ring.verify(value)  # seen once: the fast path knows this key
    hashes.clear()
    typo = _flip(value, index)
    if index == 0:  # a typo in the prefix: still a valid prefix, wrong checksum
        typo = "x" + value[1:]
    assert ring.verify(typo) == Rejection("bad-checksum")
    assert hashes == []


def test_a_valid_key_costs_exactly_one_hash(
    keys: Keys, clock: FakeClock, hashes: list[int]
) -> None:
    value, _ = keys.current(CRED)
    ring, _ = _ring(keys, clock)
    for _ in range(3):
        assert ring.verify(value)
    assert hashes == [keyformat.SECRET_LENGTH] * 3  # the secret part only


def test_unknown_key_id_reloads_at_most_once_per_interval(
    keys: Keys, clock: FakeClock, hashes: list[int]
) -> None:
    keys.current(CRED)
    ring, view = _ring(keys, clock, unknown_refresh_interval=10)
    loads = view.calls
    for _ in range(50):  # made-up keys with valid checksums
        assert ring.verify(keyformat.generate("rk_test")).reason == "unknown-key"  # type: ignore[union-attr]
    assert view.calls == loads + 1
    assert hashes == []  # an unknown key id needs no hash
    later(clock, 10)
    ring.verify(keyformat.generate("rk_test"))
    assert view.calls == loads + 2
    assert ring.status().on_demand_refreshes == 2


def test_a_brand_new_pending_key_is_accepted_at_once(keys: Keys, clock: FakeClock) -> None:
    keys.current(CRED)
    ring, _ = _ring(keys, clock)
    fresh, version = keys.publish(CRED)  # published after the ring loaded
    result = ring.verify(fresh)
    assert isinstance(result, Verification)
    assert result.version_id == version.version_id and result.state is VersionState.PENDING


def test_a_made_up_secret_for_a_real_key_id_is_unknown_and_does_not_reload(
    keys: Keys, clock: FakeClock
) -> None:
    value, _ = keys.current(CRED)
    ring, view = _ring(keys, clock)
    forged = keyformat.generate("rk_test")
    body = value[-57:-49] + forged[-49:-6]
    forged = "rk_test_" + body
    forged += keyformat._checksum(forged)
    assert keyformat.validate(forged)
    loads = view.calls
    assert ring.verify(forged) == Rejection("unknown-key", value[-57:-49])
    assert view.calls == loads


def test_retired_keys_are_rejected_as_retired_after_the_next_refresh(
    keys: Keys, clock: FakeClock
) -> None:
    old, v_old = keys.current(CRED)
    new, _ = keys.current(CRED)
    ring, _ = _ring(keys, clock)
    assert ring.verify(old)  # also puts it on the fast path
    keys.retire(CRED, v_old)
    assert ring.verify(old)  # until the ring reloads
    later(clock, 1)
    assert ring.refresh()
    assert ring.verify(old) == Rejection("retired", v_old.key_id, CRED)
    assert ring.verify(new)
    retired = ring.status().retired
    assert [(k, c, t) for k, c, t in retired] == [(v_old.key_id, CRED, clock.now())]
    # The retired key id with a different (valid-checksum) secret is not "retired".
    forged = "rk_test_" + v_old.key_id + keyformat.generate("rk_test")[-49:-6]
    forged += keyformat._checksum(forged)
    assert ring.verify(forged).reason == "unknown-key"  # type: ignore[union-attr]


def test_a_reinstated_key_is_accepted_again(keys: Keys, clock: FakeClock) -> None:
    old, v_old = keys.current(CRED)
    keys.current(CRED)
    ring, _ = _ring(keys, clock)
    keys.retire(CRED, v_old)
    ring.refresh()
    assert ring.verify(old).reason == "retired"  # type: ignore[union-attr]
    keys.store.set_state(CRED, v_old.version_id, VersionState.PENDING, VersionState.RETIRED, T0)
    ring.refresh()
    assert ring.verify(old)
    assert ring.status().retired == ()


def test_a_key_retired_before_the_ring_started_is_unknown(keys: Keys, clock: FakeClock) -> None:
    old, v_old = keys.current(CRED)
    keys.current(CRED)
    keys.retire(CRED, v_old)
    ring, _ = _ring(keys, clock)
    assert ring.verify(old).reason == "unknown-key"  # type: ignore[union-attr]


def test_expired_keys(keys: Keys, clock: FakeClock) -> None:
    value, _ = keys.current(CRED, expires=T0 + timedelta(hours=1))
    ring, _ = _ring(keys, clock)
    assert ring.verify(value)
    later(clock, 3600)
    result = ring.verify(value)
    assert isinstance(result, Rejection)
    assert (result.reason, result.credential) == ("expired", CRED)


def test_scopes(keys: Keys, clock: FakeClock) -> None:
    reader, _ = keys.current(CRED, scopes=["read"])
    trader, _ = keys.publish(CRED, scopes=["read", "trade"])
    bare, _ = keys.publish(CRED)
    ring, _ = _ring(keys, clock)
    assert ring.verify(reader, scope="read")
    rejected = ring.verify(reader, scope="trade")
    assert isinstance(rejected, Rejection)
    assert (rejected.reason, rejected.http_status) == ("wrong-scope", 403)
    assert ring.verify(trader, scope="trade")
    assert ring.verify(bare, scope="read").reason == "wrong-scope"  # type: ignore[union-attr]
    ok = ring.verify(reader)
    assert require_scope(ok, "read") is ok
    assert require_scope(ok, "trade") == Rejection("wrong-scope", ok.key_id, CRED)
    assert require_scope(Rejection("retired"), "read") == Rejection("retired")
    assert ok.has_scope("read") and not ok.has_scope("trade")  # type: ignore[union-attr]


def test_fail_static_keeps_the_last_good_keys_and_catches_up(
    keys: Keys, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    old, v_old = keys.current(CRED)
    ring, view = _ring(keys, clock, max_staleness=60)
    view.down = True
    caplog.set_level(logging.WARNING, logger="rotatectl.sdk.keyring")
    new, _ = keys.current(CRED)  # rotated while the ring cannot see the store
    for _ in range(5):
        later(clock, 20)
        assert ring.refresh() is False
        assert ring.verify(old)  # the last good set is still accepted
    status = ring.status()
    assert status.degraded and status.stale
    assert status.staleness == timedelta(seconds=100)
    assert "StoreUnavailableError" in (status.credentials[0].error or "")
    assert status.credentials[0].failures == 5
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("keeping its last good keys" in m for m in warnings) == 1
    assert sum("still accepting the last good keys" in m for m in warnings) == 1
    # The new key is unknown meanwhile (its on-demand reload fails too): never a crash.
    assert ring.verify(new).reason == "unknown-key"  # type: ignore[union-attr]
    view.down = False
    later(clock, 1)
    assert ring.refresh() is True
    assert ring.verify(new) and ring.verify(old)
    status = ring.status()
    assert not status.degraded and not status.stale and status.staleness == timedelta(0)
    assert any("caught up" in r.getMessage() for r in caplog.records)
    keys.retire(CRED, v_old)
    ring.refresh()
    assert ring.verify(old).reason == "retired"  # type: ignore[union-attr]


def test_initial_load_failure_raises(keys: Keys, clock: FakeClock) -> None:
    view = VerifierView(keys.store)
    view.down = True
    with pytest.raises(StoreUnavailableError):
        KeyRing(view, CRED, clock=clock, start=False)


def test_several_credentials_fail_independently(keys: Keys, clock: FakeClock) -> None:
    a, _ = keys.current("team/a")
    b, _ = keys.current("paths/b")

    class HalfDown(VerifierView):
        def accepted_keys(self, path: str, credential: str) -> list[AcceptedKey]:
            if path == "paths/b" and self.down:
                raise StoreUnavailableError("b is down")
            return keys.store.accepted_keys(path, credential)

    view = HalfDown(keys.store)
    ring = KeyRing(view, ["team/a", ("cred-b", "paths/b")], clock=clock, start=False)
    assert ring.verify(a).credential == "team/a"
    assert ring.verify(b).credential == "cred-b"
    view.down = True
    a2, _ = keys.current("team/a")
    assert ring.refresh() is False
    assert ring.verify(a2) and ring.verify(b)
    status = ring.status()
    assert [c.error is None for c in status.credentials] == [True, False]
    mapping = KeyRing(keys.store, {"x": "team/a"}, clock=clock, start=False)
    assert mapping.verify(a2).credential == "x"


def test_duplicate_key_ids_across_credentials_both_verify(clock: FakeClock) -> None:
    one, two = keyformat.generate("rk_a"), keyformat.generate("rk_b")
    two = "rk_b_" + one[-57:-49] + two[-49:-6]
    two += keyformat._checksum(two)
    key_id = keyformat.parse(one).key_id

    class Source:
        def accepted_keys(self, path: str, credential: str) -> list[AcceptedKey]:
            value = one if path == "a" else two
            return [
                AcceptedKey(
                    credential, "v1", key_id, keyformat.fingerprint(value), VersionState.CURRENT
                )
            ]

    ring = KeyRing(Source(), ["a", "b"], clock=clock, start=False)
    assert ring.verify(one).credential == "a"
    assert ring.verify(two).credential == "b"


def test_rejects_bad_arguments(keys: Keys) -> None:
    with pytest.raises(ValueError, match="at least one"):
        KeyRing(keys.store, [], start=False)
    with pytest.raises(ValueError, match="twice"):
        KeyRing(keys.store, ["a", "a"], start=False)
    with pytest.raises(ValueError, match="positive"):
        KeyRing(keys.store, "a", refresh_interval=0, start=False)


def _strings(root: object, skip: object) -> Iterator[str | bytes]:
    """Every str/bytes reachable from ``root`` through containers and rotatectl
    objects (attributes and slots), not entering ``skip`` (the store)."""
    seen: set[int] = {id(skip)}
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, str | bytes | bytearray):
            yield bytes(obj) if isinstance(obj, bytearray) else obj
        elif isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset | deque):
            stack.extend(obj)
        elif type(obj).__module__.startswith("rotatectl"):
            for cls in type(obj).__mro__:
                for name in getattr(cls, "__slots__", ()):
                    if hasattr(obj, name):
                        stack.append(getattr(obj, name))
            if hasattr(obj, "__dict__"):
                stack.append(vars(obj))


def test_no_plaintext_key_is_held_after_loading_and_verifying(
    keys: Keys, clock: FakeClock, tmp_path: Path
) -> None:
    values = [keys.current(CRED, scopes=["read"])[0] for _ in range(3)]
    values.append(keys.publish(CRED)[0])
    view = VerifierView(keys.store)  # read_value raises: the ring must not need it
    ring = KeyRing(view, CRED, clock=clock, start=False, usage_log=tmp_path / "u.jsonl")
    for value in values:
        assert ring.verify(value, client="10.0.0.1")
    ring.verify(_flip(values[0], -20))
    ring.refresh()
    assert len(ring._state.memo) == len(values)  # the fast path holds tags, not keys
    assert all(type(tag) is int for tag in ring._state.memo)
    secrets = [keyformat.parse(v).secret for v in values]
    found = list(_strings(ring, skip=view))
    assert found, "the walk found nothing: it is broken"
    for text in found:
        data = text.encode() if isinstance(text, str) else text
        for value, secret in zip(values, secrets, strict=True):
            assert value.encode() not in data
            assert secret.encode() not in data
    assert "rk_test_" not in repr(ring)
    ring.close()


def test_concurrent_verifies_during_refreshes(keys: Keys, clock: FakeClock) -> None:
    stable, _ = keys.current(CRED)
    ring, _ = _ring(keys, clock)
    errors: list[object] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            result = ring.verify(stable)
            if not result:
                errors.append(result)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(40):
            _, v = keys.publish(CRED)  # pending keys come and go; the stable one stays
            ring.refresh()
            keys.retire(CRED, v)
            ring.refresh()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []


def test_background_refresh_picks_up_new_keys_and_stops(keys: Keys) -> None:
    keys.current(CRED)
    view = VerifierView(keys.store)
    with KeyRing(view, CRED, refresh_interval=0.05, unknown_refresh_interval=3600) as ring:
        before = view.calls
        new, _ = keys.publish(CRED)
        deadline = time.monotonic() + 5
        while not [c for c in ring.status().credentials[0].keys if c[1] == "v2"]:
            assert time.monotonic() < deadline, "the background thread did not refresh"
            time.sleep(0.01)
        assert ring.verify(new)
        assert view.calls > before
    calls = view.calls
    time.sleep(0.2)
    assert view.calls == calls  # closed: no more loads


def test_usage_records_are_what_the_access_log_probe_reads(
    keys: Keys, clock: FakeClock, tmp_path: Path
) -> None:
    log = tmp_path / "usage.jsonl"
    old, v_old = keys.current(CRED, scopes=["read"])
    new, v_new = keys.current(CRED, scopes=["read"])
    usage = UsageLog(log, start=False)
    ring, _ = _ring(keys, clock, usage_log=usage)
    assert ring.verify(new, client="10.0.0.7")
    ring.verify(new, scope="trade", client="10.0.0.7")  # wrong scope: the key is still in use
    ring.verify(_flip(new, -3), client="10.0.0.8")  # bad checksum: no key id to record
    ring.verify("garbage", client="10.0.0.8")
    unknown = keyformat.generate("rk_test")
    ring.verify(unknown, client="10.0.0.9")
    keys.retire(CRED, v_old)
    ring.refresh()
    ring.verify(old, client="10.0.0.6")
    assert usage.pending == 4
    ring.close()  # flushes a log it does not own, without closing it
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["key_id"], r["credential"], r["result"], r["client"]) for r in lines] == [
        (v_new.key_id, CRED, "ok", "10.0.0.7"),
        (v_new.key_id, CRED, "rejected", "10.0.0.7"),
        (keyformat.parse(unknown).key_id, None, "rejected", "10.0.0.9"),
        (v_old.key_id, CRED, "rejected", "10.0.0.6"),
    ]
    assert all(r["ts"].endswith("Z") for r in lines)
    probe = AccessLogProbe(log)
    now = datetime.now(UTC)  # the records carry real time
    seen = probe.usage(CRED, [v_new.key_id, v_old.key_id], now - timedelta(hours=1), now)
    assert seen[v_new.key_id].status is UsageStatus.SEEN
    assert seen[v_new.key_id].count == 2 and seen[v_new.key_id].rejected == 1
    assert seen[v_old.key_id].rejected == 1
    usage.close()


def test_averify_reloads_off_the_event_loop(keys: Keys, clock: FakeClock) -> None:
    keys.current(CRED)
    ring, view = _ring(keys, clock)
    fresh, _ = keys.publish(CRED)
    loop_thread: list[int] = []
    load_threads: list[int] = []
    real = view.accepted_keys

    def spy(path: str, credential: str) -> list[AcceptedKey]:
        load_threads.append(threading.get_ident())
        return real(path, credential)

    view.accepted_keys = spy  # type: ignore[method-assign]

    async def main() -> object:
        loop_thread.append(threading.get_ident())
        return await ring.averify(fresh)

    assert asyncio.run(main())
    assert load_threads and load_threads[0] != loop_thread[0]
    assert asyncio.run(ring.averify("nope")).reason == "malformed"  # type: ignore[union-attr]


def test_status_is_json_safe_and_has_no_fingerprints(keys: Keys, clock: FakeClock) -> None:
    _, version = keys.current(CRED)
    ring, _ = _ring(keys, clock)
    text = json.dumps(ring.status().to_dict())
    assert version.key_id in text
    assert version.fingerprint not in text


def test_rejection_and_verification_truthiness() -> None:
    assert not Rejection("malformed")
    assert Rejection("malformed").http_status == 401
    v = Verification("c", "v1", "k", VersionState.CURRENT)
    assert v and v.ok and not Rejection("retired").ok
