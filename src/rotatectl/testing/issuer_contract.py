"""The contract every KeyIssuer passes. Adapter tests subclass it::

    class TestMyIssuer(IssuerContract):
        @pytest.fixture
        def issuer(self) -> KeyIssuer:
            return MyIssuer(...)

The subclass may also override the ``credential`` fixture and
:meth:`IssuerContract.expected_fingerprint`. Every key a test creates is
deleted afterwards, and no test holds more than two keys at once (AWS IAM
allows two access keys per user).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from .. import keyformat
from ..model import IssuedKey
from ..ports import KeyIssuer

Mint = Callable[[], tuple[str, IssuedKey]]


class IssuerContract:
    """Behaviour the runner relies on from any issuer (not collected by itself)."""

    @pytest.fixture
    def issuer(self) -> KeyIssuer:
        raise NotImplementedError("subclasses provide the `issuer` fixture")

    @pytest.fixture
    def credential(self) -> str:
        return f"contract/{uuid.uuid4().hex[:8]}"

    @pytest.fixture
    def mint(self, issuer: KeyIssuer, credential: str) -> Iterator[Mint]:
        """Create keys tagged with fresh version ids; delete them all at teardown."""
        refs: list[str] = []

        def _mint() -> tuple[str, IssuedKey]:
            version_id = f"v-{uuid.uuid4().hex[:12]}"
            key = issuer.create(credential, version_id, ("read",))
            refs.append(key.issuer_ref)
            return version_id, key

        yield _mint
        for ref in refs:
            issuer.delete(credential, ref)

    def expected_fingerprint(self, value: str) -> str:
        """The fingerprint the store records for ``value``.

        Generated-format keys: the hash of the secret part (what verifiers
        store); anything else: the hash of the whole value.
        """
        if keyformat.validate(value):
            return keyformat.fingerprint(value)
        return keyformat.value_fingerprint(value)

    # -- create -------------------------------------------------------------

    def test_create_returns_distinct_keys(self, mint: Mint) -> None:
        _, a = mint()
        _, b = mint()
        assert a.value != b.value
        assert a.key_id != b.key_id
        assert a.fingerprint != b.fingerprint
        assert a.issuer_ref != b.issuer_ref

    def test_key_id_and_fingerprint_are_consistent(self, mint: Mint) -> None:
        _, key = mint()
        assert key.value and key.key_id and key.issuer_ref
        assert key.fingerprint == self.expected_fingerprint(key.value)
        if keyformat.validate(key.value):
            assert key.key_id == keyformat.parse(key.value).key_id
        # Public fields must not reveal the value.
        for public in (key.key_id, key.issuer_ref, key.fingerprint):
            assert key.value not in public

    def test_issued_key_repr_has_no_value(self, mint: Mint) -> None:
        _, key = mint()
        assert key.value not in repr(key)
        assert key.value not in str(key)

    # -- disable / enable / delete -------------------------------------------

    def test_disable_and_enable_are_idempotent(
        self, issuer: KeyIssuer, credential: str, mint: Mint
    ) -> None:
        _, key = mint()
        issuer.disable(credential, key.issuer_ref)
        issuer.disable(credential, key.issuer_ref)
        listed = issuer.list_keys(credential)
        if listed is not None:
            assert [k.active for k in listed if k.issuer_ref == key.issuer_ref] == [False]
        issuer.enable(credential, key.issuer_ref)
        issuer.enable(credential, key.issuer_ref)
        listed = issuer.list_keys(credential)
        if listed is not None:
            assert [k.active for k in listed if k.issuer_ref == key.issuer_ref] == [True]

    def test_delete_is_idempotent(self, issuer: KeyIssuer, credential: str, mint: Mint) -> None:
        _, key = mint()
        issuer.disable(credential, key.issuer_ref)
        issuer.delete(credential, key.issuer_ref)
        issuer.delete(credential, key.issuer_ref)

    def test_delete_unknown_ref_is_not_an_error(self, issuer: KeyIssuer, credential: str) -> None:
        issuer.delete(credential, f"no-such-key-{uuid.uuid4().hex[:8]}")

    # -- list_keys -----------------------------------------------------------

    def test_list_keys_tags_created_and_omits_deleted(
        self, issuer: KeyIssuer, credential: str, mint: Mint
    ) -> None:
        version_a, a = mint()
        version_b, b = mint()
        listed = issuer.list_keys(credential)
        if listed is None:
            return  # keys live only in the store: nothing to list or orphan
        tags = {k.issuer_ref: k.tag for k in listed}
        assert tags.get(a.issuer_ref) == version_a
        assert tags.get(b.issuer_ref) == version_b
        issuer.disable(credential, a.issuer_ref)
        issuer.delete(credential, a.issuer_ref)
        after = issuer.list_keys(credential)
        assert after is not None
        refs = {k.issuer_ref for k in after}
        assert a.issuer_ref not in refs
        assert b.issuer_ref in refs
