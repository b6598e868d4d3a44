"""The cached-record compare-and-set discipline the remote stores share (DESIGN.md,
"Store layouts"): a store may remember what it read or wrote, under two rules.

1. Every write is a compare-and-set, so a stale copy can only lose the race: the
   store's commit raises :class:`CasLost`, forgets the copy, and the write is decided
   again on a fresh read (:func:`mutate`, :func:`again_while_lost`).
2. Nothing is skipped or refused on the word of a copy: a no-op or a refusal decided
   on the remembered copy is re-checked on a fresh read (:func:`mutate`,
   :func:`confirmed`).

:class:`RecordCache` holds the copies, each for at most ``max_age`` seconds.
Pure control flow: the stores pass in their own reads and writes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from ..errors import ConflictError, RotatectlError

K = TypeVar("K", bound=Hashable)
B = TypeVar("B")  # what a decision is based on: a record as read (and where from)
N = TypeVar("N")  # a decided new record
R = TypeVar("R")  # what a write returns
T = TypeVar("T")

RECORD_MAX_AGE = 60.0  # seconds a remembered record may start a write (it only loses if stale)
CAS_ATTEMPTS = 8


class CasLost(Exception):
    """A compare-and-set write lost: another writer wrote first. Internal to a store."""


class RecordCache(Generic[K, B]):
    """What a store last read or wrote, by key, for at most ``max_age`` seconds."""

    def __init__(
        self, max_age: float = RECORD_MAX_AGE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_age = max_age
        self._clock = clock
        self._copies: dict[K, tuple[B, float]] = {}

    def get(self, key: K, max_age: float | None = None) -> B | None:
        """The copy of ``key`` while it is younger than ``max_age`` (default: the
        cache's), else None."""
        found = self._copies.get(key)
        limit = self.max_age if max_age is None else max_age
        if found is None or self._clock() - found[1] >= limit:
            return None
        return found[0]

    def stamped(self, key: K) -> tuple[B, float] | None:
        """The copy of ``key`` and its age in seconds, however old (a store that
        compares the ages of several copies)."""
        found = self._copies.get(key)
        return None if found is None else (found[0], self._clock() - found[1])

    def put(self, key: K, value: B) -> None:
        self._copies[key] = (value, self._clock())

    def forget(self, key: K) -> None:
        self._copies.pop(key, None)

    def clear(self) -> None:
        self._copies.clear()


def mutate(
    recent: tuple[B, bool],
    read: Callable[[], B],
    decide: Callable[[B], N | None],
    commit: Callable[[B, N], R],
    unchanged: Callable[[B], R],
    what: str,
    *,
    attempts: int = CAS_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> R:
    """Read-decide-write with compare-and-set, re-decided on a lost race.

    ``recent``: the record to start from and whether it is a remembered copy.
    ``decide`` returns the new record, None for a no-op, or raises RotatectlError (a
    refusal); on a remembered copy a no-op or a refusal is confirmed on ``read()``.
    ``commit(base, new)`` writes ``new`` decided on ``base`` or raises CasLost;
    ``unchanged(base)`` is the answer of a confirmed no-op. ConflictError naming
    ``what`` after ``attempts`` lost races.
    """
    base, remembered = recent
    for attempt in range(attempts):
        if attempt:
            base, remembered = read(), False
        try:
            new = decide(base)
        except RotatectlError:
            if remembered:
                continue
            raise
        if new is None:
            if remembered:
                continue
            return unchanged(base)
        try:
            return commit(base, new)
        except CasLost:
            if not remembered:
                # Jitter spreads contending writers apart; no clock value is recorded.
                sleep(random.uniform(0, 0.05 * (attempt + 1)))  # noqa: S311
    raise ConflictError(
        f"{what}: the record kept changing ({attempts} attempts); another process is writing it"
    )


def confirmed(recent: tuple[B, bool], read: Callable[[], B], plan: Callable[[B], T]) -> tuple[B, T]:
    """``plan`` on ``recent`` (a record and whether it is a remembered copy); when it
    is the copy and the plan is a no-op (falsy) or refuses (raises RotatectlError),
    ``plan`` again on ``read()``. Returns the record the answer was decided on, and
    the answer."""
    base, remembered = recent
    if remembered:
        try:
            result = plan(base)
        except RotatectlError:
            result = None
        if result:
            return base, result
        base = read()
    return base, plan(base)


def again_while_lost(
    fn: Callable[[], T],
    what: str,
    attempts: int = CAS_ATTEMPTS,
    lost: type[BaseException] = CasLost,
) -> T:
    """``fn()`` (a whole read-plan-write step) again while its write loses a race
    (``lost``). ConflictError naming ``what`` after ``attempts`` tries."""
    for _ in range(attempts):
        try:
            return fn()
        except lost:
            continue
    raise ConflictError(f"{what}: still changing concurrently after {attempts} tries")
