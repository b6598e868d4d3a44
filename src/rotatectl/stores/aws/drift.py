"""Changes made to a key secret outside rotatectl (e.g. with boto3), and undoing them.

:class:`DriftMixin` holds the DriftAware methods of
:class:`~rotatectl.stores.aws.store.SecretsManagerStore`: :meth:`~DriftMixin.drift`
compares where the staging labels are with where the record says they should be
(:func:`~rotatectl.stores.aws.layout.desired_labels`); :meth:`~DriftMixin.adopt_value`,
:meth:`~DriftMixin.adopt` and :meth:`~DriftMixin.restore` take a client's key as
the new version or put the labels back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...aws_common import AwsExpected
from ...errors import ConflictError
from ...model import Version
from .layout import (
    CURRENT,
    PENDING,
    PREVIOUS,
    ROLE_KEY,
    desired_labels,
    label_holders,
    secret_tags,
)
from .record import _Record

LIST_FOR_LABELS = 5  # drift of more paths than this lists the key secrets' labels


class DriftMixin:
    """The DriftAware methods of SecretsManagerStore (see the module docstring)."""

    if TYPE_CHECKING:  # what they use of the store: SecretsManagerStore (store.py)

        def secret_name(self, path: str) -> str: ...

        def _where(self, name: str) -> str: ...

        def _sm(
            self,
            method: str,
            name: str,
            expect: frozenset[str] | set[str] = frozenset(),
            **params: Any,
        ) -> dict[str, Any]: ...

        def _read(self, path: str, *, remember: bool = False) -> tuple[_Record, str | None]: ...

        def _recent(
            self, path: str, *, remember: bool = False
        ) -> tuple[tuple[_Record, str | None], bool]: ...

        def _mutate(
            self,
            path: str,
            op: str,
            decide: Callable[[_Record], _Record | None],
            first: tuple[_Record, str | None] | None = None,
        ) -> _Record: ...

        def _describe(
            self, path: str, *, keep: bool = False, reuse: bool = False
        ) -> dict[str, Any] | None: ...

        def _listed(self, paths: Sequence[str]) -> dict[str, dict[str, Any]]: ...

        def _sync_labels(
            self, path: str, record: _Record, known: Mapping[str, Any] | None = None
        ) -> None: ...

        def _stage(self, name: str, label: str, **params: Any) -> None: ...

    def drift(self, path: str) -> list[str]:
        """Differences of the key secret's labels from the record, one line each.

        :meth:`read_value` reads the current version by the VersionId the record
        holds, so the generic check cannot see a new version a client reads;
        this looks at where ``AWSCURRENT``, ``AWSPREVIOUS`` and ``AWSPENDING``
        are (e.g. after ``put_secret_value(..., VersionStages=["AWSCURRENT"])``
        or ``update_secret_version_stage``). Never names a value.
        """
        (record, _), _ = self._recent(path)
        if not record.is_credential:
            return self._untracked(self._describe(path, keep=True))
        return self._drift_of(path, record, self._describe(path, keep=True))

    def drift_many(self, paths: Sequence[str]) -> dict[str, list[str]]:
        """:meth:`drift` of many paths: the key secrets' labels come from ListSecrets
        (100 a page) when there are more than a few paths, DescribeSecret otherwise."""
        unique = list(dict.fromkeys(paths))
        records = {p: self._recent(p)[0][0] for p in unique}
        if len(unique) > LIST_FOR_LABELS:
            descs = self._listed(unique)
            # Not listed: no key secret (or one without rotatectl's tags, which a
            # publish refuses anyway), except for a tracked path: look at it.
            return {
                p: self._drift_of(p, records[p], descs.get(p) or self._describe(p))
                if records[p].is_credential
                else self._untracked(descs.get(p))
                for p in unique
            }
        return {
            p: self._drift_of(p, records[p], self._describe(p))
            if records[p].is_credential
            else self._untracked(self._describe(p))
            for p in unique
        }

    @staticmethod
    def _untracked(desc: Mapping[str, Any] | None) -> list[str]:
        """Drift of a path rotatectl has no record of: its key secret, when it exists
        and holds a value clients read, was not written by rotatectl. Rotating would
        replace that value (a JSON document, another tool's key) with a new key at
        once, so the credential is blocked instead."""
        if desc is None or not label_holders(desc).get(CURRENT):
            return []
        return [
            "the key secret holds a value rotatectl did not write (AWSCURRENT, and no "
            "record of it): rotatectl does not replace it; declare its format and take it "
            "over as it is (`check --adopt`), or use another path"
        ]

    def _drift_of(self, path: str, record: _Record, desc: Mapping[str, Any] | None) -> list[str]:
        current = record.current()
        if desc is None:
            return ["the key secret is gone (deleted outside rotatectl?)"] if current else []
        holders = label_holders(desc)
        ours = {aws: v for v in record.versions if (aws := record.aws_ids.get(v.version_id))}

        def name_of(aws_ids: list[str]) -> str:
            if not aws_ids:
                return "no version"
            return ", ".join(
                f"v{ours[h].number} ({ours[h].key_id}, {ours[h].state} in rotatectl's record)"
                if h in ours
                else "a version rotatectl did not write"
                for h in aws_ids
            )

        problems: list[str] = []
        if current is not None:
            expected = record.aws_ids.get(current.version_id)
            have = holders.get(CURRENT, [])
            if have != [expected] and not self._promotion_in_flight(record, have):
                problems.append(
                    f"AWSCURRENT is on {name_of(have)}, where rotatectl's record has "
                    f"v{current.number} ({current.key_id}) current: the label was moved "
                    "outside rotatectl"
                )
        want = desired_labels(record, holders, self._where(self.secret_name(path)))
        for label in (PREVIOUS, PENDING):
            target = want.get(label)
            have = holders.get(label, [])
            if have != ([target] if target else []):
                should = name_of([target]) if target else "no version"
                problems.append(
                    f"{label} is on {name_of(have)}, where rotatectl's record puts it on "
                    f"{should}: the label was moved outside rotatectl"
                )
        return problems

    def _promotion_in_flight(self, record: _Record, holders: list[str]) -> bool:
        """AWSCURRENT is on the in-flight rotation's new version (a promotion the
        record has not caught up with yet; the resumed run finishes it)."""
        rotation = record.rotation
        if rotation is None or rotation.phase.terminal or not rotation.new_version_id:
            return False
        return holders == [record.aws_ids.get(rotation.new_version_id)]

    def client_value(self, path: str) -> str | None:
        """The value of the version ``AWSCURRENT`` is on: what an ordinary reader gets
        (``VersionStage`` passed: see the note on moto in ``_read``). None when there is none."""
        name = self.secret_name(path)
        try:  # a missing secret, or one with no AWSCURRENT: ResourceNotFound
            out = self._sm(
                "get_secret_value",
                name,
                expect={"ResourceNotFoundException"},
                SecretId=name,
                VersionStage=CURRENT,
            )
        except AwsExpected:
            return None
        value = out.get("SecretString")
        if not isinstance(value, str):
            return None
        from ... import secretformat

        secretformat.register(value)
        return value

    def adopt_value(self, path: str, version: Version, value: str) -> None:
        """Record the AWS version ``AWSCURRENT`` is on (put outside rotatectl) as the new
        pending ``version``: no value is written, so what clients read cannot change.
        A secret rotatectl did not create (no version recorded yet) gets rotatectl's
        tags first, the only change made to it. ConflictError when ``AWSCURRENT`` moved
        since ``value`` was read."""
        from ... import secretformat

        name = self.secret_name(path)

        def decide(record: _Record) -> _Record | None:
            if record.find(version.version_id) is not None:
                return None  # recorded by an earlier, interrupted adoption
            desc = self._describe(path)
            if desc is not None and not record.versions:
                self._take_over(name, path, desc)
            holders = label_holders(desc).get(CURRENT, []) if desc is not None else []
            if len(holders) != 1 or holders[0] in record.aws_ids.values():
                raise ConflictError(f"{self._where(name)}: AWSCURRENT moved; look again")
            holder = holders[0]
            out = self._sm("get_secret_value", name, SecretId=name, VersionId=holder)
            held = out.get("SecretString")
            if not isinstance(held, str) or not secretformat.matches(version, held):
                raise ConflictError(f"{self._where(name)}: AWSCURRENT moved; look again")
            return record.with_versions([version], {version.version_id: holder})

        self._mutate(path, "adopt", decide)

    def _take_over(self, name: str, path: str, desc: Mapping[str, Any]) -> None:
        """Tag a key secret rotatectl did not create as its own (idempotent): tags are
        metadata, so neither the value nor a label changes."""
        wanted = secret_tags(path, ROLE_KEY)
        have = {t.get("Key"): t.get("Value") for t in desc.get("Tags", [])}
        if any(have.get(t["Key"]) != t["Value"] for t in wanted):
            self._sm("tag_resource", name, SecretId=name, Tags=wanted)

    def adopt(self, path: str, at: datetime) -> None:
        """After the client's key is adopted (``AWSCURRENT`` is where the record says):
        put the other labels back where the record says."""
        record, _ = self._read(path)
        self._sync_labels(path, record)

    def restore(self, path: str, at: datetime, value: str | None = None) -> None:
        """Move the labels back to where the record says: ``AWSCURRENT`` with
        ``RemoveFromVersionId`` (a compare-and-swap), then the others. A version
        put outside rotatectl is left unlabeled (AWS deprecates it). ConflictError
        when the recorded current version is gone from Secrets Manager.
        """
        record, _ = self._read(path)
        current = record.current()
        name = self.secret_name(path)
        if current is not None:
            expected = record.aws_ids.get(current.version_id)
            desc = self._describe(path)
            if desc is None or expected is None:
                raise ConflictError(
                    f"{self._where(name)}: the key secret or v{current.number}'s AWS version "
                    "is gone; it cannot be restored"
                )
            if expected not in (desc.get("VersionIdsToStages") or {}):
                raise ConflictError(
                    f"{self._where(name)}: v{current.number}'s AWS version is gone; it "
                    "cannot be restored (--adopt, or `rotatectl emergency`)"
                )
            holders = label_holders(desc).get(CURRENT, [])
            if holders != [expected] and not self._promotion_in_flight(record, holders):
                params: dict[str, Any] = {"MoveToVersionId": expected}
                if holders:
                    params["RemoveFromVersionId"] = holders[0]
                try:
                    self._stage(name, CURRENT, **params)
                except AwsExpected as exc:
                    raise ConflictError(
                        f"{self._where(name)}: AWSCURRENT moved while restoring "
                        f"({exc.code}); look again"
                    ) from exc
        self._sync_labels(path, record)
