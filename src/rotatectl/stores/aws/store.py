"""The Secrets Manager store itself: :class:`SecretsManagerStore`.

The SecretStore methods, the reads (one record with GetSecretValue, many with
BatchGetSecretValue, paths with ListSecrets), the key secret's labels and the
record writes (a compare-and-set, :mod:`rotatectl.stores._cas`; the document and
its write rule: :mod:`rotatectl.stores.aws.record`). Where things are kept:
:mod:`rotatectl.stores.aws.layout`. Drift is in :mod:`rotatectl.stores.aws.drift`,
the access check in :mod:`rotatectl.stores.aws.access`.

The store remembers the document it last read with :meth:`state` or the
batched reads, or wrote itself, for :data:`RECORD_MAX_AGE`: its own writes
start from it (a stale one only loses the race and is re-read), and so do
the reads a runner step makes after its :meth:`state` read (the value's
VersionId, the drift check). The public reads (:meth:`versions`,
:meth:`load_rotation`, :meth:`accepted_keys`) always ask AWS.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Self

from ...aws_common import AwsConnection, AwsExpected
from ...errors import ConflictError, NotFoundError, RotatectlError, StoreError, UsageError
from ...model import AcceptedKey, Rotation, Version, VersionState
from ...ports import StoreBase, VersionChange, dispatch
from ...registry import AdapterContext, check_settings
from .._cas import RECORD_MAX_AGE, CasLost, RecordCache, mutate
from .._record import RecordLease
from ..rules import (
    accepted,
    plan_promote,
    plan_publish,
    plan_set_state,
)
from .access import AccessMixin
from .drift import DriftMixin
from .layout import (
    _NAME,
    _TOKEN_NS,
    _VERSION_LABEL,
    CURRENT,
    PENDING,
    PREVIOUS,
    RECORD_SUFFIX,
    ROLE_KEY,
    ROLE_RECORD,
    TAG_PATH,
    TAG_ROLE,
    aws_version_id,
    desired_labels,
    key_secret_name,
    label_holders,
    secret_tags,
    version_label,
)
from .record import HISTORY_KEEP, MAX_RECORD_BYTES, _Record

OWN_WRITE_AGE = 20.0  # seconds :meth:`state` trusts a record this store wrote under a lease
BATCH_SIZE = 20  # BatchGetSecretValue accepts at most 20 secret ids
LIST_PAGE_SIZE = 100  # ListSecrets maximum


_CasLost = CasLost  # the name the tests and earlier code know


def _moved(desc: Mapping[str, Any], want: Mapping[str, str | None]) -> dict[str, Any]:
    """``desc`` with each label of ``want`` on its version only (None: on none)."""
    stages: dict[str, list[str]] = {
        vid: [label for label in labels if label not in want]
        for vid, labels in (desc.get("VersionIdsToStages") or {}).items()
    }
    for label, target in want.items():
        if target is not None:
            stages.setdefault(target, []).append(label)
    return {**desc, "VersionIdsToStages": stages}


class SecretsManagerStore(DriftMixin, AccessMixin, RecordLease, StoreBase):
    FEATURES = frozenset(
        {
            "state",
            "batched-reads",
            "drift",
            "history",
            "access-check",
            "rolling-window",
            "atomic-record",
        }
    )

    """A SecretStore in AWS Secrets Manager (the layout: :mod:`rotatectl.stores.aws`).

    Raises only rotatectl errors: PermissionDeniedError naming the denied
    action, NotFoundError, StoreUnavailableError (retryable: throttling, 5xx,
    unreachable endpoint), ConflictError for lost compare-and-sets and
    out-of-band label moves, StoreError otherwise.
    """

    # A VersionId's value never changes in Secrets Manager: where AWSCURRENT is
    # (checked by drift) proves the current value, so drift checks do not read it.
    immutable_versions = True
    read_batch = BATCH_SIZE  # records a BatchGetSecretValue call reads

    def __init__(
        self, conn: AwsConnection, *, prefix: str = "", kms_key_id: str | None = None
    ) -> None:
        self.conn = conn
        self.prefix = prefix
        self.kms_key_id = kms_key_id
        # path -> (record, the VersionId it was read from, whether written here)
        self._known: RecordCache[str, tuple[_Record, str | None, bool]] = RecordCache(
            RECORD_MAX_AGE
        )
        # key secret name -> (the drift check's DescribeSecret answer, time.monotonic()),
        # for the publish that follows it; dropped on any write to the secret
        self._described: dict[str, tuple[dict[str, Any] | None, float]] = {}
        # What a label sync left (predicted), for the retire that follows it (_kept).
        self._synced: dict[str, tuple[dict[str, Any], float]] = {}

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings (all optional): ``region``, ``profile``, ``endpoint_url``,
        ``max_attempts``, ``connect_timeout``, ``read_timeout`` (see
        :mod:`rotatectl.aws_common`), ``prefix`` (prepended to every secret
        name, e.g. ``"rotatectl/"``) and ``kms_key_id`` (for secrets it creates).
        The standard AWS environment variables and profiles apply.
        """
        from ...aws_common import SETTINGS

        check_settings(settings, ctx, {**SETTINGS, "prefix": str, "kms_key_id": str})
        prefix = settings.get("prefix", "")
        if prefix and not _NAME.fullmatch(prefix):
            raise ctx.error("prefix", "use only A-Z a-z 0-9 / _ + = . @ -")
        kms = settings.get("kms_key_id")
        if kms is not None and not kms.strip():
            raise ctx.error("kms_key_id", "must not be empty")
        conn = AwsConnection.from_settings(settings, ctx, kind="store")
        return cls(conn, prefix=prefix, kms_key_id=kms)

    def __repr__(self) -> str:
        return f"SecretsManagerStore(region={self.conn.region!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        """Close the HTTP connections. Safe to call twice."""
        self.conn.close()

    # -- names and calls ------------------------------------------------------

    def secret_name(self, path: str) -> str:
        """The key secret's name for ``path`` (:func:`~.layout.key_secret_name`).

        StoreError for a name Secrets Manager refuses; UsageError for a path the
        rule of every store refuses (:func:`~rotatectl.stores.rules.check_path`),
        such as ``svc/a/.rotatectl``, the record secret of ``svc/a``.
        """
        return key_secret_name(self.prefix, path)

    def record_name(self, path: str) -> str:
        """The record secret's name for ``path``."""
        return self.secret_name(path) + RECORD_SUFFIX

    def _where(self, name: str) -> str:
        return f"secret {name} ({self.conn.region})"

    def _sm(
        self, method: str, name: str, expect: frozenset[str] | set[str] = frozenset(), **params: Any
    ) -> dict[str, Any]:
        if not method.startswith(("get_", "describe_", "list_", "batch_get_")):
            self._described.pop(name, None)  # a write: its description is out of date
            self._synced.pop(name, None)
        return self.conn.call(
            "secretsmanager", method, where=self._where(name), expect=expect, **params
        )

    # -- the record secret ----------------------------------------------------

    def _read(self, path: str, *, remember: bool = False) -> tuple[_Record, str | None]:
        """The record and the VersionId it was read from (None: no record yet).

        ``remember``: keep it for :meth:`_recent` (reads a runner step builds on).
        """
        name = self.record_name(path)
        try:
            out = self._sm(
                "get_secret_value",
                name,
                expect={"ResourceNotFoundException"},
                SecretId=name,
                VersionStage=CURRENT,  # never rely on the default version (moto bug)
            )
        except AwsExpected:
            found: tuple[_Record, str | None] = (_Record(path), None)
        else:
            record = _Record.parse(path, str(out.get("SecretString", "")), self._where(name))
            found = (record, str(out["VersionId"]))
        if remember:
            self._remember(path, *found)
        return found

    def _remember(
        self, path: str, record: _Record, read_from: str | None, *, written: bool = False
    ) -> None:
        self._known.put(path, (record, read_from, written))

    def _recent(
        self, path: str, *, remember: bool = False
    ) -> tuple[tuple[_Record, str | None], bool]:
        """The remembered record if it is younger than RECORD_MAX_AGE, else a fresh
        read (kept if ``remember``); and whether it was the remembered one.

        Only a process that read with :meth:`state` or wrote the record has one
        remembered: a long-lived reader (an SDK client) always asks AWS.
        """
        known = self._known.get(path)
        if known is not None:
            return (known[0], known[1]), True
        return self._read(path, remember=remember), False

    def _token(self, name: str, seq: int) -> str:
        """The ClientRequestToken of the record version at ``seq``: the same on every host."""
        return str(uuid.uuid5(_TOKEN_NS, f"{name}\n{seq}"))

    def _commit(self, path: str, read_from: str | None, record: _Record) -> _Record:
        """Write ``record`` as the next version of the record secret; return it as written.

        ``record`` is built from the one read (``read_from``: the VersionId it came
        from, None when there was none) and still carries its ``seq``; it is
        written at ``seq + 1``. _CasLost when another writer wrote that sequence
        number first (see :mod:`rotatectl.stores.aws.record`).
        """
        name = self.record_name(path)
        record = replace(record, seq=record.seq + 1)
        body = record.to_json()
        if len(body.encode("utf-8")) > MAX_RECORD_BYTES:
            raise StoreError(
                f"{self._where(name)}: the record outgrew 64 KiB; destroy old versions"
            )
        token = self._token(name, record.seq)
        try:
            if read_from is None:
                params: dict[str, Any] = {
                    "Name": name,
                    "SecretString": body,
                    "ClientRequestToken": token,
                    "Description": f"rotatectl record of {path}: version metadata, rotation, lock",
                    "Tags": secret_tags(path, ROLE_RECORD),
                }
                if self.kms_key_id:
                    params["KmsKeyId"] = self.kms_key_id
                # Creation is itself a compare-and-set: it fails if the secret exists.
                self._sm("create_secret", name, expect={"ResourceExistsException"}, **params)
            else:
                # No VersionStages: AWS moves AWSCURRENT to the new version itself.
                self._sm(
                    "put_secret_value",
                    name,
                    expect={"ResourceExistsException"},
                    SecretId=name,
                    ClientRequestToken=token,
                    SecretString=body,
                )
        except AwsExpected as exc:
            self._known.forget(path)
            raise CasLost from exc
        self._remember(path, record, token, written=True)
        return record

    def _mutate(
        self,
        path: str,
        op: str,
        decide: Callable[[_Record], _Record | None],
        first: tuple[_Record, str | None] | None = None,
    ) -> _Record:
        """Read-decide-write with compare-and-set; re-decide on a lost race.

        ``decide`` returns the new record, or None for a no-op, or raises (e.g.
        ConflictError from the shared rules). It may run AWS side effects that
        are idempotent given the record it was handed. The first attempt starts
        from ``first`` (a record the caller has just read) or the remembered
        record; a no-op or an error decided on the remembered record is
        confirmed on a fresh read, so nothing is skipped or refused on the word
        of a stale copy.
        """
        start = (first, False) if first is not None else self._recent(path, remember=True)
        committed: _Record = mutate(
            start,
            lambda: self._read(path, remember=True),
            lambda base: decide(base[0]),
            lambda base, new: self._commit(path, base[1], replace(new, seq=base[0].seq)),
            lambda base: base[0],
            f"{self._where(self.record_name(path))}: {op}",
        )
        return committed

    # -- the key secret -------------------------------------------------------

    def _describe(
        self, path: str, *, keep: bool = False, reuse: bool = False
    ) -> dict[str, Any] | None:
        """DescribeSecret of the key secret (None: it does not exist). ``keep`` the
        answer (an absent secret too) for one later ``reuse`` within RECORD_MAX_AGE,
        unless this store writes to the secret in between (the drift check, then the
        publish, whose CreateSecret of an absent secret is itself a compare-and-set)."""
        name = self.secret_name(path)
        known = self._described.pop(name, None)
        if reuse and known is not None and time.monotonic() - known[1] < RECORD_MAX_AGE:
            return known[0]
        desc: dict[str, Any] | None
        try:
            desc = self._sm(
                "describe_secret", name, expect={"ResourceNotFoundException"}, SecretId=name
            )
        except AwsExpected:
            desc = None
        if keep:
            self._described[name] = (desc, time.monotonic())
        return desc

    def _kept(self, path: str) -> dict[str, Any] | None:
        """The description kept by the last label sync (used once, within
        RECORD_MAX_AGE); None: none."""
        known = self._synced.pop(self.secret_name(path), None)
        if known is None or time.monotonic() - known[1] >= RECORD_MAX_AGE:
            return None
        return known[0]

    def _secrets(self, tag_filters: list[dict[str, Any]], where: str) -> Iterator[dict[str, Any]]:
        """Every secret ListSecrets returns for ``tag_filters`` under this store's prefix,
        a page at a time: stop iterating and no further page is read."""
        filters = list(tag_filters)
        if self.prefix:
            filters.append({"Key": "name", "Values": [self.prefix]})
        params: dict[str, Any] = {"Filters": filters, "MaxResults": LIST_PAGE_SIZE}
        while True:
            page = self.conn.call("secretsmanager", "list_secrets", where=where, **params)
            yield from page.get("SecretList", [])
            token = page.get("NextToken")
            if not token:
                return
            params["NextToken"] = token

    def _listed(self, paths: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Key secrets' descriptions (their labels) by path, from ListSecrets; a path
        missing from it (eventually consistent, or deleted) is left out."""
        by_name = {self.secret_name(p): p for p in paths}
        found: dict[str, dict[str, Any]] = {}
        if not by_name:
            return found
        role = [
            {"Key": "tag-key", "Values": [TAG_ROLE]},
            {"Key": "tag-value", "Values": [ROLE_KEY]},
        ]
        where = f"secrets tagged {TAG_ROLE}={ROLE_KEY} ({self.conn.region})"
        for entry in self._secrets(role, where):
            path = by_name.get(str(entry.get("Name")))
            if path is not None and not entry.get("DeletedDate"):
                found[path] = {
                    **entry,
                    "VersionIdsToStages": entry.get("SecretVersionsToStages") or {},
                }
                if len(found) == len(by_name):
                    break
        return found

    def _check_key_secret(self, path: str, desc: Mapping[str, Any]) -> None:
        name = self.secret_name(path)
        tags = {t.get("Key"): t.get("Value") for t in desc.get("Tags", [])}
        if tags.get(TAG_PATH) != path or tags.get(TAG_ROLE) != ROLE_KEY:
            raise StoreError(
                f"{self._where(name)}: exists but is not a rotatectl key secret for {path!r} "
                f"(tags {TAG_PATH}={path}, {TAG_ROLE}={ROLE_KEY} missing); take it over as it "
                "is with `rotatectl check --adopt` (declare its format first), or use "
                "another path"
            )
        if desc.get("DeletedDate"):
            raise StoreError(
                f"{self._where(name)}: is scheduled for deletion; restore it with "
                f"`aws secretsmanager restore-secret --secret-id {name}` or use another path"
            )

    def _ensure_key_secret(self, path: str) -> tuple[dict[str, Any], bool]:
        """The key secret's description, and whether this call created it (empty)."""
        desc = self._describe(path, reuse=True)
        if desc is None:
            name = self.secret_name(path)
            params: dict[str, Any] = {
                "Name": name,
                "Description": f"API key {path}, rotated by rotatectl",
                "Tags": secret_tags(path, ROLE_KEY),
            }
            if self.kms_key_id:
                params["KmsKeyId"] = self.kms_key_id
            # No value: the first version is written by put_secret_value below,
            # the same way as every later one.
            try:
                self._sm("create_secret", name, expect={"ResourceExistsException"}, **params)
                return {"Name": name, "Tags": params["Tags"], "VersionIdsToStages": {}}, True
            except AwsExpected:
                pass  # created concurrently: checked below like any existing secret
            desc = self._describe(path)
            if desc is None:
                raise StoreError(f"{self._where(name)}: created, but not visible yet; try again")
        self._check_key_secret(path, desc)
        return desc, False

    def _sync_labels(
        self, path: str, record: _Record, known: Mapping[str, Any] | None = None
    ) -> None:
        """Move the non-AWSCURRENT labels of the key secret to match ``record``.

        Each move passes ``RemoveFromVersionId`` when the label is elsewhere,
        as AWS requires (moto does not check that for custom labels). ``known``
        is a description of the secret the caller already has (it saves a
        call); if it turns out stale, the moves fail and are redone from a
        fresh DescribeSecret.
        """
        name = self.secret_name(path)
        for attempt in range(3):
            desc = known if known is not None and attempt == 0 else self._describe(path)
            if desc is None:
                return
            holders = label_holders(desc)
            want = desired_labels(record, holders, self._where(name))
            try:
                for label, target in sorted(want.items()):
                    have = holders.get(label, [])
                    stale = [h for h in have if h != target]
                    if target is not None and target not in have:
                        params: dict[str, Any] = {"MoveToVersionId": target}
                        if stale:
                            params["RemoveFromVersionId"] = stale.pop(0)
                        self._stage(name, label, **params)
                    for version_id in stale:
                        self._stage(name, label, RemoveFromVersionId=version_id)
            except AwsExpected:
                if attempt == 2:
                    raise StoreError(
                        f"{self._where(name)}: staging labels keep changing; another process "
                        "is moving them"
                    ) from None
            else:
                # What the secret's labels are now, for the next step of this rotation
                # (its retire): if another hand moved one meanwhile, that step's moves
                # fail and are redone from a fresh DescribeSecret, as above.
                self._synced[name] = (_moved(desc, want), time.monotonic())
                return

    def _stage(self, name: str, label: str, **params: Any) -> None:
        self._sm(
            "update_secret_version_stage",
            name,
            expect={"InvalidParameterException"},
            SecretId=name,
            VersionStage=label,
            **params,
        )

    @staticmethod
    def _version_ids(version: Version) -> tuple[str, str]:
        """The VersionIds ``version`` may be published under, in order (see below)."""
        return (
            aws_version_id(version.version_id),
            str(uuid.uuid5(_TOKEN_NS, f"{version.version_id}\n{version.fingerprint}")),
        )

    def _free_version_id(self, path: str, version: Version, value: str) -> tuple[str, bool]:
        """The VersionId to publish ``value`` under, and whether it is already there.

        Normally the version id itself. A publish killed after writing the value
        but before the record leaves that id holding a value nobody recorded
        (the runner then mints a new key for the same version id); an AWS
        version's value cannot change, so the new value goes under a second,
        still deterministic id.
        """
        name = self.secret_name(path)
        for candidate in self._version_ids(version):
            try:
                out = self._sm(
                    "get_secret_value",
                    name,
                    expect={"ResourceNotFoundException"},
                    SecretId=name,
                    VersionId=candidate,
                )
            except AwsExpected:
                return candidate, False
            if out.get("SecretString") == value:
                return candidate, True
        raise StoreError(
            f"{self._where(name)}: version {version.version_id} was published twice with "
            "other values; start a new rotation"
        )

    # -- SecretStore: versions ------------------------------------------------

    def list_paths(self) -> list[str]:
        """Paths with a key secret, or a record holding versions or a rotation. Sorted.

        Uses ListSecrets with a tag filter (eventually consistent in AWS: a
        secret created a moment ago may be missing).
        """
        keys: set[str] = set()
        records: set[str] = set()
        tagged = [{"Key": "tag-key", "Values": [TAG_PATH]}]
        for entry in self._secrets(tagged, f"secrets tagged {TAG_PATH} ({self.conn.region})"):
            tags = {t.get("Key"): t.get("Value") for t in entry.get("Tags", [])}
            path = tags.get(TAG_PATH)
            if not path or entry.get("DeletedDate"):
                continue
            try:
                expected = (self.secret_name(path), self.record_name(path))
            except (StoreError, UsageError):
                continue
            if tags.get(TAG_ROLE) == ROLE_KEY and entry.get("Name") == expected[0]:
                keys.add(path)
            elif tags.get(TAG_ROLE) == ROLE_RECORD and entry.get("Name") == expected[1]:
                records.add(path)
        unsure = sorted(records - keys)
        if unsure:
            snapshot = self._records_many(unsure)
            keys.update(p for p in unsure if snapshot[p].is_credential)
        return sorted(keys)

    def versions(self, path: str) -> list[Version]:
        record, _ = self._read(path)
        return list(record.versions)

    def state(self, path: str) -> tuple[list[Version], Rotation | None, int]:
        """StateReader.state: one GetSecretValue of the record, which is remembered
        for the step that follows (see the module docstring).

        No call at all when this store itself wrote the record under a held lease
        less than OWN_WRITE_AGE ago: the lease's holder is the only writer, and
        the lease outlives that age (the runner's lease lasts minutes).
        """
        known = self._known.get(path, OWN_WRITE_AGE)
        if (
            known is not None
            and known[2]
            and known[0].lock is not None
            and known[0].lock.holder is not None
        ):
            record = known[0]
        else:
            record, _ = self._read(path, remember=True)
        if record.rotation is None:
            return list(record.versions), None, 0
        return list(record.versions), record.rotation, record.revision

    def versions_many(self, paths: Sequence[str]) -> dict[str, list[Version]]:
        """``versions`` of many paths with BatchGetSecretValue (20 records per call)."""
        return {p: list(r.versions) for p, r in self._records_many(paths).items()}

    def rotations_many(self, paths: Sequence[str]) -> dict[str, tuple[Rotation | None, int]]:
        """``load_rotation`` of many paths, batched like :meth:`versions_many`."""
        return {p: (r.rotation, r.revision) for p, r in self._records_many(paths).items()}

    def snapshot_many(
        self, paths: Sequence[str], *, locks: bool = True
    ) -> dict[str, tuple[list[Version], Rotation | None, int, bool]]:
        """Per path: (versions, rotation, revision, locked) from one batched read of the
        records (20 per BatchGetSecretValue call), for ``status`` and a no-op ``run``.
        ``locked``: a holder has the lease lock (``locks`` is ignored: it is in the
        record)."""
        return {
            p: (
                list(r.versions),
                r.rotation,
                r.revision if r.rotation is not None else 0,
                r.lock is not None and r.lock.holder is not None,
            )
            for p, r in self._records_many(paths).items()
        }

    def _batch_get(self, names: Sequence[str]) -> Iterator[dict[str, Any]]:
        """BatchGetSecretValue of ``names``, 20 a call: each AWSCURRENT entry found, and
        ``{"Name": ..., "ErrorCode": ...}`` for each secret AWS reported an error for.
        Stops quietly when batching is not allowed (callers read one at a time)."""
        for start in range(0, len(names), BATCH_SIZE):
            chunk = list(names[start : start + BATCH_SIZE])
            params: dict[str, Any] = {"SecretIdList": chunk}
            while True:
                try:
                    page = self._sm(
                        "batch_get_secret_value",
                        chunk[0],
                        expect={"AccessDeniedException", "AccessDenied"},
                        **params,
                    )
                except AwsExpected:
                    return
                for entry in page.get("SecretValues", []):
                    # BatchGetSecretValue returns the AWSCURRENT version; moto may return
                    # another one after UpdateSecretVersionStage moved AWSCURRENT.
                    if CURRENT in entry.get("VersionStages", []):
                        yield entry
                for error in page.get("Errors", []):
                    yield {"Name": error.get("SecretId"), "ErrorCode": error.get("ErrorCode")}
                token = page.get("NextToken")
                if not token:
                    break
                params["NextToken"] = token

    def _records_many(self, paths: Sequence[str]) -> dict[str, _Record]:
        unique = list(dict.fromkeys(paths))
        by_name = {self.record_name(p): p for p in unique}
        found: dict[str, _Record] = {}
        for entry in self._batch_get(list(by_name)):
            path = by_name.get(str(entry.get("Name")))
            if path is None:
                continue
            if "ErrorCode" in entry:
                if entry["ErrorCode"] == "ResourceNotFoundException":
                    found[path] = _Record(path)  # no record yet: remembered as _read does
                    self._remember(path, found[path], None)
                continue
            found[path] = _Record.parse(
                path, str(entry.get("SecretString", "")), self._where(str(entry["Name"]))
            )
            self._remember(path, found[path], str(entry.get("VersionId")))
        for path in unique:
            if path not in found:
                found[path], _ = self._read(path)
        return found

    def publish(self, path: str, version: Version, value: str) -> None:
        """SecretStore.publish: the value becomes a secret version (``AWSPENDING`` if it
        is the newest pending one), then the record lists it. Creates the key secret
        on first use (AWS then puts ``AWSCURRENT`` on that first version by itself).
        StoreError when the key secret is not rotatectl's or labels would run out.
        """
        self._publish(path, version, value, None)

    def commit(
        self, path: str, change: VersionChange, rotation: Rotation, expected_revision: int
    ) -> int:
        """SecretStore.commit: the change's calls on the key secret (its value, its
        labels), then one record write holding the versions and the rotation record."""
        save = (rotation, expected_revision)
        record = dispatch(
            change,
            lambda version, value: self._publish(path, version, value, save),
            lambda version_id, expected, at: self._promote(path, version_id, expected, at, save),
            lambda version_id, state, expected, at: self._set_state(
                path, version_id, state, expected, at, save
            ),
        )
        return record.revision

    def _saving(
        self, decide: Callable[[_Record], _Record | None], save: tuple[Rotation, int] | None
    ) -> Callable[[_Record], _Record | None]:
        """``decide``, with ``save``'s rotation record written in the same record write."""
        return lambda record: record.saving(decide(record), save, HISTORY_KEEP)

    def _publish(
        self, path: str, version: Version, value: str, save: tuple[Rotation, int] | None
    ) -> _Record:
        (record, read_from), remembered = self._recent(path)
        try:
            done = plan_publish(path, record.versions, version) is None
        except RotatectlError:
            if not remembered:
                raise
            done = True
        if done:
            if remembered:
                # Published or refused, says the remembered record: ask AWS.
                (record, read_from), remembered = (self._read(path, remember=True), False)
                done = plan_publish(path, record.versions, version) is None
            if done:
                unchanged = self._saving(lambda _: None, save)
                return self._mutate(path, "save rotation of", unchanged, first=(record, read_from))
        desc, created = self._ensure_key_secret(path)
        name = self.secret_name(path)

        def put(aws_id: str, *, unsure: bool) -> bool:
            """Put the value under ``aws_id``; whether that version was there already
            (a resumed publish: AWS ignored the repeat, labels included).
            ``unsure``: AwsExpected when ``aws_id`` holds another value."""
            planned = record.with_versions(
                [replace(version, state=VersionState.PENDING)], {version.version_id: aws_id}
            )
            # The first version of a secret becomes AWSCURRENT by itself.
            holders = label_holders(desc) or {CURRENT: [aws_id]}
            want = desired_labels(planned, holders, self._where(name))
            labels = [version_label(version.number)]
            if want.get(PENDING) == aws_id:
                labels.append(PENDING)  # PutSecretValue moves it off the older pending version
            # Retired versions may have to give up their labels first (20 per secret).
            self._free_labels(name, desc, want)
            out = self._sm(
                "put_secret_value",
                name,
                expect={"ResourceExistsException"} if unsure else frozenset(),
                SecretId=name,
                ClientRequestToken=aws_id,
                SecretString=value,
                VersionStages=labels,
            )
            return labels[0] not in out.get("VersionStages", labels)

        listed = desc.get("VersionIdsToStages") or {}
        if created or not any(listed.get(v) for v in self._version_ids(version)):
            # Labelled versions are all listed, and a publish labels what it puts:
            # this id is free but for a value left unlabelled, which the put reveals.
            aws_id = aws_version_id(version.version_id)
            try:
                present = put(aws_id, unsure=not created)
            except AwsExpected:
                aws_id, present = self._free_version_id(path, version, value)
                if not present:
                    put(aws_id, unsure=False)
        else:
            aws_id, present = self._free_version_id(path, version, value)
            if not present:
                put(aws_id, unsure=False)

        def decide(current: _Record) -> _Record | None:
            new = plan_publish(path, current.versions, version)
            if new is None:
                return None
            return current.with_versions([new], {version.version_id: aws_id})

        first = None if remembered else (record, read_from)
        committed = self._mutate(path, "publish", self._saving(decide, save), first=first)
        if present:
            # Resuming an interrupted publish: its labels may be half done.
            self._sync_labels(path, committed)
        return committed

    def _free_labels(
        self, name: str, desc: Mapping[str, Any], want: Mapping[str, str | None]
    ) -> None:
        for label, holders in label_holders(desc).items():
            if _VERSION_LABEL.fullmatch(label) and want.get(label) is None:
                for version_id in holders:
                    with contextlib.suppress(AwsExpected):  # already gone
                        self._stage(name, label, RemoveFromVersionId=version_id)

    def promote(
        self, path: str, version_id: str, expected_current: str | None, at: datetime
    ) -> None:
        """SecretStore.promote: moves ``AWSCURRENT`` with ``RemoveFromVersionId`` (CAS),
        then the record. ConflictError also when ``AWSCURRENT`` was moved outside
        rotatectl: it is never overwritten.
        """
        self._promote(path, version_id, expected_current, at, None)

    def _promote(
        self,
        path: str,
        version_id: str,
        expected_current: str | None,
        at: datetime,
        save: tuple[Rotation, int] | None,
    ) -> _Record:
        name = self.secret_name(path)

        def decide(record: _Record) -> _Record | None:
            changed = plan_promote(path, record.versions, version_id, expected_current, at)
            if not changed:
                return None
            target = record.aws_ids.get(version_id)
            if target is None:
                raise StoreError(f"{self._where(name)}: version {version_id} has no AWS version")
            after = self._move_current(path, record, target, expected_current)
            new = record.with_versions(changed)
            self._sync_labels(path, new, after)
            return new

        return self._mutate(path, "promote", self._saving(decide, save))

    def _move_current(
        self, path: str, record: _Record, target: str, expected_current: str | None
    ) -> dict[str, Any]:
        """Move AWSCURRENT to ``target`` with a compare-and-swap on where it is now.

        Returns the secret's description as it should be afterwards.
        """
        name = self.secret_name(path)
        desc = self._describe(path)
        if desc is None:
            raise NotFoundError(
                f"{self._where(name)}: the key secret is gone (deleted outside rotatectl?)"
            )
        self._check_key_secret(path, desc)
        holders = label_holders(desc).get(CURRENT, [])
        if holders == [target]:
            return desc  # a resumed promotion: AWS already moved, the record had not
        holder = holders[0] if len(holders) == 1 else None
        expected_aws = record.aws_ids.get(expected_current) if expected_current else None
        tracked_current = {
            record.aws_ids.get(v.version_id)
            for v in record.versions
            if v.state is VersionState.CURRENT
        }
        if expected_current is not None:
            allowed = holder is not None and holder == expected_aws
        else:
            # First promotion: AWS put AWSCURRENT on the secret's first version by
            # itself (or the secret was adopted with a value of its own).
            allowed = holder is not None and holder not in tracked_current
        if not allowed:
            ours = {aws: vid for vid, aws in record.aws_ids.items()}
            where = ", ".join(
                f"version {h}" + (f" (rotatectl {ours[h]})" if h in ours else "") for h in holders
            )
            expected = f"version {expected_aws}" if expected_aws else "no rotatectl version"
            if holders and all(h in ours for h in holders):
                why = "another rotatectl run promoted concurrently, or it was moved by hand"
            else:
                why = "it was moved outside rotatectl"
            raise ConflictError(
                f"{self._where(name)}: AWSCURRENT is on {where or 'no version'}, expected "
                f"{expected}: {why}; not overwriting it (inspect the secret, then "
                "`rotatectl abort` or move AWSCURRENT back)"
            )
        try:
            self._stage(name, CURRENT, MoveToVersionId=target, RemoveFromVersionId=holder)
        except AwsExpected as exc:
            # Either AWSCURRENT moved under us, or our own move landed and its reply
            # was lost (botocore then retried it, and AWS refused the repeat): look which.
            after = self._describe(path)
            if after is not None and label_holders(after).get(CURRENT, []) == [target]:
                return after
            raise ConflictError(
                f"{self._where(name)}: AWSCURRENT moved while promoting ({exc.code}); "
                "not overwriting it"
            ) from exc
        # What AWS does on that move: AWSPREVIOUS goes to the version AWSCURRENT
        # left. If this prediction were wrong, the label sync redoes it from AWS.
        stages = {
            vid: [lb for lb in labels if lb not in (CURRENT, PREVIOUS)]
            for vid, labels in (desc.get("VersionIdsToStages") or {}).items()
        }
        stages.setdefault(target, []).append(CURRENT)
        assert holder is not None
        stages.setdefault(holder, []).append(PREVIOUS)
        return {**desc, "VersionIdsToStages": stages}

    def set_state(
        self,
        path: str,
        version_id: str,
        state: VersionState,
        expected: VersionState,
        at: datetime,
    ) -> None:
        """SecretStore.set_state: labels first (a retired version loses ``AWSPREVIOUS``/
        ``AWSPENDING``, a destroyed one every label), then the record.
        """
        self._set_state(path, version_id, state, expected, at, None)

    def _set_state(
        self,
        path: str,
        version_id: str,
        state: VersionState,
        expected: VersionState,
        at: datetime,
        save: tuple[Rotation, int] | None,
    ) -> _Record:

        def decide(record: _Record) -> _Record | None:
            new_version = plan_set_state(path, record.versions, version_id, state, expected, at)
            if new_version is None:
                return None
            new = record.with_versions([new_version])
            # Labels first: once the record says retired/destroyed, no naive
            # client reading AWSPREVIOUS/AWSPENDING should still get it.
            self._sync_labels(path, new, self._kept(path))
            return new

        return self._mutate(path, f"set {state} on", self._saving(decide, save))

    def read_value(self, path: str, version_id: str | None = None) -> str:
        """SecretStore.read_value, by the AWS VersionId the record holds for the version.

        NotFoundError for destroyed versions, and naming the secret and region when
        the key secret or the version is gone from Secrets Manager.
        """
        (record, _), _ = self._recent(path)
        target = record.find(version_id) if version_id else record.current()
        if target is None:
            what = f"version {version_id}" if version_id else "current version"
            raise NotFoundError(f"{path}: no {what}")
        if target.state is VersionState.DESTROYED:
            raise NotFoundError(f"{path}: the value of version {target.version_id} was destroyed")
        aws_id = record.aws_ids.get(target.version_id)
        name = self.secret_name(path)
        if aws_id is None:
            raise NotFoundError(f"{self._where(name)}: version {target.version_id} has no value")
        try:
            out = self._sm(
                "get_secret_value",
                name,
                expect={"ResourceNotFoundException"},
                SecretId=name,
                VersionId=aws_id,
            )
        except AwsExpected:
            if self._describe(path) is None:
                raise NotFoundError(
                    f"{self._where(name)}: the key secret does not exist in region "
                    f"{self.conn.region} (deleted outside rotatectl, or wrong region?)"
                ) from None
            raise NotFoundError(
                f"{self._where(name)}: the value of version {target.version_id} is no longer "
                "held by Secrets Manager"
            ) from None
        if "SecretString" not in out:
            raise StoreError(f"{self._where(name)}: version {target.version_id} holds no string")
        value: str = out["SecretString"]
        return value

    def accepted_keys(self, path: str, credential: str) -> list[AcceptedKey]:
        return accepted(self.versions(path), credential)

    # -- SecretStore: rotation record -------------------------------------

    def load_rotation(self, path: str) -> tuple[Rotation | None, int]:
        record, _ = self._read(path)
        if record.rotation is None:
            return None, 0
        return record.rotation, record.revision

    def save_rotation(self, path: str, rotation: Rotation, expected_revision: int) -> int:
        def decide(record: _Record) -> _Record:
            return record.with_rotation(rotation, expected_revision, HISTORY_KEEP)

        return self._mutate(path, "save rotation of", decide).revision

    def rotation_history(self, path: str) -> list[Rotation]:
        """Earlier rotation records of ``path`` (the last 10, each with its first and
        last events), oldest first."""
        record, _ = self._read(path)
        return [Rotation.from_dict(r) for r in record.history]

    # The lease lock: RecordLease (the lock lives in the record).
