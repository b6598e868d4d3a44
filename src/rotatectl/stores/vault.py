"""The ``vault`` store: HashiCorp Vault or OpenBao, KV version 2.

Layout
------
A credential stored at ``path`` lives under ``<mount>/<prefix>/<path>``
(``prefix`` is optional; below, ``P`` is the full path inside the mount)::

    P                              client path: {"current": <key>, "key_id", "version_id"}
    P/.rotatectl/index             verifier view + version metadata (no values):
                                     {"format": 1,
                                      "accepted": {<key_id>: {"version_id", "number",
                                                   "fingerprint", "state", "scopes", "expires"}},
                                      "versions": [<Version.to_dict()> + "value_kv_version"],
                                      "promotion": null | {"target", "expected", "at"}}
    P/.rotatectl/versions/<id>     one key value per version: {"value": <key>}
    P/.rotatectl/rotation          the rotation record; its KV version is the revision
    P/.rotatectl/lock              the lease: {"holder", "token", "acquired", "expires"};
                                   the KV version written by an acquisition is its fencing token

- A client reads the current key with one read of one field:
  ``bao kv get -field=current <mount>/P`` (or ``vault kv get ...``).
- A verifier reads every accepted key, hashes only, with one read:
  ``bao kv get -field=accepted <mount>/P/.rotatectl/index``. Its policy needs
  no access to ``P`` or ``P/.rotatectl/versions/*``, where the values are.
- Version metadata lives in the index's data, not in custom_metadata, so it
  is not bound by KV v2's 64-key/512-character limits, and one check-and-set
  write changes states and the verifier view together.
- Every data write passes ``cas``; every path gets ``cas_required`` and a
  ``max_versions`` bound (client 1, so an old key does not linger in its
  history; values 5; index 10; rotation 50; lock 1). Destroying a version
  soft-deletes then destroys (KV v2 ``destroy``) every KV version of its value
  path; the metadata stays, showing ``destroyed``.

Write ordering (crash safety)
-----------------------------
Each step is one check-and-set write; a crash between two of them leaves a
state that the next call completes (every mutating call first *settles*: it
finishes a recorded promotion).

- publish: value path, then index. Before the index write the value is
  invisible (no verifier accepts it, no client sees it); a retry writes a new
  KV version of the value path, and the index names the KV version that
  belongs to the version, so an earlier attempt's value is never mistaken
  for it (and is destroyed once the index is written).
- promote: (1) index with a ``promotion`` intent, states unchanged; (2) the
  client path; (3) index with the new states, intent cleared. Both keys are
  accepted by verifiers throughout (the target is pending or previous, the
  old current becomes previous), so invariant 2 holds at every step. The
  client write is the commit point: :meth:`VaultStore.versions` reports the
  new states as soon as the client path names the target, so "exactly one
  current, and the client read gives it" (invariant 1) holds at every step.
  An intent left by a crash is always rolled forward.
- retire: index only (the key leaves the verifier view in that write). The
  client path never holds a non-current key, so nothing else changes.
- destroy: wipe the value path first, then mark it destroyed in the index,
  so a crash never leaves an index saying "destroyed" over a live value.

The runner holds the lease lock around all of this; the check-and-set writes
make a second writer a conflict rather than an overwrite even without it.

Drift (changes made outside rotatectl)
--------------------------------------
The index's version rows are rotatectl's record. The generic check compares
the client path's ``current`` with the current version's fingerprint;
:meth:`VaultStore.drift` checks everything else (see there). A foreign client
value is adopted as a new version by :func:`rotatectl.drift.adopt`, like on every
store; :meth:`VaultStore.adopt` then takes what verifiers see as the truth (a key
dropped from the verifier view is retired). ``restore`` writes the records back
over the client path, the view and the value paths. Both repair rotatectl's own
copies of values from the KV history where they can; the caller holds the lease.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Self, TypeVar

from .. import keyformat, redact, retry
from ..errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RotatectlError,
    StoreError,
    UsageError,
)
from ..model import (
    AcceptedKey,
    Lease,
    Rotation,
    Version,
    VersionState,
    iso,
    parse_iso,
)
from ..ports import StoreBase
from ..registry import AdapterContext
from ..vault_auth import (
    Authenticator,
    CasMismatch,
    Connection,
    check_connection_settings,
    parse_connection,
    translate,
)
from ._cas import RECORD_MAX_AGE, RecordCache, again_while_lost, confirmed
from .rules import (
    RESERVED,
    LockRow,
    accepted,
    check_path,
    path_problem,
    plan_acquire,
    plan_promote,
    plan_publish,
    plan_release,
    plan_renew,
    plan_set_state,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

INDEX_FORMAT = 1
CLIENT_FIELD = "current"
MAX_VERSIONS = {"client": 1, "value": 5, "index": 10, "rotation": 50, "lock": 1}
# What the store remembers of what it read or wrote (never a value; see _recall).
REMEMBERED_KINDS = frozenset({"index", "rotation", "lock"})
OWN_WRITE_AGE = 20.0  # seconds :meth:`VaultStore.state` trusts copies under a lease it wrote
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Slack added to a wait when deciding whether the token would outlive it.
_RENEW_SLACK = 15.0


@dataclass(frozen=True)
class _Promotion:
    target: str
    expected: str | None
    at: datetime


@dataclass(frozen=True)
class _Index:
    """The decoded index path. ``revision`` is its KV version (0: none yet)."""

    revision: int = 0
    versions: tuple[Version, ...] = ()
    value_kv: Mapping[str, int] = field(default_factory=dict)
    promotion: _Promotion | None = None

    @classmethod
    def decode(cls, data: Mapping[str, Any] | None, revision: int, where: str) -> _Index:
        if data is None:
            return cls()
        if data.get("format") != INDEX_FORMAT:
            raise StoreError(f"{where}: index format {data.get('format')!r} is not supported")
        rows = list(data.get("versions") or ())
        versions = sorted((Version.from_dict(r) for r in rows), key=lambda v: v.number)
        value_kv = {
            str(r["version_id"]): int(r["value_kv_version"])
            for r in rows
            if r.get("value_kv_version")
        }
        raw = data.get("promotion")
        promotion = None
        if raw:
            at = parse_iso(raw["at"])
            assert at is not None
            promotion = _Promotion(str(raw["target"]), raw.get("expected"), at)
        return cls(revision, tuple(versions), value_kv, promotion)

    def encode(self) -> dict[str, Any]:
        rows = []
        for v in self.versions:
            row = v.to_dict()
            if v.version_id in self.value_kv:
                row["value_kv_version"] = self.value_kv[v.version_id]
            rows.append(row)
        view = {
            v.key_id: {
                "version_id": v.version_id,
                "number": v.number,
                "fingerprint": v.fingerprint,
                "state": v.state.value,
                "scopes": list(v.scopes),
                "expires": iso(v.expires),
            }
            for v in self.versions
            if v.state.accepted
        }
        promotion = None
        if self.promotion is not None:
            p = self.promotion
            promotion = {"target": p.target, "expected": p.expected, "at": iso(p.at)}
        return {"format": INDEX_FORMAT, "accepted": view, "versions": rows, "promotion": promotion}

    def find(self, version_id: str | None) -> Version | None:
        return next((v for v in self.versions if v.version_id == version_id), None)

    def with_versions(self, changed: Sequence[Version]) -> _Index:
        by_id = {v.version_id: v for v in self.versions}
        by_id.update({v.version_id: v for v in changed})
        value_kv = {
            k: n
            for k, n in self.value_kv.items()
            if by_id.get(k) is None or by_id[k].state is not VersionState.DESTROYED
        }
        ordered = tuple(sorted(by_id.values(), key=lambda v: v.number))
        return replace(self, versions=ordered, value_kv=value_kv)

    def applied(self, path: str) -> _Index:
        """The index once the recorded promotion is done (intent cleared)."""
        p = self.promotion
        if p is None:
            return self
        try:
            changes = plan_promote(path, self.versions, p.target, p.expected, p.at)
        except RotatectlError as exc:
            raise StoreError(f"{path}: the recorded promotion cannot be completed: {exc}") from exc
        return replace(self.with_versions(changes), promotion=None)


# Fields of a verifier view entry that ``adopt`` may take from an outside edit:
# they restrict a key (or not) without naming another one.
_ADOPTABLE_VIEW_FIELDS = frozenset({"scopes", "expires"})


@dataclass(frozen=True)
class _ViewDiff:
    """How the stored verifier view differs from the one the index's rows give."""

    malformed: bool = False
    missing: tuple[Version, ...] = ()  # accepted versions the view no longer lists
    changed: tuple[tuple[Version, tuple[str, ...]], ...] = ()  # (version, differing fields)
    extra: int = 0  # entries no accepted version has
    stored: Mapping[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.malformed or bool(self.missing or self.changed or self.extra)

    @classmethod
    def of(cls, index: _Index, stored: Any) -> _ViewDiff:
        expected: dict[str, dict[str, Any]] = index.encode()["accepted"]
        if not isinstance(stored, dict):
            return cls(malformed=True)
        by_key = {v.key_id: v for v in index.versions if v.state.accepted}
        changed = []
        for key, want in expected.items():
            got = stored.get(key)
            if got is None or got == want:
                continue
            fields = (
                tuple(sorted(f for f in set(want) | set(got) if want.get(f) != got.get(f)))
                if isinstance(got, dict)
                else ("entry",)
            )
            changed.append((by_key[key], fields))
        return cls(
            missing=tuple(by_key[k] for k in expected if k not in stored),
            changed=tuple(changed),
            extra=sum(1 for k in stored if k not in expected),
            stored=stored,
        )


@dataclass(frozen=True)
class _Scan:
    """One look at a credential's paths, for drift: what differs from the index's records."""

    index: _Index  # as stored (revision 0: missing or deleted)
    versions: tuple[Version, ...]  # as readers see them: a committed promotion applied
    client: Mapping[str, Any] | None
    client_kv: int
    index_gone: str = ""  # "deleted" | "missing" | "" (there)
    index_undeletable: bool = False  # its latest KV version is soft-deleted, not destroyed
    client_matches: bool = True  # the client value matches the current fingerprint
    labels_wrong: bool = False  # the client's key_id/version_id do not name the current
    view: _ViewDiff = field(default_factory=_ViewDiff)
    values: tuple[tuple[Version, str], ...] = ()  # (accepted version, "missing" | "mismatch")
    settings: tuple[tuple[str, str, str], ...] = ()  # (rel, kind, what is wrong)

    @property
    def current(self) -> Version | None:
        return next((v for v in self.versions if v.state is VersionState.CURRENT), None)

    @property
    def client_value(self) -> str | None:
        value = None if self.client is None else self.client.get(CLIENT_FIELD)
        return value if isinstance(value, str) else None


class VaultStore(StoreBase):
    FEATURES = frozenset({"state", "batched-reads", "drift", "history", "access-check"})

    """A SecretStore on a Vault/OpenBao KV v2 mount (see the module docstring).

    Thread-safe. Every method raises only rotatectl errors: PermissionDeniedError
    naming the path and missing capability, NotFoundError, ConflictError (a
    check-and-set lost), StoreUnavailableError (sealed, unreachable, 5xx;
    retried here with bounded backoff before it is raised).
    """

    def __init__(
        self,
        connection: Connection,
        *,
        mount: str = "secret",
        prefix: str = "",
        env: Mapping[str, str] | None = None,
        # Each request is retried here, once (the runner does not retry it again).
        retry_attempts: int = retry.ATTEMPTS,
        retry_max_delay: float = retry.MAX_DELAY,
        cas_attempts: int = 8,
    ) -> None:
        self.connection = connection
        self.url = connection.url
        self.mount = mount.strip("/")
        self.prefix = prefix.strip("/")
        self._auth = Authenticator(connection.auth, env or {}, connection.url)
        self._retry_attempts = retry_attempts
        self._retry_max_delay = retry_max_delay
        self._cas_attempts = cas_attempts
        self._mutex = threading.Lock()
        self._client_obj: Any = None
        self._mount_checked = False
        self._closed = False
        # rel -> (data, KV version, whether written here), timed: see _recall.
        self._known: RecordCache[str, tuple[dict[str, Any] | None, int, bool]] = RecordCache(
            RECORD_MAX_AGE
        )

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Build from a ``[stores.NAME]`` table (see DESIGN.md section 4).

        Keys: url, mount, prefix, namespace, auth, ca_cert, ca_path,
        client_cert, client_key, timeout. Raises ConfigError naming the key.
        No network call happens here: the first store call authenticates.
        """
        check_connection_settings(settings, ctx, {"mount": str, "prefix": str})
        mount = settings.get("mount", "secret").strip("/")
        if not mount or any(not part for part in mount.split("/")):
            raise ctx.error("mount", "must name a KV v2 mount, e.g. 'secret'")
        prefix = settings.get("prefix", "").strip("/")
        problem = path_problem(prefix) if prefix else None
        if problem:
            raise ctx.error("prefix", f"invalid path prefix {prefix!r}: {problem}")
        return cls(parse_connection(settings, ctx), mount=mount, prefix=prefix, env=ctx.env)

    def __repr__(self) -> str:
        where = f"{self.mount}/{self.prefix}".rstrip("/")
        return f"VaultStore({self.url!r}, {where!r})"

    def close(self) -> None:
        """Revoke a token we logged in for (best effort) and close the session."""
        with self._mutex:
            client, self._client_obj = self._client_obj, None
            self._closed = True
        if client is None:
            return
        if self._auth.logged_in:
            # A login token outliving the command helps nobody; a failure here does not matter.
            with contextlib.suppress(Exception):
                client.auth.token.revoke_self()
        with contextlib.suppress(Exception):
            client.adapter.close()

    # -- paths ----------------------------------------------------------------

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

    # -- plumbing ---------------------------------------------------------------

    def _client(self) -> Any:
        with self._mutex:
            if self._closed:
                raise StoreError(f"vault store {self.url}: the store is closed")
            if self._client_obj is None:
                import hvac  # lazily: only commands that touch vault pay for it

                c = self.connection
                # token="" keeps hvac from reading VAULT_TOKEN itself: the
                # Authenticator decides (it honours BAO_TOKEN and the config).
                self._client_obj = hvac.Client(
                    url=c.url,
                    token="",
                    verify=c.verify,
                    cert=c.cert,
                    timeout=c.timeout,
                    namespace=c.namespace,
                )
            client = self._client_obj
        self._auth.ensure(client)
        if not self._mount_checked:
            self._check_mount(client)
        return client

    def _check_mount(self, client: Any) -> None:
        """Fail early and clearly on a missing mount or a KV v1 mount (no cas there)."""
        import hvac.exceptions as hx

        try:
            data = client.adapter.get(f"/v1/sys/internal/ui/mounts/{self.mount}")["data"]
        except (hx.Forbidden, hx.InvalidPath):
            data = None  # not all servers allow this; the KV calls will tell
        except Exception as exc:
            raise translate(exc, "vault mount check", url=self.url) from exc
        if data is not None:
            version = str((data.get("options") or {}).get("version", ""))
            if data.get("type") not in ("kv", "generic") or version != "2":
                raise StoreError(
                    f"vault mount {self.mount}/ is {data.get('type')} version "
                    f"{version or '1'}; rotatectl needs a KV version 2 mount"
                )
        self._mount_checked = True

    def _retrying(self, fn: Callable[[], T]) -> T:
        """One request under the one retry policy (:mod:`rotatectl.retry`): an error
        that gives up is marked ``retried``, so the runner does not retry it again."""
        return retry.retry_call(
            fn,
            attempts=self._retry_attempts,
            max_delay=self._retry_max_delay,
            first_wait=0.1,
            max_wait=2.0,
            jitter=0.1,
        )

    def _call(
        self,
        where: str,
        api_path: str,
        capability: str,
        fn: Callable[[Any], T],
        *,
        retry: bool = True,
    ) -> T:
        """One API call with errors translated; retried when the failure is transient."""

        def once() -> T:
            client = self._client()
            try:
                return fn(client)
            except Exception as exc:
                error = translate(
                    exc, where, url=self.url, api_path=api_path, capability=capability
                )
                hint = self._auth.denial_hint()
                if isinstance(error, PermissionDeniedError) and hint:
                    error = PermissionDeniedError(f"{error} ({hint})")
                raise error from exc

        return self._retrying(once) if retry else once()

    def _api(self, kind: str, rel: str) -> str:
        return f"{self.mount}/{kind}/{rel}"

    def _read(
        self,
        where: str,
        rel: str,
        version: int | None = None,
        *,
        retry: bool = True,
        remember: bool = False,
    ) -> tuple[dict[str, Any] | None, int]:
        """(data, KV version) of ``rel`` (latest or ``version``); (None, 0) if absent or
        deleted. ``remember``: keep the latest for :meth:`_recall`."""
        if remember:
            found = self._read(where, rel, version, retry=retry)
            self._known.put(rel, (*found, False))
            return found
        try:
            resp = self._call(
                where,
                self._api("data", rel),
                "read",
                lambda c: c.secrets.kv.v2.read_secret_version(
                    rel, version=version, mount_point=self.mount, raise_on_deleted_version=True
                ),
                retry=retry,
            )
        except NotFoundError:
            return None, 0
        body = resp["data"]
        return body["data"], int(body["metadata"]["version"])

    def _recall(
        self, where: str, rel: str, *, remember: bool = False, read_only: bool = False
    ) -> tuple[tuple[dict[str, Any] | None, int], bool]:
        """``rel``'s latest (data, KV version) as this store last read (with ``remember``)
        or wrote it (``read_only``: only what it read), if that is younger than
        RECORD_MAX_AGE; else read now. And whether it was the remembered copy.

        Every write is a check-and-set on the KV version, so a stale copy only
        loses the race (and is forgotten); a no-op or a refusal decided on one is
        confirmed on a fresh read (:meth:`_plan`). Only a process that called
        :meth:`state`, :meth:`snapshot_many` or wrote has copies: a long-lived
        reader (an SDK client) always asks the server.
        """
        known = self._known.get(rel)
        if known is not None and not (read_only and known[2]):
            return (known[0], known[1]), True
        return self._read(where, rel, remember=remember), False

    def _metadata(self, where: str, rel: str) -> dict[str, Any] | None:
        try:
            resp = self._call(
                where,
                self._api("metadata", rel),
                "read",
                lambda c: c.secrets.kv.v2.read_secret_metadata(rel, mount_point=self.mount),
            )
        except NotFoundError:
            return None
        data: dict[str, Any] = resp["data"]
        return data

    def _configure(
        self, where: str, rel: str, kind: str, custom: Mapping[str, str] | None = None
    ) -> None:
        """Set max_versions and cas_required (and custom_metadata) on a new path."""
        self._call(
            where,
            self._api("metadata", rel),
            "create",
            lambda c: c.secrets.kv.v2.update_metadata(
                rel,
                max_versions=MAX_VERSIONS[kind],
                cas_required=True,
                custom_metadata={"managed-by": "rotatectl", "role": kind, **(custom or {})},
                mount_point=self.mount,
            ),
        )

    def _write(
        self,
        where: str,
        rel: str,
        data: dict[str, Any],
        cas: int,
        kind: str,
        custom: Mapping[str, str] | None = None,
    ) -> int:
        """Write ``data`` with check-and-set ``cas``; returns the new KV version.

        CasMismatch if the path is not at version ``cas``. A transient failure
        is retried; before a retry the path is read back, because the lost
        reply may belong to a write that landed.
        """
        if cas == 0:
            self._configure(where, rel, kind, custom)
        attempted = False

        def once() -> int:
            nonlocal attempted
            if attempted:
                found, version = self._read(where, rel, retry=False)
                if version == cas + 1 and found == data:
                    return version  # our earlier attempt landed
                if version != cas:
                    raise CasMismatch(f"{where}: {self._api('data', rel)} changed concurrently")
            attempted = True
            resp = self._call(
                where,
                self._api("data", rel),
                # Not "create": the metadata written first makes the path exist already.
                "update",
                lambda c: c.secrets.kv.v2.create_or_update_secret(
                    rel, data, cas=cas, mount_point=self.mount
                ),
                retry=False,
            )
            return int(resp["data"]["version"])

        try:
            version = self._retrying(once)
        except CasMismatch:
            self._known.forget(rel)
            raise
        if kind in REMEMBERED_KINDS:
            self._known.put(rel, (data, version, True))
        return version

    def _list(self, where: str, rel: str) -> list[str]:
        try:
            resp = self._call(
                where,
                self._api("metadata", rel),
                "list",
                lambda c: c.secrets.kv.v2.list_secrets(rel, mount_point=self.mount),
            )
        except NotFoundError:
            return []
        return [str(k) for k in resp["data"].get("keys") or ()]

    def _wipe(self, where: str, rel: str, keep: int = 0) -> None:
        """Soft-delete then destroy every KV version of ``rel`` (except ``keep``)."""
        meta = self._metadata(where, rel)
        if meta is None:
            return
        history = meta.get("versions") or {}
        live = sorted(
            int(n) for n, v in history.items() if not v.get("destroyed") and int(n) != keep
        )
        if not live:
            return
        undeleted = [n for n in live if not history[str(n)].get("deletion_time")]
        if undeleted:
            # Soft delete first: the value is unreadable at once, even if destroy fails.
            self._call(
                where,
                self._api("delete", rel),
                "update",
                lambda c: c.secrets.kv.v2.delete_secret_versions(
                    rel, undeleted, mount_point=self.mount
                ),
            )
        self._call(
            where,
            self._api("destroy", rel),
            "update",
            lambda c: c.secrets.kv.v2.destroy_secret_versions(rel, live, mount_point=self.mount),
        )

    def _optimistic(self, where: str, fn: Callable[[], T]) -> T:
        """Run a read-plan-write step again while its check-and-set loses a race."""
        return again_while_lost(fn, where, self._cas_attempts, lost=CasMismatch)

    # -- index and client path --------------------------------------------------

    def _read_index(self, where: str, path: str, *, remember: bool = False) -> _Index:
        data, revision = self._read(where, self._rel(path, "index"), remember=remember)
        return _Index.decode(data, revision, where)

    def _write_index(self, where: str, path: str, index: _Index) -> _Index:
        revision = self._write(
            where, self._rel(path, "index"), index.encode(), index.revision, "index"
        )
        return replace(index, revision=revision)

    def _client_version_id(self, where: str, path: str) -> tuple[str | None, int]:
        data, version = self._read(where, self._full(path))
        return (None if data is None else data.get("version_id")), version

    def _value(self, where: str, path: str, index: _Index, version_id: str) -> str:
        kv_version = index.value_kv.get(version_id)
        if kv_version is None:
            raise NotFoundError(f"{where}: the value of version {version_id} was destroyed")
        data, _ = self._read(where, self._value_rel(path, version_id), kv_version)
        if data is None or not isinstance(data.get("value"), str):
            raise NotFoundError(f"{where}: the value of version {version_id} is gone")
        value: str = data["value"]
        return value

    def _complete(self, where: str, path: str, index: _Index) -> _Index:
        """Roll a recorded promotion forward: the client path, then the index."""
        p = index.promotion
        assert p is not None
        serving, client_version = self._client_version_id(where, path)
        if serving != p.target:
            target = index.find(p.target)
            if target is None:
                raise StoreError(f"{where}: the recorded promotion names no known version")
            self._write(
                where,
                self._full(path),
                {
                    CLIENT_FIELD: self._value(where, path, index, p.target),
                    "key_id": target.key_id,
                    "version_id": target.version_id,
                },
                client_version,
                "client",
                {"client-field": CLIENT_FIELD},
            )
        return self._write_index(where, path, index.applied(path))

    def _settled(self, where: str, path: str, *, fresh: bool = False) -> tuple[_Index, bool]:
        """The index with any promotion left by an earlier call completed, and
        whether it is the remembered copy (see :meth:`_recall`); ``fresh``: read it."""
        rel = self._rel(path, "index")
        if fresh:
            found, remembered = self._read(where, rel, remember=True), False
        else:
            found, remembered = self._recall(where, rel, remember=True)
        index = _Index.decode(*found, where)
        if index.promotion is not None:
            log.info("%s: completing an interrupted promotion", where)
            index = self._complete(where, path, index)
        return index, remembered

    def _plan(self, where: str, path: str, plan: Callable[[_Index], T]) -> tuple[_Index, T]:
        """``plan`` on the settled index; when that is the remembered copy and the plan
        is a no-op (falsy) or refuses (raises), again on a fresh read."""
        return confirmed(
            self._settled(where, path),
            lambda: self._settled(where, path, fresh=True)[0],
            plan,
        )

    # -- SecretStore --------------------------------------------------------------

    def list_paths(self) -> list[str]:
        """Credential paths under the mount (and prefix): those with an index or rotation."""
        where = "vault list"
        found: list[str] = []

        def walk(folder: str) -> None:
            for key in self._list(where, folder):
                if key == f"{RESERVED}/":
                    inner = self._list(where, folder + key)
                    if "index" in inner or "rotation" in inner:
                        found.append(folder.rstrip("/"))
                elif key.endswith("/"):
                    walk(folder + key)

        root = f"{self.prefix}/" if self.prefix else ""
        walk(root)
        return sorted(p[len(root) :] for p in found)

    def _effective(self, where: str, path: str, *, remember: bool = False) -> _Index:
        """The index as readers see it: a promotion counts once the client path has it."""
        index = self._read_index(where, path, remember=remember)
        if index.promotion is not None:
            # The client path is the commit point of a promotion (module docstring).
            serving, _ = self._client_version_id(where, path)
            if serving == index.promotion.target:
                index = index.applied(path)
        return index

    def versions(self, path: str) -> list[Version]:
        return list(self._effective(f"vault read versions of {path}", path).versions)

    def snapshot_many(
        self, paths: Sequence[str], *, locks: bool = True
    ) -> dict[str, tuple[list[Version], Rotation | None, int, bool]]:
        """Per path: (versions, rotation, revision, locked), for ``status`` and a no-op
        ``run``: KV v2 has no batch read, so three reads a path (index, rotation
        record, lock) instead of a lease taken and given back; two without
        ``locks`` (``locked`` is then False)."""
        found: dict[str, tuple[list[Version], Rotation | None, int, bool]] = {}
        for path in dict.fromkeys(paths):
            versions, rotation, revision = self._state(path)
            locked = False
            if locks:
                row, _, _ = self._lock_row(f"vault read lock of {path}", path)
                locked = row is not None and row.holder is not None
            found[path] = (versions, rotation, revision, locked)
        return found

    def state(self, path: str) -> tuple[list[Version], Rotation | None, int]:
        """StateReader.state: the index and the rotation record (two reads: KV v2 has no
        batch read), remembered for the step that follows (see :meth:`_recall`).

        No request at all when this store itself wrote the lock less than
        OWN_WRITE_AGE ago (it holds the lease: nobody else writes) and has copies
        of both made since, with no promotion pending.
        """
        lock, index, rotation = (
            self._known.stamped(self._rel(path, leaf)) for leaf in ("lock", "index", "rotation")
        )
        if (
            lock is not None
            and lock[0][2]
            and lock[0][0] is not None
            and lock[0][0].get("holder")
            and lock[1] < OWN_WRITE_AGE
            and index is not None
            and rotation is not None
            # Copies from before the lease was taken may predate another holder's work.
            and max(index[1], rotation[1]) <= lock[1]
            and max(index[1], rotation[1]) < RECORD_MAX_AGE
        ):
            (index_data, index_kv, _), _ = index
            (rotation_data, rotation_kv, _), _ = rotation
            where = f"vault read state of {path}"
            remembered = _Index.decode(index_data, index_kv, where)
            if remembered.promotion is None:
                versions = list(remembered.versions)
                if rotation_data is None:
                    return versions, None, 0
                return versions, Rotation.from_dict(rotation_data), rotation_kv
        return self._state(path)

    def _state(self, path: str) -> tuple[list[Version], Rotation | None, int]:
        where = f"vault read state of {path}"
        data, revision = self._read(where, self._rel(path, "rotation"), remember=True)
        rotation = None if data is None else Rotation.from_dict(data)
        versions = list(self._effective(where, path, remember=True).versions)
        return versions, rotation, revision if rotation is not None else 0

    def publish(self, path: str, version: Version, value: str) -> None:
        where = f"vault publish {path}"
        rel = self._value_rel(path, version.version_id)

        def attempt() -> None:
            index, new = self._plan(
                where, path, lambda ix: plan_publish(path, ix.versions, version)
            )
            if new is None:
                return
            meta = self._metadata(where, rel)
            cas = int(meta.get("current_version") or 0) if meta else 0
            custom = {
                "version-id": version.version_id,
                "number": str(version.number),
                "key-id": version.key_id[:512],
            }
            kv_version = self._write(where, rel, {"value": value}, cas, "value", custom)
            updated = index.with_versions([new])
            updated = replace(updated, value_kv={**updated.value_kv, new.version_id: kv_version})
            self._write_index(where, path, updated)
            if cas:
                # An interrupted earlier attempt left a value nobody references.
                self._wipe(where, rel, keep=kv_version)

        self._optimistic(where, attempt)

    def promote(
        self, path: str, version_id: str, expected_current: str | None, at: datetime
    ) -> None:
        where = f"vault promote {path}"

        def attempt() -> None:
            index, changed = self._plan(
                where,
                path,
                lambda ix: plan_promote(path, ix.versions, version_id, expected_current, at),
            )
            if not changed:
                return
            intent = _Promotion(version_id, expected_current, at)
            index = self._write_index(where, path, replace(index, promotion=intent))
            self._complete(where, path, index)

        self._optimistic(where, attempt)

    def set_state(
        self,
        path: str,
        version_id: str,
        state: VersionState,
        expected: VersionState,
        at: datetime,
    ) -> None:
        where = f"vault set {state} on {path}"

        def attempt() -> None:
            index, new = self._plan(
                where,
                path,
                lambda ix: plan_set_state(path, ix.versions, version_id, state, expected, at),
            )
            if state is VersionState.DESTROYED:
                # Wipe before the index says so: "destroyed" must never cover a live value.
                self._wipe(where, self._value_rel(path, version_id))
            if new is not None:
                self._write_index(where, path, index.with_versions([new]))

        self._optimistic(where, attempt)

    def read_value(self, path: str, version_id: str | None = None) -> str:
        where = f"vault read value of {path}"
        if version_id is None:
            # Exactly what a client reads.
            data, _ = self._read(where, self._full(path))
            if data is None or not isinstance(data.get(CLIENT_FIELD), str):
                raise NotFoundError(f"{path}: no current version")
            current: str = data[CLIENT_FIELD]
            return current
        index = self._effective(where, path)
        found = index.find(version_id)
        if found is None:
            raise NotFoundError(f"{path}: no version {version_id}")
        if found.state is VersionState.DESTROYED:
            raise NotFoundError(f"{path}: the value of version {version_id} was destroyed")
        return self._value(where, path, index, version_id)

    def accepted_keys(self, path: str, credential: str) -> list[AcceptedKey]:
        return accepted(self.versions(path), credential)

    def load_rotation(self, path: str) -> tuple[Rotation | None, int]:
        data, revision = self._read(f"vault load rotation of {path}", self._rel(path, "rotation"))
        if data is None:
            return None, 0
        return Rotation.from_dict(data), revision

    def save_rotation(self, path: str, rotation: Rotation, expected_revision: int) -> int:
        where = f"vault save rotation of {path}"
        try:
            return self._write(
                where,
                self._rel(path, "rotation"),
                rotation.to_dict(),
                expected_revision,
                "rotation",
            )
        except CasMismatch as exc:
            raise ConflictError(
                f"{path}: the rotation record is no longer at revision {expected_revision}"
            ) from exc

    def rotation_history(self, path: str) -> list[Rotation]:
        """Earlier rotation records of ``path`` still in the KV history, oldest first."""
        where = f"vault read rotation history of {path}"
        rel = self._rel(path, "rotation")
        meta = self._metadata(where, rel)
        if meta is None:
            return []
        latest = int(meta.get("current_version") or 0)
        records: list[Rotation] = []
        for number in sorted(int(n) for n in (meta.get("versions") or {})):
            data, _ = self._read(where, rel, number)
            if data is not None:
                records.append(Rotation.from_dict(data))
        current = records[-1].id if records and latest else None
        last: dict[str, Rotation] = {}
        for record in records:
            if record.id != current:
                last.pop(record.id, None)  # keep insertion order = order of last revision
                last[record.id] = record
        return list(last.values())

    # -- DriftAware: changes made outside rotatectl (e.g. with `bao kv put`) ----------

    def drift(self, path: str) -> list[str]:
        """Differences of the layout from the index's records, one line each; [] if none.

        The generic check (:mod:`rotatectl.drift`) compares what a client reads
        (the ``current`` field of the client path) with the current version's
        fingerprint; this covers the rest: the client path gone or naming another
        version, the index deleted, the verifier view disagreeing with the version
        states, an accepted version's value path gone or holding another value,
        and check-and-set or ``max_versions`` changed on the client path or index.
        Never names a value. A status read racing a rotation is looked at again.
        """
        where = f"vault drift check of {path}"
        problems: list[str] = []
        for _ in range(3):
            scan = self._scan(where, path)
            problems = self._describe(path, scan)
            if not problems:
                return []
            _, revision = self._read(where, self._rel(path, "index"))
            _, client_kv = self._read(where, self._full(path))
            if (revision, client_kv) == (scan.index.revision, scan.client_kv):
                break  # nothing moved while we looked: the problems are real
        return problems

    def adopt(self, path: str, at: datetime) -> None:
        """After the client path's key is adopted (:func:`rotatectl.drift.adopt` made it
        a new current version), take the rest of what verifiers see as the truth:

        - The verifier view no longer lists a pending or previous version: that
          version is retired. Changed ``scopes``/``expires`` are taken over.
        - rotatectl's own copies are repaired where the store still has the
          value (the value path's history, or the client path); an accepted
          version whose value is gone for good is recorded as lost: it stays
          accepted (verifiers need only its hash) but cannot be rolled back to.
        - check-and-set and ``max_versions`` are set again on the client path
          and the index; the client path's metadata fields are rewritten.

        ConflictError (nothing written) when the store's state cannot be
        recorded: the index or the client path's key is gone, the client path
        still holds a key that is not the current version's, the view drops the
        current key, or it lists keys rotatectl has no version for.
        """
        where = f"vault adopt {path}"
        self._optimistic(where, lambda: self._adopt(where, path, at))

    def restore(self, path: str, at: datetime, value: str | None = None) -> None:
        """Put the index's records back: undelete a deleted index, rewrite value
        paths from their KV history (or the client path), rebuild the verifier
        view from the version states, set check-and-set and ``max_versions``
        again, and rewrite the client path from the current version's value.

        ConflictError (before any write but an undelete) when a value is gone
        from the store for good, or the index cannot be brought back.
        """
        where = f"vault restore {path}"
        self._optimistic(where, lambda: self._restore(where, path))

    def _scan(self, where: str, path: str) -> _Scan:
        index_rel = self._rel(path, "index")
        # As the caller's step has just read it; never a copy of our own write: drift
        # is what others changed since.
        (data, revision), _ = self._recall(where, index_rel, read_only=True)
        index = _Index.decode(data, revision, where)
        client, client_kv = self._read(where, self._full(path))
        if client is not None and isinstance(client.get(CLIENT_FIELD), str):
            redact.register(client[CLIENT_FIELD])
        if data is None:
            gone, undeletable = "", False
            meta = self._metadata_if_allowed(where, index_rel)
            if meta is not None and int(meta.get("current_version") or 0):
                gone = "deleted"
                latest = (meta.get("versions") or {}).get(str(meta["current_version"])) or {}
                undeletable = bool(latest.get("deletion_time")) and not latest.get("destroyed")
            elif client is not None:
                gone = "missing"
            return _Scan(index, (), client, client_kv, gone, undeletable)
        versions = index.versions
        if (
            index.promotion is not None
            and client is not None
            and client.get("version_id") == index.promotion.target
        ):
            versions = index.applied(path).versions  # committed: the client path has it
        current = next((v for v in versions if v.state is VersionState.CURRENT), None)
        scan = _Scan(
            index, versions, client, client_kv, view=_ViewDiff.of(index, data.get("accepted"))
        )
        client_matches, labels_wrong = True, False
        if current is not None and scan.client_value is not None:
            client_matches = keyformat.fingerprint_matches(current.fingerprint, scan.client_value)
            assert client is not None
            labels_wrong = (client.get("version_id"), client.get("key_id")) != (
                current.version_id,
                current.key_id,
            )
        values = []
        for v in versions:
            if not v.state.accepted or v.version_id not in index.value_kv:
                continue  # no pin: never published here, or its loss was adopted
            found, _ = self._read(where, self._value_rel(path, v.version_id))
            value = None if found is None else found.get("value")
            if not isinstance(value, str):
                values.append((v, "missing"))
                continue
            redact.register(value)
            if not keyformat.fingerprint_matches(v.fingerprint, value):
                values.append((v, "mismatch"))
        settings = []
        for rel, kind in ((self._full(path), "client"), (index_rel, "index")):
            meta = self._metadata_if_allowed(where, rel)
            if meta is None:
                continue
            if not meta.get("cas_required"):
                settings.append((rel, kind, "does not require check-and-set"))
            kept = int(meta.get("max_versions") or 0)
            if kept != MAX_VERSIONS[kind]:
                settings.append(
                    (rel, kind, f"keeps {kept or 'unlimited'} versions, not {MAX_VERSIONS[kind]}")
                )
        return replace(
            scan,
            client_matches=client_matches,
            labels_wrong=labels_wrong,
            values=tuple(values),
            settings=tuple(settings),
        )

    def _describe(self, path: str, scan: _Scan) -> list[str]:
        index_path, client_path = self.index_path(path), self.client_path(path)
        if scan.index_gone == "deleted":
            return [f"the index {index_path} was deleted outside rotatectl"]
        if scan.index_gone == "missing":
            return [f"the client path {client_path} holds a key but the index {index_path} is gone"]
        lines = []
        current = scan.current
        if current is not None:
            if scan.client is None:
                lines.append(f"the client path {client_path} is missing")
            elif scan.client_value is None:
                lines.append(f"the client path {client_path} has no '{CLIENT_FIELD}' field")
            elif scan.labels_wrong:
                lines.append(
                    f"the client path's key_id/version_id do not name v{current.number} "
                    f"({current.key_id}), the current version"
                )
        for v, problem in scan.values:
            where = f"{self.mount}/{self._value_rel(path, v.version_id)}"
            what = "is missing" if problem == "missing" else "holds another value"
            lines.append(f"v{v.number} ({v.key_id}, {v.state}): its value path {where} {what}")
        view = scan.view
        if view.malformed:
            lines.append(f"the verifier view ('accepted') in {index_path} is malformed")
        for v in view.missing:
            lines.append(f"the verifier view no longer lists v{v.number} ({v.key_id}, {v.state})")
        for v, fields in view.changed:
            lines.append(
                f"the verifier view's entry for v{v.number} ({v.key_id}) has another "
                + ", ".join(fields)
            )
        if view.extra:
            lines.append(f"the verifier view lists {view.extra} key(s) rotatectl does not accept")
        for rel, _, problem in scan.settings:
            lines.append(f"{self.mount}/{rel} {problem}")
        return lines

    def _adopt(self, where: str, path: str, at: datetime) -> None:
        scan = self._scan(where, path)
        if scan.index_gone:
            raise ConflictError(
                f"{path}: the index is {scan.index_gone}; adopting that would forget every "
                "version (--restore brings a deleted index back)"
            )
        if scan.index.promotion is not None:
            self._settled(where, path)
            scan = self._scan(where, path)
        index, current = scan.index, scan.current
        client_value = scan.client_value
        if current is not None and client_value is None:
            raise ConflictError(
                f"{path}: the client path has no key, so there is nothing to adopt; "
                f"--restore rewrites it from v{current.number}"
            )
        if current is not None and not scan.client_matches:
            raise ConflictError(
                f"{path}: the client path holds a key that is not v{current.number}'s; "
                "adopt it first (`check --adopt` does), or --restore"
            )
        # The verifier view: what verifiers accept is the truth.
        view = scan.view
        if view.malformed or view.extra:
            raise ConflictError(
                f"{path}: the verifier view names keys rotatectl has no version of; "
                "it cannot be adopted (--restore rebuilds it)"
            )
        rows: dict[str, Version] = {}
        for v in view.missing:
            if v.state is VersionState.CURRENT:
                raise ConflictError(
                    f"{path}: the verifier view dropped v{v.number}, the current key, which "
                    "verifiers must accept; --restore, or replace it with `rotatectl emergency`"
                )
            retired = plan_set_state(
                path, index.versions, v.version_id, VersionState.RETIRED, v.state, at
            )
            if retired is not None:
                rows[v.version_id] = retired
        for v, fields in view.changed:
            if not set(fields) <= _ADOPTABLE_VIEW_FIELDS:
                raise ConflictError(
                    f"{path}: the verifier view's entry for v{v.number} has another "
                    f"{', '.join(sorted(set(fields) - _ADOPTABLE_VIEW_FIELDS))}; it cannot be "
                    "adopted (--restore rebuilds it)"
                )
            rows[v.version_id] = self._view_fields(where, v, view.stored[v.key_id])
        # rotatectl's copies of the values: repaired where the store still has them.
        pins: dict[str, str] = {}
        lost: list[str] = []
        for v, _ in scan.values:
            value = self._value_source(where, path, v, client_value)
            if value is None:
                lost.append(v.version_id)
            else:
                pins[v.version_id] = value
        # Write: settings, value copies, the index, then the client path.
        self._fix_settings(where, scan)
        kv = {vid: self._rewrite_value(where, path, index.find(vid), v) for vid, v in pins.items()}
        if rows or kv or lost or view:
            updated = index.with_versions(list(rows.values()))
            value_kv = {k: n for k, n in {**updated.value_kv, **kv}.items() if k not in lost}
            index = self._write_index(where, path, replace(updated, value_kv=value_kv))
        if current is not None and scan.labels_wrong:
            assert client_value is not None
            self._write_client(where, path, current, client_value)

    def _view_fields(self, where: str, version: Version, entry: Mapping[str, Any]) -> Version:
        """``version`` with the scopes and expiry an outside edit gave its view entry."""
        scopes = entry.get("scopes")
        expires = entry.get("expires")
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ConflictError(f"{where}: the view entry for v{version.number} has bad scopes")
        try:
            when = parse_iso(expires) if expires is not None else None
        except (TypeError, ValueError) as exc:
            raise ConflictError(
                f"{where}: the view entry for v{version.number} has a bad expiry"
            ) from exc
        return replace(version, scopes=tuple(scopes), expires=when)

    def _restore(self, where: str, path: str) -> None:
        scan = self._scan(where, path)
        if scan.index_gone:
            rel = self._rel(path, "index")
            if not scan.index_undeletable:
                raise ConflictError(
                    f"{path}: the index {self.index_path(path)} is gone and its history "
                    "holds no copy to restore; nothing to restore from"
                )
            self._undelete_latest(where, rel)
            scan = self._scan(where, path)
            if scan.index_gone:  # pragma: no cover - the undelete did not take
                raise ConflictError(f"{path}: the index could not be undeleted")
        if scan.index.promotion is not None:
            self._settled(where, path)
            scan = self._scan(where, path)
        index, current = scan.index, scan.current
        # Plan first: every value must have a source before anything is written.
        pins: dict[str, str] = {}
        for v, _ in scan.values:
            value = self._value_source(where, path, v, scan.client_value, undelete=True)
            if value is None:
                raise ConflictError(
                    f"{path}: the value of v{v.number} ({v.key_id}) is gone from the store "
                    "and its history; nothing to restore it from (--adopt records it as lost)"
                )
            pins[v.version_id] = value
        client_value: str | None = None
        rewrite_client = current is not None and (
            scan.client_value is None or not scan.client_matches or scan.labels_wrong
        )
        if rewrite_client:
            assert current is not None
            client_value = pins.get(current.version_id) or self._value_source(
                where, path, current, None, undelete=True
            )
            if client_value is None:
                raise ConflictError(
                    f"{path}: the value of v{current.number}, the current version, is gone "
                    "from the store; nothing to restore the client path from"
                )
        self._fix_settings(where, scan)
        kv = {vid: self._rewrite_value(where, path, index.find(vid), v) for vid, v in pins.items()}
        if kv or scan.view:
            self._write_index(where, path, replace(index, value_kv={**index.value_kv, **kv}))
        if rewrite_client:
            assert current is not None and client_value is not None
            self._write_client(where, path, current, client_value)

    def _value_source(
        self,
        where: str,
        path: str,
        version: Version,
        client_value: str | None,
        *,
        undelete: bool = False,
    ) -> str | None:
        """A value for ``version`` that matches its fingerprint, still in the store:
        the newest readable KV version of its value path, else the client path's
        value, else (``undelete``) its soft-deleted latest KV version; None if none."""
        rel = self._value_rel(path, version.version_id)

        def matching(data: Mapping[str, Any] | None) -> str | None:
            value = None if data is None else data.get("value")
            if not isinstance(value, str):
                return None
            redact.register(value)
            return value if keyformat.fingerprint_matches(version.fingerprint, value) else None

        meta = self._metadata(where, rel)
        history = (meta or {}).get("versions") or {}
        for number in sorted((int(n) for n in history), reverse=True):
            state = history[str(number)]
            if state.get("deletion_time") or state.get("destroyed"):
                continue
            found = matching(self._read(where, rel, number)[0])
            if found is not None:
                return found
        if client_value is not None and matching({"value": client_value}) is not None:
            return client_value
        if undelete and meta is not None and self._undelete_latest(where, rel):
            return matching(self._read(where, rel)[0])
        return None

    def _undelete_latest(self, where: str, rel: str) -> bool:
        """Undo a soft delete of the latest KV version of ``rel``; False if there is none."""
        meta = self._metadata(where, rel)
        if meta is None:
            return False
        latest = int(meta.get("current_version") or 0)
        state = (meta.get("versions") or {}).get(str(latest)) or {}
        if not latest or not state.get("deletion_time") or state.get("destroyed"):
            return False
        self._call(
            where,
            self._api("undelete", rel),
            "update",
            lambda c: c.secrets.kv.v2.undelete_secret_versions(
                rel, [latest], mount_point=self.mount
            ),
        )
        return True

    def _rewrite_value(self, where: str, path: str, version: Version | None, value: str) -> int:
        """Write ``value`` as the latest KV version of the version's value path (cas)."""
        assert version is not None
        rel = self._value_rel(path, version.version_id)
        custom = {
            "version-id": version.version_id,
            "number": str(version.number),
            "key-id": version.key_id[:512],
        }
        return self._write(
            where, rel, {"value": value}, self._kv_version(where, rel), "value", custom
        )

    def _write_client(self, where: str, path: str, current: Version, value: str) -> None:
        rel = self._full(path)
        self._write(
            where,
            rel,
            {CLIENT_FIELD: value, "key_id": current.key_id, "version_id": current.version_id},
            self._kv_version(where, rel),
            "client",
            {"client-field": CLIENT_FIELD},
        )

    def _fix_settings(self, where: str, scan: _Scan) -> None:
        """Set check-and-set and max_versions again where an outside change dropped them."""
        for rel, kind in dict.fromkeys((rel, kind) for rel, kind, _ in scan.settings):
            custom = {"client-field": CLIENT_FIELD} if kind == "client" else None
            self._configure(where, rel, kind, custom)

    def _kv_version(self, where: str, rel: str) -> int:
        """The latest KV version of ``rel`` (deleted or not): the cas for the next write."""
        meta = self._metadata(where, rel)
        return int(meta.get("current_version") or 0) if meta else 0

    def _metadata_if_allowed(self, where: str, rel: str) -> dict[str, Any] | None:
        """Metadata for a drift check; None when the token may not read it (check skipped)."""
        try:
            return self._metadata(where, rel)
        except PermissionDeniedError:
            return None

    # -- lease lock ---------------------------------------------------------------

    def _lock_row(
        self, where: str, path: str, *, fresh: bool = True
    ) -> tuple[LockRow | None, int, bool]:
        """The lock row, its KV version, and whether that is the remembered copy
        (``fresh`` False allows one; see :meth:`_recall`)."""
        rel = self._rel(path, "lock")
        if fresh:
            (data, version), remembered = self._read(where, rel, remember=True), False
        else:
            (data, version), remembered = self._recall(where, rel, remember=True)
        return (*self._decode_lock(data, version), remembered)

    @staticmethod
    def _decode_lock(data: Mapping[str, Any] | None, version: int) -> tuple[LockRow | None, int]:
        if data is None:
            return None, version
        return (
            LockRow(
                data.get("holder"),
                int(data["token"]),
                parse_iso(data.get("acquired")),
                parse_iso(data.get("expires")),
            ),
            version,
        )

    def _put_lock(self, where: str, path: str, holder: str | None, lease: Lease, cas: int) -> int:
        data = {
            "holder": holder,
            "token": lease.token,
            "acquired": iso(lease.acquired) if holder else None,
            "expires": iso(lease.expires) if holder else None,
        }
        return self._write(where, self._rel(path, "lock"), data, cas, "lock")

    def acquire_lock(
        self,
        path: str,
        holder: str,
        ttl: timedelta,
        now: datetime,
        steal_token: int | None = None,
    ) -> Lease:
        where = f"vault lock {path}"

        def attempt() -> Lease:
            row, version, _ = self._lock_row(where, path)
            lease = plan_acquire(path, row, holder, ttl, now, steal_token)
            # The fencing token is the KV version this very write creates: larger
            # than any token before it, whatever renewals happened in between.
            lease = replace(lease, token=version + 1)
            written = self._put_lock(where, path, holder, lease, version)
            if written != lease.token:
                raise StoreError(f"{where}: expected lock version {lease.token}, got {written}")
            if row is not None and row.holder is not None:
                why = (
                    "expired"
                    if row.expires is not None and row.expires <= now
                    else "given up by its dead holder"
                )
                log.warning(
                    "%s: took over the lease of %s (token %s, %s at %s); new token %s",
                    where,
                    row.holder,
                    row.token,
                    why,
                    iso(row.expires),
                    lease.token,
                )
            return lease

        return self._optimistic(where, attempt)

    def renew_lock(self, lease: Lease, ttl: timedelta, now: datetime) -> Lease:
        """Extend the lease; also renews the vault token if it would not outlive ``ttl``."""
        path = lease.credential
        where = f"vault renew lock of {path}"
        self.renew_if_needed(ttl)

        def attempt() -> Lease:
            row, version, remembered = self._lock_row(where, path, fresh=False)
            try:
                renewed = plan_renew(row, lease, ttl, now)
            except RotatectlError:
                if not remembered:
                    raise
                row, version, _ = self._lock_row(where, path)  # lost, says a copy: ask
                renewed = plan_renew(row, lease, ttl, now)
            self._put_lock(where, path, renewed.holder, renewed, version)
            return renewed

        return self._optimistic(where, attempt)

    def release_lock(self, lease: Lease) -> None:
        path = lease.credential
        where = f"vault release lock of {path}"

        def attempt() -> None:
            row, version, remembered = self._lock_row(where, path, fresh=False)
            if not plan_release(row, lease) and remembered:
                row, version, _ = self._lock_row(where, path)  # not ours, says a copy: ask
            if plan_release(row, lease):
                self._put_lock(where, path, None, lease, version)

        self._optimistic(where, attempt)

    # -- tokens and access ----------------------------------------------------------

    def renew_if_needed(self, within: timedelta | float = timedelta(minutes=5)) -> bool:
        """Renew the token (or log in again) if it would expire within ``within``.

        Call before a long wait. Returns True if the token was renewed or
        replaced. Raises StoreUnavailableError/PermissionDeniedError.
        """
        seconds = within.total_seconds() if isinstance(within, timedelta) else float(within)
        self._client()  # authenticates on first use
        client = self._client_obj
        return client is not None and self._auth.ensure(client, seconds + _RENEW_SLACK)

    def check_access(self, paths: Sequence[str] = ()) -> list[str]:
        """Missing capabilities, one line each, for listing and for ``paths``
        (default: every credential found in the store). Asks the server with
        ``sys/capabilities-self``; never raises for a denial."""
        wanted: dict[str, set[str]] = {}

        def need(api_path: str, *caps: str) -> None:
            wanted.setdefault(api_path, set()).update(caps)

        need(f"{self.mount}/metadata/{self.prefix}".rstrip("/") + "/", "list")
        creds = list(paths)
        if not creds:
            with contextlib.suppress(PermissionDeniedError):  # reported by the list check
                creds = self.list_paths()
        for path in creds:
            full = self._full(path)
            value = self._value_rel(path, "example")
            # Data writes need "update" only: each path's metadata is written first.
            need(self._api("data", full), "read", "update")
            need(self._api("metadata", full), "create", "update")
            for leaf in ("index", "rotation", "lock", "versions/example"):
                rel = self._rel(path, leaf)
                need(self._api("data", rel), "read", "update")
                need(self._api("metadata", rel), "read", "create", "update")
            need(self._api("delete", value), "update")
            need(self._api("destroy", value), "update")
        resp = self._call(
            "vault check access",
            "sys/capabilities-self",
            "update",
            lambda c: c.adapter.post("/v1/sys/capabilities-self", json={"paths": list(wanted)}),
        )
        granted = resp.get("data") or resp
        problems = []
        for api_path, caps in wanted.items():
            have = set(granted.get(api_path) or ())
            if "root" in have:
                continue
            missing = sorted(caps - have)
            if missing:
                names = ", ".join(f"'{m}'" for m in missing)
                problems.append(f"permission denied: needs {names} on {api_path}")
        return problems
