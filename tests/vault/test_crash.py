"""Crash safety of the multi-path writes: the process dies before a given KV write.

After each crash a fresh store (another process, in effect) must see a state
where invariant 1 holds (exactly one current, and the client read gives it),
the verifier view holds exactly the accepted keys, and repeating the call
finishes the job.
"""

from __future__ import annotations

from typing import Any

import pytest

from rotatectl.errors import ConflictError, NotFoundError
from rotatectl.model import VersionState
from rotatectl.stores.vault import VaultStore
from rotatectl.testing.store_contract import PATH, T0, T1, T2, make_version, value_for

from .conftest import Vault

V = VersionState


class Crash(BaseException):
    """The process dies: nothing catches this."""


def crash_before(store: VaultStore, leaf: str, occurrence: int = 1) -> None:
    """Make the ``occurrence``-th data write to a path ending in ``leaf`` never happen."""
    real = store._write
    seen = 0

    def write(where: str, rel: str, data: dict[str, Any], cas: int, *args: Any) -> int:
        nonlocal seen
        if rel.endswith(leaf):
            seen += 1
            if seen == occurrence:
                raise Crash(rel)
        return real(where, rel, data, cas, *args)

    store._write = write  # type: ignore[method-assign,assignment]


def check_invariants(vault: Vault) -> VaultStore:
    """Invariants 1 and 2 as another process sees them; returns that process's store."""
    fresh = vault.store()
    versions = fresh.versions(PATH)
    current = [v for v in versions if v.state is V.CURRENT]
    if any(v.promoted for v in versions):
        assert len(current) == 1, versions
        client = vault.read(PATH)
        assert client["version_id"] == current[0].version_id
        assert client["current"] == fresh.read_value(PATH, current[0].version_id)
    index = vault.read(f"{PATH}/.rotatectl/index")
    assert set(index["accepted"]) == {v.key_id for v in versions if v.state.accepted}
    return fresh


def first_key(vault: Vault) -> None:
    store = vault.store()
    store.publish(PATH, make_version(1), value_for(1))
    store.promote(PATH, "v1", None, T0)


@pytest.mark.parametrize(
    ("leaf", "occurrence", "client_has"),
    [
        ("/.rotatectl/index", 1, "v1"),  # before the intent: nothing happened
        (PATH, 1, "v1"),  # intent recorded, client path not yet written
        ("/.rotatectl/index", 2, "v2"),  # client switched, index not yet final
    ],
)
def test_promote_crash(vault: Vault, leaf: str, occurrence: int, client_has: str) -> None:
    first_key(vault)
    store = vault.store()
    store.publish(PATH, make_version(2), value_for(2))
    crash_before(store, leaf, occurrence)
    with pytest.raises(Crash):
        store.promote(PATH, "v2", "v1", T1)

    fresh = check_invariants(vault)
    assert vault.read(PATH)["version_id"] == client_has
    expected = {"v1": V.CURRENT, "v2": V.PENDING}
    if client_has == "v2":
        expected = {"v1": V.PREVIOUS, "v2": V.CURRENT}
    assert {v.version_id: v.state for v in fresh.versions(PATH)} == expected

    fresh.promote(PATH, "v2", "v1", T1)  # the resumed call
    check_invariants(vault)
    assert {v.version_id: v.state for v in fresh.versions(PATH)} == {
        "v1": V.PREVIOUS,
        "v2": V.CURRENT,
    }
    assert vault.read(f"{PATH}/.rotatectl/index")["promotion"] is None
    assert fresh.read_value(PATH) == value_for(2)


def test_interrupted_promotion_is_rolled_forward_by_any_writer(vault: Vault) -> None:
    first_key(vault)
    store = vault.store()
    store.publish(PATH, make_version(2), value_for(2))
    crash_before(store, PATH)  # intent recorded only
    with pytest.raises(Crash):
        store.promote(PATH, "v2", "v1", T1)
    # An abort now must not retire a key the promotion committed to: it is rolled forward.
    fresh = vault.store()
    with pytest.raises(ConflictError, match="current"):
        fresh.set_state(PATH, "v2", V.RETIRED, V.PENDING, T2)
    assert vault.read(PATH)["current"] == value_for(2)
    check_invariants(vault)


def test_publish_crash_before_the_index_write(vault: Vault) -> None:
    first_key(vault)
    store = vault.store()
    crash_before(store, "/.rotatectl/index")
    with pytest.raises(Crash):
        store.publish(PATH, make_version(2), "value-of-an-orphaned-attempt")
    fresh = check_invariants(vault)
    assert [v.version_id for v in fresh.versions(PATH)] == ["v1"]
    with pytest.raises(NotFoundError):
        fresh.read_value(PATH, "v2")
    # The resumed publish carries a new key (the orphan was revoked at the issuer).
    fresh.publish(PATH, make_version(2), value_for(2))
    assert fresh.read_value(PATH, "v2") == value_for(2)
    meta = vault.kv().read_secret_metadata(
        f"{vault.prefix}/{PATH}/.rotatectl/versions/v2", "secret"
    )
    versions = meta["data"]["versions"]
    assert [n for n, v in versions.items() if not v["destroyed"]] == ["2"]  # orphan destroyed
    check_invariants(vault)


def test_destroy_crash_wipes_before_the_index_says_so(vault: Vault) -> None:
    first_key(vault)
    store = vault.store()
    store.publish(PATH, make_version(2), value_for(2))
    store.promote(PATH, "v2", "v1", T1)
    store.set_state(PATH, "v1", V.RETIRED, V.PREVIOUS, T2)
    crash_before(store, "/.rotatectl/index")
    with pytest.raises(Crash):
        store.set_state(PATH, "v1", V.DESTROYED, V.RETIRED, T2)
    fresh = check_invariants(vault)
    # Still "retired" in the index, but the value is already gone.
    assert {v.version_id: v.state for v in fresh.versions(PATH)}["v1"] is V.RETIRED
    with pytest.raises(NotFoundError):
        fresh.read_value(PATH, "v1")
    fresh.set_state(PATH, "v1", V.DESTROYED, V.RETIRED, T2)
    assert {v.version_id: v.state for v in fresh.versions(PATH)}["v1"] is V.DESTROYED
