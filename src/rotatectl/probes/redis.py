"""Usage from Redis itself: which ACL user has connections open right now (issue 19).

A key of the ``redis`` issuer is an ACL user's password; rotatectl's tags (see
:mod:`rotatectl.redisacl`) name the user holding each key id and the hash of its
password. This probe maps each key id to its user and reads ``CLIENT LIST``:

- a key id no user holds any more, or whose password the user no longer accepts,
  cannot be used by anyone: ``not-seen``;
- a user with no connection open: ``not-seen``;
- a user with connections open and this one password (the ``alternating`` strategy):
  ``seen`` now, with the connections' client addresses, which ``status`` and ``usage``
  show;
- a user with connections open and several passwords (the ``dual-password`` strategy
  during the overlap): ``unknown``. Redis records which user a connection
  authenticated as, never which of its passwords, so nothing tells whether the open
  connections hold the old key or the new one. The gate then holds until they close,
  unless ``unknown_usage = "quiet"``; retiring the old key closes them all anyway
  (the issuer's ``disable`` does, for this reason).

It samples: a client that connects once an hour and is not connected when the gate
looks is not seen. When the server cannot be reached the answer is ``unknown`` for
every key (ProbeError), so the gate holds (unless ``unknown_usage = "quiet"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Self

from ..alternating import well_formed_users
from ..errors import ProbeError
from ..model import KeyUsage, UsageStatus
from ..redisacl import TAG_KEY, USER, acl_user, admin_url, connections, read_tags, session
from ..registry import AdapterContext, check_settings


class RedisClientsProbe:
    """Open connections of the ACL users in ``users`` (see the module docstring)."""

    def __init__(
        self,
        url: str,
        users: Sequence[str],
        *,
        tag_key: str = TAG_KEY,
        where: str = "redis",
        connect: Callable[[str], Any] | None = None,
    ) -> None:
        self._url = url
        self.users = tuple(users)
        self.tag_key = tag_key
        self.where = where
        self._connect = connect

    def __repr__(self) -> str:  # never the URL
        return f"RedisClientsProbe(users={self.users!r}, server={self.where!r})"

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: ``users`` (the users whose connections count: the issuer's),
        ``admin_url_env`` and ``tag_key`` (as the issuer's). ConfigError names the
        offending key."""
        from ..extras import require

        check_settings(settings, ctx, {"users": list, "admin_url_env": str, "tag_key": str})
        users = settings.get("users")
        if not well_formed_users(users, USER.match):
            raise ctx.error("users", "expected the ACL user names, e.g. ['app', 'app_b']")
        tag_key = settings.get("tag_key", TAG_KEY)
        if not tag_key:
            raise ctx.error("tag_key", "expected a key name, e.g. 'rotatectl:tags'")
        url, where = admin_url(settings, ctx)
        require("redis", "usage probe type 'redis'")
        return cls(url, users, tag_key=tag_key, where=where)

    def usage(
        self, credential: str, key_ids: Sequence[str], since: datetime, now: datetime
    ) -> dict[str, KeyUsage]:
        """Each key id: ``seen`` now when the user holding it has connections open and
        no other password, ``unknown`` when it has others, else ``not-seen``.
        ProbeError when the server cannot be read."""
        where = f"{credential}: redis {self.where}: usage"
        with session(self._url, where, ProbeError, self._connect) as client:
            tags = read_tags(client, self.tag_key, self.users)
            state = {u: acl_user(client, u) for u in self.users}
            open_now = connections(client, self.users)
        held = {tag.key_id: (user, tag) for user in self.users for tag in tags[user].values()}
        found: dict[str, KeyUsage] = {}
        for key_id in key_ids:
            if key_id not in held:
                found[key_id] = KeyUsage(
                    UsageStatus.NOT_SEEN, detail="no user holds this key any more"
                )
                continue
            user, tag = held[key_id]
            passwords = state[user].passwords
            clients = tuple(sorted(set(open_now[user])))
            if tag.hash not in passwords:
                found[key_id] = KeyUsage(
                    UsageStatus.NOT_SEEN, detail=f"user {user} no longer accepts its password"
                )
            elif not clients:
                found[key_id] = KeyUsage(
                    UsageStatus.NOT_SEEN, detail=f"no connection of user {user} open now"
                )
            elif len(passwords) > 1:
                found[key_id] = KeyUsage(
                    UsageStatus.UNKNOWN,
                    detail=(
                        f"{len(open_now[user])} connection(s) of user {user} open now "
                        f"({', '.join(clients)}), which has {len(passwords)} passwords: "
                        "Redis does not tell which one a connection used"
                    ),
                )
            else:
                found[key_id] = KeyUsage(
                    UsageStatus.SEEN,
                    last_seen=now,
                    count=len(open_now[user]),
                    clients=clients,
                    detail=f"{len(open_now[user])} connection(s) of user {user} open now",
                )
        return found
