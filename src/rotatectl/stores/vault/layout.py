"""Where a credential's records live in the KV v2 mount: the path rules.

Layout
------
A credential stored at ``path`` lives under ``<mount>/<prefix>/<path>``
(``prefix`` is optional; below, ``P`` is the full path inside the mount)::

    P                              client path: {"current": <key>, "key_id", "version_id"};
                                   for a JSON document (format = "json"): the document's
                                   own fields, nothing added (bao kv get -field=api_key)
    P/.rotatectl/index             verifier view + version metadata (no values) + the
                                   rotation record (its KV history: earlier records):
                                     {"format": 2,
                                      "accepted": {<key_id>: {"version_id", "number",
                                                   "fingerprint", "state", "scopes", "expires"}},
                                      "versions": [<Version.to_dict()> + "value_kv_version"],
                                      "promotion": null | {"target", "expected", "at",
                                                   "rotation", "rotation_revision"},
                                      "rotation": null | <Rotation.to_dict()>,
                                      "rotation_revision": <int>}
    P/.rotatectl/versions/<id>     one key value per version: {"value": <key>}
    P/.rotatectl/rotation          format 1 only: the rotation record (KV version =
                                   revision), read until the index's next write
    P/.rotatectl/lock              the lease: {"holder", "token", "acquired", "expires"};
                                   the KV version written by an acquisition is its fencing token

- A client reads the current key with one read of one field:
  ``bao kv get -field=current <mount>/P`` (or ``vault kv get ...``); of a document,
  the field the config names (``-field=api_key``) or all of them.
- A verifier reads every accepted key, hashes only, with one read:
  ``bao kv get -field=accepted <mount>/P/.rotatectl/index``. Its policy needs
  no access to ``P`` or ``P/.rotatectl/versions/*``, where the values are.
- Version metadata lives in the index's data, not in custom_metadata, so it
  is not bound by KV v2's 64-key/512-character limits, and one check-and-set
  write changes states and the verifier view together.
- Every data write passes ``cas``; every path gets ``cas_required`` and a
  ``max_versions`` bound (client 1, so an old key does not linger in its
  history; values 5; index 50, its KV history the earlier rotation records (10 in
  format 1); lock 1). Destroying a version
  soft-deletes then destroys (KV v2 ``destroy``) every KV version of its value
  path; the metadata stays, showing ``destroyed``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ... import secretformat
from ...errors import UsageError
from ...registry import AdapterContext
from ..rules import RESERVED, check_path, path_problem

if TYPE_CHECKING:
    from ...model import Version

CLIENT_FIELD = "current"
MAX_VERSIONS = {"client": 1, "value": 5, "index": 50, "rotation": 50, "lock": 1}
LEGACY_INDEX_VERSIONS = 10  # a format 1 index's (its records' history was the rotation path's)


def kept_versions(kind: str, index_format: int) -> int:
    """The ``max_versions`` rotatectl gives a path of ``kind``, under an index of
    ``index_format`` (format 1 kept fewer of the index's)."""
    return LEGACY_INDEX_VERSIONS if kind == "index" and index_format == 1 else MAX_VERSIONS[kind]


_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def document_field(versions: Sequence[Version]) -> str:
    """The JSON field the credential's documents hold the key in ("" for bare keys):
    every version of a credential has the same format (a change is refused)."""
    return next((v.field for v in versions if v.field), "")


def client_data(version: Version, value: str) -> dict[str, Any]:
    """What the client path holds while ``version``, whose stored value is ``value``,
    is current: a bare key with the version's ids beside it; a document's own fields."""
    if version.field:
        return secretformat.fields(value)
    return {CLIENT_FIELD: value, "key_id": version.key_id, "version_id": version.version_id}


def client_value(data: Mapping[str, Any] | None, field: str) -> str | None:
    """The value the client path's ``data`` holds, as a version stores it (a document
    as its JSON text); None when it holds no key (no path, or no such string field)."""
    if data is None or not isinstance(data.get(field or CLIENT_FIELD), str):
        return None
    if field:
        return json.dumps(data, ensure_ascii=False)
    value: str = data[CLIENT_FIELD]
    return value


def client_version_id(data: Mapping[str, Any] | None, versions: Sequence[Version]) -> str | None:
    """The version the client path's ``data`` holds: named beside a bare key; for a
    document (which carries nothing of rotatectl's), the version whose fingerprint its
    key field matches. None when none."""
    field = document_field(versions)
    if not field:
        return None if data is None else data.get("version_id")
    value = client_value(data, field)
    if value is None:
        return None
    return next((v.version_id for v in versions if secretformat.matches(v, value)), None)


def client_custom(field: str) -> dict[str, str]:
    """The client path's custom metadata: which field holds the key."""
    return {"client-field": field or CLIENT_FIELD}


def mount_and_prefix(settings: Mapping[str, Any], ctx: AdapterContext) -> tuple[str, str]:
    """The ``mount`` and ``prefix`` settings, stripped of slashes; ConfigError naming
    the key when the mount names no mount or the prefix is not a valid path."""
    mount = settings.get("mount", "secret").strip("/")
    if not mount or any(not part for part in mount.split("/")):
        raise ctx.error("mount", "must name a KV v2 mount, e.g. 'secret'")
    prefix = settings.get("prefix", "").strip("/")
    problem = path_problem(prefix) if prefix else None
    if problem:
        raise ctx.error("prefix", f"invalid path prefix {prefix!r}: {problem}")
    return mount, prefix


class Layout:
    """The paths of a credential's records under ``mount`` (and ``prefix``)."""

    mount: str
    prefix: str

    def _full(self, path: str) -> str:
        check_path(path)  # the rule every store applies: no `.rotatectl` segment, among others
        return f"{self.prefix}/{path}" if self.prefix else path

    def _rel(self, path: str, leaf: str) -> str:
        return f"{self._full(path)}/{RESERVED}/{leaf}"

    def _value_rel(self, path: str, version_id: str) -> str:
        if not _ID.match(version_id):
            raise UsageError(f"{path}: version id {version_id!r} cannot be stored in vault")
        return self._rel(path, f"versions/{version_id}")

    def client_path(self, path: str) -> str:
        """``<mount>/<P>``: what ``bao kv get -field=current`` reads."""
        return f"{self.mount}/{self._full(path)}"

    def index_path(self, path: str) -> str:
        """``<mount>/<P>/.rotatectl/index``: what a verifier reads."""
        return f"{self.mount}/{self._rel(path, 'index')}"

    def _api(self, kind: str, rel: str) -> str:
        return f"{self.mount}/{kind}/{rel}"
