"""IAM access-key issuer (``type = "aws-iam"``): rotates one IAM user's access keys.

* **create** mints a key with ``CreateAccessKey``; the published value is the
  JSON document ``{"AccessKeyId": ..., "SecretAccessKey": ...}``, the key id
  and issuer reference are the AccessKeyId, the fingerprint is
  :func:`rotatectl.keyformat.value_fingerprint` of the whole value (``scrypt1:``:
  the value is not a generated key). IAM allows two keys per user: an
  *inactive* key is deleted first to make room (unless rotatectl minted it and
  never retired it: then it may be the current key disabled by hand, and that
  is an error); an *active* key rotatectl does not know is an error, never a
  silent delete.
* **Orphans.** IAM access keys cannot be tagged, so the issuer tags the *user*:
  ``rotatectl:key:<AccessKeyId> = <version id>`` (plus `` retired`` once
  disabled), which :meth:`IamIssuer.list_keys` reports as the key's tag for the
  runner's orphan sweep. A crash between ``CreateAccessKey`` and that tag is
  covered by an intent written just before minting,
  ``rotatectl:minting = <version id> <ids of the keys that existed>``: any other
  untagged key is the one that intent minted. So a resumed run finds and
  deletes the orphan and mints again, with never more than two keys.
* **retire** = ``UpdateAccessKey Inactive`` (:meth:`disable`), undo =
  ``Active`` (:meth:`enable`), **destroy** = ``DeleteAccessKey`` (:meth:`delete`).
* **Eventual consistency.** A new key may take a few seconds to work
  everywhere; :meth:`test` signs ``sts:GetCallerIdentity`` with it, retrying
  with backoff until it is accepted or ``verify_timeout`` passes, and
  :meth:`create` calls it before returning (``verify_timeout = "0s"`` skips).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Self

import botocore.exceptions

from .. import keyformat
from ..aws_common import SETTINGS, AwsConnection, AwsExpected, error_code
from ..durations import parse_duration
from ..errors import IssuerError, RotatectlError
from ..model import IssuedKey, IssuerKey
from ..registry import AdapterContext, check_settings

TAG_KEY = "rotatectl:key:"  # + AccessKeyId -> "<version id>[ retired]"
TAG_MINTING = "rotatectl:minting"  # "<version id> <existing key ids...>" while minting
RETIRED = "retired"
KEYS_PER_USER = 2  # IAM quota, not adjustable
DEFAULT_VERIFY_TIMEOUT = timedelta(seconds=60)
# Documented example id from the AWS docs: never a real key, safe for harmless probes.
_PROBE_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
_REJECTED = frozenset(
    {"InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied", "AuthFailure"}
)


class IamIssuer:
    """Mints and revokes the access keys of IAM user ``user`` (see the module docstring).

    Raises IssuerError (retryable for throttling, 5xx and unreachable
    endpoints) or PermissionDeniedError naming the denied IAM action.
    """

    def __init__(
        self,
        conn: AwsConnection,
        user: str,
        *,
        verify_timeout: timedelta = DEFAULT_VERIFY_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn = conn
        self.user = user
        self.verify_timeout = verify_timeout
        self._sleep = sleep
        self._monotonic = monotonic

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: ``user`` (required: the IAM user whose keys rotate),
        ``verify_timeout`` (duration, default 60s; 0s skips the test of a new
        key) and the shared AWS keys (``region``, ``profile``, ``endpoint_url``,
        ...; IAM is global, so the region defaults to us-east-1).
        """
        check_settings(settings, ctx, {**SETTINGS, "user": str, "verify_timeout": str})
        user = settings.get("user")
        if not user or not user.strip():
            raise ctx.error("user", "required: the IAM user whose access keys rotate")
        timeout = DEFAULT_VERIFY_TIMEOUT
        if "verify_timeout" in settings:
            try:
                timeout = parse_duration(settings["verify_timeout"])
            except ValueError as exc:
                raise ctx.error("verify_timeout", str(exc)) from None
        conn = AwsConnection.from_settings(settings, ctx, kind="issuer", default_region="us-east-1")
        return cls(conn, user.strip(), verify_timeout=timeout)

    def __repr__(self) -> str:
        return f"IamIssuer(user={self.user!r})"

    # -- plumbing ---------------------------------------------------------

    def _where(self) -> str:
        return f"IAM user {self.user}"

    def _iam(
        self, method: str, expect: frozenset[str] | set[str] = frozenset(), **params: Any
    ) -> dict[str, Any]:
        return self.conn.call("iam", method, where=self._where(), expect=expect, **params)

    def _keys(self) -> list[dict[str, Any]]:
        keys: list[dict[str, Any]] = []
        params: dict[str, Any] = {"UserName": self.user}
        while True:
            page = self._iam("list_access_keys", **params)
            keys.extend(page.get("AccessKeyMetadata", []))
            if not page.get("IsTruncated"):
                return keys
            params["Marker"] = page["Marker"]

    def _user_tags(self) -> dict[str, str]:
        tags: dict[str, str] = {}
        params: dict[str, Any] = {"UserName": self.user}
        while True:
            page = self._iam("list_user_tags", **params)
            tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
            if not page.get("IsTruncated"):
                return tags
            params["Marker"] = page["Marker"]

    def _tag(self, tags: Mapping[str, str]) -> None:
        self._iam(
            "tag_user",
            UserName=self.user,
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )

    def _untag(self, *keys: str) -> None:
        self._iam("untag_user", UserName=self.user, TagKeys=list(keys))

    @staticmethod
    def _parse(raw: str | None) -> tuple[str | None, bool]:
        """A key tag's (version id, retired)."""
        if raw is None:
            return None, False
        parts = raw.split()
        retired = bool(parts) and parts[-1] == RETIRED
        version = parts[0] if parts and parts[0] != RETIRED else None
        return version, retired

    @staticmethod
    def _minted_by_intent(key_id: str, tags: Mapping[str, str]) -> str | None:
        """The version id an interrupted mint was for, if ``key_id`` is the key it made."""
        intent = tags.get(TAG_MINTING)
        if not intent:
            return None
        version, *existing = intent.split()
        return None if key_id in existing or TAG_KEY + key_id in tags else version

    def _version_of(self, key_id: str, tags: Mapping[str, str]) -> str | None:
        version, _ = self._parse(tags.get(TAG_KEY + key_id))
        return version or self._minted_by_intent(key_id, tags)

    # -- KeyIssuer ------------------------------------------------------------

    def create(self, credential: str, version_id: str, scopes: Sequence[str]) -> IssuedKey:
        """Mint a key for ``version_id`` (IAM keys have no scopes: ``scopes`` is ignored).

        Makes room first (see the module docstring); raises IssuerError when it
        cannot, or when the new key is not accepted within ``verify_timeout``.
        """
        keys = self._keys()
        tags = self._user_tags()
        self._adopt_interrupted_mint(keys, tags)
        present = {str(k["AccessKeyId"]) for k in keys}
        stale = [t for t in tags if t.startswith(TAG_KEY) and t[len(TAG_KEY) :] not in present]
        if stale:  # keys deleted outside rotatectl: their tags only take room (50 per user)
            self._untag(*stale)
        if len(keys) >= KEYS_PER_USER:
            keys = self._make_room(keys, tags)
        # The intent goes first, so a crash right after CreateAccessKey still
        # leaves the new key recognisable (and sweepable) as this version's.
        existing = [k["AccessKeyId"] for k in keys]
        self._tag({TAG_MINTING: " ".join([version_id, *existing])})
        try:
            out = self._iam("create_access_key", expect={"LimitExceeded"}, UserName=self.user)
        except AwsExpected:
            raise IssuerError(
                f"{self._where()}: CreateAccessKey: the user already has {KEYS_PER_USER} access "
                "keys (another process minted one meanwhile?); run again"
            ) from None
        key = out["AccessKey"]
        key_id, secret = str(key["AccessKeyId"]), str(key["SecretAccessKey"])
        self._tag({TAG_KEY + key_id: version_id})
        self._untag(TAG_MINTING)
        value = json.dumps({"AccessKeyId": key_id, "SecretAccessKey": secret})
        del secret
        if self.verify_timeout > timedelta(0):
            self.test(value)
        return IssuedKey(
            value=value,
            key_id=key_id,
            fingerprint=keyformat.value_fingerprint(value),
            issuer_ref=key_id,
        )

    def _adopt_interrupted_mint(self, keys: list[dict[str, Any]], tags: dict[str, str]) -> None:
        """Tag the key an interrupted mint left untagged, then drop the intent."""
        if TAG_MINTING not in tags:
            return
        adopted = {}
        for key in keys:
            version = self._minted_by_intent(key["AccessKeyId"], tags)
            if version is not None:
                adopted[TAG_KEY + key["AccessKeyId"]] = version
        if adopted:
            self._tag(adopted)
            tags.update(adopted)
        self._untag(TAG_MINTING)
        del tags[TAG_MINTING]

    def _make_room(
        self, keys: list[dict[str, Any]], tags: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """Delete one deletable inactive key; IssuerError naming the blocker otherwise."""
        blocked = ""
        for key in sorted(keys, key=lambda k: str(k.get("CreateDate", ""))):
            key_id = key["AccessKeyId"]
            if key.get("Status") != "Inactive":
                continue
            version, retired = self._parse(tags.get(TAG_KEY + key_id))
            if version is not None and not retired:
                # Minted by rotatectl but never retired by it: this could be the
                # current key, disabled by hand during an incident. Not ours to delete.
                blocked = (
                    f"{self._where()}: has {KEYS_PER_USER} access keys and {key_id} is inactive "
                    "but was never retired by rotatectl (the current key, disabled by hand?); "
                    "re-enable or delete it yourself"
                )
                continue
            self.delete("", key_id)
            return [k for k in keys if k["AccessKeyId"] != key_id]
        if blocked:
            raise IssuerError(blocked)
        unknown = [k["AccessKeyId"] for k in keys if TAG_KEY + k["AccessKeyId"] not in tags]
        if unknown:
            raise IssuerError(
                f"{self._where()}: already has {KEYS_PER_USER} access keys and {unknown[0]} is "
                "active and not managed by rotatectl; delete or deactivate it (IAM allows "
                f"{KEYS_PER_USER} keys per user)"
            )
        ids = ", ".join(k["AccessKeyId"] for k in keys)
        raise IssuerError(
            f"{self._where()}: already has {KEYS_PER_USER} active access keys managed by "
            f"rotatectl ({ids}); retire the previous key (finish the rotation in flight) first"
        )

    def list_keys(self, credential: str) -> list[IssuerKey]:
        """The user's keys; ``tag`` is the version id rotatectl minted each one for."""
        tags = self._user_tags()
        return [
            IssuerKey(
                issuer_ref=str(key["AccessKeyId"]),
                tag=self._version_of(str(key["AccessKeyId"]), tags),
                active=key.get("Status") == "Active",
                created=key.get("CreateDate"),
            )
            for key in self._keys()
        ]

    def disable(self, credential: str, issuer_ref: str) -> None:
        """``UpdateAccessKey Inactive`` and mark the key retired. A missing key is a no-op."""
        key = next((k for k in self._keys() if k["AccessKeyId"] == issuer_ref), None)
        if key is None:
            return
        if key.get("Status") != "Inactive":
            self._iam(
                "update_access_key",
                UserName=self.user,
                AccessKeyId=issuer_ref,
                Status="Inactive",
            )
        tags = self._user_tags()
        version, retired = self._parse(tags.get(TAG_KEY + issuer_ref))
        if not retired:
            self._tag({TAG_KEY + issuer_ref: f"{version or ''} {RETIRED}".strip()})

    def enable(self, credential: str, issuer_ref: str) -> None:
        """``UpdateAccessKey Active`` (undo :meth:`disable`). IssuerError if the key is gone."""
        key = next((k for k in self._keys() if k["AccessKeyId"] == issuer_ref), None)
        if key is None:
            raise IssuerError(
                f"{self._where()}: access key {issuer_ref} no longer exists; it cannot be "
                "re-enabled"
            )
        if key.get("Status") != "Active":
            self._iam(
                "update_access_key",
                UserName=self.user,
                AccessKeyId=issuer_ref,
                Status="Active",
            )
        tags = self._user_tags()
        version, retired = self._parse(tags.get(TAG_KEY + issuer_ref))
        if retired and version:
            self._tag({TAG_KEY + issuer_ref: version})
        elif retired:
            self._untag(TAG_KEY + issuer_ref)

    def delete(self, credential: str, issuer_ref: str) -> None:
        """``DeleteAccessKey`` and drop its user tag. A missing key is not an error."""
        # NoSuchEntity: already deleted (a missing user fails the tag listing below).
        with contextlib.suppress(AwsExpected):
            self._iam(
                "delete_access_key",
                expect={"NoSuchEntity"},
                UserName=self.user,
                AccessKeyId=issuer_ref,
            )
        if TAG_KEY + issuer_ref in self._user_tags():
            self._untag(TAG_KEY + issuer_ref)

    # -- eventual consistency -------------------------------------------------

    def test(self, value: str, timeout: timedelta | None = None) -> str:
        """Wait until AWS accepts the key in ``value``; return the caller ARN it signs as.

        Signs ``sts:GetCallerIdentity`` (which needs no permission) with the key,
        retrying with exponential backoff while AWS still rejects it (IAM is
        eventually consistent: a new key can take seconds to work everywhere).
        Raises IssuerError (retryable) once ``timeout`` (default
        ``verify_timeout``) has passed.
        """
        limit = (timeout if timeout is not None else self.verify_timeout).total_seconds()
        try:
            creds = json.loads(value)
            key_id, secret = creds["AccessKeyId"], creds["SecretAccessKey"]
        except (ValueError, KeyError, TypeError):
            raise IssuerError(f"{self._where()}: not an access key document") from None
        settings = self.conn.settings
        sts = self.conn.session.create_client(
            "sts",
            region_name=self.conn.region,
            endpoint_url=settings.endpoint_url,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=self.conn.client("iam").meta.config,
        )
        try:
            deadline = self._monotonic() + limit
            delay = 0.5
            while True:
                try:
                    return str(sts.get_caller_identity()["Arn"])
                except botocore.exceptions.ClientError as exc:
                    code = error_code(exc)
                    if code not in _REJECTED:
                        raise self.conn.translate(
                            exc, service="sts", method="get_caller_identity", where=self._where()
                        ) from exc
                    if self._monotonic() + delay > deadline:
                        raise IssuerError(
                            f"{self._where()}: new access key {key_id} still rejected ({code}) "
                            f"after {limit:g}s (IAM eventual consistency); run again later",
                            retryable=True,
                        ) from None
                except botocore.exceptions.BotoCoreError as exc:
                    raise self.conn.translate(
                        exc, service="sts", method="get_caller_identity", where=self._where()
                    ) from exc
                self._sleep(delay)
                delay = min(delay * 2, 8.0)
        finally:
            sts.close()

    # -- AccessCheck --------------------------------------------------------

    def check_access(self) -> list[str]:
        """Which IAM calls the issuer needs are denied, one line each.

        Harmless probes: listing, untagging a tag that is not there, updating
        and deleting a key id that does not exist, tagging the user with its
        the user with a probe tag (removed right after). CreateAccessKey cannot
        be probed without minting a key, so it is not checked.
        """
        problems: list[str] = []
        harmless = {"NoSuchEntity"}

        def probe(method: str, **params: Any) -> bool:
            try:
                self._iam(method, expect=harmless, **params)
            except AwsExpected as exc:
                if exc.code == "NoSuchEntity" and method in ("list_access_keys", "list_user_tags"):
                    problems.append(f"{self._where()}: does not exist ({exc.code}); check `user`")
                    return False
            except RotatectlError as exc:
                problems.append(str(exc))
                return False
            return True

        user = {"UserName": self.user}
        if not probe("list_access_keys", **user):
            return problems
        probe("list_user_tags", **user)
        probe("update_access_key", AccessKeyId=_PROBE_KEY_ID, Status="Active", **user)
        probe("delete_access_key", AccessKeyId=_PROBE_KEY_ID, **user)
        probe("untag_user", TagKeys=["rotatectl:access-check"], **user)
        if probe("tag_user", Tags=[{"Key": "rotatectl:access-check", "Value": "1"}], **user):
            probe("untag_user", TagKeys=["rotatectl:access-check"], **user)
        return problems

    def close(self) -> None:
        """Release HTTP connections."""
        self.conn.close()
