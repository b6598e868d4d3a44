"""The SQLite store: the contract, plus what only a file shared by processes has."""

from __future__ import annotations

import contextlib
import multiprocessing
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rotatectl.errors import (
    ConfigError,
    ConflictError,
    LockedError,
    StoreError,
    StoreUnavailableError,
)
from rotatectl.model import VersionState
from rotatectl.registry import AdapterContext
from rotatectl.stores.local import SCHEMA_VERSION, LocalStore
from rotatectl.testing.feature_contracts import (
    AccessCheckContract,
    AtomicRecordContract,
    BatchedReadsContract,
    DriftContract,
    HistoryContract,
    RollingWindowContract,
    StateContract,
)
from rotatectl.testing.store_contract import (
    PATH,
    T0,
    T1,
    T2,
    TTL,
    StoreContract,
    assert_invariant_one_current,
    make_rotation,
    publish,
    value_for,
)


def tamper_local(store: LocalStore, path: str, value: str) -> None:
    """What someone with the file does: overwrite the current value with sqlite3."""
    with contextlib.closing(sqlite3.connect(store.file)) as raw, raw:
        changed = raw.execute(
            "UPDATE versions SET value = ? WHERE path = ? AND state = 'current'", (value, path)
        ).rowcount
    assert changed == 1


class LocalFixture:
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[LocalStore]:
        store = LocalStore(tmp_path / "state.db")
        yield store
        store.close()

    def tamper(self, store: LocalStore, path: str, value: str) -> None:
        tamper_local(store, path, value)


class TestLocalStore(LocalFixture, StoreContract):
    pass


class TestLocalState(LocalFixture, StateContract):
    pass


class TestLocalBatchedReads(LocalFixture, BatchedReadsContract):
    pass


class TestLocalDrift(LocalFixture, DriftContract):
    restores = False  # one copy of each value: nothing to restore from


class TestLocalHistory(LocalFixture, HistoryContract):
    pass


class TestLocalRollingWindow(LocalFixture, RollingWindowContract):
    pass


class TestLocalAccessCheck(LocalFixture, AccessCheckContract):
    pass


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _ctx(tmp_path: Path) -> AdapterContext:
    return AdapterContext(
        table="stores.local",
        base_dir=tmp_path / "conf",
        state_dir=tmp_path / "state" / "rotatectl",
        config_file=tmp_path / "conf" / "rotatectl.toml",
    )


# -- files and permissions ------------------------------------------------------


def test_files_are_private(db: Path) -> None:
    with LocalStore(db) as store:
        publish(store, 1)
        store.promote(PATH, "v1", None, T1)
        assert _mode(db) == 0o600
        sidecars = [db.with_name(db.name + suffix) for suffix in ("-wal", "-shm")]
        assert all(p.exists() for p in sidecars)
        assert [_mode(p) for p in sidecars] == [0o600, 0o600]


def test_an_existing_file_keeps_its_mode(db: Path) -> None:
    LocalStore(db).close()
    db.chmod(0o640)
    LocalStore(db).close()
    assert _mode(db) == 0o640


def test_data_survives_reopening(db: Path) -> None:
    with LocalStore(db) as store:
        publish(store, 1)
        store.promote(PATH, "v1", None, T1)
    with LocalStore(db) as store:
        assert store.read_value(PATH) == value_for(1)


def test_destroy_wipes_the_value_from_the_file(db: Path) -> None:
    with LocalStore(db) as store:
        publish(store, 1)
        store.set_state(PATH, "v1", VersionState.RETIRED, VersionState.PENDING, T1)
        store.set_state(PATH, "v1", VersionState.DESTROYED, VersionState.RETIRED, T2)
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT value FROM versions").fetchall() == [(None,)]
        # Nothing but the value column holds it.
        assert raw.execute(
            "SELECT count(*) FROM versions WHERE meta LIKE '%SECRET%'"
        ).fetchone() == (0,)
    raw.close()
    assert value_for(1).encode() not in db.read_bytes()


def test_rotation_history_keeps_replaced_records(db: Path) -> None:
    with LocalStore(db) as store:
        first = make_rotation("r1")
        revision = store.save_rotation(PATH, first, 0)
        revision = store.save_rotation(PATH, first, revision)  # same rotation: no history
        second = make_rotation("r2")
        revision = store.save_rotation(PATH, second, revision)
        store.save_rotation(PATH, make_rotation("r3"), revision)
        assert store.rotation_history(PATH) == [first, second]
        assert store.rotation_history("partners/other") == []


def test_storage_refuses_two_current_versions(db: Path) -> None:
    with LocalStore(db) as store:
        publish(store, 1)
        publish(store, 2)
        store.promote(PATH, "v1", None, T1)
    with sqlite3.connect(db) as raw, pytest.raises(sqlite3.IntegrityError):
        raw.execute("UPDATE versions SET state = 'current' WHERE version_id = 'v2'")
    raw.close()


def test_schema_version_is_recorded(db: Path) -> None:
    LocalStore(db).close()
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    raw.close()


# -- two connections on one file (as two processes would) ----------------------


def test_two_stores_see_each_other(db: Path) -> None:
    with LocalStore(db) as a, LocalStore(db) as b:
        publish(a, 1)
        b.promote(PATH, "v1", None, T1)
        assert a.read_value(PATH) == value_for(1)


