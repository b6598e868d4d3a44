"""The issuer conformance checks a plug-in author runs (``rotatectl issuer-test``,
issue 20): what the engine relies on from any issuer, run against a configured issuer
on a scratch credential, each check naming the operation it exercises.

The checks mirror :class:`rotatectl.testing.issuer_contract.IssuerContract` (the
pytest suite adapters in this repository pass), without pytest, and also exercise the
optional ``test`` operation of a plug-in that has one. Every key a run creates is
deleted at the end. A check that cannot run because an earlier one failed says so.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import RotatectlError
from .model import IssuedKey
from .ports import KeyIssuer


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``name`` starts with the operation it exercises."""

    name: str
    ok: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


class Failed(Exception):
    """A check's expectation was not met (its message says which)."""


@dataclass
class _Run:
    issuer: KeyIssuer
    credential: str
    checks: list[Check] = field(default_factory=list)
    made: list[str] = field(default_factory=list)  # issuer refs to delete at the end
    # A ``test`` that failed its own check is not used by the later ones, which would
    # otherwise fail for it and hide whether their own operation works.
    test_broken: bool = False

    def check(self, name: str, fn: Callable[[], str | None]) -> bool:
        try:
            detail = fn() or ""
        except Failed as exc:
            self.checks.append(Check(name, False, str(exc)))
            return False
        except RotatectlError as exc:
            self.checks.append(Check(name, False, str(exc)))
            return False
        self.checks.append(Check(name, True, detail))
        return True

    def skip(self, name: str, why: str) -> None:
        self.checks.append(Check(name, False, f"not run: {why}"))

    def create(self, version_id: str) -> IssuedKey:
        key = self.issuer.create(self.credential, version_id, ("read",))
        self.made.append(key.issuer_ref)
        return key

    def listed(self) -> dict[str, tuple[str | None, bool]] | None:
        keys = self.issuer.list_keys(self.credential)
        return None if keys is None else {k.issuer_ref: (k.tag, k.active) for k in keys}

    def accepts(self, key: IssuedKey, *, checking: bool = False) -> bool | None:
        """Whether the service accepts ``key`` (the plug-in's ``test``); None when it
        has none, or (unless ``checking`` it) its own check failed."""
        test = getattr(self.issuer, "test", None)
        if test is None or (self.test_broken and not checking):
            return None
        answer = test(self.credential, key.issuer_ref, key.value)
        return None if answer is None else bool(answer[0])


def check_issuer(issuer: KeyIssuer, credential: str) -> list[Check]:
    """Run every check against ``issuer`` on ``credential`` (a scratch name: keys are
    created and deleted there). Never raises for the issuer's failures: each is a
    failed :class:`Check`."""
    run = _Run(issuer, credential)
    try:
        _checks(run)
    finally:
        for ref in run.made:
            with contextlib.suppress(RotatectlError):
                issuer.delete(credential, ref)
    return run.checks


def _checks(run: _Run) -> None:
    va, vb = (f"v-{uuid.uuid4().hex[:12]}" for _ in range(2))
    keys: dict[str, IssuedKey] = {}

    def create_a() -> str:
        key = keys["a"] = run.create(va)
        if not key.value or not key.issuer_ref or not key.key_id:
            raise Failed("the reply lacks a key, a reference or a key id")
        for public in (key.key_id, key.issuer_ref, key.fingerprint, repr(key)):
            if key.value in public:
                raise Failed("the key appears in its public fields (id, reference)")
        return f"reference {key.issuer_ref}, key id {key.key_id}"

    if not run.check("create: returns a key with a reference", create_a):
        run.skip("list, test, disable, enable, delete", "create failed")
        return
    a = keys["a"]

    def create_b() -> None:
        b = keys["b"] = run.create(vb)
        if b.value == a.value or b.issuer_ref == a.issuer_ref or b.key_id == a.key_id:
            raise Failed("two creates gave the same key, reference or key id")

    run.check("create: a second key is distinct", create_b)
    listing: dict[str, bool | None] = {}

    def list_tags() -> str:
        found = run.listed()
        if found is None:
            listing["none"] = True
            return "keys live only in the store (list returns null)"
        for version, key in ((va, a), (vb, keys.get("b"))):
            if key is None:
                continue
            if found.get(key.issuer_ref, (None, False))[0] != version:
                raise Failed(f"{key.issuer_ref} is not listed with its version id {version}")
            if not found[key.issuer_ref][1]:
                raise Failed(f"{key.issuer_ref} is listed inactive right after create")
        return ""

    run.check("list: reports each key with its version id, active", list_tags)

    def test_new() -> str:
        run.test_broken = True  # until it answers as it should
        answer = run.accepts(a, checking=True)
        if answer is None:
            return "not implemented (optional)"
        if not answer:
            raise Failed("the service refuses a key just created")
        run.test_broken = False
        return "accepted"

    run.check("test: the service accepts a new key", test_new)

    def state_is(active: bool, what: str) -> None:
        found = None if listing.get("none") else run.listed()
        if found is not None and found.get(a.issuer_ref, (None, not active))[1] is not active:
            raise Failed(f"list shows the key {'inactive' if active else 'active'} after {what}")
        answer = run.accepts(a)
        if answer is not None and answer is not active:
            raise Failed(f"the service {'refuses' if active else 'accepts'} it after {what}")

    def disable_twice() -> None:
        run.issuer.disable(run.credential, a.issuer_ref)
        run.issuer.disable(run.credential, a.issuer_ref)
        state_is(False, "disable")

    run.check("disable: stops the key, twice without error", disable_twice)

    def enable_twice() -> None:
        run.issuer.enable(run.credential, a.issuer_ref)
        run.issuer.enable(run.credential, a.issuer_ref)
        state_is(True, "enable")

    run.check("enable: brings it back, twice without error", enable_twice)

    def create_again() -> str:
        again = run.create(va)
        if again.issuer_ref == a.issuer_ref:
            return "the same key again"
        found = run.listed()
        if found is None or found.get(a.issuer_ref, (None, False))[0] != va:
            raise Failed(
                "a second create for one version id made a new key and does not list the "
                "first with that version id: a crash would leave an orphan nobody revokes"
            )
        return "a new key; the first is listed with its version id (revoked as an orphan)"

    run.check("create: again for the same version id (a resumed crash)", create_again)

    def delete_twice() -> None:
        run.issuer.disable(run.credential, a.issuer_ref)
        run.issuer.delete(run.credential, a.issuer_ref)
        run.issuer.delete(run.credential, a.issuer_ref)
        found = None if listing.get("none") else run.listed()
        if found is not None and a.issuer_ref in found:
            raise Failed("the key is still listed after delete")
        if run.accepts(a):
            raise Failed("the service accepts the key after delete")

    run.check("delete: removes the key, twice without error", delete_twice)

    def delete_unknown() -> None:
        run.issuer.delete(run.credential, f"no-such-key-{uuid.uuid4().hex[:8]}")

    run.check("delete: an unknown reference is not an error", delete_unknown)
