"""The KV v2 layout: what clients and verifiers read, and what the policies allow."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import hvac.exceptions
import pytest

from rotatectl.errors import StoreError, UsageError
from rotatectl.model import VersionState
from rotatectl.testing.store_contract import PATH, T0, T1, T2, T3, make_version, value_for

from .conftest import Vault

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "vault"
V = VersionState


def policy_text(name: str, vault: Vault) -> str:
    """An example policy, moved from the sample prefix to this test's prefix."""
    return (EXAMPLES / name).read_text().replace("apikeys/", f"{vault.prefix}/")


def rotated(vault: Vault) -> None:
    """v1 retired+destroyed, v2 previous, v3 current, v4 pending."""
    store = vault.store()
    for number in (1, 2, 3, 4):
        store.publish(PATH, make_version(number), value_for(number))
    store.promote(PATH, "v1", None, T0)
    store.promote(PATH, "v2", "v1", T1)
    store.promote(PATH, "v3", "v2", T2)
    store.set_state(PATH, "v1", V.RETIRED, V.PREVIOUS, T3)
    store.set_state(PATH, "v1", V.DESTROYED, V.RETIRED, T3)


def test_client_reads_one_field_with_the_bao_cli(vault: Vault) -> None:
    rotated(vault)
    run = vault.server.bao("kv", "get", "-field=current", f"secret/{vault.prefix}/{PATH}")
    assert run.returncode == 0, run.stderr
    assert run.stdout == value_for(3)


def test_verifier_reads_exactly_the_accepted_keys_without_values(vault: Vault) -> None:
    rotated(vault)
    index = vault.read(f"{PATH}/.rotatectl/index")
    assert set(index["accepted"]) == {"kid2", "kid3", "kid4"}
    assert {k: e["state"] for k, e in index["accepted"].items()} == {
        "kid2": "previous",
        "kid3": "current",
        "kid4": "pending",
    }
    assert index["accepted"]["kid3"]["fingerprint"] == make_version(3).fingerprint
    assert index["accepted"]["kid3"]["scopes"] == ["read", "write"]
    assert index["promotion"] is None
    text = repr(index)
    for number in range(1, 5):
        assert value_for(number) not in text


def test_paths_are_bounded_and_need_check_and_set(vault: Vault) -> None:
    rotated(vault)
    kv = vault.kv()
    base = f"{vault.prefix}/{PATH}"
    expected = {
        base: 1,
        f"{base}/.rotatectl/index": 50,
        f"{base}/.rotatectl/versions/v2": 5,
    }
    for path, max_versions in expected.items():
        meta = kv.read_secret_metadata(path, mount_point="secret")["data"]
        assert meta["max_versions"] == max_versions, path
        assert meta["cas_required"] is True, path
        assert meta["custom_metadata"]["managed-by"] == "rotatectl"
    # A blind write (no cas) is refused: nobody overwrites the current key by accident.
    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set"):
        kv.create_or_update_secret(base, {"current": "oops"}, mount_point="secret")
    # The client path keeps no history: earlier keys are not in it.
    meta = kv.read_secret_metadata(base, mount_point="secret")["data"]
    assert len(meta["versions"]) == 1


def test_destroyed_value_is_deleted_and_destroyed(vault: Vault) -> None:
    rotated(vault)
    kv = vault.kv()
    rel = f"{vault.prefix}/{PATH}/.rotatectl/versions/v1"
    meta = kv.read_secret_metadata(rel, mount_point="secret")["data"]
    assert meta["versions"] and all(
        v["destroyed"] and v["deletion_time"] for v in meta["versions"].values()
    )
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv.read_secret_version(rel, mount_point="secret", raise_on_deleted_version=True)
    index = vault.read(f"{PATH}/.rotatectl/index")
    row = next(r for r in index["versions"] if r["version_id"] == "v1")
    assert row["state"] == "destroyed" and "value_kv_version" not in row


def test_verifier_policy_reads_hashes_but_no_value(vault: Vault) -> None:
    rotated(vault)
    vault.policy(f"{vault.prefix}-verifier", policy_text("verifier.hcl", vault))
    token = vault.token_with(f"{vault.prefix}-verifier")
    index = vault.read(f"{PATH}/.rotatectl/index", token=token)
    assert set(index["accepted"]) == {"kid2", "kid3", "kid4"}
    for rel in (PATH, f"{PATH}/.rotatectl/versions/v3", f"{PATH}/.rotatectl/versions/v4"):
        with pytest.raises(hvac.exceptions.Forbidden):
            vault.read(rel, token=token)
    # And the same through the store: the verifier view works, values do not.
    store = vault.store(token=token)
    assert {k.key_id for k in store.accepted_keys(PATH, "acme")} == {"kid2", "kid3", "kid4"}
    with pytest.raises(StoreError, match=r"permission denied: needs 'read' on secret/data/"):
        store.read_value(PATH)


