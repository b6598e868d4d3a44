"""Usage from MariaDB/MySQL itself: who is connected as which user right now (issue 19).

A key of the ``mysql`` issuer is a user's password; the issuer's tag table names the
key id each user holds (``<tag_database>.rotatectl_tags``). This probe maps each key
id to its user and reads ``information_schema.PROCESSLIST``: a user with open
sessions is in use now (``seen``, with the sessions' client ``host:port``, which
``status`` and ``usage`` show), one with none is ``not-seen``, and a key id no user
holds any more cannot be used by anyone (``not-seen``). With the ``dual-password``
strategy both keys of the one user share its sessions (nothing tells which password
a session logged in with), so the previous key counts as seen while any session of
the user is open.

It samples: a client that connects once an hour and is not connected when the gate
looks is not seen. The admin user needs the ``PROCESS`` privilege to see other users'
sessions. When the server cannot be read the answer is ``unknown`` for every key, so
the gate holds (unless ``unknown_usage = "quiet"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Self

from ..alternating import session_usage, well_formed_users
from ..errors import ProbeError
from ..model import KeyUsage
from ..mysql import DATABASE, NAME, Admin, cursor, sessions, tags
from ..registry import AdapterContext, check_settings

# The tag slots whose key can still log in (see rotatectl.issuers.mysql).
_LIVE = ("current", "retained")


class MySQLSessionsProbe:
    """Open sessions of the users in ``users`` (see the module docstring)."""

    def __init__(
        self,
        admin: Admin,
        users: Sequence[str],
        *,
        tag_database: str = "rotatectl",
        where: str | None = None,
        opener: Callable[[Admin], Any] | None = None,
    ) -> None:
        self._admin = admin
        self.users = tuple(users)
        self.tag_database = tag_database
        self.where = where or admin.where
        self._opener = opener

    def __repr__(self) -> str:  # never the admin URL
        return f"MySQLSessionsProbe(users={self.users!r}, server={self.where!r})"

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: ``users`` (the users whose sessions count: the issuer's),
        ``admin_dsn_env`` and ``tag_database`` (as the issuer's). ConfigError names the
        offending key."""
        from ..extras import require
        from ..mysql import admin_url

        check_settings(settings, ctx, {"users": list, "admin_dsn_env": str, "tag_database": str})
        users = settings.get("users")
        if not well_formed_users(users, NAME.match):
            raise ctx.error("users", "expected the user names, e.g. ['app', 'app_b']")
        tag_database = settings.get("tag_database", "rotatectl")
        if not DATABASE.match(tag_database):
            raise ctx.error("tag_database", f"invalid database name {tag_database!r}")
        admin = admin_url(settings, ctx)
        require("pymysql", "usage probe type 'mysql'")
        return cls(admin, users, tag_database=tag_database)

    def usage(
        self, credential: str, key_ids: Sequence[str], since: datetime, now: datetime
    ) -> dict[str, KeyUsage]:
        """Each key id: ``seen`` now when the user holding it has open sessions (their
        clients listed), else ``not-seen``. ProbeError when the server cannot be read."""
        where = f"{credential}: mysql {self.where}: usage"
        with cursor(self._admin, where, ProbeError, self._opener) as cur:
            held = {
                tag[1]: user
                for user, slots in tags(cur, self.tag_database, self.users, None).items()
                for slot, tag in slots.items()
                if slot in _LIVE
            }
            open_now = {u: [c for _, c in s] for u, s in sessions(cur, self.users).items()}
        return session_usage(key_ids, held, open_now, now)
