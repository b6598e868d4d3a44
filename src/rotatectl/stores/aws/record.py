"""The record secret's document (``<prefix><path>/.rotatectl``).

* **Record secret** ``<prefix><path>/.rotatectl``: one JSON document with
  every version's metadata (state, key id, fingerprint, dates, scopes,
  issuer reference), the rotation record and its history, and the lease lock.
  Each document carries a write sequence number ``seq``; a write is one
  ``PutSecretValue`` of the document at ``seq + 1`` (which moves
  ``AWSCURRENT`` to it) with ``ClientRequestToken`` derived from the secret
  name and that number. Secrets Manager refuses a token that is already a
  version holding other data (``ResourceExistsException``), so of several
  writers that read the same document exactly one wins; a retried request
  with the same document succeeds without a second version (verified against
  moto in process and moto_server). AWS keeps every version younger than 24
  hours, and a document is never written from a read older than
  :data:`RECORD_MAX_AGE`, so a used token cannot have been purged. Every
  record operation (save_rotation's revision check, lock acquire/steal/renew/
  release, publish/promote/set_state) re-reads and re-decides with the shared
  rules of :mod:`rotatectl.stores.rules` when it loses that race.

The writes themselves are :meth:`SecretsManagerStore._commit` and ``_mutate``
(:mod:`rotatectl.stores.aws.store`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from ...errors import StoreError
from ...model import Rotation, Version, VersionState
from .._record import RecordDocument, check_header, compact, decode_lock, encode_lock

RECORD_FORMAT = 1

MAX_RECORD_BYTES = 65536  # SecretString limit
HISTORY_KEEP = 10  # earlier rotation records kept in the record secret
DESTROYED_KEEP = 50  # destroyed versions kept in the record (oldest pruned first)
RECORD_BUDGET = 12 * 1024  # what to_json aims for: compact, far below MAX_RECORD_BYTES


@dataclass
class _Record(RecordDocument):
    """The record secret's document (see module docstring)."""

    aws_ids: dict[str, str] = field(default_factory=dict)
    seq: int = 0  # write sequence number: the compare-and-set of the next write

    def with_versions(
        self, changed: Iterable[Version], aws_ids: Mapping[str, str] | None = None
    ) -> _Record:
        by_id = {v.version_id: v for v in self.versions}
        for v in changed:
            by_id[v.version_id] = v
        ids = {**self.aws_ids, **(aws_ids or {})}
        return replace(self, versions=sorted(by_id.values(), key=lambda v: v.number), aws_ids=ids)

    def to_json(self) -> str:
        """The record document, kept under MAX_RECORD_BYTES: earlier rotation
        records keep only their first and last events (the audit log has the
        rest); when still too large, the oldest earlier records and then the
        oldest destroyed versions are dropped, so no history can block a write
        (an emergency's least of all). Live versions are never dropped."""
        lock = encode_lock(self.lock)
        destroyed = [v.version_id for v in self.versions if v.state is VersionState.DESTROYED]
        # Bounded size: forget the oldest destroyed versions (their numbers stay
        # below every live one, so the next number is unaffected).
        forget = max(0, len(destroyed) - DESTROYED_KEEP)
        history = [compact(r) for r in self.history[-HISTORY_KEEP:]]
        while True:
            drop = set(destroyed[:forget])
            versions = [v for v in self.versions if v.version_id not in drop]
            doc = {
                "rotatectl": RECORD_FORMAT,
                "path": self.path,
                "versions": [v.to_dict() for v in versions],
                "aws_version_ids": {
                    v.version_id: self.aws_ids[v.version_id]
                    for v in versions
                    if v.version_id in self.aws_ids
                },
                "rotation": self.rotation.to_dict() if self.rotation else None,
                "revision": self.revision,
                "history": history,
                "lock": lock,
                "seq": self.seq,
            }
            text = json.dumps(doc, separators=(",", ":"), sort_keys=True)
            if len(text.encode("utf-8")) <= RECORD_BUDGET:
                return text
            if history:
                history = history[1:]
            elif forget < len(destroyed):
                forget += 1
            else:
                return text  # live versions alone: the write names the limit

    @classmethod
    def parse(cls, path: str, text: str, where: str) -> _Record:
        try:
            doc = check_header(json.loads(text), path, where, RECORD_FORMAT)
            lock = decode_lock(doc.get("lock"))
            rotation = doc.get("rotation")
            return cls(
                path=path,
                versions=sorted(
                    (Version.from_dict(v) for v in doc.get("versions", [])),
                    key=lambda v: v.number,
                ),
                aws_ids={str(k): str(v) for k, v in doc.get("aws_version_ids", {}).items()},
                rotation=Rotation.from_dict(rotation) if rotation else None,
                revision=int(doc.get("revision", 0)),
                history=list(doc.get("history", [])),
                lock=lock,
                seq=int(doc.get("seq", 0)),
            )
        except StoreError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{where}: not a valid rotatectl record ({exc})") from None
