"""The reliability suite's fixtures: every real store behind one small interface.

A :class:`Backend` is one store kind as a test sees it: it writes the
``rotatectl.toml`` that points the real CLI at the store (optionally through
the fault proxy), opens the store adapter directly to read what the CLI left,
and reads the server underneath the adapter (SQLite rows, Secrets Manager
versions and labels, KV v2 paths and metadata) for the checks of
:mod:`tests.reliability.invariants`.

The servers are the suite's existing fixtures, imported rather than copied:
``moto_server`` from ``tests/aws/conftest.py`` and ``bao_server``/``vault``
from ``tests/vault/conftest.py``. Adding a store to every matrix is one entry
in :data:`BACKENDS` (plus its Backend subclass).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rotatectl import keyformat
from rotatectl.model import Version, VersionState
from rotatectl.stores.local import LocalStore
from tests.aws.conftest import (  # noqa: F401 - fixtures, re-exported for this directory
    REGION,
    MotoServer,
    _fake_aws_credentials,
    aws_env,
    make_store,
    moto,
    moto_server,
)
from tests.conftest import Cli
from tests.vault.conftest import Vault, bao_server, vault  # noqa: F401 - fixtures

from .invariants import Invariants, Problems, Snapshot, Store, policy

NAME = "partners/acme"
PREFIX = "rk_test"

# -- figures for the terminal summary (and RELIABILITY.md) ----------------------
#
# Each test's Backend notes what it did in its item's user_properties; the
# teardown report carries them to the process that prints the summary (also
# the xdist controller, when this directory is on the command line).


@dataclass
class Figures:
    crashes: dict[str, set[str]] = field(default_factory=dict)  # store -> boundaries crashed
    kills: int = 0
    checks: int = 0
    faults: dict[str, int] = field(default_factory=dict)  # fault label -> count
    concurrent: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, noted: dict[str, Any]) -> None:
        for store, boundary in noted.get("crashes", ()):
            self.crashes.setdefault(store, set()).add(boundary)
            self.kills += 1
        for label in noted.get("faults", ()):
            self.faults[label] = self.faults.get(label, 0) + 1
        self.concurrent += noted.get("concurrent", [])
        self.notes += noted.get("notes", [])
        self.checks += noted.get("checks", 0)


FIGURES = Figures()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown":
        for key, value in report.user_properties:
            if key == "reliability" and isinstance(value, dict):
                FIGURES.add(value)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    f = FIGURES
    if not (f.kills or f.faults or f.concurrent):
        return
    write = terminalreporter.write_line
    terminalreporter.section("reliability figures")
    if f.crashes:
        stores = sorted(f.crashes)
        shape = " + ".join(f"{s} x {len(f.crashes[s])}" for s in stores)
        write(f"crash matrix: {f.kills} SIGKILLs at distinct boundaries per store: {shape}")
    if f.faults:
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(f.faults.items()))
        write(f"faults injected: {sum(f.faults.values())} ({detail})")
    for line in f.concurrent:
        write(f"concurrency: {line}")
    for line in f.notes:
        write(line)
    write(f"invariant checks: {f.checks}")


# -- backends -----------------------------------------------------------------------


class Backend:
    """One store kind, as the CLI and the checks see it."""

    kind: ClassVar[str]  # the test id: local, moto_server, openbao
    table: ClassVar[str]  # the [stores.NAME] the config declares
    remote: ClassVar[bool] = True

    def __init__(self, cli: Cli, tmp: Path) -> None:
        self.cli = cli
        self.tmp = tmp
        self._stores: list[Store] = []
        self.checkers: list[Invariants] = []
        self.noted: dict[str, Any] = {"crashes": [], "faults": [], "concurrent": [], "notes": []}

    # the CLI side

    @property
    def upstream(self) -> str:
        """The server's URL (what a fault proxy forwards to)."""
        raise NotImplementedError

    def store_toml(self, url: str | None) -> str:
        return ""

    def configure(
        self,
        names: Sequence[str] = (NAME,),
        *,
        url: str | None = None,
        store_settings: str = "",
        **defaults: str | int,
    ) -> None:
        """Write rotatectl.toml: every credential in ``names`` on this store.

        Defaults: no propagation, no overlap, ``retain = "1s"``; ``url`` points
        the store at a proxy instead of the server.
        """
        settings: dict[str, str | int] = {
            "store": self.table,
            "propagation": "0s",
            "overlap": "0s",
            "retain": "1s",
            **defaults,
        }
        lines = ["[defaults]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
        lines += ["", self.store_toml(url) + store_settings, ""]
        for name in names:
            lines += [
                f'[credentials."{name}"]',
                f'issuer = {{ type = "generated", prefix = "{PREFIX}" }}',
            ]
        (self.cli.cwd / "rotatectl.toml").write_text("\n".join(lines) + "\n")

    # the reading side

    def open_store(self) -> Store:
        raise NotImplementedError

    def store(self) -> Store:
        """A store adapter of our own (another process, in effect)."""
        store = self.open_store()
        self._stores.append(store)
        return store

    def invariants(
        self, path: str = NAME, *, seeded: int = 0, store: Store | None = None, **policy_kw: str
    ) -> Invariants:
        """A checker for ``path`` (policy: the config's defaults) with its own store
        adapter, unless it is given one."""
        checker = Invariants(
            store or self.store(), self, path, policy=policy(**policy_kw), seeded=seeded
        )
        self.checkers.append(checker)
        return checker

    def note(self, what: str, *items: Any) -> None:
        """Count something for the figures (crashes, faults, concurrent, notes)."""
        self.noted[what] += list(items)

    def close(self) -> dict[str, Any]:
        """Close our adapters; return what this test noted (with the number of checks)."""
        for store in self._stores:
            close: Callable[[], None] | None = getattr(store, "close", None)
            if close is not None:
                close()
        return {**self.noted, "checks": sum(c.checks for c in self.checkers)}

    # the server underneath

    def lock_holder(self, path: str) -> str | None:
        raise NotImplementedError

    def metadata_texts(self, path: str) -> list[str]:
        """Every document the store keeps about ``path`` that must hold no value."""
        raise NotImplementedError

    def server_problems(self, path: str, snap: Snapshot, settled: bool) -> Problems:
        """What the server holds that the adapter's view does not explain."""
        return []

    def client_value(self, path: str) -> str | None:
        """What a client that knows nothing of rotatectl reads as the current key."""
        return None

    def value_writes(self, path: str, version_id: str) -> int:
        """How many values the server holds (or held) for this version."""
        raise NotImplementedError

    def all_values(self) -> set[str]:
        """Every key value anywhere on the server, for the leak check."""
        raise NotImplementedError


class LocalBackend(Backend):
    kind = "local"
    table = "local"
    remote = False

    @property
    def db(self) -> Path:
        return self.cli.state_dir / "state.db"

    @property
    def upstream(self) -> str:
        raise AssertionError("the local store has no server to put a proxy in front of")

    def open_store(self) -> Store:
        self.cli.state_dir.mkdir(parents=True, exist_ok=True)
        return LocalStore(self.db)

    def _rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            return list(conn.execute(sql, args))
        finally:
            conn.close()

    def lock_holder(self, path: str) -> str | None:
        rows = self._rows("SELECT holder FROM locks WHERE path = ?", path)
        return rows[0][0] if rows else None

    def metadata_texts(self, path: str) -> list[str]:
        texts = [r[0] for r in self._rows("SELECT meta FROM versions WHERE path = ?", path)]
        texts += [r[0] for r in self._rows("SELECT record FROM rotations WHERE path = ?", path)]
        texts += [
            r[0] for r in self._rows("SELECT record FROM rotation_history WHERE path = ?", path)
        ]
        texts += [repr(r) for r in self._rows("SELECT * FROM locks WHERE path = ?", path)]
        return texts

    def server_problems(self, path: str, snap: Snapshot, settled: bool) -> Problems:
        problems = []
        for version_id, state, empty in self._rows(
            "SELECT version_id, state, value IS NULL FROM versions WHERE path = ?", path
        ):
            if (state == VersionState.DESTROYED.value) != bool(empty):
                wiped = "wiped" if empty else "not wiped"
                problems.append(f"local: {version_id} is {state} but its value is {wiped}")
        return problems

    def client_value(self, path: str) -> str | None:
        rows = self._rows("SELECT value FROM versions WHERE path = ? AND state = 'current'", path)
        return rows[0][0] if rows else None

    def value_writes(self, path: str, version_id: str) -> int:
        rows = self._rows(
            "SELECT count(*) FROM versions WHERE path = ? AND version_id = ?", path, version_id
        )
        return int(rows[0][0])

    def all_values(self) -> set[str]:
        if not self.db.exists():
            return set()
        return {r[0] for r in self._rows("SELECT value FROM versions WHERE value IS NOT NULL")}


class AwsBackend(Backend):
    kind = "moto_server"
    table = "aws"

    def __init__(self, cli: Cli, tmp: Path, server: MotoServer) -> None:
        super().__init__(cli, tmp)
        self.server = server
        self.sm = server.client("secretsmanager")
        cli.env.update(aws_env())

    @property
    def upstream(self) -> str:
        return self.server.url

    def store_toml(self, url: str | None) -> str:
        return (
            '[stores.aws]\ntype = "aws-secretsmanager"\n'
            f'region = "{REGION}"\nendpoint_url = "{url or self.server.url}"\n'
        )

    def open_store(self) -> Store:
        return make_store(self.tmp, self.server.url)

    def record(self, path: str) -> tuple[dict[str, Any] | None, str]:
        try:
            out = self.sm.get_secret_value(SecretId=f"{path}/.rotatectl", VersionStage="AWSCURRENT")
        except self.sm.exceptions.ResourceNotFoundException:
            return None, ""
        text = str(out["SecretString"])
        return json.loads(text), text

    def key_versions(self, path: str) -> dict[str, list[str]]:
        """AWS VersionId -> staging labels of the key secret, deprecated ones included."""
        try:
            # moto answers ListSecretVersionIds of a secret that never existed with a
            # 500 (a KeyError), not ResourceNotFoundException: ask DescribeSecret first.
            self.sm.describe_secret(SecretId=path)
            listed = self.sm.list_secret_version_ids(SecretId=path, IncludeDeprecated=True)
        except self.sm.exceptions.ResourceNotFoundException:
            return {}
        return {v["VersionId"]: list(v.get("VersionStages", [])) for v in listed["Versions"]}

    def lock_holder(self, path: str) -> str | None:
        doc, _ = self.record(path)
        lock = (doc or {}).get("lock") or {}
        return lock.get("holder")

    def metadata_texts(self, path: str) -> list[str]:
        texts = []
        try:
            listed = self.sm.list_secret_version_ids(
                SecretId=f"{path}/.rotatectl", IncludeDeprecated=True
            )
        except self.sm.exceptions.ResourceNotFoundException:
            return []
        for v in listed["Versions"]:  # every record version moto still holds, not only the latest
            out = self.sm.get_secret_value(SecretId=f"{path}/.rotatectl", VersionId=v["VersionId"])
            texts.append(str(out["SecretString"]))
        return texts

    def server_problems(self, path: str, snap: Snapshot, settled: bool) -> Problems:
        problems: Problems = []
        doc, _ = self.record(path)
        ids: dict[str, str] = (doc or {}).get("aws_version_ids", {})
        by_aws = {aws: vid for vid, aws in ids.items()}
        states = {v.version_id: v for v in snap.versions}
        in_flight = snap.rotation.new_version_id if snap.rotation and not settled else None
        for aws_id, labels in self.key_versions(path).items():
            vid = by_aws.get(aws_id)
            if vid is None:
                if in_flight is not None and aws_id == _aws_id(in_flight):
                    continue  # written, not yet recorded: the resumed publish adopts it
                problems.append(f"aws: untracked key secret version {aws_id} {labels} (orphan)")
                continue
            v = states.get(vid)
            if v is None:
                problems.append(f"aws: record maps {vid} but the adapter has no such version")
                continue
            aws_labels = {lb for lb in labels if lb in ("AWSCURRENT", "AWSPREVIOUS", "AWSPENDING")}
            if v.state is VersionState.CURRENT and "AWSCURRENT" not in aws_labels:
                problems.append(f"aws: current v{v.number} lacks AWSCURRENT ({labels})")
            if v.state is not VersionState.CURRENT and "AWSCURRENT" in aws_labels:
                problems.append(f"aws: {v.state} v{v.number} carries AWSCURRENT")
            if v.state in (VersionState.RETIRED, VersionState.DESTROYED) and aws_labels:
                problems.append(f"aws: {v.state} v{v.number} still carries {sorted(aws_labels)}")
            if v.state is VersionState.DESTROYED and labels:
                problems.append(f"aws: destroyed v{v.number} still labelled {labels}")
        return problems

    def client_value(self, path: str) -> str | None:
        try:
            out = self.sm.get_secret_value(SecretId=path, VersionStage="AWSCURRENT")
        except self.sm.exceptions.ResourceNotFoundException:
            return None
        return str(out["SecretString"])

    def value_writes(self, path: str, version_id: str) -> int:
        doc, _ = self.record(path)
        tracked = set(((doc or {}).get("aws_version_ids") or {}).values())
        # Its own AWS version, plus any untracked one (a duplicate of a lost write).
        mine = _aws_id(version_id)
        return sum(1 for aws in self.key_versions(path) if aws == mine or aws not in tracked)

    def all_values(self) -> set[str]:
        values = set()
        for page in self.sm.get_paginator("list_secrets").paginate(IncludePlannedDeletion=True):
            for secret in page["SecretList"]:
                if secret["Name"].endswith("/.rotatectl"):
                    continue
                listed = self.sm.list_secret_version_ids(
                    SecretId=secret["ARN"], IncludeDeprecated=True
                )
                for v in listed["Versions"]:
                    out = self.sm.get_secret_value(SecretId=secret["ARN"], VersionId=v["VersionId"])
                    values.add(str(out["SecretString"]))
        return values


def _aws_id(version_id: str) -> str:
    from rotatectl.stores.aws import aws_version_id

    return aws_version_id(version_id)


class VaultBackend(Backend):
    kind = "openbao"
    table = "vault"

    def __init__(self, cli: Cli, tmp: Path, bao: Vault) -> None:
        super().__init__(cli, tmp)
        self.vault = bao
        self.kv = bao.kv()
        cli.env.update(bao.server.cli_env())

    @property
    def upstream(self) -> str:
        return self.vault.url

    def store_toml(self, url: str | None) -> str:
        return (
            f'[stores.vault]\ntype = "vault"\nurl = "{url or self.vault.url}"\n'
            f'prefix = "{self.vault.prefix}"\n'
        )

    def open_store(self) -> Store:
        return self.vault.store()

    def rel(self, path: str, leaf: str = "") -> str:
        base = f"{self.vault.prefix}/{path}"
        return f"{base}/.rotatectl/{leaf}" if leaf else base

    def read(self, rel: str, version: int | None = None) -> dict[str, Any] | None:
        import hvac.exceptions

        try:
            resp = self.kv.read_secret_version(
                rel, version=version, mount_point="secret", raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            return None
        data: dict[str, Any] = resp["data"]["data"]
        return data

    def metadata(self, rel: str) -> dict[str, Any] | None:
        import hvac.exceptions

        try:
            meta: dict[str, Any] = self.kv.read_secret_metadata(rel, mount_point="secret")["data"]
            return meta
        except hvac.exceptions.InvalidPath:
            return None

    def listing(self, rel: str) -> list[str]:
        import hvac.exceptions

        try:
            keys = self.kv.list_secrets(rel, mount_point="secret")["data"]["keys"]
        except hvac.exceptions.InvalidPath:
            return []
        return [str(k) for k in keys]

    def lock_holder(self, path: str) -> str | None:
        data = self.read(self.rel(path, "lock")) or {}
        return data.get("holder")

    def metadata_texts(self, path: str) -> list[str]:
        texts = []
        for leaf in ("index", "rotation", "lock"):
            meta = self.metadata(self.rel(path, leaf)) or {}
            for number, info in (meta.get("versions") or {}).items():
                if info.get("destroyed") or info.get("deletion_time"):
                    continue
                texts.append(json.dumps(self.read(self.rel(path, leaf), int(number))))
        return texts

    def server_problems(self, path: str, snap: Snapshot, settled: bool) -> Problems:
        problems: Problems = []
        index = self.read(self.rel(path, "index"))
        if index is None:
            return [] if not snap.versions else ["vault: versions but no index"]
        rows = {r["version_id"]: r for r in index.get("versions", [])}
        raw_accepted = {r["key_id"] for r in rows.values() if VersionState(r["state"]).accepted}
        if set(index.get("accepted", {})) != raw_accepted:
            problems.append(
                f"vault: the verifier view {sorted(index.get('accepted', {}))} disagrees with "
                f"the index states {sorted(raw_accepted)}"
            )
        if index.get("promotion") is not None:
            if settled:
                problems.append(f"vault: a promotion intent is left: {index['promotion']}")
        else:
            effective = {v.version_id: v.state.value for v in snap.versions}
            raw = {vid: r["state"] for vid, r in rows.items()}
            if raw != effective:
                problems.append(f"vault: index states {raw} != adapter states {effective}")
        in_flight = snap.rotation.new_version_id if snap.rotation and not settled else None
        folder = self.rel(path, "versions/")
        for vid in (k.rstrip("/") for k in self.listing(folder)):
            meta = self.metadata(folder + vid) or {}
            live = sorted(
                int(n)
                for n, info in (meta.get("versions") or {}).items()
                if not info.get("destroyed") and not info.get("deletion_time")
            )
            row = rows.get(vid)
            if row is None:
                if vid == in_flight:
                    continue  # written, not yet in the index: the resumed publish adopts it
                if live:
                    problems.append(
                        f"vault: value path of untracked version {vid} is live (orphan)"
                    )
                continue
            if row["state"] == VersionState.DESTROYED.value:
                if live:
                    problems.append(f"vault: destroyed {vid} still has live KV versions {live}")
            elif live != [row.get("value_kv_version")]:
                problems.append(
                    f"vault: {vid} has live KV versions {live}, the index names "
                    f"{row.get('value_kv_version')} (a duplicate value)"
                )
        return problems

    def client_value(self, path: str) -> str | None:
        data = self.read(self.rel(path))
        return None if data is None else data.get("current")

    def value_writes(self, path: str, version_id: str) -> int:
        meta = self.metadata(self.rel(path, f"versions/{version_id}")) or {}
        return len(meta.get("versions") or {})

    def client_writes(self, path: str) -> int:
        """KV versions ever written to the client path: one per promotion."""
        meta = self.metadata(self.rel(path)) or {}
        return int(meta.get("current_version") or 0)

    def all_values(self) -> set[str]:
        values: set[str] = set()

        def walk(folder: str) -> None:
            for key in self.listing(folder):
                if key.endswith("/"):
                    walk(folder + key)
                    continue
                meta = self.metadata(folder + key) or {}
                for number, info in (meta.get("versions") or {}).items():
                    if info.get("destroyed") or info.get("deletion_time"):
                        continue
                    data = self.read(folder + key, int(number)) or {}
                    for field_name in ("value", "current"):
                        if isinstance(data.get(field_name), str):
                            values.add(data[field_name])

        walk(f"{self.vault.prefix}/")
        return values


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Cli, Path], Backend]] = {
    "local": lambda request, cli, tmp: LocalBackend(cli, tmp),
    "moto_server": lambda request, cli, tmp: AwsBackend(cli, tmp, request.getfixturevalue("moto")),
    "openbao": lambda request, cli, tmp: VaultBackend(cli, tmp, request.getfixturevalue("vault")),
}
STORES = list(BACKENDS)
REMOTE = [kind for kind in STORES if kind != "local"]


