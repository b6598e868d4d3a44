"""API Gateway API keys issuer (``type = "aws-apigateway"``): keys of REST APIs' usage plans.

* **create** generates a key in rotatectl's format (:func:`rotatectl.keyformat.generate`
  with ``prefix``, default ``ak``: 59-88 characters of ``[A-Za-z0-9_]``, within API
  Gateway's 20-128) and imports it with ``CreateApiKey`` (``enabled``, the value
  given, named ``<name_prefix>-<credential, / as ->-<version id's first 8>``, tagged
  ``rotatectl:credential`` and ``rotatectl:version``), then attaches it to every
  configured usage plan with ``CreateUsagePlanKey`` (already attached is fine). So
  the key id and fingerprint are those of any generated key, and the issuer
  reference is the API key's id. A usage plan holds any number of keys, so the old
  and the new key both work during the overlap. The usage plans are checked
  (``GetUsagePlan``) before the first key is minted: a wrong id fails before
  anything exists. ``scopes`` are ignored: the usage plans say what a key may call.
* **Idempotent create.** A key already tagged with the version id (a create
  interrupted after ``CreateApiKey``, then retried) is returned instead of minting a
  second one: its value is read back with ``GetApiKey includeValue``, it is enabled
  and attached to every plan again.
* **Orphans.** :meth:`ApiGatewayIssuer.list_keys` lists the keys whose name starts
  with ``<name_prefix>-<credential>-`` (``GetApiKeys nameQuery``, a prefix match)
  and keeps those tagged ``rotatectl:credential = <credential>``; the tag
  ``rotatectl:version`` is what the runner's orphan sweep compares with the store.
* **retire** = ``UpdateApiKey /enabled false`` (:meth:`disable`; the gateway then
  refuses the key with 403), undo = ``true`` (:meth:`enable`), **destroy** =
  ``DeleteApiKey`` (:meth:`delete`; API Gateway drops the key from its usage plans).
  A key tagged for another credential is never touched.

Errors are one line naming the credential, the API Gateway operation and AWS's
error code (see :mod:`rotatectl.aws_common`), never a key value.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Self

from .. import keyformat, redact
from ..aws_common import SETTINGS, AwsConnection, AwsExpected
from ..errors import IssuerError, RotatectlError
from ..model import IssuedKey, IssuerKey
from ..registry import AdapterContext, check_settings

TAG_CREDENTIAL = "rotatectl:credential"
TAG_VERSION = "rotatectl:version"
DEFAULT_NAME_PREFIX = "rotatectl"
DEFAULT_PREFIX = "ak"
NOT_FOUND = "NotFoundException"
CONFLICT = "ConflictException"
# API Gateway's documented limit on a key value: 20-128 characters. Generated keys
# are 59-88 characters of base62 and "_" (the separator after the prefix).
VALUE_PATTERN = re.compile(r"[A-Za-z0-9_]{20,128}")
_NAME_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_PLAN_ID = re.compile(r"[A-Za-z0-9]{1,64}")
_PAGE = 500  # GetApiKeys' largest page
_PROBE_KEY_ID = "rotatectl0access0check"  # an id no API key has: harmless probes


class ApiGatewayIssuer:
    """Mints and revokes API Gateway API keys attached to ``usage_plans`` (see the
    module docstring).

    Raises IssuerError (retryable for throttling, 5xx and unreachable endpoints) or
    PermissionDeniedError naming the denied call.
    """

    def __init__(
        self,
        conn: AwsConnection,
        usage_plans: Sequence[str],
        *,
        name_prefix: str = DEFAULT_NAME_PREFIX,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        if not usage_plans:
            raise ValueError("usage_plans must name at least one usage plan")
        if not keyformat.is_valid_prefix(prefix):
            raise ValueError(
                f"invalid key prefix {prefix!r}: must match {keyformat.PREFIX_PATTERN}"
            )
        self.conn = conn
        self.usage_plans = tuple(dict.fromkeys(usage_plans))
        self.name_prefix = name_prefix
        self.prefix = prefix
        self._plans_checked = False

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: ``usage_plans`` (required: the ids of the usage plans every key is
        attached to), ``name_prefix`` (default ``rotatectl``: the API keys' names start
        with it), ``prefix`` (the generated keys' prefix, default ``ak``) and the shared
        AWS keys (``region``, ``profile``, ``endpoint_url``, ...).
        """
        check_settings(
            settings,
            ctx,
            {**SETTINGS, "usage_plans": list, "name_prefix": str, "prefix": str},
        )
        plans = settings.get("usage_plans")
        if not plans:
            raise ctx.error(
                "usage_plans", "required: the ids of the usage plans the keys are attached to"
            )
        for plan in plans:
            if not isinstance(plan, str) or not _PLAN_ID.fullmatch(plan.strip()):
                raise ctx.error(
                    "usage_plans",
                    f"{plan!r} is not a usage plan id (e.g. 'a1b2c3'; see "
                    "`aws apigateway get-usage-plans`)",
                )
        name_prefix = settings.get("name_prefix", DEFAULT_NAME_PREFIX)
        if not _NAME_PREFIX.fullmatch(name_prefix):
            raise ctx.error(
                "name_prefix",
                f"{name_prefix!r}: use 1-64 characters of A-Z a-z 0-9 _ . -, starting with a "
                "letter or digit",
            )
        prefix = settings.get("prefix", DEFAULT_PREFIX)
        if not keyformat.is_valid_prefix(prefix):
            raise ctx.error(
                "prefix",
                f"invalid key prefix {prefix!r}: use 1-30 chars matching "
                f"{keyformat.PREFIX_PATTERN} (e.g. 'ak_live')",
            )
        conn = AwsConnection.from_settings(settings, ctx, kind="issuer")
        return cls(
            conn,
            [plan.strip() for plan in plans],
            name_prefix=name_prefix,
            prefix=prefix,
        )

    def __repr__(self) -> str:
        return (
            f"ApiGatewayIssuer(usage_plans={list(self.usage_plans)!r}, region={self.conn.region!r})"
        )

    # -- plumbing ---------------------------------------------------------

    @staticmethod
    def _where(credential: str, what: str = "") -> str:
        where = f"{credential}: API Gateway" if credential else "API Gateway"
        return f"{where} {what}" if what else where

    def _call(
        self,
        method: str,
        where: str,
        expect: frozenset[str] | set[str] = frozenset(),
        **params: Any,
    ) -> dict[str, Any]:
        return self.conn.call("apigateway", method, where=where, expect=expect, **params)

    def _name_stem(self, credential: str) -> str:
        """What every key name of ``credential`` starts with."""
        return f"{self.name_prefix}-{credential.replace('/', '-')}-"

    def _keys(self, credential: str) -> Iterator[dict[str, Any]]:
        """The API keys tagged for ``credential`` (without their values)."""
        params: dict[str, Any] = {"nameQuery": self._name_stem(credential), "limit": _PAGE}
        while True:
            page = self._call("get_api_keys", self._where(credential, "keys"), **params)
            for item in page.get("items", []):
                if (item.get("tags") or {}).get(TAG_CREDENTIAL) == credential:
                    yield item
            position = page.get("position")
            if not position or position == params.get("position"):
                return
            params["position"] = position

    def _get(
        self, credential: str, issuer_ref: str, *, value: bool = False
    ) -> dict[str, Any] | None:
        """The API key ``issuer_ref`` (None when it does not exist)."""
        try:
            return self._call(
                "get_api_key",
                self._where(credential, f"key {issuer_ref}"),
                expect={NOT_FOUND},
                apiKey=issuer_ref,
                includeValue=value,
            )
        except AwsExpected:
            return None

    def _owned(self, credential: str, key: Mapping[str, Any]) -> None:
        """IssuerError when ``key`` is tagged for another credential."""
        owner = (key.get("tags") or {}).get(TAG_CREDENTIAL)
        if owner is not None and owner != credential:
            raise IssuerError(
                f"{self._where(credential, 'key ' + str(key.get('id')))}: tagged "
                f"{TAG_CREDENTIAL}={owner}, not this credential; left alone"
            )

    def _set_enabled(self, credential: str, issuer_ref: str, enabled: bool) -> None:
        self._call(
            "update_api_key",
            self._where(credential, f"key {issuer_ref}"),
            apiKey=issuer_ref,
            patchOperations=[
                {"op": "replace", "path": "/enabled", "value": "true" if enabled else "false"}
            ],
        )

    def check_plans(self, credential: str = "") -> None:
        """IssuerError naming the first configured usage plan that does not exist."""
        for plan in self.usage_plans:
            try:
                self._call(
                    "get_usage_plan",
                    self._where(credential, f"usage plan {plan}"),
                    expect={NOT_FOUND},
                    usagePlanId=plan,
                )
            except AwsExpected as exc:
                raise IssuerError(
                    f"{self._where(credential, f'usage plan {plan}')}: GetUsagePlan failed "
                    f"({exc.code}): no such usage plan in region {self.conn.region}; check "
                    "`usage_plans`"
                ) from None
        self._plans_checked = True

    def _attach(self, credential: str, issuer_ref: str) -> None:
        """Attach the key to every configured usage plan (already attached is fine)."""
        for plan in self.usage_plans:
            # The reply holds the key's value: it is dropped unread.
            with contextlib.suppress(AwsExpected):
                self._call(
                    "create_usage_plan_key",
                    self._where(credential, f"usage plan {plan}"),
                    expect={CONFLICT},
                    usagePlanId=plan,
                    keyId=issuer_ref,
                    keyType="API_KEY",
                )

    def _issued(self, credential: str, issuer_ref: str, value: str) -> IssuedKey:
        try:
            parsed = keyformat.parse(value)
        except keyformat.KeyFormatError:
            raise IssuerError(
                f"{self._where(credential, f'key {issuer_ref}')}: its value is not a key "
                "rotatectl generated; delete the key by hand"
            ) from None
        return IssuedKey(
            value=value,
            key_id=parsed.key_id,
            fingerprint=keyformat.secret_hash(parsed.secret),
            issuer_ref=issuer_ref,
        )

    # -- KeyIssuer ------------------------------------------------------------

    def create(self, credential: str, version_id: str, scopes: Sequence[str]) -> IssuedKey:
        """Mint (or, after an interrupted create, find again) the key of ``version_id``
        and attach it to every usage plan. ``scopes`` are ignored (see the module
        docstring)."""
        if not self._plans_checked:
            self.check_plans(credential)
        issued = self._adopt(credential, version_id)
        if issued is None:
            value = keyformat.generate(self.prefix)  # 59-88 chars: see VALUE_PATTERN
            redact.register(value)  # should any reply ever echo it
            try:
                out = self._call(
                    "create_api_key",
                    self._where(credential, "key"),
                    expect={CONFLICT},
                    name=f"{self._name_stem(credential)}{version_id[:8]}",
                    description=f"rotatectl: {credential}, version {version_id}",
                    enabled=True,
                    value=value,
                    tags={TAG_CREDENTIAL: credential, TAG_VERSION: version_id},
                )
            except AwsExpected as exc:
                raise IssuerError(
                    f"{self._where(credential, 'key')}: CreateApiKey failed ({exc.code}): an "
                    "API key with this value already exists; run again",
                    retryable=True,
                ) from None
            issued = self._issued(credential, str(out["id"]), value)
            del value
        self._attach(credential, issued.issuer_ref)
        return issued

    def _adopt(self, credential: str, version_id: str) -> IssuedKey | None:
        """The key an earlier create of ``version_id`` left (enabled again), or None."""
        found = [k for k in self._keys(credential) if k["tags"].get(TAG_VERSION) == version_id]
        for key in sorted(found, key=lambda k: str(k.get("createdDate", ""))):
            issuer_ref = str(key["id"])
            full = self._get(credential, issuer_ref, value=True)
            if full is None:  # deleted meanwhile
                continue
            value = str(full.get("value", ""))
            redact.register(value)
            issued = self._issued(credential, issuer_ref, value)
            del value
            if not full.get("enabled"):
                self._set_enabled(credential, issuer_ref, True)
            return issued
        return None

    def list_keys(self, credential: str) -> list[IssuerKey]:
        """The keys tagged for ``credential``; ``tag`` is the version id each was minted for."""
        return [
            IssuerKey(
                issuer_ref=str(key["id"]),
                tag=key["tags"].get(TAG_VERSION),
                active=bool(key.get("enabled")),
                created=key.get("createdDate"),
            )
            for key in self._keys(credential)
        ]

    def disable(self, credential: str, issuer_ref: str) -> None:
        """``UpdateApiKey /enabled false``: the gateway refuses the key. A missing key
        is a no-op."""
        key = self._get(credential, issuer_ref)
        if key is None:
            return
        self._owned(credential, key)
        if key.get("enabled"):
            self._set_enabled(credential, issuer_ref, False)

    def enable(self, credential: str, issuer_ref: str) -> None:
        """``UpdateApiKey /enabled true`` (undo :meth:`disable`). IssuerError if the key
        is gone."""
        key = self._get(credential, issuer_ref)
        if key is None:
            raise IssuerError(
                f"{self._where(credential, f'key {issuer_ref}')}: no longer exists; it "
                "cannot be re-enabled"
            )
        self._owned(credential, key)
        if not key.get("enabled"):
            self._set_enabled(credential, issuer_ref, True)

    def delete(self, credential: str, issuer_ref: str) -> None:
        """``DeleteApiKey`` (which also drops it from its usage plans). A missing key is
        not an error."""
        key = self._get(credential, issuer_ref)
        if key is None:
            return
        self._owned(credential, key)
        with contextlib.suppress(AwsExpected):  # deleted meanwhile
            self._call(
                "delete_api_key",
                self._where(credential, f"key {issuer_ref}"),
                expect={NOT_FOUND},
                apiKey=issuer_ref,
            )

    # -- AccessCheck --------------------------------------------------------

    def check_access(self) -> list[str]:
        """Which API Gateway calls the issuer needs are denied (or which usage plan is
        missing), one line each. Harmless probes: listing keys, reading the usage plans,
        reading an API key id that does not exist. Creating, updating, attaching and
        deleting cannot be probed without a key: they are not checked."""
        problems: list[str] = []
        probes: list[Callable[[], object]] = [
            lambda: self._call("get_api_keys", self._where("", "keys"), limit=1),
            lambda: self._get("", _PROBE_KEY_ID),
            self.check_plans,
        ]
        for probe in probes:
            try:
                probe()
            except RotatectlError as exc:
                problems.append(str(exc))
        return problems

    def close(self) -> None:
        """Release HTTP connections."""
        self.conn.close()