def test_lock_excludes_across_connections(db: Path) -> None:
    with LocalStore(db) as a, LocalStore(db) as b:
        lease = a.acquire_lock(PATH, "host-a", TTL, T0)
        with pytest.raises(LockedError, match="host-a"):
            b.acquire_lock(PATH, "host-b", TTL, T1)
        taken = b.acquire_lock(PATH, "host-b", TTL, T1, steal_token=lease.token)
        with pytest.raises(ConflictError):
            a.release_lock(lease)
        b.release_lock(taken)


def test_compare_and_set_across_connections(db: Path) -> None:
    with LocalStore(db) as a, LocalStore(db) as b:
        revision = a.save_rotation(PATH, make_rotation("r1"), 0)
        b.save_rotation(PATH, make_rotation("r2"), revision)
        with pytest.raises(ConflictError):
            a.save_rotation(PATH, make_rotation("r1"), revision)
        publish(a, 1)
        a.promote(PATH, "v1", None, T1)
        publish(b, 2)
        publish(a, 3)
        b.promote(PATH, "v2", "v1", T2)
        with pytest.raises(ConflictError):
            a.promote(PATH, "v3", "v1", T2)
        assert_invariant_one_current(a, PATH)


def test_a_busy_database_is_retryable(db: Path) -> None:
    LocalStore(db).close()
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        with LocalStore(db, busy_timeout=0.05) as store:
            with pytest.raises(StoreUnavailableError) as info:
                store.acquire_lock(PATH, "host-a", TTL, T0)
            assert info.value.retryable
            assert "lock" in str(info.value)
            assert store.versions(PATH) == []  # WAL: readers are not blocked
    finally:
        raw.execute("ROLLBACK")
        raw.close()


def _race_for_the_lock(db: str, holder: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        with LocalStore(Path(db), busy_timeout=30) as store:
            lease = store.acquire_lock(PATH, holder, TTL, T0)
            results.put(("won", holder, lease.token))
    except LockedError as exc:
        results.put(("locked", holder, exc.holder))
    except Exception as exc:
        results.put(("error", holder, repr(exc)))


def test_processes_race_for_the_lock(db: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    # The file does not exist yet: creating the schema is part of the race.
    procs = [
        ctx.Process(target=_race_for_the_lock, args=(str(db), f"p{i}", barrier, results))
        for i in range(8)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [o for o in outcomes if o[0] == "error"] == []
    winners = [o for o in outcomes if o[0] == "won"]
    assert len(winners) == 1
    assert {o[2] for o in outcomes if o[0] == "locked"} == {winners[0][1]}
    assert _mode(db) == 0o600


# -- opening and configuration ---------------------------------------------------


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match="nope"):
        LocalStore(missing / "state.db")
    assert not missing.exists()


def test_configured_path_with_a_missing_directory(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    with pytest.raises(ConfigError) as info:
        LocalStore.from_config({"path": "typo/state.db"}, ctx)
    assert "[stores.local] path: directory" in str(info.value)
    assert "typo" in str(info.value)
    assert info.value.exit_code == 2
    assert not (tmp_path / "conf").exists()


def test_configured_relative_path_resolves_against_base_dir(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    with LocalStore.from_config({"path": "my.db"}, _ctx(tmp_path)) as store:
        assert store.file == tmp_path / "conf" / "my.db"
    absolute = tmp_path / "abs.db"
    with LocalStore.from_config({"path": str(absolute)}, _ctx(tmp_path)) as store:
        assert store.file == absolute
    assert _mode(absolute) == 0o600


def test_default_path_creates_the_state_dir(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    with LocalStore.from_config({}, ctx) as store:
        assert store.file == ctx.state_dir / "state.db"
    assert _mode(ctx.state_dir) == 0o700
    assert _mode(store.file) == 0o600


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"path": 3}, "path: expected str"),
        ({"path": " "}, "path: must not be empty"),
        ({"file": "x.db"}, "file: unknown key"),
        ({"path": "."}, "is a directory"),
    ],
)
def test_bad_settings(tmp_path: Path, settings: dict[str, object], message: str) -> None:
    (tmp_path / "conf").mkdir()
    with pytest.raises(ConfigError, match=message):
        LocalStore.from_config(settings, _ctx(tmp_path))


def test_a_garbage_file_is_a_clean_error(db: Path) -> None:
    db.write_bytes(b"this is not a database at all, " * 100)
    with pytest.raises(StoreError) as info:
        LocalStore(db)
    message = str(info.value)
    assert "\n" not in message
    assert str(db) in message
    assert "not an SQLite database" in message


def test_a_foreign_database_is_refused(db: Path) -> None:
    with sqlite3.connect(db) as raw:
        raw.execute("CREATE TABLE other (x)")
    raw.close()
    with pytest.raises(StoreError, match="not a rotatectl store"):
        LocalStore(db)
    with sqlite3.connect(db) as raw:  # and left as it was
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    raw.close()


def test_a_newer_schema_is_refused(db: Path) -> None:
    LocalStore(db).close()
    with sqlite3.connect(db) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(StoreError, match="newer"):
        LocalStore(db)


def test_a_closed_store_raises_store_error(db: Path) -> None:
    store = LocalStore(db)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.versions(PATH)


class TestLocalAtomicRecord(LocalFixture, AtomicRecordContract):
    pass
