"""The index's format 2 (issue 21): the rotation record lives in the index, and a
credential an earlier rotatectl left in format 1 (the record at
``P/.rotatectl/rotation``, its KV version the revision) is read as it is and moved
in by the index's next write, through the CLI."""

from __future__ import annotations

import json

import pytest

from rotatectl.errors import StoreError
from rotatectl.stores.vault.record import _Index
from rotatectl.testing.store_contract import make_rotation

from ..conftest import Cli
from .conftest import Vault, write_config

NAME = "partners/acme"
CREDENTIAL = f"""
[defaults]
store = "vault"

[credentials."{NAME}"]
issuer = {{ type = "generated", prefix = "rk_test" }}
"""


def as_format_1(vault: Vault, earlier: int) -> tuple[dict[str, object], int]:
    """Rewrite ``NAME``'s index as format 1 left it: the record and its revision taken
    out, to the rotation path (``earlier`` records of another rotation first, so its
    KV version is the revision), and the index's 10 KV versions. The record and its
    revision."""
    kv = vault.kv()
    base = f"{vault.prefix}/{NAME}/.rotatectl"
    index = vault.read(f"{NAME}/.rotatectl/index")
    record, revision = index.pop("rotation"), index.pop("rotation_revision")
    assert record is not None and revision > earlier
    index["format"] = 1
    meta = kv.read_secret_metadata(f"{base}/index", mount_point="secret")["data"]
    kv.create_or_update_secret(
        f"{base}/index", index, cas=meta["current_version"], mount_point="secret"
    )
    kv.update_metadata(f"{base}/index", max_versions=10, mount_point="secret")
    kv.update_metadata(f"{base}/rotation", max_versions=50, cas_required=True, mount_point="secret")
    old = make_rotation("legacy00000000").to_dict()
    for cas in range(revision):
        data = record if cas == revision - 1 else old
        kv.create_or_update_secret(f"{base}/rotation", data, cas=cas, mount_point="secret")
    return record, revision


def test_a_format_1_credential_is_read_then_moved_in_by_the_next_rotation(
    cli: Cli, vault: Vault
) -> None:
    cli.env.update(vault.server.cli_env())
    write_config(cli, vault, CREDENTIAL)
    assert cli("rotate", NAME).code == 0
    record, revision = as_format_1(vault, earlier=1)

    # Read as it is: the record from the rotation path, no drift, nothing written.
    status = cli("-o", "json", "status")
    assert status.code == 0, status.err
    (seen,) = json.loads(status.out)["credentials"]
    assert seen["rotation"]["id"] == record["id"] and seen["drift"] == []
    assert cli("check", NAME).code == 0
    assert vault.read(f"{NAME}/.rotatectl/index")["format"] == 1

    run = cli("rotate", NAME, "--propagation", "0s", "--overlap", "0s")
    assert run.code == 0, run.out + run.err
    index = vault.read(f"{NAME}/.rotatectl/index")
    assert index["format"] == 2 and index["rotation"]["phase"] == "completed"
    # The revision goes on from the rotation path's KV version: one record, one series.
    assert index["rotation_revision"] > revision
    kv = vault.kv()
    base = f"{vault.prefix}/{NAME}/.rotatectl"
    assert (
        kv.read_secret_metadata(f"{base}/index", mount_point="secret")["data"]["max_versions"] == 50
    )
    # The rotation path is left as format 1 wrote it: the earlier records' history.
    legacy = kv.read_secret_metadata(f"{base}/rotation", mount_point="secret")["data"]
    assert legacy["current_version"] == revision

    history = cli("-o", "json", "history", NAME)
    assert history.code == 0, history.err
    ids = [r["id"] for r in json.loads(history.out)["rotations"]]
    assert ids[:2] == ["legacy00000000", record["id"]] and len(ids) == 3
    check = cli("check", NAME)
    assert check.code == 0, check.out + check.err
    client = vault.server.bao("kv", "get", "-field=current", f"secret/{vault.prefix}/{NAME}")
    got = cli("get", NAME)
    assert client.returncode == 0 and got.code == 0 and client.stdout == got.out.strip()


def test_a_format_1_index_keeps_its_10_versions_until_moved(cli: Cli, vault: Vault) -> None:
    """Its drift check expects what format 1 set (10), not format 2's 50."""
    cli.env.update(vault.server.cli_env())
    write_config(cli, vault, CREDENTIAL)
    assert cli("rotate", NAME).code == 0
    as_format_1(vault, earlier=0)
    assert cli("check", NAME).code == 0
    vault.kv().update_metadata(
        f"{vault.prefix}/{NAME}/.rotatectl/index", max_versions=50, mount_point="secret"
    )
    drift = cli("check", NAME)
    assert drift.code == 3 and "index keeps 50 versions, not 10" in drift.err, drift.err


def test_an_index_of_a_later_format_is_refused_not_misread() -> None:
    with pytest.raises(StoreError, match="index format 3 is not supported"):
        _Index.decode({"format": 3, "versions": []}, 7, "vault read")
