"""Drift on OpenBao: changes made with the ``bao`` CLI behind rotatectl's back are
found (``status``/``check`` exit 3, ``rotate`` refuses) and resolved by
``check NAME --adopt`` or ``--restore``, against a real server."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hvac.exceptions
import pytest

from rotatectl import keyformat
from rotatectl.drift import detect, resolve
from rotatectl.engine import Target
from rotatectl.errors import ConflictError, NotFoundError
from rotatectl.model import Phase, Policy, Version, VersionState
from rotatectl.stores.vault import VaultStore
from rotatectl.testing.fakes import FakeIssuer, FakeProbe

from ..conftest import Cli
from .conftest import Vault, bao_binary, bao_env, write_config
from .test_cli import assert_no_leak, values

NAME = "partners/acme"
V = VersionState


CREDENTIAL = f"""
[defaults]
store = "vault"
retain = "1s"

[credentials."{NAME}"]
issuer = {{ type = "generated", prefix = "rk_test" }}
scopes = ["read"]
"""


# -- the outsider: the real bao CLI -------------------------------------------------


def bao(vault: Vault, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``bao`` binary next to this interpreter with BAO_ADDR/BAO_TOKEN set.

    Values go in on stdin (``field=-``), never in argv."""
    run = subprocess.run(
        [bao_binary(), *args],
        input=stdin,
        env={**bao_env(Path("/tmp")), "BAO_ADDR": vault.url, "BAO_TOKEN": vault.token},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, f"bao {' '.join(args)}: {run.stderr}"
    return run


def kv_path(vault: Vault, rel: str = "") -> str:
    return f"secret/{vault.prefix}/{NAME}{rel}"


def kv_version(vault: Vault, rel: str = "") -> int:
    """The latest KV version of ``<prefix>/NAME<rel>``: the -cas an outsider must pass."""
    meta = vault.kv().read_secret_metadata(f"{vault.prefix}/{NAME}{rel}", mount_point="secret")
    return int(meta["data"]["current_version"])


def overwrite_client(vault: Vault, value: str) -> None:
    """``bao kv put -cas=N <client path> current=-``: what a hurried operator does."""
    bao(vault, "kv", "put", f"-cas={kv_version(vault)}", kv_path(vault), "current=-", stdin=value)


def edit_index(vault: Vault, tmp: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Read the index with ``bao kv get``, ``change`` it, write it back with ``-cas``."""
    index = ".rotatectl/index"
    got = bao(vault, "kv", "get", "-format=json", kv_path(vault, "/" + index))
    data: dict[str, Any] = json.loads(got.stdout)["data"]["data"]
    change(data)
    file = tmp / "index.json"
    file.write_text(json.dumps(data))
    cas = kv_version(vault, "/" + index)
    bao(vault, "kv", "put", f"-cas={cas}", kv_path(vault, "/" + index), f"@{file}")


def verifier_view(vault: Vault) -> dict[str, Any]:
    view: dict[str, Any] = vault.read(f"{NAME}/.rotatectl/index")["accepted"]
    return view


def client_read(vault: Vault) -> str:
    return bao(vault, "kv", "get", "-field=current", kv_path(vault)).stdout


def drift_lines(cli: Cli) -> list[str]:
    run = cli("status", "-o", "json")
    assert run.code == 3, run.out + run.err
    lines: list[str] = json.loads(run.out)["credentials"][0]["drift"]
    return lines


def audit_actions(cli: Cli) -> list[str]:
    return [r["action"] for r in json.loads(cli("audit", "-o", "json").out)["records"]]


def assert_blocked(cli: Cli) -> None:
    run = cli("rotate", NAME)
    assert run.code == 3 and "drift" in run.err, run.out + run.err
    run = cli("check")
    assert run.code == 3 and "DRIFT" in run.err, run.out + run.err


def rotate_completes(cli: Cli) -> None:
    run = cli("rotate", NAME, "--propagation", "0s", "--overlap", "0s", "--wait")
    assert run.code == 0, run.out + run.err
    assert "promoted v" in run.out and "completed" in run.out, run.out


# -- through the CLI ------------------------------------------------------------------


@pytest.mark.slow
def test_client_field_overwritten_then_adopted(cli: Cli, vault: Vault) -> None:
    write_config(cli, vault, CREDENTIAL.replace("[defaults]", '[defaults]\noverlap = "1s"'))
    cli.env.update(vault.server.cli_env())
    store = vault.store()
    assert cli("rotate", NAME).code == 0
    assert cli("status").code == 0
    [v1] = store.versions(NAME)
    seen = values(store)

    outsider = keyformat.generate("rk_test")
    overwrite_client(vault, outsider)
    lines = drift_lines(cli)
    assert any("changed outside rotatectl" in line for line in lines), lines
    assert any("key_id/version_id do not name v1" in line for line in lines), lines
    assert_blocked(cli)
    assert [v.state for v in store.versions(NAME)] == [V.CURRENT]

    run = cli("check", NAME, "--adopt")
    assert run.code == 0, run.out + run.err
    assert "adopted" in run.out
    assert cli("status").code == 0
    old, new = store.versions(NAME)
    assert (old.version_id, old.state) == (v1.version_id, V.PREVIOUS)  # clients on v1 still work
    assert (new.number, new.state) == (2, V.CURRENT)
    assert new.key_id == keyformat.parse(outsider).key_id
    assert client_read(vault) == outsider
    assert set(verifier_view(vault)) == {v1.key_id, new.key_id}
    assert "drift-adopted" in audit_actions(cli)

    # The adoption is a rotation in its overlap: the runner retires v1 after it, as usual.
    rotation, _ = store.load_rotation(NAME)
    assert rotation is not None and rotation.phase is Phase.OVERLAP
    assert (rotation.old_version_id, rotation.new_version_id) == (v1.version_id, new.version_id)
    # One command, one intent: `rotate` finishes that overlap; the next one rotates.
    run = cli("rotate", NAME, "--wait")
    assert run.code == 0, run.out + run.err
    assert [(v.number, v.state) for v in store.versions(NAME)] == [(1, V.RETIRED), (2, V.CURRENT)]
    rotate_completes(cli)
    states = [(v.number, v.state) for v in store.versions(NAME)]
    # v1 may be destroyed by now (retain = 1s, on a loaded machine).
    assert states[0] in ((1, V.RETIRED), (1, V.DESTROYED)), states
    assert states[1:] == [(2, V.RETIRED), (3, V.CURRENT)]
    assert cli("status").code == 0
    assert_no_leak(cli, seen | values(store) | {outsider})


@pytest.mark.slow
def test_client_field_overwritten_then_restored(cli: Cli, vault: Vault) -> None:
    write_config(cli, vault, CREDENTIAL)
    cli.env.update(vault.server.cli_env())
    store = vault.store()
    assert cli("rotate", NAME).code == 0
    [v1] = store.versions(NAME)
    ours = store.read_value(NAME, v1.version_id)

    outsider = "hunter2-typed-by-hand"  # not in the key format: fingerprinted with scrypt
    overwrite_client(vault, outsider)
    assert any("changed outside rotatectl" in line for line in drift_lines(cli))
    assert_blocked(cli)

    run = cli("check", NAME, "--restore")
    assert run.code == 0, run.out + run.err
    assert cli("status").code == 0
    assert client_read(vault) == ours
    assert vault.read(NAME) == {
        "current": ours,
        "key_id": v1.key_id,
        "version_id": v1.version_id,
    }
    # max_versions 1: the outsider's value does not linger in the client path's history.
    with pytest.raises(hvac.exceptions.InvalidPath):
        vault.kv().read_secret_version(
            f"{vault.prefix}/{NAME}",
            version=kv_version(vault) - 1,
            mount_point="secret",
            raise_on_deleted_version=True,
        )
    assert [v.version_id for v in store.versions(NAME)] == [v1.version_id]
    assert "drift-restored" in audit_actions(cli)

    rotate_completes(cli)
    assert cli("status").code == 0
    assert_no_leak(cli, {ours, outsider} | values(store))


@pytest.mark.slow
def test_current_key_dropped_from_the_verifier_view_is_restored_not_adopted(
    cli: Cli, vault: Vault, tmp_path: Path
) -> None:
    write_config(cli, vault, CREDENTIAL)
    cli.env.update(vault.server.cli_env())
    store = vault.store()
    assert cli("rotate", NAME).code == 0
    [v1] = store.versions(NAME)

    edit_index(vault, tmp_path, lambda data: data["accepted"].pop(v1.key_id))
    assert verifier_view(vault) == {}
    lines = drift_lines(cli)
    assert lines == [f"the verifier view no longer lists v1 ({v1.key_id}, current)"]
    assert_blocked(cli)

    run = cli("check", NAME, "--adopt")  # verifiers must accept the current key
    assert run.code == 1 and "the current key" in run.err, run.out + run.err
    assert cli("status").code == 3

    run = cli("check", NAME, "--restore")
    assert run.code == 0, run.out + run.err
    assert cli("status").code == 0
    assert set(verifier_view(vault)) == {v1.key_id}
    assert "drift-restored" in audit_actions(cli)
    rotate_completes(cli)
    assert_no_leak(cli, values(store))


# -- the store itself -----------------------------------------------------------------


def target(store: VaultStore) -> Target:
    return Target(NAME, NAME, store, FakeIssuer(), FakeProbe(), Policy(), store_name="vault")


def now() -> datetime:
    return datetime.now(UTC)


def add(store: VaultStore, number: int, scopes: tuple[str, ...] = ("read",)) -> tuple[Version, str]:
    """Publish and promote version ``number`` with a generated key; (version, value)."""
    value = keyformat.generate("rk_test")
    current = next((v for v in store.versions(NAME) if v.state is V.CURRENT), None)
    version = Version(
        version_id=f"v{number}",
        number=number,
        key_id=keyformat.parse(value).key_id,
        fingerprint=keyformat.fingerprint_of(value),
        state=V.PENDING,
        created=now(),
        scopes=scopes,
    )
    store.publish(NAME, version, value)
    store.promote(NAME, version.version_id, current.version_id if current else None, now())
    return version, value


def states(store: VaultStore) -> list[tuple[str, VersionState]]:
    return [(v.version_id, v.state) for v in store.versions(NAME)]


def no_value_in(lines: list[str], *secrets: str) -> None:
    for secret in secrets:
        assert all(secret not in line for line in lines)


def test_clean_layout_has_no_drift(vault: Vault) -> None:
    store = vault.store()
    assert store.drift(NAME) == []  # nothing there at all
    add(store, 1)
    add(store, 2)
    assert detect(target(store)) == []


def test_previous_value_path_overwritten_is_restored_from_its_history(vault: Vault) -> None:
    store = vault.store()
    v1, ours = add(store, 1)
    add(store, 2)
    rel = f"/.rotatectl/versions/{v1.version_id}"
    other = keyformat.generate("rk_test")
    cas = f"-cas={kv_version(vault, rel)}"
    bao(vault, "kv", "put", cas, kv_path(vault, rel), "value=-", stdin=other)
    problems = detect(target(store))
    assert problems == [
        f"v1 ({v1.key_id}, previous): its value path secret/{vault.prefix}/{NAME}{rel} "
        "holds another value"
    ]
    store.restore(NAME, now())
    assert detect(target(store)) == []
    assert vault.read(f"{NAME}{rel}") == {"value": ours}
    assert store.read_value(NAME, v1.version_id) == ours


def test_current_value_path_deleted_is_repaired_from_the_client_path(vault: Vault) -> None:
    store = vault.store()
    v1, ours = add(store, 1)
    rel = f"/.rotatectl/versions/{v1.version_id}"
    bao(vault, "kv", "delete", kv_path(vault, rel))
    # The generic check reads the client path (intact); drift() sees the value path.
    [problem] = detect(target(store))
    assert problem.endswith("is missing") and "v1" in problem
    store.adopt(NAME, now())
    assert detect(target(store)) == []
    assert store.read_value(NAME, v1.version_id) == ours
    assert states(store) == [("v1", V.CURRENT)]


def test_a_value_gone_for_good_cannot_be_restored_and_is_adopted_as_lost(vault: Vault) -> None:
    store = vault.store()
    v1, first = add(store, 1)
    _, second = add(store, 2)
    rel = f"/.rotatectl/versions/{v1.version_id}"
    bao(vault, "kv", "destroy", "-versions=1", kv_path(vault, rel))
    assert len(detect(target(store))) == 1
    with pytest.raises(ConflictError, match="nothing to restore it from"):
        store.restore(NAME, now())
    store.adopt(NAME, now())
    assert detect(target(store)) == []
    assert states(store) == [("v1", V.PREVIOUS), ("v2", V.CURRENT)]  # still accepted
    assert set(verifier_view(vault)) == {v.key_id for v in store.versions(NAME)}
    with pytest.raises(NotFoundError):
        store.read_value(NAME, v1.version_id)
    assert store.read_value(NAME) == second
    assert first not in json.dumps(vault.read(f"{NAME}/.rotatectl/index"))


def test_deleted_index_is_undeleted_by_restore_and_not_adopted(vault: Vault) -> None:
    store = vault.store()
    add(store, 1)
    before = store.versions(NAME)
    bao(vault, "kv", "delete", kv_path(vault, "/.rotatectl/index"))
    assert store.versions(NAME) == []
    assert detect(target(store)) == [
        f"the index secret/{vault.prefix}/{NAME}/.rotatectl/index was deleted outside rotatectl"
    ]
    with pytest.raises(ConflictError, match="forget every version"):
        store.adopt(NAME, now())
    store.restore(NAME, now())
    assert store.versions(NAME) == before
    assert detect(target(store)) == []


def test_check_and_set_turned_off_and_client_rewritten(vault: Vault) -> None:
    store = vault.store()
    v1, ours = add(store, 1)
    bao(vault, "kv", "metadata", "put", "-cas-required=false", "-max-versions=0", kv_path(vault))
    outside = "an-outside-value"
    bao(vault, "kv", "put", kv_path(vault), "current=-", "key_id=k", "version_id=v9", stdin=outside)
    problems = detect(target(store))
    client = f"secret/{vault.prefix}/{NAME}"
    assert problems == [
        f"the current value does not match v1 ({v1.key_id}): it was changed outside rotatectl",
        f"the client path's key_id/version_id do not name v1 ({v1.key_id}), the current version",
        f"{client} does not require check-and-set",
        f"{client} keeps unlimited versions, not 1",
    ]
    no_value_in(problems, ours, outside)
    store.restore(NAME, now())
    assert detect(target(store)) == []
    meta = vault.kv().read_secret_metadata(f"{vault.prefix}/{NAME}", mount_point="secret")
    assert meta["data"]["cas_required"] is True and meta["data"]["max_versions"] == 1
    assert store.read_value(NAME) == ours


def test_previous_dropped_from_the_view_is_retired_by_adopt(vault: Vault, tmp_path: Path) -> None:
    store = vault.store()
    v1, _ = add(store, 1)
    v2, _ = add(store, 2)
    edit_index(vault, tmp_path, lambda data: data["accepted"].pop(v1.key_id))
    assert detect(target(store)) == [
        f"the verifier view no longer lists v1 ({v1.key_id}, previous)"
    ]
    store.adopt(NAME, now())
    assert detect(target(store)) == []
    assert states(store) == [("v1", V.RETIRED), ("v2", V.CURRENT)]
    assert set(verifier_view(vault)) == {v2.key_id}


def test_narrowed_scopes_in_the_verifier_view_are_adopted(vault: Vault, tmp_path: Path) -> None:
    store = vault.store()
    v1, _ = add(store, 1, scopes=("read", "write"))

    def narrow(data: dict[str, Any]) -> None:
        data["accepted"][v1.key_id]["scopes"] = ["read"]

    edit_index(vault, tmp_path, narrow)
    assert detect(target(store)) == [
        f"the verifier view's entry for v1 ({v1.key_id}) has another scopes"
    ]
    store.adopt(NAME, now())
    assert detect(target(store)) == []
    [adopted] = store.versions(NAME)
    assert adopted.scopes == ("read",) and adopted.state is V.CURRENT
    assert verifier_view(vault)[v1.key_id]["scopes"] == ["read"]


def test_client_set_to_the_previous_value_adopts_that_version(vault: Vault) -> None:
    store = vault.store()
    v1, first = add(store, 1)
    add(store, 2)
    overwrite_client(vault, first)  # an outside rollback
    assert len(detect(target(store))) == 2
    resolve(target(store), "adopt", now())
    assert detect(target(store)) == []
    assert states(store) == [("v1", V.CURRENT), ("v2", V.PREVIOUS)]  # no third version
    assert store.read_value(NAME) == first
    assert vault.read(NAME)["version_id"] == v1.version_id


def test_adopting_a_foreign_value_derives_a_stable_key_id(vault: Vault) -> None:
    store = vault.store()
    add(store, 1)
    overwrite_client(vault, "hunter2-typed-by-hand")
    resolve(target(store), "adopt", now())
    assert detect(target(store)) == []
    _, adopted = store.versions(NAME)
    assert adopted.fingerprint.startswith("scrypt1:")
    assert adopted.key_id.startswith("x") and len(adopted.key_id) == 8
    assert "hunter2" not in adopted.key_id


@pytest.mark.slow
def test_a_repair_takes_the_lease_outside_the_store(cli: Cli, vault: Vault) -> None:
    """`check --restore` holds the credential's lease (the engine's, not the store's):
    a run holding it elsewhere makes the repair wait its turn (exit 4), unchanged."""
    from datetime import timedelta

    write_config(cli, vault, CREDENTIAL)
    cli.env.update(vault.server.cli_env())
    store = vault.store()
    assert cli("rotate", NAME).code == 0
    ours = client_read(vault)
    overwrite_client(vault, "hunter2-typed-by-hand")
    lease = store.acquire_lock(NAME, "ops@elsewhere:1", timedelta(minutes=5), datetime.now(UTC))
    run = cli("check", NAME, "--restore")
    assert run.code == 4 and "locked by ops@elsewhere:1" in run.out + run.err, run.out + run.err
    assert client_read(vault) == "hunter2-typed-by-hand"
    store.release_lock(lease)
    assert cli("check", NAME, "--restore").code == 0
    assert client_read(vault) == ours
    assert store.load_rotation(NAME)[0] is not None
