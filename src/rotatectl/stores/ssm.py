"""AWS Systems Manager Parameter Store (``type = "aws-ssm"``).

Layout (see also examples/aws-ssm/README.md)
--------------------------------------------

``NAME`` is ``<prefix>/<path>`` (SSM wants a leading ``/`` for hierarchical names).

* **Client parameter** ``NAME``, a SecureString (``kms_key_id`` or SSM's default
  key): its *latest* version always holds the current key, so a client that knows
  nothing of rotatectl reads it with ``aws ssm get-parameter --name NAME
  --with-decryption``. Labels: ``current`` on the current key's SSM version,
  ``previous`` on the most recently demoted previous key's, so ``NAME:current``
  and ``NAME:previous`` work too. A promotion is one ``PutParameter(Overwrite)``
  of the new key (skipped when the latest version already holds it: a resumed or
  adopted promotion), then the label moves. SSM has no compare-and-set on an
  overwrite: the store refuses to overwrite a latest version it did not write
  (ConflictError, drift), but an outside write landing in the milliseconds
  between that check and the put is overwritten (it stays in the history).
* **Pending values** ``NAME/.rotatectl-pending/<version id>``: a published key
  never becomes a version of ``NAME`` before its promotion; its companion is
  deleted once the key is promoted (or destroyed).
* **Record** ``NAME/.rotatectl/<seq>``: every version's metadata (and the SSM
  version holding its value), the rotation record with its history and the lease
  lock, in one SecureString per write, numbered by a write sequence. A write of
  ``seq + 1`` is a create-only ``PutParameter`` (``Overwrite=False``): of several
  writers that read ``seq`` exactly one creates it (the compare-and-set).
  Readers take the highest number (one ``GetParametersByPath``). After a write the
  writer lists again: it won if its number is the highest, or if the next one was
  built on it (each record names its parent's nonce); otherwise its number was
  re-created after a clean-up (a stale writer) and it lost. Each winner deletes
  the records below its parent. The rotation's ``revision`` is separate from
  ``seq``, so lease renewals never break ``save_rotation``'s expectation.
  Compact: plain JSON while it fits SSM's 4 KB standard tier, else zlib+base64,
  earlier rotations keeping only their first and last events and the oldest
  ones (then the oldest destroyed versions) pruned to stay standard; live
  versions that need more go to the advanced tier (8 KB), beyond that a StoreError.

Limits: SSM keeps the last 100 versions of ``NAME`` (an unlabelled oldest one is
dropped by each new put), 10 labels per version, 15 levels per name (``NAME``
itself at most 13), values up to 4 KB standard / 8 KB advanced (parameters are
written with the Intelligent-Tiering tier). A *destroyed* key that was once
current stays in ``NAME``'s history (SSM cannot delete one version) until 100
newer versions push it out: the record refuses it, verifiers never accept it,
and the issuer has deleted it; a destroyed key that never became current is
deleted with its companion.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Self

from .. import secretformat
from ..aws_common import AwsConnection, AwsExpected
from ..errors import ConflictError, NotFoundError, RotatectlError, StoreError, UsageError
from ..model import AcceptedKey, Rotation, Version, VersionState
from ..ports import Snapshot, StoreBase
from ..registry import AdapterContext, check_settings
from ._cas import RECORD_MAX_AGE, CasLost, RecordCache, mutate
from ._record import RecordDocument, RecordLease, check_header, compact, decode_lock, encode_lock
from .rules import (
    accepted,
    check_path,
    plan_promote,
    plan_publish,
    plan_set_state,
)

RECORDS = "/.rotatectl"
PENDING = "/.rotatectl-pending"
CURRENT, PREVIOUS = "current", "previous"  # the labels on NAME's versions
RECORD_FORMAT = 1
STANDARD, ADVANCED = 4096, 8192  # SSM value limits in bytes (standard / advanced tier)
TIER = "Intelligent-Tiering"  # SSM picks advanced only for a value over 4 KB
HISTORY_KEEP = 10
DESTROYED_KEEP = 20
BATCH = 10  # GetParameters: names per call; GetParametersByPath: results per page
BATCH_FROM = 4  # more paths than this: records found with one DescribeParameters listing
NOT_FOUND = frozenset({"ParameterNotFound", "ParameterVersionNotFound"})
_NAME = re.compile(r"[A-Za-z0-9/_.-]+")
_SAFE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass
class _Record(RecordDocument):
    """The record (see the module docstring); ``seq``/``nonce`` name the parameter it
    was read from (0/"": none yet)."""

    ssm: dict[str, int] = field(default_factory=dict)  # version id -> NAME's version
    pend: dict[str, int] = field(default_factory=dict)  # version id -> companion's version
    seq: int = 0
    nonce: str = ""
    parent: str = ""

    def labels(self) -> dict[str, int | None]:
        """Label -> the SSM version it belongs on (None: nowhere)."""
        current = self.current()
        previous = [v for v in self.versions if v.state is VersionState.PREVIOUS]
        latest = max(previous, key=lambda v: (v.demoted or v.created, v.number), default=None)
        return {
            CURRENT: self.ssm.get(current.version_id) if current else None,
            PREVIOUS: self.ssm.get(latest.version_id) if latest else None,
        }

    def with_versions(
        self,
        changed: Iterable[Version],
        ssm: Mapping[str, int] | None = None,
        pend: Mapping[str, int] | None = None,
    ) -> _Record:
        by_id = {v.version_id: v for v in self.versions}
        by_id.update((v.version_id, v) for v in changed)
        return replace(
            self,
            versions=sorted(by_id.values(), key=lambda v: v.number),
            ssm={**self.ssm, **(ssm or {})},
            pend={k: n for k, n in {**self.pend, **(pend or {})}.items() if k not in (ssm or {})},
        )

    def encode(self) -> str:
        """The parameter value: see the module docstring for the size rules."""
        lock = encode_lock(self.lock)
        destroyed = [v.version_id for v in self.versions if v.state is VersionState.DESTROYED]
        forget = max(0, len(destroyed) - DESTROYED_KEEP)
        history = [compact(r) for r in self.history[-HISTORY_KEEP:]]
        while True:
            versions = [v for v in self.versions if v.version_id not in destroyed[:forget]]
            ids = {v.version_id for v in versions}
            doc = {
                "rotatectl": RECORD_FORMAT,
                "path": self.path,
                "versions": [v.to_dict() for v in versions],
                "ssm": {k: n for k, n in self.ssm.items() if k in ids},
                "pend": {k: n for k, n in self.pend.items() if k in ids},
                "rotation": self.rotation.to_dict() if self.rotation else None,
                "revision": self.revision,
                "history": history,
                "lock": lock,
                "seq": self.seq,
                "nonce": self.nonce,
                "parent": self.parent,
            }
            text = json.dumps(doc, separators=(",", ":"), sort_keys=True)
            if len(text.encode()) > STANDARD:
                text = "z:" + base64.b64encode(zlib.compress(text.encode(), 9)).decode()
            if len(text) <= STANDARD:
                return text
            if history:
                history = history[1:]
            elif forget < len(destroyed):
                forget += 1
            elif len(text) <= ADVANCED:
                return text
            else:
                raise StoreError(
                    f"{self.path}: the record outgrew SSM's 8 KB limit; retire or destroy "
                    "old versions"
                )

    @classmethod
    def decode(cls, path: str, text: str, where: str) -> _Record:
        try:
            if text.startswith("z:"):
                text = zlib.decompress(base64.b64decode(text[2:])).decode()
            doc = check_header(json.loads(text), path, where, RECORD_FORMAT)
            lock = decode_lock(doc.get("lock"))
            rotation = doc.get("rotation")
            return cls(
                path=path,
                versions=sorted(map(Version.from_dict, doc["versions"]), key=lambda v: v.number),
                ssm={str(k): int(n) for k, n in doc["ssm"].items()},
                pend={str(k): int(n) for k, n in doc["pend"].items()},
                rotation=Rotation.from_dict(rotation) if rotation else None,
                revision=int(doc["revision"]),
                history=list(doc["history"]),
                lock=lock,
                seq=int(doc["seq"]),
                nonce=str(doc["nonce"]),
                parent=str(doc["parent"]),
            )
        except StoreError:
            raise
        except (ValueError, KeyError, TypeError, zlib.error) as exc:
            raise StoreError(f"{where}: not a valid rotatectl record ({exc})") from None


class ParameterStore(RecordLease, StoreBase):
    """A SecretStore in AWS Systems Manager Parameter Store (layout: module docstring).

    Raises only rotatectl errors, translated by :class:`~rotatectl.aws_common.AwsConnection`.
    """

    FEATURES = frozenset(
        {"state", "batched-reads", "drift", "history", "access-check", "rolling-window"}
    )
    read_batch = BATCH  # names a GetParameters call reads
    # An SSM parameter version's value never changes: :meth:`drift` checks which
    # version clients get (and its value, in the same read).
    immutable_versions = True

    def __init__(
        self, conn: AwsConnection, *, prefix: str = "", kms_key_id: str | None = None
    ) -> None:
        self.conn = conn
        self.prefix = prefix
        self.kms_key_id = kms_key_id
        self._known: RecordCache[str, _Record] = RecordCache(RECORD_MAX_AGE)

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings (all optional): the shared AWS keys (:mod:`rotatectl.aws_common`),
        ``prefix`` (a parameter path every name goes under, e.g. ``"/rotatectl"``) and
        ``kms_key_id`` (the KMS key of the SecureStrings; default: SSM's own key)."""
        from ..aws_common import SETTINGS

        check_settings(settings, ctx, {**SETTINGS, "prefix": str, "kms_key_id": str})
        prefix = settings.get("prefix", "").strip("/")
        if prefix and (not _NAME.fullmatch(prefix) or "//" in prefix):
            raise ctx.error("prefix", "use only A-Z a-z 0-9 / _ . -")
        if prefix.lower().startswith(("aws", "ssm")):
            raise ctx.error("prefix", "SSM reserves names starting with 'aws' or 'ssm'")
        kms = settings.get("kms_key_id")
        if kms is not None and not kms.strip():
            raise ctx.error("kms_key_id", "must not be empty")
        conn = AwsConnection.from_settings(settings, ctx, kind="store")
        return cls(conn, prefix="/" + prefix if prefix else "", kms_key_id=kms)

    def __repr__(self) -> str:
        return f"ParameterStore(region={self.conn.region!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        self.conn.close()

    # -- names and calls ------------------------------------------------------

    def parameter_name(self, path: str) -> str:
        """``NAME`` of ``path``: UsageError for a path no store accepts, StoreError for
        one SSM refuses (characters, 'aws'/'ssm' first, more than 13 levels)."""
        check_path(path)
        name = f"{self.prefix}/{path}"
        if (
            not _NAME.fullmatch(name)
            or name.lstrip("/").lower().startswith(("aws", "ssm"))
            or name.count("/") > 13
            or len(name) > 900
        ):
            raise StoreError(
                f"{path!r} cannot be an SSM parameter name (A-Z a-z 0-9 / _ . -, at most 13 "
                "levels, not starting with 'aws' or 'ssm')"
            )
        return name

    def _record_name(self, path: str, seq: int) -> str:
        return f"{self.parameter_name(path)}{RECORDS}/{seq:010d}"

    def _pending_name(self, path: str, version_id: str) -> str:
        safe = version_id
        if not _SAFE_ID.fullmatch(version_id):
            safe = uuid.uuid5(uuid.NAMESPACE_URL, version_id).hex
        return f"{self.parameter_name(path)}{PENDING}/{safe}"

    def _ssm(self, method: str, name: str, expect: Iterable[str] = (), **params: Any) -> Any:
        where = f"parameter {name} ({self.conn.region})"
        return self.conn.call("ssm", method, where=where, expect=frozenset(expect), **params)

    def _put(self, name: str, value: str, *, overwrite: bool) -> int:
        """PutParameter of a SecureString; the new version number. A create-only
        put (``overwrite`` False) raises AwsExpected when ``name`` exists."""
        if len(value.encode()) > ADVANCED:
            raise StoreError(f"parameter {name}: the value is larger than SSM's 8 KB limit")
        params: dict[str, Any] = {"Type": "SecureString", "Tier": TIER, "Overwrite": overwrite}
        if self.kms_key_id:
            params["KeyId"] = self.kms_key_id
        expect = () if overwrite else ("ParameterAlreadyExists",)
        out = self._ssm("put_parameter", name, expect, Name=name, Value=value, **params)
        return int(out["Version"])

    def _get(self, selector: str) -> dict[str, Any] | None:
        """GetParameter (decrypted) of ``NAME``, ``NAME:<version>`` or ``NAME:<label>``."""
        try:
            out = self._ssm(
                "get_parameter", selector, NOT_FOUND, Name=selector, WithDecryption=True
            )
        except AwsExpected:
            return None
        return dict(out["Parameter"])

    def _get_many(self, selectors: Sequence[str], decrypt: bool = True) -> dict[str, Any]:
        """GetParameters, 10 a call: selector -> parameter. Only one selector per name a
        call (moto leaves out ``Selector``): callers pass one kind at a time."""
        found: dict[str, Any] = {}
        unique = list(dict.fromkeys(selectors))
        for start in range(0, len(unique), BATCH):
            chunk = unique[start : start + BATCH]
            by_name = {s.partition(":")[0]: s for s in chunk}
            out = self._ssm("get_parameters", chunk[0], Names=chunk, WithDecryption=decrypt)
            for p in out.get("Parameters", []):
                name = "/" + str(p["Name"]).lstrip("/")  # moto drops a one-level name's "/"
                found[by_name.get(name, name)] = p
        return found

    def _by_path(self, path: str, decrypt: bool) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"Path": path, "WithDecryption": decrypt, "MaxResults": BATCH}
        while True:
            page = self._ssm("get_parameters_by_path", path, **params)
            yield from page.get("Parameters", [])
            if not page.get("NextToken"):
                return
            params["NextToken"] = page["NextToken"]

    def _delete(self, names: Sequence[str]) -> None:
        """Best effort: a name left behind costs nothing but a parameter."""
        for start in range(0, len(names), BATCH):
            chunk = list(names[start : start + BATCH])
            try:
                self._ssm("delete_parameters", chunk[0], Names=chunk)
            except RotatectlError:
                return

    # -- the record -----------------------------------------------------------

    def _records(self, path: str) -> dict[int, dict[str, Any]]:
        """seq -> record parameter (decrypted) of ``path``."""
        found = {}
        for p in self._by_path(self.parameter_name(path) + RECORDS, decrypt=True):
            tail = str(p["Name"]).rpartition("/")[2]
            if tail.isdigit():
                found[int(tail)] = p
        return found

    def _parse(self, path: str, p: Mapping[str, Any]) -> _Record:
        return _Record.decode(path, str(p["Value"]), f"parameter {p['Name']}")

    def _read(self, path: str) -> _Record:
        """The record of ``path`` from SSM (remembered for the writes that follow)."""
        records = self._records(path)
        record = self._parse(path, records[max(records)]) if records else _Record(path)
        self._known.put(path, record)
        return record

    def _recent(self, path: str) -> tuple[_Record, bool]:
        """The remembered record while younger than RECORD_MAX_AGE, else a fresh one;
        and whether it was remembered."""
        known = self._known.get(path)
        if known is not None:
            return known, True
        return self._read(path), False

    def _commit(self, path: str, base: _Record, new: _Record) -> _Record:
        """Write ``new`` (decided on ``base``) at ``base.seq + 1``; CasLost when another
        writer got there first (see the module docstring)."""
        new = replace(new, seq=base.seq + 1, parent=base.nonce, nonce=uuid.uuid4().hex[:12])
        name = self._record_name(path, new.seq)
        try:
            self._put(name, new.encode(), overwrite=False)
        except AwsExpected:
            self._known.forget(path)
            raise CasLost from None
        records = self._records(path)
        top = max(records, default=new.seq)
        after = records.get(new.seq + 1)
        if top != new.seq and (after is None or self._parse(path, after).parent != new.nonce):
            self._known.forget(path)
            self._delete([name])  # a stale writer's re-created number: nobody reads it
            raise CasLost
        self._delete([self._record_name(path, s) for s in records if s < new.seq - 1])
        self._known.put(path, new)
        return new

    def _mutate(self, path: str, op: str, decide: Callable[[_Record], _Record | None]) -> _Record:
        """Read-decide-write with compare-and-set; re-decide on a lost race. A no-op or
        an error decided on the remembered record is confirmed on a fresh read."""
        return mutate(
            self._recent(path),
            lambda: self._read(path),
            decide,
            lambda base, new: self._commit(path, base, new),
            lambda base: base,
            f"parameter {self.parameter_name(path)}{RECORDS}: {op}",
        )

    # -- SecretStore: versions and values --------------------------------------

    def list_paths(self) -> list[str]:
        """Paths with a record holding versions or a rotation, from one DescribeParameters
        listing of the record parameters under the prefix. Sorted."""
        return sorted(p for p, r in self._listed_records(None).items() if r.is_credential)

    def _listed_records(self, paths: Sequence[str] | None) -> dict[str, _Record]:
        """Records of ``paths`` (None: every path under the prefix) found with
        DescribeParameters and read with GetParameters (10 a call)."""
        filters = [{"Key": "Name", "Option": "Contains", "Values": [RECORDS + "/"]}]
        if self.prefix:
            filters.append({"Key": "Path", "Option": "Recursive", "Values": [self.prefix]})
        wanted = None if paths is None else set(paths)
        top: dict[str, tuple[int, str]] = {}
        params: dict[str, Any] = {"ParameterFilters": filters, "MaxResults": 50}
        while True:
            page = self._ssm("describe_parameters", self.prefix or "/", **params)
            for p in page.get("Parameters", []):
                head, _, tail = str(p["Name"]).rpartition(RECORDS + "/")
                path = head[len(self.prefix) + 1 :]
                if not tail.isdigit() or not head.startswith(self.prefix + "/"):
                    continue
                if (wanted is None or path in wanted) and int(tail) > top.get(path, (0, ""))[0]:
                    top[path] = (int(tail), str(p["Name"]))
            if not page.get("NextToken"):
                break
            params["NextToken"] = page["NextToken"]
        found = {}
        values = self._get_many([name for _, name in top.values()])
        for path, (_, name) in top.items():
            try:
                found[path] = self._parse(path, values[name])
            except StoreError:
                if wanted is not None:
                    raise  # asked for: a damaged record is an error; listed: not a credential
            except KeyError:
                continue  # deleted since the listing (a newer record exists)
        return found

    def versions(self, path: str) -> list[Version]:
        return list(self._read(path).versions)

    def state(self, path: str) -> tuple[list[Version], Rotation | None, int]:
        record = self._read(path)
        return list(record.versions), record.rotation, record.revision if record.rotation else 0

    def _records_many(self, paths: Sequence[str]) -> dict[str, _Record]:
        unique = list(dict.fromkeys(paths))
        if len(unique) <= BATCH_FROM:
            return {p: self._read(p) for p in unique}
        listed = self._listed_records(unique)
        for path, record in listed.items():
            self._known.put(path, record)
        return {p: listed.get(p) or _Record(p) for p in unique}

    def snapshot_many(self, paths: Sequence[str], *, locks: bool = True) -> dict[str, Snapshot]:
        """Per path from one DescribeParameters listing and GetParameters of the newest
        records (10 a call); a few paths are read one by one (fewer calls)."""
        return {
            p: (
                list(r.versions),
                r.rotation,
                r.revision if r.rotation else 0,
                r.lock is not None and r.lock.holder is not None,
            )
            for p, r in self._records_many(paths).items()
        }

    def current_values_many(self, paths: Sequence[str]) -> dict[str, str | None]:
        records = self._records_many(paths)
        selectors = {}
        for p, r in records.items():
            current = r.current()
            if current is not None and current.version_id in r.ssm:
                selectors[p] = f"{self.parameter_name(p)}:{r.ssm[current.version_id]}"
        found = self._get_many(list(selectors.values()))
        return {p: found[s]["Value"] if s in found else None for p, s in selectors.items()} | {
            p: None for p in records if p not in selectors
        }

    def publish(self, path: str, version: Version, value: str) -> None:
        """The value goes to the companion ``NAME/.rotatectl-pending/<id>`` (overwritten
        while no record lists it: a publish killed before its record write), then the
        record lists the version."""
        pending = self._pending_name(path, version.version_id)

        def decide(record: _Record) -> _Record | None:
            new = plan_publish(path, record.versions, version)
            if new is None:
                return None
            number = self._put(pending, value, overwrite=True)
            return record.with_versions([new], pend={version.version_id: number})

        self._mutate(path, "publish", decide)

    def _value_of(self, path: str, record: _Record, version: Version) -> str:
        vid = version.version_id
        if version.state is VersionState.DESTROYED:
            raise NotFoundError(f"{path}: the value of version {vid} was destroyed")
        if vid in record.ssm:
            selector = f"{self.parameter_name(path)}:{record.ssm[vid]}"
        elif vid in record.pend:
            selector = f"{self._pending_name(path, vid)}:{record.pend[vid]}"
        else:
            raise NotFoundError(f"{path}: version {vid} has no value")
        found = self._get(selector)
        if found is None:
            raise NotFoundError(
                f"parameter {selector} ({self.conn.region}): the value of version {vid} is no "
                "longer held by SSM (deleted outside rotatectl, or wrong region?)"
            )
        return str(found["Value"])

    def read_value(self, path: str, version_id: str | None = None) -> str:
        record, remembered = self._recent(path)
        for attempt in (0, 1):
            target = record.find(version_id) if version_id else record.current()
            if target is not None:
                return self._value_of(path, record, target)
            if not remembered or attempt:
                break
            record = self._read(path)  # not in the remembered copy: ask SSM
        raise NotFoundError(
            f"{path}: no {f'version {version_id}' if version_id else 'current version'}"
        )

    def accepted_keys(self, path: str, credential: str) -> list[AcceptedKey]:
        return accepted(self.versions(path), credential)

    def _latest(self, path: str) -> tuple[int, str] | None:
        """What clients read: NAME's latest version and its value."""
        found = self._get(self.parameter_name(path))
        return (int(found["Version"]), str(found["Value"])) if found else None

    def promote(
        self, path: str, version_id: str, expected_current: str | None, at: datetime
    ) -> None:
        """Overwrite NAME with the key (unless its latest version holds it already), move
        the labels, then the record. ConflictError when NAME's latest version is not the
        recorded current one: it is never overwritten."""
        name = self.parameter_name(path)
        companion: list[bool] = []

        def decide(record: _Record) -> _Record | None:
            changed = plan_promote(path, record.versions, version_id, expected_current, at)
            if not changed:
                return None
            target = record.find(version_id)
            assert target is not None
            companion.append(version_id in record.pend)
            value = self._value_of(path, record, target)
            latest = self._latest(path)
            old = record.current()
            if latest is not None and latest[1] == value:
                number = latest[0]  # resumed, or adopted: clients read it already
            elif latest is None or old is None or latest[0] == record.ssm.get(old.version_id):
                number = self._put(name, value, overwrite=latest is not None)
            else:
                raise ConflictError(
                    f"parameter {name} ({self.conn.region}): its latest version "
                    f"{latest[0]} was put outside rotatectl; not overwriting it (check "
                    "--adopt or --restore)"
                )
            new = record.with_versions(changed, ssm={version_id: number})
            self._label(path, new)
            return new

        committed = self._mutate(path, "promote", decide)
        if any(companion) and version_id not in committed.pend:
            self._delete([self._pending_name(path, version_id)])

    def _label(self, path: str, record: _Record, *, unlabel: bool = False) -> None:
        """Put ``current``/``previous`` on the versions the record says (a label moves
        off any other version by itself); ``unlabel``: also take ``previous`` off when
        no version should carry it."""
        name = self.parameter_name(path)
        for label, number in record.labels().items():
            if number is not None:
                self._ssm(
                    "label_parameter_version",
                    name,
                    Name=name,
                    ParameterVersion=number,
                    Labels=[label],
                )
            elif unlabel and (held := self._get(f"{name}:{label}")) is not None:
                self._ssm(
                    "unlabel_parameter_version",
                    name,
                    Name=name,
                    ParameterVersion=int(held["Version"]),
                    Labels=[label],
                )

    def set_state(
        self,
        path: str,
        version_id: str,
        state: VersionState,
        expected: VersionState,
        at: datetime,
    ) -> None:
        """Retiring a previous key moves ``previous`` first; destroying a key that never
        became current deletes its companion first (one that did stays in NAME's
        history: see the module docstring)."""

        def decide(record: _Record) -> _Record | None:
            version = plan_set_state(path, record.versions, version_id, state, expected, at)
            if version is None:
                return None
            new = record.with_versions([version])
            if expected is VersionState.PREVIOUS:
                self._label(path, new, unlabel=True)
            if state is VersionState.DESTROYED and version_id in record.pend:
                self._delete([self._pending_name(path, version_id)])
            return new

        self._mutate(path, f"set {state} on", decide)

    # -- SecretStore: rotation record and lease ---------------------------------

    def load_rotation(self, path: str) -> tuple[Rotation | None, int]:
        record = self._read(path)
        return (record.rotation, record.revision) if record.rotation else (None, 0)

    def save_rotation(self, path: str, rotation: Rotation, expected_revision: int) -> int:
        def decide(record: _Record) -> _Record:
            return record.with_rotation(rotation, expected_revision, HISTORY_KEEP)

        return self._mutate(path, "save rotation of", decide).revision

    def rotation_history(self, path: str) -> list[Rotation]:
        return [Rotation.from_dict(r) for r in self._read(path).history]

    # -- drift: changes made with the AWS console, CLI or SDK ------------------

    def client_value(self, path: str) -> str | None:
        """What a client reading NAME the ordinary way gets now (None: nothing)."""
        latest = self._latest(path)
        return latest[1] if latest else None

    def drift(self, path: str) -> list[str]:
        return self.drift_many([path])[path]

    def drift_many(self, paths: Sequence[str]) -> dict[str, list[str]]:
        """NAME's latest version (and its value) and labels against the record: three
        GetParameters calls per 10 paths; a path without any version is drift when
        NAME exists (a parameter rotatectl did not write). Never names a value."""
        unique = list(dict.fromkeys(paths))
        known = {p: self._known.get(p) for p in unique}
        records = {p: k for p, k in known.items() if k is not None}
        records |= self._records_many([p for p in unique if p not in records])
        tracked = {p: self.parameter_name(p) for p in unique if records[p].current() is not None}
        # No version at all: a parameter there was not written by rotatectl.
        fresh = {p: self.parameter_name(p) for p in unique if not records[p].versions}
        names = list(tracked.values())
        latest = self._get_many([*names, *fresh.values()])
        labels = {
            lb: self._get_many([f"{n}:{lb}" for n in names], False) for lb in (CURRENT, PREVIOUS)
        }
        found: dict[str, list[str]] = {p: [] for p in unique}
        for path, name in tracked.items():
            held = {lb: labels[lb].get(f"{name}:{lb}") for lb in labels}
            found[path] = self._drift_of(records[path], latest.get(name), held)
        for path, name in fresh.items():
            if latest.get(name) is not None:
                # Its first rotation would overwrite that value (a JSON document,
                # another tool's key) at once: the credential is blocked instead.
                found[path] = [
                    f"parameter {name} holds a value rotatectl did not write (and no record "
                    "of it): rotatectl does not replace it; declare its format and take it "
                    "over as it is (`check --adopt`), or use another path"
                ]
        return found

    def _drift_of(
        self, record: _Record, latest: Mapping[str, Any] | None, held: Mapping[str, Any]
    ) -> list[str]:
        current = record.current()
        assert current is not None
        name = self.parameter_name(record.path)
        if latest is None:
            return [f"parameter {name} is gone (deleted outside rotatectl?)"]
        number, value = int(latest["Version"]), str(latest["Value"])
        if self._promoting(record, value):
            return []  # the resumed run finishes it
        ours = {n: v for v in record.versions if (n := record.ssm.get(v.version_id))}

        def what(n: int | None) -> str:
            v = ours.get(n) if n else None
            return f"v{v.number} ({v.key_id}, {v.state})" if v else f"SSM version {n}"

        problems = []
        if number != record.ssm.get(current.version_id) or not secretformat.matches(current, value):
            problems.append(
                f"the latest version of {name} is SSM version {number}, not v{current.number} "
                f"({current.key_id}): it was put outside rotatectl"
            )
        for label, want in record.labels().items():
            have = int(held[label]["Version"]) if held.get(label) else None
            if have != want:
                problems.append(
                    f"label {label} is on {what(have) if have else 'no version'}, not on "
                    f"{what(want) if want else 'no version'}: it was moved outside rotatectl"
                )
        return problems

    @staticmethod
    def _promoting(record: _Record, value: str) -> bool:
        """NAME already holds the in-flight rotation's new key (a promotion whose record
        write is still to come)."""
        rotation = record.rotation
        if rotation is None or rotation.phase.terminal or not rotation.new_version_id:
            return False
        new = record.find(rotation.new_version_id)
        if new is None or new.state is VersionState.CURRENT:
            return False
        return secretformat.matches(new, value)

    def adopt_value(self, path: str, version: Version, value: str) -> None:
        """Record ``value``, which NAME's latest version holds though rotatectl did not
        write it, as the pending ``version``, without writing it: the promotion that
        follows finds it latest already and only moves the labels."""

        def decide(record: _Record) -> _Record | None:
            latest = self._latest(path)
            if latest is None or latest[1] != value:
                raise ConflictError(f"{path}: clients do not read that value; look again")
            new = plan_publish(path, record.versions, version)
            if new is None:
                return None
            return record.with_versions([new], ssm={version.version_id: latest[0]})

        self._mutate(path, "adopt", decide)

    def adopt(self, path: str, at: datetime) -> None:
        """After the client's key is adopted (:func:`rotatectl.drift.adopt`): re-point
        the current version when the same key was put again as a new SSM version, then
        put the labels where the record says."""

        def decide(record: _Record) -> _Record | None:
            current, latest = record.current(), self._latest(path)
            if current is None or latest is None or record.ssm.get(current.version_id) == latest[0]:
                return None
            if not secretformat.matches(current, latest[1]):
                raise ConflictError(f"{path}: clients read another key than v{current.number}")
            return record.with_versions([], ssm={current.version_id: latest[0]})

        self._label(path, self._mutate(path, "adopt", decide), unlabel=True)

    def restore(self, path: str, at: datetime, value: str | None = None) -> None:
        """Put the recorded current key back as NAME's latest version (a new version;
        the outside one stays in the history), then the labels. ConflictError when
        SSM no longer holds the recorded current value (``value`` is not needed: SSM
        keeps every copy)."""

        def decide(record: _Record) -> _Record | None:
            current, latest = record.current(), self._latest(path)
            if current is None:
                return None
            number = record.ssm.get(current.version_id)
            if latest is not None and latest[0] == number:
                return None
            try:
                value = self._value_of(path, record, current)
            except NotFoundError as exc:
                raise ConflictError(f"{exc}; it cannot be restored (--adopt)") from None
            put = self._put(self.parameter_name(path), value, overwrite=latest is not None)
            return record.with_versions([], ssm={current.version_id: put})

        self._label(path, self._mutate(path, "restore", decide), unlabel=True)

    # -- access check -----------------------------------------------------------

    def check_access(self, paths: Sequence[str] = ()) -> list[str]:
        """Which SSM (and KMS) calls rotatectl needs are denied, one line each.

        Each is probed with a harmless call whose answer tells "allowed" (a name
        that does not exist, a version that does not exist, a create-only put onto a
        record that exists) from "denied"; on ``paths`` (and one existing credential)
        too, for policies scoped to a path. PutParameter and the label calls need an
        existing parameter, so they are not checked before the first rotation.
        """
        problems: list[str] = []

        def probe(method: str, name: str, **params: Any) -> Any:
            harmless = {*NOT_FOUND, "ParameterAlreadyExists", "ValidationException"}
            try:
                return self._ssm(method, name, harmless, **params)
            except AwsExpected:
                return None
            except RotatectlError as exc:
                if str(exc) not in problems:
                    problems.append(str(exc))
                return None

        try:
            listed = self.list_paths()
        except RotatectlError as exc:
            return [str(exc)]
        for path in dict.fromkeys([*paths, *listed[:1]] or ["rotatectl-access-check"]):
            try:
                name = self.parameter_name(path)
            except (StoreError, UsageError) as exc:
                problems.append(str(exc))
                continue
            missing = f"{name}{RECORDS}-access-check"
            probe("get_parameter", missing, Name=missing, WithDecryption=True)
            probe("get_parameters", missing, Names=[missing], WithDecryption=True)
            probe("get_parameters_by_path", missing, Path=missing, WithDecryption=True)
            probe("delete_parameters", missing, Names=[missing])
            seq = self._recent(path)[0].seq if path in listed[:1] else 0
            if seq:
                record = self._record_name(path, seq)
                probe("put_parameter", record, Name=record, Value="-", Type="SecureString")
                for method in ("label_parameter_version", "unlabel_parameter_version"):
                    probe(method, name, Name=name, ParameterVersion=10**9, Labels=[CURRENT])
        if self.kms_key_id:
            try:
                self.conn.call(
                    "kms",
                    "describe_key",
                    where=f"KMS key {self.kms_key_id} ({self.conn.region})",
                    KeyId=self.kms_key_id,
                )
            except RotatectlError as exc:
                problems.append(str(exc))
        return problems
