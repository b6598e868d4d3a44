"""The contract every SecretStore passes (keyring-style: subclass it in a test file).

Usage::

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self) -> Iterator[SecretStore]:
            s = MyStore(...)   # fresh and empty
            yield s
            s.close()

The class is deliberately not named ``Test*`` so pytest collects it only
through subclasses. Times are fixed and passed in: stores never read a clock.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from ..errors import ConflictError, ExitCode, LockedError, NotFoundError
from ..model import Phase, Rotation, RotationKind, Version, VersionState, iso
from ..ports import SecretStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
T2 = T0 + timedelta(hours=1)
T3 = T0 + timedelta(days=1)
TTL = timedelta(minutes=5)
PATH = "partners/acme"

V = VersionState  # a short name keeps the tables below readable


def value_for(number: int) -> str:
    """A value that appears in no metadata field, so leaks are detectable."""
    return f"SECRET-value-{number}-zz9plural"


def make_version(
    number: int,
    *,
    version_id: str | None = None,
    fingerprint: str | None = None,
    state: VersionState = VersionState.PENDING,
    created: datetime = T0,
) -> Version:
    """A version with every optional field set, so round-trips are checked fully."""
    return Version(
        version_id=version_id or f"v{number}",
        number=number,
        key_id=f"kid{number}",
        fingerprint=fingerprint or f"sha256:{number:064x}",
        state=state,
        created=created,
        rotation_id=f"rot{number}",
        issuer_ref=f"ref-{number}",
        expires=T3 + timedelta(days=number),
        scopes=("read", "write"),
    )


def make_rotation(rotation_id: str = "r1", phase: Phase = Phase.ISSUE) -> Rotation:
    rotation = Rotation(
        id=rotation_id,
        credential=PATH,
        kind=RotationKind.MANUAL,
        phase=Phase.ISSUE,
        started=T0,
        new_version_id="v2",
        new_version_number=2,
        old_version_id="v1",
        overlap=timedelta(hours=48),
        reason="test",
    )
    return rotation.advance(phase, T1, "next") if phase is not Phase.ISSUE else rotation


def publish(store: SecretStore, number: int, path: str = PATH) -> Version:
    version = make_version(number)
    store.publish(path, version, value_for(number))
    return version


def states(store: SecretStore, path: str = PATH) -> dict[str, VersionState]:
    return {v.version_id: v.state for v in store.versions(path)}


def by_id(store: SecretStore, version_id: str, path: str = PATH) -> Version:
    return next(v for v in store.versions(path) if v.version_id == version_id)


def assert_invariant_one_current(store: SecretStore, path: str) -> None:
    """Invariant 1: once any version was promoted, exactly one is current."""
    versions = store.versions(path)
    current = [v.version_id for v in versions if v.state is VersionState.CURRENT]
    assert len(current) <= 1, f"{path}: several current versions {current}"
    if any(v.promoted is not None for v in versions):
        assert len(current) == 1, f"{path}: no current version after a promotion"


class StoreContract:
    """Tests every SecretStore method against the docstrings in rotatectl.ports."""

    # -- helpers ------------------------------------------------------------

    def rotated(self, store: SecretStore) -> None:
        """v1 previous, v2 current (promoted at T1, T2)."""
        publish(store, 1)
        store.promote(PATH, "v1", None, T1)
        publish(store, 2)
        store.promote(PATH, "v2", "v1", T2)

    # -- basics -------------------------------------------------------------

    def test_is_a_secret_store(self, store: SecretStore) -> None:
        assert isinstance(store, SecretStore)

    def test_empty_store(self, store: SecretStore) -> None:
        assert store.list_paths() == []
        assert store.versions(PATH) == []
        assert store.accepted_keys(PATH, "acme") == []
        assert store.load_rotation(PATH) == (None, 0)
        with pytest.raises(NotFoundError):
            store.read_value(PATH)
        with pytest.raises(NotFoundError):
            store.read_value(PATH, "v1")

    def test_close_twice_is_safe(self, store: SecretStore) -> None:
        store.close()
        store.close()

    # -- publish ------------------------------------------------------------

    def test_publish_adds_a_pending_version(self, store: SecretStore) -> None:
        version = publish(store, 1)
        assert store.versions(PATH) == [version]
        assert store.read_value(PATH, "v1") == value_for(1)

    def test_publish_stores_the_version_as_pending(self, store: SecretStore) -> None:
        version = make_version(1, state=VersionState.CURRENT)
        store.publish(PATH, version, value_for(1))
        assert store.versions(PATH) == [dataclasses.replace(version, state=V.PENDING)]
        with pytest.raises(NotFoundError):
            store.read_value(PATH)

    def test_publish_is_idempotent(self, store: SecretStore) -> None:
        version = publish(store, 1)
        store.publish(PATH, version, value_for(1))
        assert store.versions(PATH) == [version]
        # A no-op: the stored value is not overwritten either.
        store.publish(PATH, version, "another value, same fingerprint")
        assert store.read_value(PATH, "v1") == value_for(1)

    def test_republish_after_promotion_keeps_the_state(self, store: SecretStore) -> None:
        version = publish(store, 1)
        store.promote(PATH, "v1", None, T1)
        store.publish(PATH, version, value_for(1))  # a resumed publish step
        assert states(store) == {"v1": V.CURRENT}

    def test_publish_with_another_fingerprint_conflicts(self, store: SecretStore) -> None:
        publish(store, 1)
        other = make_version(1, fingerprint="sha256:other")
        with pytest.raises(ConflictError) as info:
            store.publish(PATH, other, "leaky-other-value")
        assert "leaky-other-value" not in str(info.value)
        assert value_for(1) not in str(info.value)
        assert store.versions(PATH) == [make_version(1)]
        assert store.read_value(PATH, "v1") == value_for(1)

    def test_publish_with_a_taken_number_conflicts(self, store: SecretStore) -> None:
        publish(store, 1)
        with pytest.raises(ConflictError):
            store.publish(PATH, make_version(1, version_id="other"), value_for(9))
        assert [v.version_id for v in store.versions(PATH)] == ["v1"]
        with pytest.raises(NotFoundError):
            store.read_value(PATH, "other")

    def test_versions_are_ordered_by_number(self, store: SecretStore) -> None:
        for number in (3, 1, 10, 2):
            publish(store, number)
        assert [v.number for v in store.versions(PATH)] == [1, 2, 3, 10]

    def test_paths_are_independent(self, store: SecretStore) -> None:
        publish(store, 1, "partners/acme")
        publish(store, 1, "partners/acme/sub")
        store.promote("partners/acme", "v1", None, T1)
        assert states(store, "partners/acme") == {"v1": V.CURRENT}
        assert states(store, "partners/acme/sub") == {"v1": V.PENDING}
        assert store.versions("partners") == []

    def test_list_paths_is_sorted(self, store: SecretStore) -> None:
        publish(store, 1, "zeta")
        publish(store, 1, "partners/acme")
        publish(store, 2, "partners/acme")
        publish(store, 1, "alpha/beta")
        store.save_rotation("rotation-only", make_rotation(), 0)
        store.acquire_lock("lock-only", "host-a", TTL, T0)  # a lock alone is no credential
        assert store.list_paths() == ["alpha/beta", "partners/acme", "rotation-only", "zeta"]

    def test_values_round_trip(self, store: SecretStore) -> None:
        values = {
            1: "ключ-🔑-密钥-é\u00e9\u0301",
            2: "x" * 4096,
            3: "🔑" * 1024 + "\n\t'\"\\;--",
        }
        for number, value in values.items():
            store.publish(PATH, make_version(number), value)
        for number, value in values.items():
            assert store.read_value(PATH, f"v{number}") == value

    def test_a_json_document_round_trips_and_its_field_is_the_key(self, store: SecretStore) -> None:
        """A version whose value is a JSON document (``field`` set): its own value reads
        back byte for byte; what clients read as current is that document (a store may
        re-encode it, as Vault's fields do: equal as JSON); the generic drift check and
        the verifier view go by the key in the field."""
        from .. import keyformat, secretformat
        from ..drift import value_problems

        keys = [keyformat.generate("rk_doc") for _ in range(2)]
        rest = '"n": [1.50, {"b": 2, "a": 1}], "ü": "ключ"'
        documents = ['{"username":"svc",  "api_key": "' + key + '", ' + rest + "}" for key in keys]
        for number, (key, document) in enumerate(zip(keys, documents, strict=True), start=1):
            version = dataclasses.replace(
                make_version(number),
                key_id=keyformat.parse(key).key_id,
                fingerprint=keyformat.fingerprint(key),
                field="api_key",
            )
            store.publish(PATH, version, document)
        store.promote(PATH, "v1", None, T1)
        store.promote(PATH, "v2", "v1", T2)
        assert [v.field for v in store.versions(PATH)] == ["api_key", "api_key"]
        for number, document in enumerate(documents, start=1):
            assert store.read_value(PATH, f"v{number}") == document
        client = store.read_value(PATH)
        assert json.loads(client) == json.loads(documents[1])
        assert secretformat.key_of(client, "api_key") == keys[1]
        assert value_problems(store.versions(PATH), client) == []
        assert value_problems(store.versions(PATH), documents[0]) != []
        view = {k.key_id: k.fingerprint for k in store.accepted_keys(PATH, PATH)}
        assert view == {keyformat.parse(k).key_id: keyformat.fingerprint(k) for k in keys}

    # -- promote ------------------------------------------------------------

    def test_first_promotion(self, store: SecretStore) -> None:
        publish(store, 1)
        store.promote(PATH, "v1", None, T1)
        assert by_id(store, "v1") == make_version(1).with_state(V.CURRENT, T1)
        assert store.read_value(PATH) == value_for(1)
        assert_invariant_one_current(store, PATH)

    def test_promotion_demotes_the_old_current(self, store: SecretStore) -> None:
        self.rotated(store)
        v1, v2 = store.versions(PATH)
        assert (v1.state, v1.promoted, v1.demoted) == (V.PREVIOUS, T1, T2)
        assert (v2.state, v2.promoted, v2.demoted) == (V.CURRENT, T2, None)
        assert store.read_value(PATH) == value_for(2)
        assert store.read_value(PATH, "v1") == value_for(1)
        assert_invariant_one_current(store, PATH)

    def test_promote_compare_and_set(self, store: SecretStore) -> None:
        publish(store, 1)
        store.promote(PATH, "v1", None, T1)
        publish(store, 2)
        publish(store, 3)
        before = store.versions(PATH)
        for expected in ("v2", "v3", "nope", None):
            with pytest.raises(ConflictError):
                store.promote(PATH, "v3", expected, T2)
            assert store.versions(PATH) == before
        assert_invariant_one_current(store, PATH)

    def test_promote_expecting_a_current_when_there_is_none(self, store: SecretStore) -> None:
        publish(store, 1)
        with pytest.raises(ConflictError):
            store.promote(PATH, "v1", "v0", T1)
        assert states(store) == {"v1": V.PENDING}

    def test_rollback_promotes_a_previous_version(self, store: SecretStore) -> None:
        self.rotated(store)
        store.promote(PATH, "v1", "v2", T3)
        v1, v2 = store.versions(PATH)
        assert (v1.state, v1.promoted) == (V.CURRENT, T3)
        assert (v2.state, v2.demoted) == (V.PREVIOUS, T3)
        assert store.read_value(PATH) == value_for(1)
        assert_invariant_one_current(store, PATH)

    def test_resumed_promotion_is_a_no_op(self, store: SecretStore) -> None:
        self.rotated(store)
        before = store.versions(PATH)
        store.promote(PATH, "v2", "v1", T3)
        assert store.versions(PATH) == before

    def test_resumed_first_promotion_is_a_no_op(self, store: SecretStore) -> None:
        publish(store, 1)
        store.promote(PATH, "v1", None, T1)
        store.promote(PATH, "v1", None, T2)
        assert by_id(store, "v1").promoted == T1

    def test_promote_already_current_with_a_stale_expectation(self, store: SecretStore) -> None:
        self.rotated(store)
        store.set_state(PATH, "v1", V.RETIRED, V.PREVIOUS, T3)
        # v2 is current, but v1 is no longer PREVIOUS: not a resumed promotion.
        with pytest.raises(ConflictError):
            store.promote(PATH, "v2", "v1", T3)
        assert states(store) == {"v1": V.RETIRED, "v2": V.CURRENT}

    def test_promote_unknown_version(self, store: SecretStore) -> None:
        with pytest.raises(NotFoundError):
            store.promote(PATH, "v1", None, T1)
        publish(store, 1)
        with pytest.raises(NotFoundError):
            store.promote(PATH, "v9", None, T1)

    @pytest.mark.parametrize("final", [VersionState.RETIRED, VersionState.DESTROYED])
    def test_promote_a_retired_or_destroyed_version(
        self, store: SecretStore, final: VersionState
    ) -> None:
        publish(store, 1)
        store.promote(PATH, "v1", None, T1)
        publish(store, 2)
        store.set_state(PATH, "v2", V.RETIRED, V.PENDING, T2)
        if final is V.DESTROYED:
            store.set_state(PATH, "v2", V.DESTROYED, V.RETIRED, T2)
        with pytest.raises(ConflictError):
            store.promote(PATH, "v2", "v1", T3)
        assert states(store) == {"v1": V.CURRENT, "v2": final}

    # -- set_state ----------------------------------------------------------

    def test_retire_a_previous_version(self, store: SecretStore) -> None:
        self.rotated(store)
        store.set_state(PATH, "v1", V.RETIRED, V.PREVIOUS, T3)
        v1 = by_id(store, "v1")
        assert (v1.state, v1.retired, v1.demoted) == (V.RETIRED, T3, T2)
        assert store.read_value(PATH, "v1") == value_for(1)  # retired, not destroyed
        assert_invariant_one_current(store, PATH)

    def test_retire_a_pending_version(self, store: SecretStore) -> None:
        publish(store, 1)
        store.promote(PATH, "v1", None, T1)
        publish(store, 2)
        store.set_state(PATH, "v2", V.RETIRED, V.PENDING, T2)  # an aborted rotation
        assert states(store) == {"v1": V.CURRENT, "v2": V.RETIRED}
        assert by_id(store, "v2").retired == T2

    def test_destroy_wipes_the_value(self, store: SecretStore) -> None:
        self.rotated(store)
        store.set_state(PATH, "v1", V.RETIRED, V.PREVIOUS, T3)
        store.set_state(PATH, "v1", V.DESTROYED, V.RETIRED, T3 + TTL)
        v1 = by_id(store, "v1")
        assert (v1.state, v1.retired, v1.destroyed) == (V.DESTROYED, T3, T3 + TTL)
        with pytest.raises(NotFoundError) as info:
            store.read_value(PATH, "v1")
        assert value_for(1) not in str(info.value)
        assert store.read_value(PATH) == value_for(2)

    def test_set_state_already_there_is_a_no_op(self, store: SecretStore) -> None:
        self.rotated(store)
        store.set_state(PATH, "v1", V.RETIRED, V.PREVIOUS, T3)
        store.set_state(PATH, "v1", V.RETIRED, V.PREVIOUS, T3 + TTL)
        assert by_id(store, "v1").retired == T3
        store.set_state(PATH, "v1", V.DESTROYED, V.RETIRED, T3)
        store.set_state(PATH, "v1", V.DESTROYED, V.RETIRED, T3 + TTL)
        assert by_id(store, "v1").destroyed == T3

    def test_set_state_from_an_unexpected_state(self, store: SecretStore) -> None:
        self.rotated(store)
        publish(store, 3)
        before = store.versions(PATH)
        with pytest.raises(ConflictError):
            store.set_state(PATH, "v1", V.RETIRED, V.PENDING, T3)  # v1 is previous
        with pytest.raises(ConflictError):
            store.set_state(PATH, "v3", V.DESTROYED, V.RETIRED, T3)  # v3 is pending
        with pytest.raises(ConflictError):
            store.set_state(PATH, "v3", V.RETIRED, V.PREVIOUS, T3)  # v3 is pending
        assert store.versions(PATH) == before

    def test_set_state_never_touches_the_current_version(self, store: SecretStore) -> None:
        self.rotated(store)
        before = store.versions(PATH)
        for state, expected in [
            (V.RETIRED, V.PREVIOUS),
            (V.RETIRED, V.PENDING),
            (V.RETIRED, V.CURRENT),
            (V.DESTROYED, V.CURRENT),
            (V.PREVIOUS, V.CURRENT),
        ]:
            with pytest.raises(ConflictError):
                store.set_state(PATH, "v2", state, expected, T3)
        assert store.versions(PATH) == before
        assert store.read_value(PATH) == value_for(2)

    def test_set_state_only_retires_and_destroys(self, store: SecretStore) -> None:
        self.rotated(store)
        publish(store, 3)
        before = store.versions(PATH)
        for version_id, state, expected in [
            ("v1", V.CURRENT, V.PREVIOUS),  # promote is the only way to current
            ("v3", V.CURRENT, V.PENDING),
            ("v1", V.DESTROYED, V.PREVIOUS),  # disable before destroy
            ("v3", V.PREVIOUS, V.PENDING),
            ("v1", V.PENDING, V.PREVIOUS),
        ]:
            with pytest.raises(ConflictError):
                store.set_state(PATH, version_id, state, expected, T3)
        assert store.versions(PATH) == before

    def test_a_retired_version_can_be_reinstated_for_a_rollback(self, store: SecretStore) -> None:
        self.rotated(store)
        store.set_state(PATH, "v1", V.RETIRED, V.PREVIOUS, T3)
        assert [k.version_id for k in store.accepted_keys(PATH, PATH)] == ["v2"]
        store.set_state(PATH, "v1", V.PENDING, V.RETIRED, T3 + TTL)
        assert states(store) == {"v1": V.PENDING, "v2": V.CURRENT}
        assert {k.version_id for k in store.accepted_keys(PATH, PATH)} == {"v1", "v2"}
        assert store.read_value(PATH, "v1") == value_for(1)
        store.promote(PATH, "v1", "v2", T3 + TTL)
        assert states(store) == {"v1": V.CURRENT, "v2": V.PREVIOUS}
        assert store.read_value(PATH) == value_for(1)

    def test_nothing_leaves_destroyed(self, store: SecretStore) -> None:
        self.rotated(store)
        store.set_state(PATH, "v1", V.RETIRED, V.PREVIOUS, T3)
        store.set_state(PATH, "v1", V.DESTROYED, V.RETIRED, T3)
        with pytest.raises(ConflictError):
            store.set_state(PATH, "v1", V.RETIRED, V.DESTROYED, T3)
        with pytest.raises(ConflictError):
            store.promote(PATH, "v1", "v2", T3)
        assert states(store) == {"v1": V.DESTROYED, "v2": V.CURRENT}

    def test_set_state_unknown_version(self, store: SecretStore) -> None:
        with pytest.raises(NotFoundError):
            store.set_state(PATH, "v1", V.RETIRED, V.PENDING, T1)

    # -- read_value ---------------------------------------------------------

    def test_read_value(self, store: SecretStore) -> None:
        publish(store, 1)
        with pytest.raises(NotFoundError):
            store.read_value(PATH)  # nothing current yet
        assert store.read_value(PATH, "v1") == value_for(1)
        self.rotated(store)
        assert store.read_value(PATH) == value_for(2)
        assert store.read_value(PATH, None) == value_for(2)
        assert store.read_value(PATH, "v1") == value_for(1)
        with pytest.raises(NotFoundError):
            store.read_value(PATH, "v9")
        with pytest.raises(NotFoundError):
            store.read_value("partners/other")

    # -- accepted_keys ------------------------------------------------------

    def test_accepted_keys_are_pending_current_previous(self, store: SecretStore) -> None:
        self.rotated(store)  # v1 previous, v2 current
        publish(store, 3)
        store.promote(PATH, "v3", "v2", T3)  # v1 previous, v2 previous, v3 current
        store.set_state(PATH, "v1", V.RETIRED, V.PREVIOUS, T3)
        store.set_state(PATH, "v1", V.DESTROYED, V.RETIRED, T3)
        publish(store, 4)  # pending
        publish(store, 5)
        store.set_state(PATH, "v5", V.RETIRED, V.PENDING, T3)
        keys = store.accepted_keys(PATH, "acme")
        got = {k.version_id: k for k in keys}
        assert set(got) == {"v2", "v3", "v4"}
        assert {k: got[k].state for k in got} == {
            "v2": V.PREVIOUS,
            "v3": V.CURRENT,
            "v4": V.PENDING,
        }
        for version_id, key in got.items():
            version = by_id(store, version_id)
            assert key.credential == "acme"
            assert key.key_id == version.key_id
            assert key.fingerprint == version.fingerprint
            assert key.scopes == version.scopes
            assert key.expires == version.expires
        # Hashes only: no value in any field nor in the repr.
        text = repr(keys)
        for number in range(1, 6):
            assert value_for(number) not in text
            for key in keys:
                for field in dataclasses.fields(key):
                    assert value_for(number) not in str(getattr(key, field.name))

    # -- rotation record ----------------------------------------------------

    def test_rotation_round_trip(self, store: SecretStore) -> None:
        rotation = make_rotation(phase=Phase.PROPAGATE)
        revision = store.save_rotation(PATH, rotation, 0)
        assert revision > 0
        assert store.load_rotation(PATH) == (rotation, revision)
        assert store.load_rotation("partners/other") == (None, 0)

    def test_save_rotation_compare_and_set(self, store: SecretStore) -> None:
        first = make_rotation()
        r1 = store.save_rotation(PATH, first, 0)
        for stale in (0, r1 + 1, r1 - 1):
            with pytest.raises(ConflictError):
                store.save_rotation(PATH, make_rotation(phase=Phase.ABORTED), stale)
        assert store.load_rotation(PATH) == (first, r1)
        second = first.advance(Phase.PROPAGATE, T1)
        r2 = store.save_rotation(PATH, second, r1)
        assert r2 > r1
        assert store.load_rotation(PATH) == (second, r2)
        with pytest.raises(ConflictError):
            store.save_rotation(PATH, second, r1)

    def test_save_rotation_without_a_record_needs_revision_zero(self, store: SecretStore) -> None:
        with pytest.raises(ConflictError):
            store.save_rotation(PATH, make_rotation(), 1)
        assert store.load_rotation(PATH) == (None, 0)

    def test_a_new_rotation_replaces_the_latest(self, store: SecretStore) -> None:
        r1 = store.save_rotation(PATH, make_rotation("r1", Phase.COMPLETED), 0)
        newer = make_rotation("r2")
        r2 = store.save_rotation(PATH, newer, r1)
        assert r2 > r1
        assert store.load_rotation(PATH) == (newer, r2)

    # -- lease lock ---------------------------------------------------------

    def test_acquire(self, store: SecretStore) -> None:
        lease = store.acquire_lock(PATH, "host-a", TTL, T0)
        assert (lease.credential, lease.holder) == (PATH, "host-a")
        assert (lease.acquired, lease.expires) == (T0, T0 + TTL)
        assert isinstance(lease.token, int)

    def test_a_held_lock_excludes_others(self, store: SecretStore) -> None:
        store.acquire_lock(PATH, "host-a", TTL, T0)
        for holder in ("host-b", "host-a"):  # the same name does not share it either
            with pytest.raises(LockedError) as info:
                store.acquire_lock(PATH, holder, TTL, T0 + TTL / 2)
            assert info.value.holder == "host-a"
            assert info.value.since == iso(T0)
            assert info.value.credential == PATH
            assert info.value.exit_code is ExitCode.LOCKED

    def test_locks_are_per_path(self, store: SecretStore) -> None:
        store.acquire_lock(PATH, "host-a", TTL, T0)
        store.acquire_lock("partners/other", "host-b", TTL, T0)

    def test_an_expired_lease_can_be_taken_over(self, store: SecretStore) -> None:
        old = store.acquire_lock(PATH, "host-a", TTL, T0)
        new = store.acquire_lock(PATH, "host-b", TTL, T0 + TTL + timedelta(seconds=1))
        assert new.holder == "host-b"
        assert new.token > old.token
        with pytest.raises(ConflictError):
            store.renew_lock(old, TTL, T2)
        with pytest.raises(ConflictError):
            store.release_lock(old)
        with pytest.raises(LockedError):  # host-b still holds it
            store.acquire_lock(PATH, "host-c", TTL, T0 + TTL + timedelta(seconds=2))

    def test_steal_needs_the_matching_token(self, store: SecretStore) -> None:
        old = store.acquire_lock(PATH, "host-a", TTL, T0)
        with pytest.raises(LockedError):
            store.acquire_lock(PATH, "host-b", TTL, T1, steal_token=old.token + 1)
        with pytest.raises(LockedError):
            store.acquire_lock(PATH, "host-b", TTL, T1, steal_token=old.token - 1)
        new = store.acquire_lock(PATH, "host-b", TTL, T1, steal_token=old.token)
        assert (new.holder, new.acquired) == ("host-b", T1)
        assert new.token > old.token
        with pytest.raises(LockedError):  # the old token is spent
            store.acquire_lock(PATH, "host-c", TTL, T1, steal_token=old.token)

    def test_steal_token_on_a_free_lock(self, store: SecretStore) -> None:
        lease = store.acquire_lock(PATH, "host-a", TTL, T0, steal_token=42)
        assert lease.holder == "host-a"

    def test_renew_extends_the_lease(self, store: SecretStore) -> None:
        lease = store.acquire_lock(PATH, "host-a", TTL, T0)
        renewed = store.renew_lock(lease, TTL * 2, T1)
        assert renewed.token == lease.token
        assert (renewed.acquired, renewed.expires) == (T0, T1 + TTL * 2)
        # Past the original expiry, but within the renewed one: still held.
        with pytest.raises(LockedError):
            store.acquire_lock(PATH, "host-b", TTL, T0 + TTL + timedelta(seconds=1))

    def test_renew_an_expired_lease_nobody_took(self, store: SecretStore) -> None:
        lease = store.acquire_lock(PATH, "host-a", TTL, T0)
        renewed = store.renew_lock(lease, TTL, T2)
        assert renewed.expires == T2 + TTL

    def test_renew_a_lost_lease(self, store: SecretStore) -> None:
        old = store.acquire_lock(PATH, "host-a", TTL, T0)
        store.acquire_lock(PATH, "host-b", TTL, T1, steal_token=old.token)
        with pytest.raises(ConflictError):
            store.renew_lock(old, TTL, T1)

    def test_release_then_acquire(self, store: SecretStore) -> None:
        first = store.acquire_lock(PATH, "host-a", TTL, T0)
        store.release_lock(first)
        second = store.acquire_lock(PATH, "host-b", TTL, T1)
        assert second.token > first.token
        with pytest.raises(ConflictError):
            store.release_lock(first)  # stale now
        with pytest.raises(ConflictError):
            store.renew_lock(first, TTL, T1)

    def test_release_twice_is_a_no_op(self, store: SecretStore) -> None:
        lease = store.acquire_lock(PATH, "host-a", TTL, T0)
        store.release_lock(lease)
        store.release_lock(lease)  # e.g. a retried release that had succeeded
        with pytest.raises(ConflictError):  # but a released lease cannot be renewed
            store.renew_lock(lease, TTL, T1)

    def test_release_an_unknown_lease(self, store: SecretStore) -> None:
        lease = store.acquire_lock(PATH, "host-a", TTL, T0)
        with pytest.raises(ConflictError):
            store.release_lock(dataclasses.replace(lease, credential="partners/other"))
        with pytest.raises(ConflictError):
            store.release_lock(dataclasses.replace(lease, token=lease.token + 1))

    def test_tokens_strictly_increase(self, store: SecretStore) -> None:
        tokens = []
        lease = store.acquire_lock(PATH, "a", TTL, T0)
        tokens.append(lease.token)
        store.release_lock(lease)
        lease = store.acquire_lock(PATH, "b", TTL, T1)
        tokens.append(lease.token)
        lease = store.acquire_lock(PATH, "c", TTL, T2)  # b expired
        tokens.append(lease.token)
        lease = store.acquire_lock(PATH, "d", TTL, T2, steal_token=lease.token)
        tokens.append(lease.token)
        store.release_lock(lease)
        tokens.append(store.acquire_lock(PATH, "e", TTL, T3).token)
        assert tokens == sorted(set(tokens))
