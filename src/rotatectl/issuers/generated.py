"""The default issuer: mints keys in the generated format (see keyformat.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

from .. import keyformat
from ..model import IssuedKey, IssuerKey
from ..registry import AdapterContext, check_settings


class GeneratedIssuer:
    """Mints ``<prefix>_<key id><secret><checksum>`` keys locally.

    There is no issuer-side state: a key exists only as a version in the
    store, and whether verifiers accept it is governed by that version's
    state (pending/current/previous are accepted; retired/destroyed are not).
    So :meth:`list_keys` returns None (nothing can be orphaned here) and
    :meth:`disable`, :meth:`enable` and :meth:`delete` are no-ops (the "store-only"
    feature).
    """

    FEATURES = frozenset({"store-only"})

    def __init__(self, prefix: str = keyformat.DEFAULT_PREFIX) -> None:
        if not keyformat.is_valid_prefix(prefix):
            raise ValueError(
                f"invalid key prefix {prefix!r}: must match {keyformat.PREFIX_PATTERN}"
            )
        self.prefix = prefix

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: ``prefix`` (optional, default ``rk``)."""
        check_settings(settings, ctx, {"prefix": str})
        prefix = settings.get("prefix", keyformat.DEFAULT_PREFIX)
        if not keyformat.is_valid_prefix(prefix):
            raise ctx.error(
                "prefix",
                f"invalid key prefix {prefix!r}: use 1-30 chars matching "
                f"{keyformat.PREFIX_PATTERN} (e.g. 'rk_live')",
            )
        return cls(prefix=prefix)

    def create(self, credential: str, version_id: str, scopes: Sequence[str]) -> IssuedKey:
        """A fresh random key; the key id doubles as the issuer reference."""
        value = keyformat.generate(self.prefix)
        parsed = keyformat.parse(value)
        return IssuedKey(
            value=value,
            key_id=parsed.key_id,
            fingerprint=keyformat.secret_hash(parsed.secret),
            issuer_ref=parsed.key_id,
        )

    def list_keys(self, credential: str) -> list[IssuerKey] | None:
        """None: keys live only in the store."""
        return None

    def disable(self, credential: str, issuer_ref: str) -> None:
        """No-op: retiring the version in the store is what stops acceptance."""

    def enable(self, credential: str, issuer_ref: str) -> None:
        """No-op (see :meth:`disable`)."""

    def delete(self, credential: str, issuer_ref: str) -> None:
        """No-op: destroying the version in the store wipes the only copy."""
