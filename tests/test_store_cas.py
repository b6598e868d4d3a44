"""The shared cached-record compare-and-set discipline (rotatectl.stores._cas), on
plain values: what AWS, OpenBao and SSM stores rely on."""

from __future__ import annotations

import pytest

from rotatectl.errors import ConflictError, UsageError
from rotatectl.stores._cas import (
    CasLost,
    RecordCache,
    again_while_lost,
    confirmed,
    mutate,
)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_cache_forgets_a_copy_past_its_age() -> None:
    clock = Clock()
    cache: RecordCache[str, int] = RecordCache(10.0, clock)
    cache.put("a", 1)
    clock.t = 9.9
    assert cache.get("a") == 1
    assert cache.get("a", max_age=5.0) is None
    assert cache.stamped("a") == (1, 9.9)
    clock.t = 10.0
    assert cache.get("a") is None
    cache.put("a", 2)
    cache.forget("a")
    assert cache.get("a") is None and cache.stamped("a") is None


class Server:
    """A record (an int) with compare-and-set writes; counts reads and writes."""

    def __init__(self, value: int = 0) -> None:
        self.value = value
        self.reads = 0
        self.writes = 0
        self.race = 0  # writes that lose before the next one can win

    def read(self) -> int:
        self.reads += 1
        return self.value

    def commit(self, base: int, new: int) -> int:
        if self.race:
            self.race -= 1
            self.value += 100  # someone else wrote first
            raise CasLost
        if base != self.value:
            raise CasLost
        self.writes += 1
        self.value = new
        return new


def run(server: Server, recent: tuple[int, bool], decide):  # type: ignore[no-untyped-def]
    return mutate(
        recent, server.read, decide, server.commit, lambda b: b, "rec", sleep=lambda s: None
    )


def test_a_write_decided_on_a_fresh_read_commits() -> None:
    server = Server(1)
    assert run(server, (1, False), lambda b: b + 1) == 2
    assert (server.value, server.reads, server.writes) == (2, 0, 1)


def test_a_stale_copy_only_loses_and_is_decided_again() -> None:
    server = Server(5)
    assert run(server, (1, True), lambda b: b + 1) == 6  # decided again on 5
    assert (server.reads, server.writes) == (1, 1)


def test_a_no_op_on_a_copy_is_confirmed_on_a_fresh_read() -> None:
    server = Server(5)
    # The copy says "nothing to do"; the server says otherwise.
    assert run(server, (7, True), lambda b: None if b == 7 else b * 2) == 10
    assert server.reads == 1
    fresh = Server(7)
    assert run(fresh, (7, False), lambda b: None) == 7
    assert (fresh.reads, fresh.writes) == (0, 0)


def test_a_refusal_on_a_copy_is_confirmed_on_a_fresh_read() -> None:
    def decide(b: int) -> int:
        if b < 0:
            raise UsageError("negative")
        return b + 1

    server = Server(3)
    assert run(server, (-1, True), decide) == 4
    with pytest.raises(UsageError):
        run(Server(-1), (-1, False), decide)


def test_endless_races_end_in_a_conflict_naming_the_record() -> None:
    server = Server(0)
    server.race = 100
    with pytest.raises(ConflictError, match="rec: the record kept changing"):
        run(server, (0, False), lambda b: b + 1)


def test_confirmed_plans_again_on_a_fresh_read() -> None:
    assert confirmed((1, True), lambda: 2, lambda b: b if b == 1 else 0) == (1, 1)
    assert confirmed((1, True), lambda: 2, lambda b: b - 1) == (2, 1)
    assert confirmed((1, False), lambda: 2, lambda b: b - 1) == (1, 0)


def test_again_while_lost_bounds_the_tries() -> None:
    tries = []

    def step() -> int:
        tries.append(1)
        if len(tries) < 3:
            raise CasLost
        return len(tries)

    assert again_while_lost(step, "x") == 3

    def never() -> int:
        raise CasLost

    with pytest.raises(ConflictError, match="x: still changing concurrently after 2 tries"):
        again_while_lost(never, "x", attempts=2)
