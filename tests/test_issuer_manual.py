"""The ``manual`` issuer against the issuer contract, driven by a test that plays the
person (issue 20): before each create the person hands a new key over (``supply``),
before each disable or enable they confirm they did it at the service. Without the
person, each operation that needs one says what to do and waits (PersonNeeded)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import pytest

from rotatectl.errors import ExitCode, PersonNeeded
from rotatectl.issuers.manual import ManualIssuer
from rotatectl.model import IssuedKey, IssuerKey
from rotatectl.ports import KeyIssuer
from rotatectl.testing.issuer_contract import IssuerContract


class Person:
    """The manual issuer with a person at hand: each key made at the service anew."""

    def __init__(self, issuer: ManualIssuer) -> None:
        self.issuer = issuer

    def create(self, credential: str, version_id: str, scopes: Sequence[str]) -> IssuedKey:
        self.issuer.supply("svc_" + secrets.token_hex(20))
        return self.issuer.create(credential, version_id, scopes)

    def list_keys(self, credential: str) -> list[IssuerKey] | None:
        return self.issuer.list_keys(credential)

    def disable(self, credential: str, issuer_ref: str) -> None:
        self.issuer.confirm()
        self.issuer.disable(credential, issuer_ref)

    def enable(self, credential: str, issuer_ref: str) -> None:
        self.issuer.confirm()
        self.issuer.enable(credential, issuer_ref)

    def delete(self, credential: str, issuer_ref: str) -> None:
        self.issuer.delete(credential, issuer_ref)


class TestManualIssuerContract(IssuerContract):
    @pytest.fixture
    def issuer(self) -> KeyIssuer:
        return Person(ManualIssuer(owner="ops"))


def test_without_the_person_each_operation_says_what_to_do() -> None:
    issuer = ManualIssuer(
        owner="ops", instructions="https://svc.example/keys", revoke_instructions="click revoke"
    )
    with pytest.raises(PersonNeeded) as need:
        issuer.create("vendor/svc", "v-1", ())
    assert need.value.ask == "supply a new key" and need.value.owner == "ops"
    assert "https://svc.example/keys" in str(need.value)
    assert "rotatectl supply vendor/svc" in str(need.value)
    assert need.value.exit_code is ExitCode.ATTENTION and not need.value.retryable
    issuer.supply("svc_" + "a" * 40)
    key = issuer.create("vendor/svc", "v-1", ())
    with pytest.raises(PersonNeeded) as revoke:
        issuer.disable("vendor/svc", key.issuer_ref)
    assert revoke.value.ask == f"revoke {key.key_id}"
    assert "click revoke" in str(revoke.value) and "rotatectl confirm vendor/svc" in str(
        revoke.value
    )
    with pytest.raises(PersonNeeded, match="works at the service again"):
        issuer.enable("vendor/svc", key.issuer_ref)
    issuer.confirm()
    issuer.disable("vendor/svc", key.issuer_ref)
    issuer.delete("vendor/svc", key.issuer_ref)  # nothing to do: revoked by hand


@pytest.mark.parametrize(
    ("key", "refused"),
    [
        ("svc_" + "a" * 40, None),
        ("svc_ab", "shorter than 16"),
        (" svc_" + "a" * 40, "surrounding spaces"),
        ("svc_" + "a" * 20 + "\n" + "b" * 20, "line breaks"),
        ("xyz_" + "a" * 40, "does not match the pattern"),
    ],
)
def test_refusal(key: str, refused: str | None) -> None:
    issuer = ManualIssuer(pattern=r"svc_[a-z\n]+")
    why = issuer.refusal(key, [])
    assert (why is None) if refused is None else (why is not None and refused in why)
    if why is not None:
        assert key.strip() not in why


def test_a_key_used_before_is_refused() -> None:
    issuer = ManualIssuer()
    issuer.supply("svc_" + "c" * 40)
    earlier = issuer.create("vendor/svc", "v-1", ())
    assert "used before" in (issuer.refusal("svc_" + "c" * 40, [earlier.fingerprint]) or "")
    assert issuer.refusal("svc_" + "d" * 40, [earlier.fingerprint]) is None
