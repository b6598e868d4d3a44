"""HTTP requests the CLI makes against OpenBao (issue 10), counted on hvac's adapter.

KV v2 has no batch read, so ``status`` and a no-op ``run`` read each credential;
a rotation reads the index, which holds the rotation record (issue 21), once, then
works from what it wrote itself while it holds the lease (every write is a
check-and-set). The drift
check of many credentials (issue 21) reads the client path once (the current value's
read) and the metadata of them all with one SCAN of ``detailed-metadata``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from rotatectl.model import VersionState as V
from rotatectl.testing.store_contract import PATH, T0, T1, T2, T3, make_rotation, publish, states

from ..conftest import Cli
from .conftest import Vault, write_config
from .test_layout import policy_text

NAMES = [f"fleet/c{i:02d}" for i in range(6)]
# Every process: the token lookup and the mount check.
START = {"GET v1/auth/token/lookup-self": 1, "GET v1/sys/internal/ui": 1}


def _fleet(cli: Cli, vault: Vault) -> None:
    cli.env.update(vault.server.cli_env())
    write_config(
        cli,
        vault,
        '[defaults]\nstore = "vault"\n\n' + "".join(f'[credentials."{name}"]\n' for name in NAMES),
    )
    assert cli("rotate", *NAMES).code == 0


def test_a_no_op_run_reads_at_most_eight_times_a_credential(cli: Cli, vault: Vault) -> None:
    _fleet(cli, vault)
    run, calls = cli.counted("run", count="vault")
    assert run.code == 0, run.err
    n = len(NAMES)
    # Index (with the rotation record) and lock of each: no lease taken and given back.
    for read in ("GET data .../index", "GET data .../lock"):
        assert calls[read] == n
    assert "GET data .../rotation" not in calls
    # The drift check (cron must hear of drift): what a client reads and the value
    # it should be. Bounds, not pins: at most 8 requests a credential in all.
    assert not any(op.startswith(("POST", "PUT", "DELETE")) for op in calls)
    assert sum(calls.values()) - sum(START.values()) <= 8 * n


def test_a_run_reads_a_due_credential_once(cli: Cli, vault: Vault) -> None:
    """The lock-free pass reads the lock, then the index (with the rotation record); the
    lease is then taken with a check-and-set on that lock copy, which proves nobody
    wrote the records since: the session reads none of them again (issue 21)."""
    cli.env.update(vault.server.cli_env())
    due = [f"due/c{i:02d}" for i in range(4)]
    write_config(
        cli,
        vault,
        '[defaults]\nstore = "vault"\n\n' + "".join(f'[credentials."{name}"]\n' for name in due),
    )
    run, calls = cli.counted("run", count="vault")
    assert run.code == 0, run.err
    assert run.out.count("done") >= len(due), run.out
    for read in ("GET data .../index", "GET data .../lock"):
        assert calls[read] == len(due), (read, calls)
    assert "GET data .../rotation" not in calls
    assert calls["POST data .../lock"] == 2 * len(due)  # taken and given back
    # And the store holds what a rotation wrote: one current version each.
    status = json.loads(cli("-o", "json", "status").out)["credentials"]
    assert [[v["state"] for v in c["versions"]] for c in status] == [["current"]] * len(due)


def test_status_is_at_most_two_requests_a_credential(cli: Cli, vault: Vault) -> None:
    _fleet(cli, vault)
    run, calls = cli.counted("status", "-o", "json", count="vault")
    assert run.code == 0, run.err
    assert all(not c["drift"] for c in json.loads(run.out)["credentials"])
    n = len(NAMES)
    # Index (with the rotation record) and client path of each (KV v2 has no batch
    # read); the drift check's settings and value paths come from one scan for all.
    for read in ("GET data .../index", "GET data .../<client path>"):
        assert calls[read] == n, calls
    assert not any(op.startswith(("POST", "PUT", "DELETE")) for op in calls)
    # A bound, not a pin: 2N and a constant (the token lookup, the mount check, scans).
    assert sum(calls.values()) <= 2 * n + sum(START.values()) + 2, calls


def _value_rel(vault: Vault, store: Any, name: str) -> str:
    """The value path (rel in the mount) of ``name``'s current version."""
    current = next(v for v in store.versions(name) if v.state is V.CURRENT)
    return f"{vault.prefix}/{name}/.rotatectl/versions/{current.version_id}"


