"""The ``promote`` issuer feature in the engine, on the in-memory fakes: a service that
holds one key at a time (PostgreSQL's ``single`` strategy) switches at promotion,
before the store; a failure there changes nothing; an abort puts the current key back
in force instead of disabling a key that never worked; a rollback promotes the earlier
key at the issuer again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from rotatectl.engine import Outcome
from rotatectl.errors import IssuerError
from rotatectl.model import IssuedKey, Phase

from .test_runner import TTL, World, rotate

NAME = "partners/acme"


class OneKeyIssuer:
    """One key in force at a time, switched by ``promote`` (a fake passed in)."""

    FEATURES = frozenset({"promote"})

    def __init__(self, inner: Any) -> None:
        self.inner = inner  # a FakeIssuer mints the keys
        self.in_force: str | None = None
        self.fail: set[str] = set()  # "promote": raise before acting; "promote-after": after
        self.calls: list[tuple[str, str]] = []

    def create(self, credential: str, version_id: str, scopes: Sequence[str]) -> IssuedKey:
        key: IssuedKey = self.inner.create(credential, version_id, scopes)
        return key

    def promote(self, credential: str, issuer_ref: str, key: str) -> None:
        self.calls.append(("promote", issuer_ref))
        if "promote" in self.fail:
            raise IssuerError("one-key issuer: injected failure in promote", retryable=True)
        self.in_force = key
        if "promote-after" in self.fail:
            raise IssuerError("one-key issuer: reply lost after promote", retryable=True)

    def list_keys(self, credential: str) -> None:
        return None

    def disable(self, credential: str, issuer_ref: str) -> None:
        self.calls.append(("disable", issuer_ref))

    def enable(self, credential: str, issuer_ref: str) -> None:
        self.calls.append(("enable", issuer_ref))

    def delete(self, credential: str, issuer_ref: str) -> None:
        self.calls.append(("delete", issuer_ref))


def world() -> tuple[World, OneKeyIssuer]:
    w = World()
    one = OneKeyIssuer(w.issuer)
    w.issuer = one  # type: ignore[assignment]
    return w, one


def run_until_done(w: World, one: OneKeyIssuer) -> None:
    """Advance as cron would until the rotation ends; after each step, once a key was
    promoted, the store's current key is the one in force (invariant 1)."""
    for _ in range(50):
        result = w.runner().advance(w.target(), start_if_due=False)
        if any(v.promoted for v in w.store.versions(NAME)):
            assert one.in_force == w.store.read_value(NAME)
        if result.outcome is Outcome.WAITING and result.until:
            w.clock.advance(max(result.until - w.clock.now(), timedelta(0)))
        elif result.outcome is Outcome.LOCKED:
            w.clock.advance(TTL + timedelta(seconds=1))
        else:
            return
    raise AssertionError("rotation did not finish")


def refs(w: World) -> dict[int, str]:
    return {v.number: v.issuer_ref or "" for v in w.store.versions(NAME)}


def test_each_promotion_puts_the_current_key_in_force() -> None:
    w, one = world()
    for _ in range(3):
        rotate(w, propagation=timedelta(0), overlap=timedelta(0))
        run_until_done(w, one)
        assert one.in_force == w.store.read_value(NAME)
    assert [v for v, _ in w.states()] == [1, 2, 3]
    # Only keys once promoted are disabled (retired): v1 and v2.
    assert [r for kind, r in one.calls if kind == "disable"] == [refs(w)[1], refs(w)[2]]


def test_a_failing_promotion_at_the_issuer_changes_nothing() -> None:
    w, one = world()
    rotate(w, propagation=timedelta(0), overlap=timedelta(0))
    first = w.store.read_value(NAME)
    one.fail.add("promote")
    result = rotate(w, propagation=timedelta(0))
    assert result.outcome is Outcome.FAILED
    assert w.states() == [(1, "current"), (2, "pending")]
    assert one.in_force == first == w.store.read_value(NAME)
    one.fail.clear()
    run_until_done(w, one)
    assert w.states()[-1] == (2, "current")
    assert one.in_force == w.store.read_value(NAME) != first


def test_an_abort_after_a_cut_short_promotion_puts_the_current_key_back() -> None:
    w, one = world()
    rotate(w, propagation=timedelta(0), overlap=timedelta(0))
    first = w.store.read_value(NAME)
    one.fail.add("promote-after")  # the issuer switched; the store never heard of it
    assert rotate(w, propagation=timedelta(0)).outcome is Outcome.FAILED
    assert one.in_force != first
    one.fail.clear()
    aborted = w.runner().abort(w.target(), reason="changed my mind")
    assert aborted.phase is Phase.ABORTED
    assert w.states() == [(1, "current"), (2, "retired")]
    assert one.in_force == first
    assert ("disable", refs(w)[2]) not in one.calls  # it never worked: nothing to disable


def test_a_rollback_promotes_the_earlier_key_at_the_issuer_again() -> None:
    w, one = world()
    rotate(w, propagation=timedelta(0), overlap=timedelta(0))
    first = w.store.read_value(NAME)
    rotate(w, propagation=timedelta(0))
    assert w.states() == [(1, "previous"), (2, "current")]
    w.runner().rollback(w.target(), reason="the new key broke a job")
    assert w.store.read_value(NAME) == first == one.in_force
    assert ("promote", refs(w)[1]) in one.calls[-3:]
