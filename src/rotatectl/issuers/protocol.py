"""The plug-in issuer protocol, version 1 (issue 20): one JSON request, one JSON reply
per issuer operation. The ``command`` issuer carries it over a program's stdin and
stdout, the ``http`` issuer over signed HTTPS POSTs; :class:`ProtocolIssuer` is the
:class:`~rotatectl.ports.KeyIssuer` on top of either (httpx's transports, for keys).

A request::

    {"protocol": 1, "operation": "create", "credential": "payments/stripe",
     "version_id": "...", "scopes": ["read"]}

``operation`` is one of ``create``, ``list``, ``disable``, ``enable``, ``delete`` and
``test``; ``issuer_ref`` is sent to disable, enable, delete and test; ``key`` (the key
itself) only to ``test``. Replies, by operation:

- ``create``: ``{"key": "...", "issuer_ref": "..."}``, optionally ``"key_id"``,
  ``"expires"`` (ISO 8601) and ``"fields"`` (other values minted with the key, such
  as ``{"username": "..."}``, written beside it in a JSON secret). Idempotency: a
  create can come again with the same ``version_id`` after a crash. Return the key
  made for it then, or make a new one and have ``list`` report the first with its
  ``version_id``: rotatectl revokes keys it did not record (``delete``).
- ``list``: ``{"keys": [{"issuer_ref": "...", "version_id": "..." | null,
  "active": true}]}``: the keys the service holds for the credential, each with the
  version id it was created for (null: not rotatectl's; left alone). ``{"keys":
  null}``: keys exist only in the store (nothing can be orphaned).
- ``disable`` (reversible), ``enable``, ``delete``: ``{}``. Each is idempotent; an
  unknown ``issuer_ref`` is not an error.
- ``test``: ``{"ok": true|false, "detail": "..."}``: does the service accept the key?
- Any operation: ``{"unsupported": true}`` when the plug-in does not implement it
  (only ``test`` may be unsupported).

Keys travel only in the request and reply bodies, never in argv, the environment or
a URL. A reply that breaks this protocol is one IssuerError line naming the plug-in
and the operation and saying what is wrong, never the reply's text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from .. import keyformat, redact
from ..errors import IssuerError
from ..model import IssuedKey, IssuerKey

PROTOCOL = 1
OPERATIONS = ("create", "list", "disable", "enable", "delete", "test")
REPLY_LIMIT = 1 << 20  # a reply longer than 1 MiB is not a key


class Transport(Protocol):
    """Carries one request to the plug-in and brings its reply back."""

    where: str  # the plug-in, for messages: "command admin-api.py", "https://admin.internal"

    def exchange(self, credential: str, operation: str, body: bytes) -> bytes:
        """The reply's bytes. IssuerError (one line, retryable when trying again may
        help) when the plug-in cannot be reached or says it failed."""
        ...


class ProtocolIssuer:
    """A :class:`~rotatectl.ports.KeyIssuer` speaking the protocol over ``transport``."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transport.where})"

    def create(self, credential: str, version_id: str, scopes: Sequence[str]) -> IssuedKey:
        """A new key from the plug-in's ``create`` (see the module docstring)."""
        reply = self._call(credential, "create", version_id=version_id, scopes=list(scopes))
        key = reply.get("key")
        bad = self._malformed(credential, "create")
        if not isinstance(key, str) or not key:
            raise bad("'key' must be a non-empty string")
        redact.register(key)
        ref = reply.get("issuer_ref")
        if not isinstance(ref, str) or not ref or not ref.isprintable():
            raise bad("'issuer_ref' must be a non-empty string of printable characters")
        if key in ref:
            raise bad("'issuer_ref' holds the key: references are printed")
        fields = reply.get("fields", {})
        if not isinstance(fields, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in fields.items()
        ):
            raise bad("'fields' must map names to strings")
        for value in fields.values():
            redact.register(value)
        fingerprint = keyformat.fingerprint_of(key)
        key_id = reply.get("key_id")
        if key_id is None:
            key_id = keyformat.key_id_of(key, fingerprint)
        if not isinstance(key_id, str) or not key_id.isprintable() or not key_id or key in key_id:
            raise bad("'key_id' must be a printable string that does not hold the key")
        expires = reply.get("expires")
        when = None
        if expires is not None:
            try:
                when = datetime.fromisoformat(str(expires))
            except ValueError:
                raise bad("'expires' must be an ISO 8601 time") from None
            if when.tzinfo is None:
                raise bad("'expires' must carry a time zone (e.g. 2027-01-31T00:00:00Z)")
        return IssuedKey(
            value=key,
            key_id=key_id,
            fingerprint=fingerprint,
            issuer_ref=ref,
            expires=when,
            extra=dict(fields),
        )

    def list_keys(self, credential: str) -> list[IssuerKey] | None:
        """The plug-in's ``list``: its keys for ``credential`` with their version ids,
        or None when it keeps none of its own."""
        reply = self._call(credential, "list")
        keys = reply.get("keys", ...)
        if keys is None:
            return None
        bad = self._malformed(credential, "list")
        if not isinstance(keys, list):
            raise bad("'keys' must be a list or null")
        found = []
        for item in keys:
            if not isinstance(item, dict):
                raise bad("each key must be an object")
            ref, tag, active = item.get("issuer_ref"), item.get("version_id"), item.get("active")
            if not isinstance(ref, str) or not ref or not ref.isprintable():
                raise bad("each key needs an 'issuer_ref' string of printable characters")
            if tag is not None and not isinstance(tag, str):
                raise bad("'version_id' must be a string or null")
            if not isinstance(active, bool):
                raise bad("each key needs 'active': true or false")
            found.append(IssuerKey(ref, tag, active))
        return found

    def disable(self, credential: str, issuer_ref: str) -> None:
        """The plug-in's ``disable`` (reversible, idempotent)."""
        self._call(credential, "disable", issuer_ref=issuer_ref)

    def enable(self, credential: str, issuer_ref: str) -> None:
        """The plug-in's ``enable`` (idempotent)."""
        self._call(credential, "enable", issuer_ref=issuer_ref)

    def delete(self, credential: str, issuer_ref: str) -> None:
        """The plug-in's ``delete`` (idempotent; an unknown reference is no error)."""
        self._call(credential, "delete", issuer_ref=issuer_ref)

    def test(self, credential: str, issuer_ref: str, key: str) -> tuple[bool, str] | None:
        """The plug-in's ``test``: whether the service accepts ``key``, and why; None
        when the plug-in does not implement it."""
        reply = self._call(credential, "test", issuer_ref=issuer_ref, key=key, optional=True)
        if reply.get("unsupported") is True:
            return None
        ok, detail = reply.get("ok"), reply.get("detail", "")
        if not isinstance(ok, bool) or not isinstance(detail, str):
            raise self._malformed(credential, "test")("expected 'ok': true|false and a 'detail'")
        return ok, redact.scrub(detail)

    # -- the exchange ---------------------------------------------------------------

    def _call(
        self, credential: str, operation: str, *, optional: bool = False, **fields: Any
    ) -> Mapping[str, Any]:
        request = {"protocol": PROTOCOL, "operation": operation, "credential": credential}
        request.update(fields)
        body = json.dumps(request, separators=(",", ":")).encode()
        raw = self.transport.exchange(credential, operation, body)
        bad = self._malformed(credential, operation)
        if len(raw) > REPLY_LIMIT:
            raise bad(f"longer than {REPLY_LIMIT} bytes")
        try:
            reply = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise bad("not a JSON object") from None
        if not isinstance(reply, dict):
            raise bad("not a JSON object")
        if reply.get("unsupported") is True and not optional:
            raise IssuerError(
                f"{credential}: {self.transport.where}: {operation}: the plug-in does not "
                "implement it (only 'test' may be left out)"
            )
        return reply

    def _malformed(self, credential: str, operation: str) -> Any:
        where = f"{credential}: {self.transport.where}: {operation}: malformed reply"

        def error(why: str) -> IssuerError:
            return IssuerError(f"{where}: {why}")

        return error
