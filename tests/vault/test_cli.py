"""The real CLI against OpenBao: a full rotation, AppRole, denials, a server outage."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from rotatectl.model import VersionState
from rotatectl.stores.vault import VaultStore
from rotatectl.vault_auth import AuthSettings, Connection

from ..conftest import Cli
from .conftest import BaoServer, Vault, bao_binary, bao_env, free_port, stop, write_config
from .test_auth import approle
from .test_layout import policy_text

NAME = "partners/acme"
CREDENTIAL = f"""
[defaults]
store = "vault"
retain = "1s"

[credentials."{NAME}"]
issuer = {{ type = "generated", prefix = "rk_test" }}
scopes = ["read"]
"""


def values(store: VaultStore) -> set[str]:
    """Every value the store still holds, for the leak check."""
    found = set()
    for path in store.list_paths():
        for v in store.versions(path):
            if v.state is not VersionState.DESTROYED:
                found.add(store.read_value(path, v.version_id))
    return found


def assert_no_leak(cli: Cli, secrets: set[str]) -> None:
    """Invariant 7 for vault-held values (the shared canary only knows local stores)."""
    assert secrets
    for run in cli.runs:
        if run.reveals:
            continue
        for value in secrets:
            assert value not in run.out + run.err, f"a key value leaked into {run.args}"


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.slow
def test_full_rotation_through_the_cli(cli: Cli, vault: Vault) -> None:
    write_config(cli, vault, CREDENTIAL)
    cli.env.update(vault.server.cli_env())
    store = vault.store()
    seen: set[str] = set()

    assert cli("rotate", NAME).code == 0
    first = vault.read(NAME)["current"]
    run = cli("rotate", NAME, "--propagation", "1s", "--overlap", "1s", "--wait")
    assert run.code == 0, run.out + run.err
    assert "promoted v2" in run.out and "retired v1" in run.out
    seen |= values(store)

    # Read back with the bao CLI, as a client and as a verifier would.
    client = vault.server.bao("kv", "get", "-field=current", f"secret/{vault.prefix}/{NAME}")
    assert client.returncode == 0, client.stderr
    assert client.stdout != first
    assert client.stdout == cli("get", NAME).out.strip()
    verifier = vault.server.bao(
        "kv",
        "get",
        "-format=json",
        "-field=accepted",
        f"secret/{vault.prefix}/{NAME}/.rotatectl/index",
    )
    v1, v2 = store.versions(NAME)
    assert (v1.state, v2.state) == (VersionState.RETIRED, VersionState.CURRENT)
    assert set(json.loads(verifier.stdout)) == {v2.key_id}
    assert store.read_value(NAME, v1.version_id) == first  # retired, kept for `retain`

    assert v1.retired is not None
    time.sleep(max(0.0, 1.2 - (time.time() - v1.retired.timestamp())))
    run = cli("run")
    assert run.code == 0, run.out + run.err
    assert "destroyed v1" in run.out
    value_path = f"{vault.prefix}/{NAME}/.rotatectl/versions/{v1.version_id}"
    meta = vault.kv().read_secret_metadata(value_path, mount_point="secret")["data"]
    assert all(v["destroyed"] for v in meta["versions"].values())
    gone = vault.server.bao("kv", "get", f"secret/{value_path}")
    assert "destroyed          true" in gone.stdout and first not in gone.stdout
    assert vault.server.bao("kv", "get", "-field=value", f"secret/{value_path}").returncode != 0
    assert [v.state for v in store.versions(NAME)] == [
        VersionState.DESTROYED,
        VersionState.CURRENT,
    ]
    assert_no_leak(cli, seen)


@pytest.mark.slow
def test_approle_through_the_cli(cli: Cli, vault: Vault) -> None:
    role_id, secret_id = approle(vault)
    (cli.cwd / "secret-id").write_text(secret_id)
    store = (
        f'[stores.vault]\ntype = "vault"\nurl = "{vault.url}"\nprefix = "{vault.prefix}"\n'
        f'auth = {{ method = "approle", role_id = "{role_id}", secret_id_file = "secret-id" }}\n'
    )
    write_config(cli, vault, CREDENTIAL, store=store)
    run = cli("rotate", NAME)
    assert run.code == 0, run.out + run.err
    run = cli("check")
    assert run.code == 0, run.out + run.err
    assert "ok store vault - 1 credential" in run.out
    assert vault.read(NAME)["current"].startswith("rk_test_")
    assert_no_leak(cli, values(vault.store()))


@pytest.mark.slow
def test_missing_capability_is_one_line_naming_it(cli: Cli, vault: Vault) -> None:
    write_config(cli, vault, CREDENTIAL)
    cli.env.update(vault.server.cli_env())
    assert cli("rotate", NAME).code == 0
    # The operator policy without "update" on secret/data/...
    hcl = policy_text("rotatectl-operator.hcl", vault).replace('["read", "update"]', '["read"]', 1)
    vault.policy(f"{vault.prefix}-ro", hcl)
    token = vault.token_with(f"{vault.prefix}-ro")
    run = cli("rotate", NAME, env={"VAULT_TOKEN": token})
    assert run.code == 1
    # The credential's own result line, naming the step (the lock) and the capability.
    assert one_line(run.err) == (
        f"{NAME}: failed - lock: vault lock {NAME}: permission denied: needs 'update' on "
        f"secret/data/{vault.prefix}/{NAME}/.rotatectl/lock"
    )
    run = cli("check", env={"VAULT_TOKEN": token})
    assert run.code == 1
    assert f"needs 'update' on secret/data/{vault.prefix}/{NAME}/.rotatectl/index" in run.err
    assert_no_leak(cli, values(vault.store()))


# -- a server that keeps its data across a restart ------------------------------------


@dataclass
class PersistentBao:
    """``bao server`` with raft storage in a temp dir (OpenBao has no "file" storage):
    initialised with one key share, restartable, sealed after each restart."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""
    key: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = self.root / "server.hcl"
        config.write_text(
            f'storage "raft" {{\n  path = "{self.root / "data"}"\n  node_id = "n1"\n'
            "  performance_multiplier = 1\n}\n"
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
            f'  cluster_address = "127.0.0.1:{self.port + 1}"\n  tls_disable = true\n}}\n'
            f'api_addr = "{self.url}"\ncluster_addr = "http://127.0.0.1:{self.port + 1}"\n'
        )
        (self.root / "data").mkdir(exist_ok=True)
        with (self.root / "server.log").open("ab") as out:
            self.proc = subprocess.Popen(
                [bao_binary(), "server", f"-config={config}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=bao_env(self.root),
            )
        self.wait(lambda code: code in (200, 429, 501, 503))

    def wait(self, ok: Any, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"bao exited:\n{(self.root / 'server.log').read_text()[-2000:]}")
            try:
                if ok(requests.get(f"{self.url}/v1/sys/health", timeout=1).status_code):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        pytest.fail(f"bao not ready:\n{(self.root / 'server.log').read_text()[-2000:]}")

    def initialise(self) -> None:
        body = requests.put(
            f"{self.url}/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1}, timeout=30
        ).json()
        self.token, self.key = body["root_token"], body["keys_base64"][0]
        self.unseal()
        requests.post(
            f"{self.url}/v1/sys/mounts/secret",
            headers={"X-Vault-Token": self.token},
            json={"type": "kv", "options": {"version": "2"}},
            timeout=10,
        ).raise_for_status()

    def unseal(self) -> None:
        requests.put(f"{self.url}/v1/sys/unseal", json={"key": self.key}, timeout=10)
        self.wait(lambda code: code == 200)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


@pytest.fixture
def persistent_bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PersistentBao]:
    # Outside the Cli harness's directory: its canary opens every *.db there (raft has one).
    server = PersistentBao(tmp_path_factory.mktemp("bao-raft"), free_port())
    server.start()
    try:
        server.initialise()
        yield server
    finally:
        server.stop()


