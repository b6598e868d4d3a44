"""Where rotatectl keeps a credential in Secrets Manager: names, tags, labels.

* **Key secret** ``<prefix><path>``: one secret per credential. Each rotatectl
  version is one secret version; its ``SecretString`` is the key value exactly
  and its ``VersionId`` is the rotatectl version id (used as
  ``ClientRequestToken``, so a retried publish never adds a version). Staging
  labels follow the version states, so a client that knows nothing of
  rotatectl reads the current key with
  ``get_secret_value(SecretId=..., VersionStage="AWSCURRENT")``:

  - ``AWSCURRENT``: the current version, moved only by :meth:`promote` with
    ``RemoveFromVersionId`` (a compare-and-swap: an out-of-band move makes the
    next promotion a ConflictError, never an overwrite);
  - ``AWSPREVIOUS``: the most recently demoted PREVIOUS version;
  - ``AWSPENDING``: the newest PENDING version;
  - ``rotatectl-v<N>``: one label per version that is not destroyed, so that
    AWS never treats a tracked value as deprecated (it purges unlabeled
    versions once a secret has more than 100). Secrets Manager allows 20
    labels per secret: when that would be exceeded the oldest *retired*
    versions lose theirs first; too many accepted versions is a StoreError.

* **Record secret** ``<prefix><path>/.rotatectl``: the record document
  (:mod:`rotatectl.stores.aws.record`).

* **Destroyed** means: every label is removed from the version, so Secrets
  Manager treats it as deprecated and deletes it in the background (it cannot
  delete a single version on request); the record says DESTROYED and
  :meth:`read_value` refuses it. Until AWS purges it, a principal allowed
  ``GetSecretValue`` on the secret can still fetch it by ``VersionId``: for
  IAM keys the key itself is deleted at the issuer, and verifiers never
  accept a destroyed version.

Both secrets are created with the tags ``rotatectl:managed-by=rotatectl``,
``rotatectl:path=<path>`` and ``rotatectl:role=key|record``; :meth:`list_paths`
finds them with a paginated ``ListSecrets`` tag filter, and
:meth:`versions_many` reads many records with ``BatchGetSecretValue`` (20 per
call) for ``status`` over many credentials.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from ...errors import StoreError
from ...model import VersionState
from ..rules import check_path
from .record import _Record

RECORD_SUFFIX = "/.rotatectl"

TAG_MANAGED = "rotatectl:managed-by"
TAG_PATH = "rotatectl:path"
TAG_ROLE = "rotatectl:role"
ROLE_KEY = "key"
ROLE_RECORD = "record"

CURRENT = "AWSCURRENT"
PREVIOUS = "AWSPREVIOUS"
PENDING = "AWSPENDING"
STAGED = "rotatectl-next"  # a record version written but not (yet) made current
_VERSION_LABEL = re.compile(r"rotatectl-v(\d+)")
AWS_LABELS = (CURRENT, PREVIOUS, PENDING)
MAX_LABELS = 20  # Secrets Manager: staging labels per secret

_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]+")
_TOKEN = re.compile(r"[A-Za-z0-9-]{32,64}")
# A fixed namespace: derived version ids must be the same on every host and run.
_TOKEN_NS = uuid.UUID("5b0c6f0e-54f1-4a43-9d6e-7a6f74617465")


def key_secret_name(prefix: str, path: str) -> str:
    """The key secret's name for ``path`` under ``prefix``.

    StoreError for a name Secrets Manager refuses; UsageError for a path the
    rule of every store refuses (:func:`~rotatectl.stores.rules.check_path`),
    such as ``svc/a/.rotatectl``, the record secret of ``svc/a``.
    """
    name = f"{prefix}{path}"
    if not _NAME.fullmatch(name) or len(name) + len(RECORD_SUFFIX) > 512:
        raise StoreError(
            f"{path!r} cannot be a Secrets Manager secret name "
            "(1-500 characters of A-Z a-z 0-9 / _ + = . @ -)"
        )
    check_path(path)
    return name


def secret_tags(path: str, role: str) -> list[dict[str, str]]:
    return [
        {"Key": TAG_MANAGED, "Value": "rotatectl"},
        {"Key": TAG_PATH, "Value": path},
        {"Key": TAG_ROLE, "Value": role},
    ]


def version_label(number: int) -> str:
    return f"rotatectl-v{number}"


def aws_version_id(version_id: str) -> str:
    """The Secrets Manager VersionId (ClientRequestToken) for a rotatectl version id.

    Secrets Manager wants 32-64 characters; a uuid4 version id (what the
    runner uses) is taken as is, anything else maps to a stable uuid5.
    """
    if _TOKEN.fullmatch(version_id):
        return version_id
    return str(uuid.uuid5(_TOKEN_NS, version_id))


def label_holders(desc: Mapping[str, Any]) -> dict[str, list[str]]:
    """Label -> the VersionIds carrying it (normally one)."""
    found: dict[str, list[str]] = {}
    for version_id, labels in (desc.get("VersionIdsToStages") or {}).items():
        for label in labels:
            found.setdefault(label, []).append(version_id)
    return found


def desired_labels(
    record: _Record, holders: Mapping[str, list[str]], where: str
) -> dict[str, str | None]:
    """Label -> VersionId it should be on (None: nowhere), except AWSCURRENT.

    Raises StoreError (naming ``where``, the key secret) when the accepted
    versions alone need more labels than Secrets Manager allows.
    """
    ids = record.aws_ids
    known = [v for v in record.versions if v.version_id in ids]
    want: dict[str, str | None] = {PENDING: None, PREVIOUS: None}
    pending = [v for v in known if v.state is VersionState.PENDING]
    if pending:
        newest = ids[max(pending, key=lambda v: v.number).version_id]
        # Not on a secret's first version, which AWS made AWSCURRENT by itself:
        # it is what clients read already. (Also, moto drops AWSCURRENT when a
        # retried first PutSecretValue carries AWSPENDING.)
        if holders.get(CURRENT) != [newest]:
            want[PENDING] = newest
    previous = [v for v in known if v.state is VersionState.PREVIOUS]
    if previous:
        latest = max(previous, key=lambda v: (v.demoted or v.created, v.number))
        want[PREVIOUS] = ids[latest.version_id]
    foreign = [
        label
        for label in holders
        if label not in (*AWS_LABELS, STAGED) and not _VERSION_LABEL.fullmatch(label)
    ]
    budget = MAX_LABELS - len(AWS_LABELS) - len(foreign)
    live = [v for v in known if v.state is not VersionState.DESTROYED]
    keep = [v for v in live if v.state is not VersionState.RETIRED]
    if len(keep) > budget:
        raise StoreError(
            f"{where}: {len(keep)} accepted versions need "
            f"more staging labels than Secrets Manager allows ({MAX_LABELS} per secret); "
            "retire or destroy old versions first"
        )
    retired = sorted(
        (v for v in live if v.state is VersionState.RETIRED),
        key=lambda v: v.number,
        reverse=True,
    )
    keep += retired[: budget - len(keep)]
    for label in holders:
        if _VERSION_LABEL.fullmatch(label):
            want[label] = None  # unless kept below: labels of unknown/destroyed versions
    for v in keep:
        want[version_label(v.number)] = ids[v.version_id]
    return want