def _put(vault: Vault, rel: str, data: dict[str, Any]) -> None:
    """Write ``data`` as the next KV version of ``rel`` (check-and-set, as rotatectl's
    paths require), like ``bao kv put -cas=N``."""
    kv = vault.kv()
    meta = kv.read_secret_metadata(rel, mount_point="secret")["data"]
    kv.create_or_update_secret(rel, data, cas=meta["current_version"], mount_point="secret")


def test_status_of_many_finds_what_the_one_credential_check_finds(cli: Cli, vault: Vault) -> None:
    """The scan-based check of many credentials reports each change made behind
    rotatectl's back exactly as :meth:`VaultStore.drift` does, and nothing where the
    change leaves what clients and verifiers see as rotatectl wrote it."""
    _fleet(cli, vault)
    store, kv = vault.store(), vault.kv()
    same, overwritten, recreated, settings, cas_off, deleted = NAMES
    rel = {name: _value_rel(vault, store, name) for name in NAMES}
    # The same value written again (a new KV version): nothing changed.
    _put(vault, rel[same], vault.read(rel[same].removeprefix(f"{vault.prefix}/")))
    _put(vault, rel[overwritten], {"value": "rk_test_someone_else"})
    # Metadata and history gone, then one version again: the KV version number the
    # index pins is back, with another value (the scan sees the custom metadata gone).
    kv.delete_metadata_and_all_versions(rel[recreated], mount_point="secret")
    kv.create_or_update_secret(rel[recreated], {"value": "rk_test_other"}, mount_point="secret")
    kv.update_metadata(
        f"{vault.prefix}/{settings}/.rotatectl/index", max_versions=3, mount_point="secret"
    )
    kv.update_metadata(f"{vault.prefix}/{cas_off}", cas_required=False, mount_point="secret")
    kv.delete_latest_version_of_secret(rel[deleted], mount_point="secret")

    run, calls = cli.counted("status", "-o", "json", count="vault")
    assert run.code == 3, run.err
    assert calls["SCAN v1/secret/detailed-metadata/" + vault.prefix] == 1
    found = {c["name"]: c["drift"] for c in json.loads(run.out)["credentials"]}
    fresh = vault.store()
    assert found == {name: fresh.drift(name) for name in NAMES}
    assert found[same] == []
    assert "holds another value" in found[overwritten][0]
    assert "holds another value" in found[recreated][0]
    assert found[settings] == [
        f"secret/{vault.prefix}/{settings}/.rotatectl/index keeps 3 versions, not 50"
    ]
    assert found[cas_off] == [f"secret/{vault.prefix}/{cas_off} does not require check-and-set"]
    assert "is missing" in found[deleted][0]


def test_without_the_scan_status_reads_each_credential_and_finds_the_same(
    cli: Cli, vault: Vault
) -> None:
    """HashiCorp Vault has no SCAN, and a policy may not grant it (the example
    operator policy does not): one refused request, then the metadata and value path
    reads of each credential, as before."""
    _fleet(cli, vault)
    vault.kv().update_metadata(
        f"{vault.prefix}/{NAMES[2]}", cas_required=False, mount_point="secret"
    )
    store = vault.store()
    paths = list(NAMES)
    store.snapshot_many(paths, locks=False)
    store.current_values_many(paths)
    scanned = store.drift_many(paths)
    store._scan_refused = True  # as after a refusal
    store.snapshot_many(paths, locks=False)
    store.current_values_many(paths)
    assert store.drift_many(paths) == scanned == {p: store.drift(p) for p in paths}
    assert [p for p, lines in scanned.items() if lines] == [NAMES[2]]

    hcl = policy_text("rotatectl-operator.hcl", vault)
    vault.policy(f"{vault.prefix}-op", hcl)
    cli.env["VAULT_TOKEN"] = vault.token_with(f"{vault.prefix}-op")
    run, calls = cli.counted("status", "-o", "json", count="vault")
    assert run.code == 3, run.err
    drift = {c["name"]: c["drift"] for c in json.loads(run.out)["credentials"]}
    assert drift == scanned
    assert calls["SCAN v1/secret/detailed-metadata/" + vault.prefix] == 1  # refused: 403
    # Each credential's index settings, and the drifted one's again: a credential with
    # drift is looked at once more on fresh reads, as drift() does.
    assert calls["GET metadata .../index"] == len(NAMES) + 1

    # The example policy's OpenBao block, uncommented: the scan, and the same answer.
    hcl = hcl.replace("# path ", "path ").replace("#   capabilities", "  capabilities")
    vault.policy(f"{vault.prefix}-op", hcl.replace("# }", "}"))
    run, calls = cli.counted("status", "-o", "json", count="vault")
    assert run.code == 3, run.err
    assert {c["name"]: c["drift"] for c in json.loads(run.out)["credentials"]} == scanned
    assert calls["GET metadata .../index"] == 1  # the drifted one, looked at again


