"""Decisions shared by the database issuers and probes that alternate two users
(``postgres``, ``mysql``, ``redis``): pure functions, table-tested in
``tests/test_alternating.py``; each adapter reads its server and applies the answer.

A key of such an issuer is one user's password; the issuer reference is
``<user>@<version id>``, and each user is tagged with the version (and key id) whose
password it holds now.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import TypeGuard

from . import keyformat
from .model import IssuedKey, KeyUsage, UsageStatus


def parse_ref(issuer_ref: str, valid: Callable[[str], bool]) -> tuple[str, str]:
    """``<user>@<version id>`` as (user, version id); ("", "") when it is not one
    (``valid``: whether a user name is well formed)."""
    user, sep, version_id = issuer_ref.partition("@")
    return (user, version_id) if sep and version_id and valid(user) else ("", "")


def well_formed_users(
    users: object, valid: Callable[[str], object], count: int | None = None
) -> TypeGuard[list[str]]:
    """Whether a ``users`` setting is a list of names ``valid`` accepts: exactly ``count``
    distinct ones (an issuer's slots), or at least one (None: a probe's)."""
    if not isinstance(users, list) or not all(isinstance(u, str) and valid(u) for u in users):
        return False
    if count is None:
        return bool(users)
    return len(users) == count and len(set(users)) == count


def issued(password: str, user: str, version_id: str) -> IssuedKey:
    """The key minted for ``version_id``: ``password`` (in the generated format, so it
    has a key id and a fast fingerprint) set on ``user``, whom the secret names."""
    parsed = keyformat.parse(password)
    return IssuedKey(
        value=password,
        key_id=parsed.key_id,
        fingerprint=keyformat.secret_hash(parsed.secret),
        issuer_ref=f"{user}@{version_id}",
        extra={"username": user},
    )


def pick(
    users: Sequence[str],
    holds: Mapping[str, Collection[str]],
    usable: Mapping[str, bool],
    version_id: str,
    keep: Sequence[str],
) -> str | None:
    """Which of ``users`` takes the key of ``version_id``.

    ``holds``: the versions whose keys each user holds now; ``usable``:
    whether each can log in now; ``keep``: the users whose keys must keep working.
    The user already holding ``version_id`` (a retry after a crash) takes it again;
    else one not in ``keep``, preferring one that cannot log in (its key was retired),
    then the order of ``users``. None when every user holds a key that must keep
    working.
    """
    again = [u for u in users if version_id in holds.get(u, ())]
    if again:
        return again[0]
    free = sorted((u for u in users if u not in keep), key=lambda u: usable.get(u, False))
    return free[0] if free else None


def session_usage(
    key_ids: Sequence[str],
    held: Mapping[str, str],
    open_now: Mapping[str, Sequence[str]],
    now: datetime,
    *,
    who: str = "user",
) -> dict[str, KeyUsage]:
    """A sampling probe's answer: each key id is ``seen`` now when the user holding it
    (``held``: key id -> user) has sessions open (``open_now``: user -> their clients),
    with those clients; ``not-seen`` when it has none, or no user holds the key any
    more (nobody can present it). ``who`` names a user in the details ("role")."""
    found: dict[str, KeyUsage] = {}
    for key_id in key_ids:
        user = held.get(key_id)
        if user is None:
            found[key_id] = KeyUsage(
                UsageStatus.NOT_SEEN, detail=f"no {who} holds this key any more"
            )
            continue
        clients = list(open_now.get(user, ()))
        if clients:
            found[key_id] = KeyUsage(
                UsageStatus.SEEN,
                last_seen=now,
                count=len(clients),
                clients=tuple(sorted(set(clients))),
                detail=f"{len(clients)} session(s) of {who} {user} open now",
            )
        else:
            found[key_id] = KeyUsage(
                UsageStatus.NOT_SEEN, detail=f"no session of {who} {user} open now"
            )
    return found
