"""Requests to the KV v2 engine: the hvac client and authentication, retries,
check-and-set writes, and the copies of records this store remembers.

hvac is imported when the first request is made, never on import.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from ... import retry
from ...errors import (
    NotFoundError,
    PermissionDeniedError,
    RotatectlError,
    StoreError,
    StoreUnavailableError,
)
from ...ports import StoreBase
from ...vault_auth import Authenticator, CasMismatch, Connection, translate
from .._cas import RECORD_MAX_AGE, RecordCache, again_while_lost
from .layout import MAX_VERSIONS, Layout

T = TypeVar("T")

# What the store remembers of what it read or wrote (never a value; see _recall).
REMEMBERED_KINDS = frozenset({"index", "rotation", "lock"})
MAX_POOL = 64  # connections kept open: `run --jobs` up to 64 never opens one a request
PUBLISHED_KEPT = 256  # values written and not yet copied to a client path, at most
SCAN_REUSE = 10.0  # seconds a folder's metadata scan answers the pass's other shares
# Slack added to a wait when deciding whether the token would outlive it.
_RENEW_SLACK = 15.0


class VaultKv(Layout, StoreBase):
    """A connection to a KV v2 mount: every request the store makes goes through here."""

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
        # path -> the client path's (data, KV version) as ``current_values_many`` read it,
        # handed to the ``drift_many`` that follows it (which empties it; see there).
        self._clients_seen: RecordCache[str, tuple[dict[str, Any] | None, int]] = RecordCache(
            RECORD_MAX_AGE
        )
        self._scan_refused = False  # the server or the token refused a metadata scan
        # path -> (the lock's KV version this store wrote when it took the lease, when
        # it had read the free lock that write replaced): see VaultStore.state.
        self._fences: dict[str, tuple[int, float]] = {}
        # The last scan of each folder: the shares of one `run --jobs` pass ask for the
        # same folder moments apart, and the first answers them all (_scan_shared).
        self._scans: dict[str, tuple[dict[str, dict[str, Any]] | None, float]] = {}
        self._scan_lock = threading.Lock()
        # client rel -> (the version id its data names, its KV version) as last read or
        # written here: a promotion's client write takes its check-and-set from it
        # (see Records._complete). No value.
        self._serving: RecordCache[str, tuple[str | None, int]] = RecordCache(RECORD_MAX_AGE)
        # value rel -> (KV version, value) this store wrote, until a promotion copies it
        # to the client path (Records._value): a KV version's data never changes, so
        # the pin names it. Values the process holds anyway (it minted them).
        self._published: collections.OrderedDict[str, tuple[int, str]] = collections.OrderedDict()

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

    # -- plumbing ---------------------------------------------------------------

    def _client(self) -> Any:
        with self._mutex:
            if self._closed:
                raise StoreError(f"vault store {self.url}: the store is closed")
            if self._client_obj is None:
                import hvac  # lazily: only commands that touch vault pay for it
                import requests

                c = self.connection
                session = requests.Session()
                # The environment is read once, here, as requests would read it on
                # every request (proxies for this URL, a CA bundle for the default
                # verification): that was a third of the client's CPU a request.
                session.trust_env = False
                session.proxies = requests.utils.get_environ_proxies(c.url)
                verify = c.verify
                if verify is True:  # as requests: a CA bundle named by the environment
                    env = os.environ
                    verify = env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE") or True
                # hvac takes verify and cert from a session it is given, when set.
                session.verify, session.cert = verify, c.cert
                # Room for every thread of `run --jobs` (requests keeps 10 by default,
                # and opens and drops a connection a request beyond them).
                pooled = requests.adapters.HTTPAdapter(pool_maxsize=MAX_POOL)
                session.mount("https://", pooled)
                session.mount("http://", pooled)
                # token="" keeps hvac from reading VAULT_TOKEN itself: the
                # Authenticator decides (it honours BAO_TOKEN and the config).
                self._client_obj = hvac.Client(
                    url=c.url,
                    token="",
                    verify=c.verify,
                    cert=c.cert,
                    timeout=c.timeout,
                    namespace=c.namespace,
                    session=session,
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

    def _scan_shared(self, where: str, folder: str) -> dict[str, dict[str, Any]] | None:
        """:meth:`_scan_metadata` of ``folder``, or its answer of less than SCAN_REUSE
        seconds ago (one request at a time: concurrent callers wait for it). A drift
        check confirms on fresh reads whatever the scan shows, so a scan moments old
        can only delay a drift's report to the next run."""
        with self._scan_lock:
            found = self._scans.get(folder)
            if found is not None and time.monotonic() - found[1] < SCAN_REUSE:
                return found[0]
            scanned = self._scan_metadata(where, folder)
            self._scans[folder] = (scanned, time.monotonic())
            return scanned

    def _scan_metadata(self, where: str, folder: str) -> dict[str, dict[str, Any]] | None:
        """The metadata of every KV path under ``folder`` (recursively), by rel, in one
        request: OpenBao's ``SCAN`` of ``detailed-metadata`` (``scan`` capability on
        ``<mount>/detailed-metadata/<folder>/``). No values: settings, KV versions and
        custom metadata. None when the server has no such request (HashiCorp Vault) or
        the token may not make it (then not asked again by this store), or it failed:
        the caller reads each path's metadata instead."""
        if self._scan_refused:
            return None
        base = f"{folder}/" if folder else ""
        api_path = self._api("detailed-metadata", base)
        try:
            resp = self._call(
                where, api_path, "scan", lambda c: c.adapter.request("SCAN", f"/v1/{api_path}")
            )
        except StoreUnavailableError:
            return None  # the reads that follow will say so (or succeed)
        except RotatectlError:  # no such request or path (405, 404), denied (403)
            self._scan_refused = True
            return None
        data = (resp or {}).get("data") if isinstance(resp, dict) else None
        info = (data or {}).get("key_info") or {}
        return {
            base + str(key): meta
            for key, meta in info.items()
            if not str(key).endswith("/") and isinstance(meta, dict)
        }

    def _configure(
        self,
        where: str,
        rel: str,
        kind: str,
        custom: Mapping[str, str] | None = None,
        *,
        versions: int | None = None,
    ) -> None:
        """Set max_versions (``versions``, else the kind's) and cas_required (and
        custom_metadata) on a new path, or again on one."""
        self._call(
            where,
            self._api("metadata", rel),
            "create",
            lambda c: c.secrets.kv.v2.update_metadata(
                rel,
                max_versions=versions or MAX_VERSIONS[kind],
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

        if kind == "client":
            self._serving.forget(rel)  # the caller remembers what it wrote, if it knows
        try:
            version = self._retrying(once)
        except CasMismatch:
            self._known.forget(rel)
            raise
        if kind in REMEMBERED_KINDS:
            self._known.put(rel, (data, version, True))
        return version

    def _wrote_value(self, rel: str, kv_version: int, value: str) -> None:
        """Remember the value written at ``rel``'s ``kv_version`` (see ``_published``)."""
        with self._mutex:
            self._published[rel] = (kv_version, value)
            while len(self._published) > PUBLISHED_KEPT:
                self._published.popitem(last=False)

    def _written_value(self, rel: str, kv_version: int) -> str | None:
        """The value this store wrote at ``rel``'s ``kv_version``, given once; None."""
        with self._mutex:
            found = self._published.pop(rel, None)
        return found[1] if found is not None and found[0] == kv_version else None

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

    # -- tokens -------------------------------------------------------------------

    def renew_if_needed(self, within: timedelta | float = timedelta(minutes=5)) -> bool:
        """Renew the token (or log in again) if it would expire within ``within``.

        Call before a long wait. Returns True if the token was renewed or
        replaced. Raises StoreUnavailableError/PermissionDeniedError.
        """
        seconds = within.total_seconds() if isinstance(within, timedelta) else float(within)
        self._client()  # authenticates on first use
        client = self._client_obj
        return client is not None and self._auth.ensure(client, seconds + _RENEW_SLACK)