def test_a_full_rotation_is_at_most_18_requests(cli: Cli, vault: Vault) -> None:
    _fleet(cli, vault)
    run, calls = cli.counted(
        "rotate", NAMES[0], "--propagation", "0s", "--overlap", "0s", count="vault"
    )
    assert run.code == 0, run.err
    # One read of the index, which holds the rotation record; after that every step
    # works from what this process wrote under its lease.
    assert calls["GET data .../index"] == 1  # the drift scan uses the step's read
    assert "GET data .../rotation" not in calls and "POST data .../rotation" not in calls
    # The record and each version change in one index write (issue 21): the start;
    # published; the promotion's intent, then its completion; retired and completed.
    assert calls["POST data .../index"] == 5
    assert calls["POST data .../lock"] == 2  # taken and given back
    # The drift check reads the client path once for both of its checks; the
    # promotion's check-and-set takes its KV version from that read.
    assert calls["GET data .../<client path>"] == 1
    # The new value path is written as new, without asking for its metadata first,
    # and the promotion copies the value this process wrote there, unread.
    assert "GET metadata .../versions/<id>" not in calls
    assert calls["GET data .../versions/<id>"] == 1  # the drift check's, of the current
    assert sum(calls.values()) <= 18


def test_a_stale_copy_never_skips_or_refuses_a_change(vault: Vault) -> None:
    one, two = vault.store(), vault.store()
    publish(one, 1)
    one.promote(PATH, "v1", None, T0)  # one's copy of the index has no v2
    publish(two, 2)
    one.promote(PATH, "v2", "v1", T1)  # "no version v2", says the copy: asked, and done
    assert states(two) == {"v1": V.PREVIOUS, "v2": V.CURRENT}
    one.set_state(PATH, "v1", V.RETIRED, V.PREVIOUS, T2)  # one remembers v1 retired
    two.set_state(PATH, "v1", V.PENDING, V.RETIRED, T2)  # reinstated behind one's back
    one.set_state(PATH, "v1", V.RETIRED, V.PENDING, T3)  # "already", says the copy
    assert states(two)["v1"] is V.RETIRED


def test_state_is_free_while_the_store_holds_the_lease_it_wrote(vault: Vault) -> None:
    store = vault.store()
    publish(store, 1)
    store.save_rotation(PATH, make_rotation(), 0)
    lease = store.acquire_lock(PATH, "me", timedelta(minutes=2), T0)
    store.state(PATH)  # reads the index (with the record) once
    sent: list[str] = []
    adapter = store._client().adapter
    request = adapter.request
    adapter.request = lambda method, url, *a, **k: sent.append(url) or request(method, url, *a, **k)
    versions, rotation, revision = store.state(PATH)
    assert sent == [] and [v.version_id for v in versions] == ["v1"]
    assert rotation is not None and revision == 1
    store.release_lock(lease)  # from its copy of the lock: one write
    assert len(sent) == 1
    store.state(PATH)  # no lease held: ask the server
    assert len(sent) == 2