def test_client_policy_reads_the_current_key_only(vault: Vault) -> None:
    rotated(vault)
    vault.policy(f"{vault.prefix}-client", policy_text("client.hcl", vault))
    token = vault.token_with(f"{vault.prefix}-client")
    assert vault.read(PATH, token=token)["current"] == value_for(3)
    for rel in (f"{PATH}/.rotatectl/index", f"{PATH}/.rotatectl/versions/v4"):
        with pytest.raises(hvac.exceptions.Forbidden):
            vault.read(rel, token=token)


def test_operator_policy_is_enough_for_every_store_call(vault: Vault) -> None:
    vault.policy(f"{vault.prefix}-op", policy_text("rotatectl-operator.hcl", vault))
    token = vault.token_with(f"{vault.prefix}-op")
    store = vault.store(token=token)
    assert store.check_access([PATH]) == []
    for number in (1, 2):
        store.publish(PATH, make_version(number), value_for(number))
    store.promote(PATH, "v1", None, T0)
    store.promote(PATH, "v2", "v1", T1)
    store.set_state(PATH, "v1", V.RETIRED, V.PREVIOUS, T2)
    store.set_state(PATH, "v1", V.DESTROYED, V.RETIRED, T2)
    lease = store.acquire_lock(PATH, "me", timedelta(minutes=1), T0)
    store.release_lock(lease)
    assert store.list_paths() == [PATH]
    assert store.read_value(PATH) == value_for(2)


def test_check_access_names_missing_capabilities(vault: Vault) -> None:
    rotated(vault)
    hcl = policy_text("rotatectl-operator.hcl", vault).replace(
        f'path "secret/destroy/{vault.prefix}/*"', 'path "secret/destroy/elsewhere/*"'
    )
    vault.policy(f"{vault.prefix}-nodestroy", hcl)
    store = vault.store(token=vault.token_with(f"{vault.prefix}-nodestroy"))
    assert store.check_access() == [
        f"permission denied: needs 'update' on secret/destroy/{vault.prefix}/{PATH}"
        "/.rotatectl/versions/example"
    ]
    nobody = vault.store(token=vault.token_with("default"))
    problems = nobody.check_access([PATH])
    assert f"permission denied: needs 'list' on secret/metadata/{vault.prefix}/" in problems
    assert (
        f"permission denied: needs 'read', 'update' on secret/data/{vault.prefix}/{PATH}"
        in problems
    )


def test_custom_mount_and_no_prefix(vault: Vault) -> None:
    mount = f"kv-{vault.prefix}"
    vault.server.client().sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    store = vault.store(mount=mount, prefix="")
    store.publish("a/b", make_version(1), value_for(1))
    store.promote("a/b", "v1", None, T0)
    assert store.list_paths() == ["a/b"]
    assert store.client_path("a/b") == f"{mount}/a/b"
    run = vault.server.bao("kv", "get", "-field=current", f"{mount}/a/b")
    assert run.stdout == value_for(1)


def test_kv_v1_and_missing_mounts_are_clear_errors(vault: Vault) -> None:
    mount = f"v1-{vault.prefix}"
    vault.server.client().sys.enable_secrets_engine("kv", path=mount, options={"version": "1"})
    with pytest.raises(StoreError, match=rf"mount {mount}/ is kv version 1; .* KV version 2"):
        vault.store(mount=mount).versions(PATH)
    with pytest.raises(StoreError, match="nothing is mounted at nope/"):
        vault.store(mount="nope").versions(PATH)


def test_invalid_paths_are_refused(vault: Vault) -> None:
    store = vault.store()
    for bad in ("a/.rotatectl/b", "a//b", "../x", ""):
        with pytest.raises(UsageError):
            store.versions(bad)


def test_rotation_history_is_the_kv_history(vault: Vault) -> None:
    from rotatectl.model import Phase
    from rotatectl.testing.store_contract import make_rotation

    store = vault.store()
    first = make_rotation("r1")
    revision = store.save_rotation(PATH, first, 0)
    first = first.advance(Phase.PROPAGATE, T1)
    revision = store.save_rotation(PATH, first, revision)
    second = make_rotation("r2")
    revision = store.save_rotation(PATH, second, revision)
    store.save_rotation(PATH, second.advance(Phase.PROPAGATE, T1), revision)
    assert store.rotation_history(PATH) == [first]
    # The records live in the index (format 2): its KV history holds the earlier ones.
    index = vault.read(f"{PATH}/.rotatectl/index")
    assert index["format"] == 2 and index["rotation"]["id"] == "r2"
    assert index["rotation_revision"] == 4
    kv = vault.kv()
    meta = kv.read_secret_metadata(f"{vault.prefix}/{PATH}/.rotatectl/index", "secret")
    assert meta["data"]["max_versions"] == 50
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv.read_secret_metadata(f"{vault.prefix}/{PATH}/.rotatectl/rotation", "secret")
