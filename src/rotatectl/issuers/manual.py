"""The ``manual`` issuer: keys of services with no API, made and revoked by a person
(issue 20 item 4), with the same phases, overlap, usage gate and audit as any other.

- A rotation starts as any other (``run`` when due, ``rotate``), then waits for a
  person: :meth:`create` raises :class:`~rotatectl.errors.PersonNeeded` with the
  instructions (``instructions``: where to create the key), and ``run`` returns at
  once. The owner is told, reminded every ``remind_every`` and, past ``deadline``,
  escalated (critical) through the notifiers. ``rotatectl supply NAME`` reads the
  new key from stdin or a prompt (never argv), checks it (``pattern``,
  ``min_length``, not a key the credential had before), hands it to this issuer
  (:meth:`supply`) and drives the rotation on: propagation, overlap, the usage gate.
- Retiring a key waits for the person again: :meth:`disable` asks them to revoke it
  at the service (``revoke_instructions``) and to run ``rotatectl confirm NAME``
  (:meth:`confirm`). A rollback's :meth:`enable` asks them to make sure the earlier
  key works at the service. :meth:`delete` has nothing left to do (the key was
  revoked by hand); :meth:`list_keys` is None (the service cannot be asked).

What is supplied lives in this process only until the rotation publishes it to the
store: nothing is staged on disk.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Self

from .. import keyformat, redact
from ..durations import parse_duration
from ..errors import PersonNeeded
from ..model import IssuedKey, IssuerKey
from ..registry import AdapterContext, check_settings


class ManualIssuer:
    """Keys a person makes and revokes (see the module docstring)."""

    def __init__(
        self,
        *,
        owner: str = "",
        instructions: str = "",
        revoke_instructions: str = "",
        pattern: str | None = None,
        min_length: int = 16,
        remind_every: timedelta | None = timedelta(days=1),
        deadline: timedelta | None = None,
    ) -> None:
        self.owner = owner
        self.instructions = instructions
        self.revoke_instructions = revoke_instructions
        self.pattern = re.compile(pattern) if pattern else None
        self.min_length = min_length
        self.remind_every = remind_every
        self.deadline = deadline
        self._supplied: tuple[str, datetime | None] | None = None
        self._confirmed = False

    def __repr__(self) -> str:
        return f"ManualIssuer(owner={self.owner!r})"

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: ``owner`` (who is asked, for messages: a team, an address),
        ``instructions`` (where and how to create a key at the service),
        ``revoke_instructions`` (how to revoke one), ``pattern`` (a regular expression
        a supplied key must match in full), ``min_length`` (default 16),
        ``remind_every`` (default ``1d``; ``0s``: never), ``deadline`` (escalate when
        the person has not acted this long after being asked; default none)."""
        check_settings(
            settings,
            ctx,
            {
                "owner": str,
                "instructions": str,
                "revoke_instructions": str,
                "pattern": str,
                "min_length": int,
                "remind_every": str,
                "deadline": str,
            },
        )
        pattern = settings.get("pattern")
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ctx.error("pattern", f"not a regular expression: {exc}") from None
        min_length = settings.get("min_length", 16)
        if isinstance(min_length, bool) or min_length < 1:
            raise ctx.error("min_length", "expected a whole number of at least 1")
        durations: dict[str, timedelta | None] = {}
        for key, default in (("remind_every", "1d"), ("deadline", None)):
            text = settings.get(key, default)
            try:
                value = parse_duration(text) if text is not None else None
            except ValueError as exc:
                raise ctx.error(key, str(exc)) from None
            durations[key] = value if value else None
        return cls(
            owner=settings.get("owner", ""),
            instructions=settings.get("instructions", ""),
            revoke_instructions=settings.get("revoke_instructions", ""),
            pattern=pattern,
            min_length=min_length,
            remind_every=durations["remind_every"],
            deadline=durations["deadline"],
        )

    # -- what the person hands over (``supply``, ``confirm``) --------------------

    def refusal(self, key: str, earlier: Sequence[str]) -> str | None:
        """Why ``key`` cannot be taken (too short, not the pattern, a key the
        credential had before: ``earlier`` are its versions' fingerprints), or None.
        The reason never holds the key."""
        if not key or key != key.strip() or any(c in key for c in "\r\n"):
            return "the key is empty or has surrounding spaces or line breaks"
        if len(key) < self.min_length:
            return f"the key is shorter than {self.min_length} characters (min_length)"
        if self.pattern is not None and not self.pattern.fullmatch(key):
            return f"the key does not match the pattern {self.pattern.pattern!r}"
        for recorded in earlier:
            if keyformat.fingerprint_matches(recorded, key):
                return "this key was used before by this credential: make a new one"
        return None

    def supply(self, key: str, expires: datetime | None = None) -> None:
        """Hand over the key the person made, for this process's next :meth:`create`."""
        redact.register(key)
        self._supplied = (key, expires)

    def confirm(self) -> None:
        """The person did what was asked (revoked, or re-enabled, a key)."""
        self._confirmed = True

    # -- the port ---------------------------------------------------------------

    def create(self, credential: str, version_id: str, scopes: Sequence[str]) -> IssuedKey:
        """The supplied key; PersonNeeded (the instructions) when none was."""
        if self._supplied is None:
            where = f" ({self.instructions})" if self.instructions else ""
            raise self._need(
                "supply a new key",
                f"create a new key at the service{where}, then hand it over with "
                f"`rotatectl supply {credential}` (it reads the key from stdin or a prompt)",
            )
        key, expires = self._supplied
        fingerprint = keyformat.fingerprint_of(key)
        key_id = keyformat.key_id_of(key, fingerprint)
        return IssuedKey(
            value=key,
            key_id=key_id,
            fingerprint=fingerprint,
            issuer_ref=f"manual:{key_id}@{version_id}",
            expires=expires,
        )

    def list_keys(self, credential: str) -> list[IssuerKey] | None:
        """None: the service cannot be asked which keys it holds."""
        return None

    def disable(self, credential: str, issuer_ref: str) -> None:
        """Done once confirmed; else PersonNeeded (revoke the key at the service)."""
        if self._confirmed:
            return
        how = f" ({self.revoke_instructions})" if self.revoke_instructions else ""
        raise self._need(
            f"revoke {_key_id(issuer_ref)}",
            f"revoke key {_key_id(issuer_ref)} at the service{how}, then run "
            f"`rotatectl confirm {credential}`",
        )

    def enable(self, credential: str, issuer_ref: str) -> None:
        """Done once confirmed; else PersonNeeded (make sure the key works again)."""
        if self._confirmed:
            return
        raise self._need(
            f"re-enable {_key_id(issuer_ref)}",
            f"make sure key {_key_id(issuer_ref)} works at the service again (re-enable "
            f"it if it was revoked), then run `rotatectl confirm {credential}`",
        )

    def delete(self, credential: str, issuer_ref: str) -> None:
        """Nothing to do: the person revoked the key when it was retired."""

    def _need(self, ask: str, instructions: str) -> PersonNeeded:
        return PersonNeeded(
            ask,
            instructions,
            owner=self.owner,
            remind_every=self.remind_every,
            deadline=self.deadline,
        )


def _key_id(issuer_ref: str) -> str:
    return issuer_ref.removeprefix("manual:").partition("@")[0] or issuer_ref
