"""The rotatectl SDK: both ends of an API call keep working through rotations.

Server side (API owners): :class:`KeyRing` verifies presented keys against the
accepted keys of a store (hashes only), refreshes in the background, stays up
when the store is down, and writes usage records for the ``access-log``
probe; :class:`KeyRingMiddleware` (ASGI) and :class:`KeyRingWSGIMiddleware`
(WSGI) put it in front of an app.

Client side (API consumers): :class:`CurrentKey` always hands out the
current key (``field=``: the key in one field of a JSON secret) and
refreshes it once on a 401/403. Auth adapters for
``requests`` and ``httpx`` live in :mod:`rotatectl.sdk.requests_auth` and
:mod:`rotatectl.sdk.httpx_auth` (optional extras, imported only there).

See docs/sdk.md.
"""

from __future__ import annotations

from .asgi import KeyRingMiddleware
from .client import CurrentKey, CurrentValueSource, SecretDocumentError
from .keyring import (
    AcceptedKeySource,
    CredentialStatus,
    KeyHeaders,
    KeyRing,
    KeyRingStatus,
    Rejection,
    RejectReason,
    Result,
    Verification,
    require_scope,
)
from .usage_log import UsageLog
from .wsgi import KeyRingWSGIMiddleware

__all__ = [
    "AcceptedKeySource",
    "CredentialStatus",
    "CurrentKey",
    "CurrentValueSource",
    "KeyHeaders",
    "KeyRing",
    "KeyRingMiddleware",
    "KeyRingStatus",
    "KeyRingWSGIMiddleware",
    "RejectReason",
    "Rejection",
    "Result",
    "SecretDocumentError",
    "UsageLog",
    "Verification",
    "require_scope",
]