@pytest.fixture
def backend(request: pytest.FixtureRequest, cli: Cli, tmp_path: Path) -> Iterator[Backend]:
    """Parametrize with ``indirect=True`` over :data:`STORES` (or :data:`REMOTE`)."""
    made = BACKENDS[request.param](request, cli, tmp_path)
    try:
        yield made
        if made.remote:  # the harness' own canary reads only local stores (invariant 7)
            assert_no_value_leaked(cli, made.all_values())
    finally:
        request.node.user_properties.append(("reliability", made.close()))


def assert_no_value_leaked(cli: Cli, values: set[str]) -> None:
    texts = [(r.args, r.out + r.err) for r in cli.runs if not r.reveals]
    texts += [(("file", *args), text) for args, text in cli.files()]
    for value in values:
        for args, text in texts:
            assert value not in text, f"a key value leaked into {args}"


# -- killing the real CLI at a boundary ----------------------------------------------


def crash_at(cli: Cli, backend: Backend, boundary: str, *args: str, timeout: float = 60) -> int:
    """Run ``rotatectl ARGS`` until it pauses at ``boundary``, SIGKILL it, return its pid.

    Fails (with the process' output) if it exits without reaching the boundary.
    """
    marker = cli.root / f"paused-{time.monotonic_ns()}"
    env = {"ROTATECTL_TEST_PAUSE_AT": boundary, "ROTATECTL_TEST_PAUSE_FILE": str(marker)}
    proc = cli.popen(*args, env=env)
    reached = False
    try:
        deadline = time.monotonic() + timeout
        # Complete once the line is there (the file appears a moment before its text).
        while not (reached := marker.exists() and marker.read_text().endswith("\n")):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        cli.record((*args, f"killed at {boundary}"), proc.returncode, out, err)
    assert reached, f"{args} exited {proc.returncode} without reaching {boundary}:\n{out}{err}"
    assert marker.read_text().split() == [str(proc.pid), boundary]
    assert proc.returncode == -signal.SIGKILL
    backend.note("crashes", (backend.kind, boundary))
    return proc.pid


def seed_current(store: Store, age: timedelta, path: str = NAME) -> Version:
    """v1 of ``path``, published and promoted ``age`` ago through the store (a key in
    use for a while before the test's commands)."""
    at = datetime.now(UTC) - age
    value = keyformat.generate(PREFIX)
    v = Version(
        str(uuid.uuid4()),
        1,
        keyformat.parse(value).key_id,
        keyformat.fingerprint(value),
        VersionState.PENDING,
        at,
    )
    store.publish(path, v, value)
    store.promote(path, v.version_id, None, at)
    return next(x for x in store.versions(path) if x.version_id == v.version_id)