def wait_until(check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition never became true")
        time.sleep(0.05)


@pytest.mark.slow
def test_server_stopped_mid_rotation_then_run_resumes(
    cli: Cli, persistent_bao: PersistentBao
) -> None:
    bao = persistent_bao
    vault = Vault(BaoServer(bao.url, bao.token, bao_binary()), "outage")
    write_config(cli, vault, CREDENTIAL)
    cli.env.update({"VAULT_ADDR": bao.url, "VAULT_TOKEN": bao.token})
    assert cli("rotate", NAME).code == 0
    store = VaultStore(Connection(bao.url, auth=AuthSettings(token=bao.token)), prefix="outage")
    first = store.read_value(NAME)
    seen = values(store)

    # A live `rotate --wait`: stop the server while it waits out the propagation delay.
    proc = cli.popen("rotate", NAME, "--propagation", "2s", "--overlap", "1s", "--wait")
    wait_until(lambda: len(store.versions(NAME)) == 2)
    seen |= values(store)
    store.close()
    bao.stop()
    out, err = proc.communicate(timeout=60)
    cli.record(("rotate", NAME, "--wait"), proc.returncode, out, err)
    assert proc.returncode == 1, out + err
    assert f"cannot reach the server at {bao.url}" in out + err

    # While it is down, or sealed: one clear line, exit 1, nothing changed.
    run = cli("run")
    assert run.code == 1
    assert f"cannot reach the server at {bao.url}" in one_line(run.err + run.out)
    bao.start()
    run = cli("run")
    assert run.code == 1
    assert f"the server at {bao.url} is sealed" in one_line(run.err + run.out)

    bao.unseal()
    store = VaultStore(Connection(bao.url, auth=AuthSettings(token=bao.token)), prefix="outage")
    assert store.read_value(NAME) == first  # clients never lost their key
    run = cli("run")
    assert run.code == 0, run.out + run.err
    assert "promoted v2" in run.out
    time.sleep(1.1)  # the overlap
    run = cli("run")
    assert run.code == 0, run.out + run.err
    assert "retired v1" in run.out
    v1, v2 = store.versions(NAME)
    assert (v1.state, v2.state) == (VersionState.RETIRED, VersionState.CURRENT)
    assert store.read_value(NAME) == store.read_value(NAME, v2.version_id) != first
    assert {k.key_id for k in store.accepted_keys(NAME, NAME)} == {v2.key_id}
    rotation, _ = store.load_rotation(NAME)
    assert rotation is not None and rotation.phase.value == "completed"
    store.close()
    assert_no_leak(cli, seen)
