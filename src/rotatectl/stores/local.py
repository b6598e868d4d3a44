"""The embedded default store: one SQLite file, shared safely by several processes.

Every read-modify-write runs in ``BEGIN IMMEDIATE``, which takes SQLite's write
lock before reading, so each compare-and-set is atomic across processes, not
just threads. WAL mode lets readers proceed while a writer works.

The rules that decide what a call may change (publish idempotency, the promote
compare-and-set, the allowed state moves, lease takeover) are the pure
``plan_*`` functions of :mod:`rotatectl.stores.rules`; the in-memory fake uses
the same ones, so the two cannot drift apart.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .. import secretformat
from ..errors import (
    ConfigError,
    ConflictError,
    CorruptRecordError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
    StoreUnavailableError,
)
from ..files import denied, make_private_dirs, reason
from ..machine import current_version
from ..model import AcceptedKey, Lease, Rotation, Version, VersionState, iso, parse_iso
from ..ports import StoreBase, VersionChange, dispatch
from ..registry import AdapterContext, check_settings
from .rules import (
    SINGLE_COPY,
    LockRow,
    accepted,
    check_has_value,
    check_path,
    check_revision,
    landed,
    lost_values,
    plan_acquire,
    plan_promote,
    plan_publish,
    plan_release,
    plan_renew,
    plan_set_state,
)

SCHEMA_VERSION = 1
OWN_WRITE_AGE = 20.0  # seconds :meth:`LocalStore.state` trusts what it wrote under a lease
DEFAULT_FILENAME = "state.db"
_SIDES = ("-wal", "-shm")  # the files SQLite keeps beside the store in WAL mode
_IN_CHUNK = 500  # paths per "IN (...)" query: well below SQLite's bound-parameter limit

# Separate statements, not executescript(): that would COMMIT our transaction.
_SCHEMA = (
    """CREATE TABLE versions (
        path TEXT NOT NULL,
        version_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        state TEXT NOT NULL,
        meta TEXT NOT NULL,
        value TEXT,
        PRIMARY KEY (path, version_id),
        UNIQUE (path, number)
    )""",
    # Invariant 1 enforced by the storage itself: at most one current per path.
    "CREATE UNIQUE INDEX versions_one_current ON versions (path) WHERE state = 'current'",
    """CREATE TABLE rotations (
        path TEXT PRIMARY KEY,
        revision INTEGER NOT NULL,
        rotation_id TEXT NOT NULL,
        record TEXT NOT NULL
    )""",
    """CREATE TABLE rotation_history (
        path TEXT NOT NULL,
        rotation_id TEXT NOT NULL,
        revision INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (path, rotation_id)
    )""",
    # A released lock keeps its row (holder NULL) so the next token is still larger.
    """CREATE TABLE locks (
        path TEXT PRIMARY KEY,
        holder TEXT,
        token INTEGER NOT NULL,
        acquired TEXT,
        expires TEXT
    )""",
)


def _loads(text: str, kind: str) -> Any:
    """JSON from a row; CorruptRecordError when someone else wrote it."""
    try:
        return json.loads(text)
    except (ValueError, TypeError) as exc:
        raise CorruptRecordError(f"a {kind} record is not what rotatectl wrote: not JSON") from exc


def ensure_default_dir(directory: Path, hint: str = "") -> None:
    """Create the default state directory if missing, with any missing parent, each
    0700 whatever the umask. Only for default paths: a configured one must exist.

    ConfigError naming the directory that could not be created, and ``hint`` (what
    to set instead, e.g. "set ROTATECTL_STATE_DIR to a directory this user can write").
    """
    try:
        make_private_dirs(directory)
    except OSError as exc:
        failed = Path(exc.filename) if exc.filename else directory
        what = "it" if failed == directory else str(failed)
        tail = f"; {hint}" if hint else ""
        raise ConfigError(
            f"state directory {directory}: cannot create {what}: {reason(exc)}{tail}"
        ) from exc


def _unsearchable(exc: OSError) -> str:
    """The words for a store path that cannot even be looked at (a directory on the
    way this user cannot search)."""
    advice = "; give this user access to every directory on its path" if denied(exc) else ""
    return f"cannot look at it: {reason(exc)}{advice}"


def _is_busy(exc: sqlite3.Error) -> bool:
    """True when another connection holds the lock (worth a retry)."""
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)


def _create_private(file: Path) -> None:
    """Create ``file`` 0600 if it does not exist; an existing file is left alone.

    ConfigError for a dangling symbolic link: SQLite would create its target with the
    umask's mode (0644), holding key values.
    """
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if file.is_symlink() and not file.exists():
            raise ConfigError(
                f"{file}: a symbolic link to {os.readlink(file)}, which does not exist; "
                "rotatectl does not create key storage through a dangling link (create "
                "the target 0600, or point the store at another path)"
            ) from None
        return
    try:
        os.fchmod(fd, 0o600)  # exact mode, whatever the umask
    finally:
        os.close(fd)


class LocalStore(StoreBase):
    FEATURES = frozenset(
        {"state", "batched-reads", "drift", "history", "rolling-window", "atomic-record"}
    )
    read_batch = 1 << 30  # one read transaction takes any number (and no round trip)

    """A SecretStore in one SQLite file (0600). Thread-safe; process-safe via SQLite."""

    def __init__(self, path: Path, *, busy_timeout: float = 5.0, elsewhere: str = "") -> None:
        """Open the store file ``path``, creating it 0600 when missing.

        Raises ConfigError (the message names the path and what to change) when its
        directory is missing, or this user cannot create the file, read and write it,
        or create the -wal and -shm files SQLite keeps beside it; ``elsewhere`` is
        added to the advice when the file cannot be created ("set ROTATECTL_STATE_DIR
        to a directory this user can write"). StoreError for a file that is not a
        rotatectl store, StoreUnavailableError when it cannot be opened otherwise.
        """
        self.file = Path(path)
        self._busy_timeout = busy_timeout
        try:
            if not self.file.parent.is_dir():
                raise ConfigError(f"{self.file}: directory {self.file.parent} does not exist")
            if self.file.is_dir():
                raise ConfigError(f"{self.file} is a directory, not a store file")
        except OSError as exc:
            raise ConfigError(f"local store {self.file}: {_unsearchable(exc)}") from exc
        self._mutex = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        # Leases this object holds (path -> token), and the state its last write under
        # one left (path -> versions, rotation, revision, when): see :meth:`state`.
        self._leases: dict[str, int] = {}
        self._own: dict[str, tuple[list[Version], Rotation | None, int, float]] = {}
        try:
            _create_private(self.file)
        except OSError as exc:
            if not denied(exc) and exc.errno != errno.EROFS:  # a full disk, an I/O error
                raise StoreUnavailableError(f"{self.file}: cannot create: {reason(exc)}") from exc
            advice = [f"give this user write access to {self.file.parent}"] if denied(exc) else []
            advice += [elsewhere] if elsewhere else []
            tail = f"; {', or '.join(advice)}" if advice else ""
            raise ConfigError(
                f"local store {self.file}: cannot create it: {reason(exc)}{tail}"
            ) from exc
        try:
            # SQLite gives the -wal/-shm sidecars the main file's permissions.
            self._conn = sqlite3.connect(
                self.file,
                timeout=busy_timeout,  # SQLite's busy_timeout: wait for other writers
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # guarded by self._mutex
            )
            self._init_schema()
        except (OSError, sqlite3.Error, StoreError) as exc:
            self.close()
            problem = self._access_problem()
            if problem is not None:
                raise ConfigError(f"local store {self.file}: {problem}") from exc
            if isinstance(exc, StoreError):
                raise
            raise StoreUnavailableError(f"{self.file}: cannot open: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _access_problem(self) -> str | None:
        """Why this user cannot open the store, with what to change; None when the
        file, its side files and its directory are accessible (the cause is another).
        Only asked after SQLite failed, to word its "unable to open database file"."""
        for file in (self.file, *(self.file.with_name(self.file.name + s) for s in _SIDES)):
            try:
                os.close(os.open(file, os.O_RDWR))
            except FileNotFoundError:
                continue  # a side file SQLite has not made yet
            except OSError as exc:
                what = "it" if file == self.file else str(file)
                advice = f"; give this user read and write access to {what}" if denied(exc) else ""
                return f"cannot open {what} for reading and writing: {reason(exc)}{advice}"
        directory = self.file.parent
        if not os.access(directory, os.W_OK | os.X_OK):
            return (
                f"cannot open it: {directory} is not writable by this user, and SQLite "
                "keeps the store's -wal and -shm files there; give this user write access "
                f"to {directory}"
            )
        return None

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Build from a ``[stores.NAME]`` table: ``path`` (optional)."""
        check_settings(settings, ctx, {"path": str})
        raw = settings.get("path")
        if raw is None:
            file = ctx.state_dir / DEFAULT_FILENAME
            ensure_default_dir(file.parent, ctx.state_hint)
            elsewhere = ctx.state_hint
        else:
            if not raw.strip():
                raise ctx.error("path", "must not be empty")
            file = Path(raw).expanduser()
            if not file.is_absolute():
                file = ctx.base_dir / file
            # Never create a configured directory: a typo must not start an empty store.
            try:
                if not file.parent.is_dir():
                    raise ctx.error("path", f"directory {file.parent} does not exist")
                if file.is_dir():
                    raise ctx.error("path", f"{file} is a directory")
            except OSError as exc:
                raise ctx.error("path", f"{file}: {_unsearchable(exc)}") from exc
            elsewhere = f"set path in [{ctx.table}] to a directory this user can write"
        return cls(file, elsewhere=elsewhere)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.file)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection. Safe to call twice."""
        with self._mutex:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -- plumbing ---------------------------------------------------------

    def _init_schema(self) -> None:
        with self._op("open", None) as conn:
            conn.execute("PRAGMA synchronous=FULL")  # a committed step survives power loss
            conn.execute("PRAGMA secure_delete=ON")  # a destroyed value is zeroed, not just freed
            if self._schema(conn) == SCHEMA_VERSION:
                return  # the common case takes no write lock
            self._enable_wal(conn)
        with self._op("open", None, write=True) as conn:
            if self._schema(conn) == 0:  # another process may have won the race
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch a new file to WAL (persistent in the file, so done once)."""
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                # A journal-mode change fails at once when another process has
                # the file open, without waiting on the busy timeout: retry here.
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _schema(self, conn: sqlite3.Connection) -> int:
        """The file's schema version; StoreError for a foreign or newer file."""
        # One statement, so both answers come from the same snapshot.
        found, tables = conn.execute(
            "SELECT (SELECT user_version FROM pragma_user_version),"
            " (SELECT count(*) FROM sqlite_master)"
        ).fetchone()
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"{self.file}: store schema {found} is newer than this rotatectl "
                f"supports ({SCHEMA_VERSION}); upgrade rotatectl"
            )
        if found == 0 and tables:
            raise StoreError(f"{self.file}: an SQLite database, but not a rotatectl store")
        return int(found)

    @contextmanager
    def _op(
        self, op: str, path: str | None, *, write: bool = False
    ) -> Iterator[sqlite3.Connection]:
        """Run one operation; ``write`` wraps it in a BEGIN IMMEDIATE transaction.

        A ``path`` must pass the rule every store applies (UsageError): rows are
        keyed by the whole path, so nothing collides here, but a name that another
        store refuses must not work in this one either.
        """
        if path is not None:
            check_path(path)
        with self._mutex:
            conn = self._conn
            if conn is None:
                raise StoreError(f"{self._where(op, path)}: the store is closed")
            try:
                if write:
                    conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    if write:
                        conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        with suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._translate(exc, op, path) from exc

    @contextmanager
    def _write(self, op: str, path: str) -> Iterator[sqlite3.Connection]:
        """A write transaction on ``path``. While this object holds the path's lease,
        the state the write leaves is read back in the same transaction and kept for
        :meth:`state`; a failed write forgets it."""
        try:
            with self._op(op, path, write=True) as conn:
                yield conn
                held = path in self._leases
                if held:
                    left = (self._versions(conn, path), *self._rotation(conn, path))
            if held:
                self._own[path] = (*left, time.monotonic())
        except BaseException:
            self._own.pop(path, None)
            raise

    def _where(self, op: str, path: str | None) -> str:
        return f"local store {self.file}: {op}" + (f" {path}" if path is not None else "")

    def _translate(self, exc: sqlite3.Error, op: str, path: str | None) -> StoreError:
        # SQLite messages name tables and columns, never bound values.
        name = getattr(exc, "sqlite_errorname", "")
        text = str(exc)
        where = self._where(op, path)
        if _is_busy(exc):
            return StoreUnavailableError(f"{where}: the database is busy; try again")
        if name.startswith("SQLITE_NOTADB") or "not a database" in text:
            return StoreError(f"{self.file}: not an SQLite database (not a rotatectl store)")
        if name.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")):
            return PermissionDeniedError(f"{where}: {text}")
        if isinstance(exc, sqlite3.IntegrityError):
            return ConflictError(f"{where}: concurrent change ({text})")
        return StoreError(f"{where} failed: {text}")

    @staticmethod
    def _versions(conn: sqlite3.Connection, path: str) -> list[Version]:
        rows = conn.execute(
            "SELECT meta FROM versions WHERE path = ? ORDER BY number", (path,)
        ).fetchall()
        return [Version.from_dict(_loads(meta, "version")) for (meta,) in rows]

    @staticmethod
    def _update(conn: sqlite3.Connection, path: str, version: Version) -> None:
        conn.execute(
            "UPDATE versions SET state = ?, meta = ? WHERE path = ? AND version_id = ?",
            (version.state.value, json.dumps(version.to_dict()), path, version.version_id),
        )

    @staticmethod
    def _lock_row(conn: sqlite3.Connection, path: str) -> LockRow | None:
        row = conn.execute(
            "SELECT holder, token, acquired, expires FROM locks WHERE path = ?", (path,)
        ).fetchone()
        if row is None:
            return None
        return LockRow(row[0], row[1], parse_iso(row[2]), parse_iso(row[3]))

    @staticmethod
    def _put_lock(conn: sqlite3.Connection, path: str, holder: str | None, lease: Lease) -> None:
        conn.execute(
            "INSERT INTO locks (path, holder, token, acquired, expires) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (path) DO UPDATE SET holder = excluded.holder,"
            " token = excluded.token, acquired = excluded.acquired, expires = excluded.expires",
            (path, holder, lease.token, iso(lease.acquired), iso(lease.expires)),
        )

    # -- SecretStore --------------------------------------------------------

    def list_paths(self) -> list[str]:
        with self._op("list", None) as conn:
            rows = conn.execute(
                "SELECT path FROM versions UNION SELECT path FROM rotations"
            ).fetchall()
        return sorted(path for (path,) in rows)

    def versions(self, path: str) -> list[Version]:
        with self._op("read versions of", path) as conn:
            return self._versions(conn, path)

    def snapshot_many(
        self, paths: Sequence[str], *, locks: bool = True
    ) -> dict[str, tuple[list[Version], Rotation | None, int, bool]]:
        """Per path: (versions, rotation, revision, locked) from one read transaction.

        ``versions`` and ``(rotation, revision)`` are what :meth:`versions` and
        :meth:`load_rotation` return; ``locked`` is whether a holder has its lease
        lock. For ``status`` and a no-op ``run`` over many credentials: one
        snapshot instead of several reads per credential. ``locks`` is ignored:
        the lock rows come with the same transaction.
        """
        wanted = list(dict.fromkeys(paths))
        versions: dict[str, list[Version]] = {p: [] for p in wanted}
        rotations: dict[str, tuple[Rotation | None, int]] = {}
        locked: set[str] = set()
        with self._op("read snapshot of", None) as conn:
            conn.execute("BEGIN")  # deferred: a consistent read snapshot, no write lock
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                for path, meta in conn.execute(
                    f"SELECT path, meta FROM versions WHERE path IN ({marks})"  # noqa: S608
                    " ORDER BY path, number",
                    chunk,
                ):
                    versions[path].append(Version.from_dict(_loads(meta, "version")))
                for path, revision, record in conn.execute(
                    f"SELECT path, revision, record FROM rotations WHERE path IN ({marks})",  # noqa: S608
                    chunk,
                ):
                    rotation = Rotation.from_dict(_loads(record, "rotation"))
                    rotations[path] = (rotation, int(revision))
                locked.update(
                    path
                    for (path,) in conn.execute(
                        f"SELECT path FROM locks WHERE holder IS NOT NULL AND path IN ({marks})",  # noqa: S608
                        chunk,
                    )
                )
            conn.execute("COMMIT")
        return {p: (versions[p], *rotations.get(p, (None, 0)), p in locked) for p in wanted}

    def publish(self, path: str, version: Version, value: str) -> None:
        with self._write("publish", path) as conn:
            self._publish_in(conn, path, version, value)

    def _publish_in(
        self, conn: sqlite3.Connection, path: str, version: Version, value: str
    ) -> None:
        new = plan_publish(path, self._versions(conn, path), version)
        if new is not None:
            conn.execute(
                "INSERT INTO versions (path, version_id, number, state, meta, value)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    path,
                    new.version_id,
                    new.number,
                    new.state.value,
                    json.dumps(new.to_dict()),
                    value,
                ),
            )

    def promote(
        self, path: str, version_id: str, expected_current: str | None, at: datetime
    ) -> None:
        with self._write("promote", path) as conn:
            self._promote_in(conn, path, version_id, expected_current, at)

    def _promote_in(
        self,
        conn: sqlite3.Connection,
        path: str,
        version_id: str,
        expected_current: str | None,
        at: datetime,
    ) -> None:
        changed = plan_promote(path, self._versions(conn, path), version_id, expected_current, at)
        if changed:
            has_value = conn.execute(
                "SELECT 1 FROM versions WHERE path = ? AND version_id = ? AND value IS NOT NULL",
                (path, version_id),
            ).fetchone()
            check_has_value(path, version_id, has_value is not None)
        for version in changed:
            self._update(conn, path, version)

    def set_state(
        self,
        path: str,
        version_id: str,
        state: VersionState,
        expected: VersionState,
        at: datetime,
    ) -> None:
        with self._write(f"set {state} on", path) as conn:
            self._set_state_in(conn, path, version_id, state, expected, at)

    def _set_state_in(
        self,
        conn: sqlite3.Connection,
        path: str,
        version_id: str,
        state: VersionState,
        expected: VersionState,
        at: datetime,
    ) -> None:
        new = plan_set_state(path, self._versions(conn, path), version_id, state, expected, at)
        if new is not None:
            self._update(conn, path, new)
            if new.state is VersionState.DESTROYED:
                conn.execute(
                    "UPDATE versions SET value = NULL WHERE path = ? AND version_id = ?",
                    (path, version_id),
                )

    def commit(
        self, path: str, change: VersionChange, rotation: Rotation, expected_revision: int
    ) -> int:
        """SecretStore.commit: the change and the record in one transaction. Repeated
        after it landed (the same change and record), it changes nothing."""
        with self._write("commit", path) as conn:
            dispatch(
                change,
                partial(self._publish_in, conn, path),
                partial(self._promote_in, conn, path),
                partial(self._set_state_in, conn, path),
            )
            if landed(*self._rotation(conn, path), rotation, expected_revision):
                return expected_revision + 1
            return self._save_in(conn, path, rotation, expected_revision)

    # -- drift: the generic value check covers this store's only layout ----------

    def drift(self, path: str) -> list[str]:
        """Nothing beyond the value check: the file has no labels or fields to move."""
        return []

    def adopt(self, path: str, at: datetime) -> None:
        """After an adoption: a version other than the current one whose value is not
        the one it was recorded with (the value changed in place, then was adopted as a
        new version) has lost its value: wiped, so it is never handed out again. It
        stays accepted by its fingerprint until it is retired; it cannot be promoted."""
        with self._write("adopt", path) as conn:
            values = dict(
                conn.execute(
                    "SELECT version_id, value FROM versions WHERE path = ? "
                    "AND state != 'current' AND value IS NOT NULL",
                    (path,),
                ).fetchall()
            )
            for version_id in lost_values(self._versions(conn, path), values):
                conn.execute(
                    "UPDATE versions SET value = NULL WHERE path = ? AND version_id = ?",
                    (path, version_id),
                )
            values.clear()

    def restore(self, path: str, at: datetime, value: str | None = None) -> None:
        """Put ``value`` (the current version's, from another copy) back as the current
        value. Without one: ConflictError, this store keeps a single copy."""
        with self._write("restore", path) as conn:
            current = current_version(self._versions(conn, path))
            if value is None or current is None:
                raise ConflictError(f"{path}: {SINGLE_COPY}")
            if not secretformat.matches(current, value):
                raise ConflictError(f"{path}: the value to restore is not v{current.number}'s")
            conn.execute(
                "UPDATE versions SET value = ? WHERE path = ? AND version_id = ?",
                (value, path, current.version_id),
            )

    def current_values_many(self, paths: Sequence[str]) -> dict[str, str | None]:
        """Path -> the current version's value (None: none, or destroyed), in one read
        transaction: the drift check of ``status`` over many credentials."""
        wanted = list(dict.fromkeys(paths))
        found: dict[str, str | None] = dict.fromkeys(wanted)
        with self._op("read current values", None) as conn:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                found.update(
                    conn.execute(
                        f"SELECT path, value FROM versions WHERE state = 'current'"  # noqa: S608
                        f" AND path IN ({marks})",
                        chunk,
                    )
                )
        return found

    def read_value(self, path: str, version_id: str | None = None) -> str:
        with self._op("read value of", path) as conn:
            if version_id is None:
                row = conn.execute(
                    "SELECT version_id, value FROM versions WHERE path = ? AND state = 'current'",
                    (path,),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT version_id, value FROM versions WHERE path = ? AND version_id = ?",
                    (path, version_id),
                ).fetchone()
        if row is None:
            what = f"version {version_id}" if version_id else "current version"
            raise NotFoundError(f"{path}: no {what}")
        if row[1] is None:
            raise NotFoundError(f"{path}: the value of version {row[0]} was destroyed")
        value: str = row[1]
        return value

    def accepted_keys(self, path: str, credential: str) -> list[AcceptedKey]:
        return accepted(self.versions(path), credential)

    def load_rotation(self, path: str) -> tuple[Rotation | None, int]:
        with self._op("load rotation of", path) as conn:
            return self._rotation(conn, path)

    @staticmethod
    def _rotation(conn: sqlite3.Connection, path: str) -> tuple[Rotation | None, int]:
        row = conn.execute(
            "SELECT revision, record FROM rotations WHERE path = ?", (path,)
        ).fetchone()
        if row is None:
            return None, 0
        return Rotation.from_dict(_loads(row[1], "rotation")), int(row[0])

    def state(self, path: str) -> tuple[list[Version], Rotation | None, int]:
        """StateReader.state: versions and rotation record in one read transaction.

        No transaction at all when this object wrote them itself, under the path's
        lease, less than OWN_WRITE_AGE ago: the lease's holder is the only writer (an
        emergency that takes the lease over makes this holder's next write fail its
        compare-and-set), and the runner's lease lasts minutes.
        """
        own = self._own.get(path)
        if own is not None and path in self._leases and time.monotonic() - own[3] < OWN_WRITE_AGE:
            return list(own[0]), own[1], own[2]
        with self._op("read state of", path) as conn:
            conn.execute("BEGIN")  # deferred: one consistent snapshot, no write lock
            versions = self._versions(conn, path)
            rotation, revision = self._rotation(conn, path)
            conn.execute("COMMIT")
        return versions, rotation, revision

    def save_rotation(self, path: str, rotation: Rotation, expected_revision: int) -> int:
        with self._write("save rotation of", path) as conn:
            return self._save_in(conn, path, rotation, expected_revision)

    @staticmethod
    def _save_in(
        conn: sqlite3.Connection, path: str, rotation: Rotation, expected_revision: int
    ) -> int:
        row = conn.execute(
            "SELECT revision, rotation_id, record FROM rotations WHERE path = ?", (path,)
        ).fetchone()
        revision = int(row[0]) if row else 0
        check_revision(path, revision, expected_revision)
        if row is not None and row[1] != rotation.id:
            conn.execute(
                "INSERT OR REPLACE INTO rotation_history (path, rotation_id, revision, record)"
                " VALUES (?, ?, ?, ?)",
                (path, row[1], revision, row[2]),
            )
        conn.execute(
            "INSERT INTO rotations (path, revision, rotation_id, record) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (path) DO UPDATE SET revision = excluded.revision,"
            " rotation_id = excluded.rotation_id, record = excluded.record",
            (path, revision + 1, rotation.id, json.dumps(rotation.to_dict())),
        )
        return revision + 1

    def rotation_history(self, path: str) -> list[Rotation]:
        """Earlier rotation records of ``path`` (replaced by a newer rotation), oldest first."""
        with self._op("read rotation history of", path) as conn:
            rows = conn.execute(
                "SELECT record FROM rotation_history WHERE path = ? ORDER BY revision", (path,)
            ).fetchall()
        return [Rotation.from_dict(_loads(record, "rotation")) for (record,) in rows]

    def acquire_lock(
        self,
        path: str,
        holder: str,
        ttl: timedelta,
        now: datetime,
        steal_token: int | None = None,
    ) -> Lease:
        with self._op("lock", path, write=True) as conn:
            lease = plan_acquire(path, self._lock_row(conn, path), holder, ttl, now, steal_token)
            self._put_lock(conn, path, holder, lease)
        self._own.pop(path, None)
        self._leases[path] = lease.token
        return lease

    def renew_lock(self, lease: Lease, ttl: timedelta, now: datetime) -> Lease:
        path = lease.credential
        try:
            with self._op("renew lock of", path, write=True) as conn:
                renewed = plan_renew(self._lock_row(conn, path), lease, ttl, now)
                self._put_lock(conn, path, renewed.holder, renewed)
        except BaseException:
            self._forget(path)
            raise
        return renewed

    def release_lock(self, lease: Lease) -> None:
        path = lease.credential
        self._forget(path)
        with self._op("release lock of", path, write=True) as conn:
            if plan_release(self._lock_row(conn, path), lease):
                conn.execute("UPDATE locks SET holder = NULL WHERE path = ?", (path,))

    def _forget(self, path: str) -> None:
        """No longer the holder of ``path``'s lease: nothing remembered is trusted."""
        self._leases.pop(path, None)
        self._own.pop(path, None)
