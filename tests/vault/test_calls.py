"""HTTP requests the CLI makes against OpenBao (issue 10), counted on hvac's adapter.

KV v2 has no batch read, so ``status`` and a no-op ``run`` read each credential;
a rotation reads the index and rotation record once, then works from what it
wrote itself while it holds the lease (every write is a check-and-set).
"""

from __future__ import annotations

from datetime import timedelta

from rotatectl.model import VersionState as V
from rotatectl.testing.store_contract import PATH, T0, T1, T2, T3, make_rotation, publish, states

from ..conftest import Cli
from .conftest import Vault, write_config

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
    # Index, rotation record and lock of each: no lease taken and given back.
    for read in ("GET data .../index", "GET data .../rotation", "GET data .../lock"):
        assert calls[read] == n
    # The drift check (cron must hear of drift): what a client reads and the value
    # it should be. Bounds, not pins: at most 8 requests a credential in all.
    assert not any(op.startswith(("POST", "PUT", "DELETE")) for op in calls)
    assert sum(calls.values()) - sum(START.values()) <= 8 * n


def test_a_full_rotation_is_27_requests(cli: Cli, vault: Vault) -> None:
    _fleet(cli, vault)
    run, calls = cli.counted(
        "rotate", NAMES[0], "--propagation", "0s", "--overlap", "0s", count="vault"
    )
    assert run.code == 0, run.err
    # One read of the index and of the rotation record; after that every step
    # works from what this process wrote under its lease.
    assert calls["GET data .../index"] == 1  # the drift scan uses the step's read
    assert calls["GET data .../rotation"] == 1
    assert calls["POST data .../rotation"] == 5
    assert calls["POST data .../lock"] == 2  # taken and given back
    assert sum(calls.values()) == 27


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
    store.state(PATH)  # reads the index and the record once
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
    assert len(sent) == 3
