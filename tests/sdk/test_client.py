"""CurrentKey: cached current key, refresh on interval and on auth failure."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from rotatectl.errors import StoreUnavailableError
from rotatectl.sdk import CurrentKey
from rotatectl.testing.fakes import FakeClock

from .conftest import FlakyValues, Keys, later

PATH = "partners/acme"


def _current(keys: Keys, clock: FakeClock, **kw: float) -> tuple[CurrentKey, FlakyValues]:
    source = FlakyValues(keys.store)
    kw.setdefault("refresh_interval", 30)
    return CurrentKey(source, PATH, clock=clock, **kw), source


def test_get_caches_for_the_refresh_interval(keys: Keys, clock: FakeClock) -> None:
    first, _ = keys.current(PATH)
    current, source = _current(keys, clock)
    assert current.get() == first
    second, _ = keys.current(PATH)
    later(clock, 29)
    assert current.get() == first
    assert source.reads == 1
    later(clock, 1)
    assert current.get() == second
    assert source.reads == 2 and current.changes == 1
    assert current.cached() == second
    later(clock, 30)
    assert current.cached() is None  # stale: cached() never reads
    assert source.reads == 2


def test_on_auth_failure_reads_once_and_returns_the_key_to_retry_with(
    keys: Keys, clock: FakeClock
) -> None:
    old, _ = keys.current(PATH)
    current, source = _current(keys, clock, retry_interval=1)
    assert current.get() == old
    new, _ = keys.current(PATH)  # rotated (or revoked) since the last read
    assert current.on_auth_failure(old) == new
    assert source.reads == 2
    # Another thread with the same stale key: the cache already moved on, no read.
    assert current.on_auth_failure(old) == new
    assert source.reads == 2
    # The new key rejected too: forced reads happen at most once per retry_interval.
    assert current.on_auth_failure(new) == new
    assert source.reads == 2
    later(clock, 1)
    assert current.on_auth_failure(new) == new
    assert current.on_auth_failure(new) == new
    assert source.reads == 3


def test_store_down_keeps_the_cached_key(
    keys: Keys, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    value, _ = keys.current(PATH)
    current, source = _current(keys, clock, retry_interval=5)
    assert current.get() == value
    source.down = True
    later(clock, 30)
    with caplog.at_level(logging.WARNING, logger="rotatectl.sdk.client"):
        assert current.get() == value
        assert current.get() == value  # within retry_interval: no new read
    assert source.reads == 2 and current.failed_reads == 1
    assert "keeping the cached key" in caplog.text
    assert value not in caplog.text
    later(clock, 5)
    assert current.get() == value and source.reads == 3
    assert current.on_auth_failure(value) == value  # still down: keeps the key, no raise
    source.down = False
    new, _ = keys.current(PATH)
    later(clock, 5)
    assert current.get() == new


def test_first_read_failure_raises(keys: Keys, clock: FakeClock) -> None:
    keys.current(PATH)
    current, source = _current(keys, clock)
    source.down = True
    with pytest.raises(StoreUnavailableError):
        current.get()
    with pytest.raises(StoreUnavailableError):
        current.refresh()
    source.down = False
    assert current.refresh()


def test_call_retries_once_with_a_fresh_key(keys: Keys, clock: FakeClock) -> None:
    old, _ = keys.current(PATH)
    current, _ = _current(keys, clock)
    current.get()
    new, _ = keys.current(PATH)
    sent: list[str] = []

    def send(key: str) -> int:
        sent.append(key)
        return 200 if key == new else 401

    assert current.call(send, rejected=lambda status: status in (401, 403)) == 200
    assert sent == [old, new]
    sent.clear()
    # Rejected with the current key: the refresh gives the same key, no useless retry.
    assert current.call(lambda k: send("x"), rejected=lambda s: s == 401) == 401
    assert len(sent) == 1


def test_one_thread_refreshes_while_the_others_use_the_cached_key(
    keys: Keys, clock: FakeClock
) -> None:
    keys.current(PATH)
    gate = threading.Event()
    reads: list[float] = []

    class Slow(FlakyValues):
        def read_value(self, path: str) -> str:
            if reads:
                gate.wait(5)
            reads.append(time.monotonic())
            return super().read_value(path)

    current = CurrentKey(Slow(keys.store), PATH, refresh_interval=30, clock=clock)
    first = current.get()
    later(clock, 30)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(current.get())) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    assert len(results) == 7  # one thread is reading; the others did not wait
    assert set(results) == {first}
    gate.set()
    for t in threads:
        t.join()
    assert len(reads) == 2


def test_repr_never_shows_the_key(keys: Keys, clock: FakeClock) -> None:
    value, _ = keys.current(PATH)
    current, _ = _current(keys, clock)
    current.get()
    assert value not in repr(current)
    assert "loaded=True" in repr(current)


def test_rejects_a_bad_interval(keys: Keys) -> None:
    with pytest.raises(ValueError, match="positive"):
        CurrentKey(keys.store, PATH, refresh_interval=0)
