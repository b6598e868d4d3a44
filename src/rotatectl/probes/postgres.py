"""Usage from PostgreSQL itself: who is connected as which role right now (issue 19).

A key of the ``postgres`` issuer is a role's password; the role's comment names the
key id it holds (``rotatectl:<version id>:<key id>``). This probe maps each key id to
its role and reads ``pg_stat_activity``: a role with open sessions is in use now
(``seen``, with the sessions' client addresses, which ``status`` and ``usage`` show),
one with none is ``not-seen``, and a key id no role holds any more cannot be used by
anyone (``not-seen``).

It samples: a client that connects once an hour and is not connected when the gate
looks is not seen. Cover such clients with the server's connection log: with
``log_connections = on`` and ``log_timezone = 'UTC'``, ``connection_log`` names the
log file(s) (a path or a glob), and a ``connection authorized: user=<role>`` line
since the window began makes that role's key ``seen`` at the line's time (the default
``log_line_prefix``, which starts with ``%m``, gives it). A role holds one key from its
promotion to its retirement, so its connections in that time are that key's. When the
server cannot be reached the answer is ``unknown`` for every key, so the gate holds
(unless ``unknown_usage = "quiet"``).
"""

from __future__ import annotations

import glob
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from ..alternating import session_usage, well_formed_users
from ..errors import ProbeError
from ..model import KeyUsage, UsageStatus
from ..pg import ROLE, admin_dsn, cursor, roles_since
from ..registry import AdapterContext, check_settings


class PostgresSessionsProbe:
    """Open sessions of the roles in ``users`` (see the module docstring)."""

    def __init__(
        self,
        dsn: str | Callable[[], str],
        users: Sequence[str],
        *,
        where: str = "postgres",
        connect: Callable[[str], Any] | None = None,
        connection_log: str | None = None,
    ) -> None:
        self._dsn = dsn
        self.users = tuple(users)
        self.where = where
        self._connect = connect
        self.connection_log = connection_log

    def __repr__(self) -> str:  # never the DSN
        return f"PostgresSessionsProbe(users={self.users!r}, server={self.where!r})"

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: ``users`` (the roles whose sessions count: the issuer's pair),
        ``admin_dsn_env`` or ``admin_credential`` (as the issuer's), ``connection_log``.
        ConfigError names the offending key."""
        from ..extras import require

        check_settings(
            settings,
            ctx,
            {"users": list, "admin_dsn_env": str, "admin_credential": str, "connection_log": str},
        )
        users = settings.get("users")
        if not well_formed_users(users, ROLE.match):
            raise ctx.error("users", "expected the role names, e.g. ['app', 'app_b']")
        dsn, where = admin_dsn(settings, ctx)
        require("psycopg", "usage probe type 'postgres'")
        log = settings.get("connection_log")
        if log is not None:
            log = str(ctx.base_dir / Path(log).expanduser())
        return cls(dsn, users, where=where, connection_log=log)

    def usage(
        self, credential: str, key_ids: Sequence[str], since: datetime, now: datetime
    ) -> dict[str, KeyUsage]:
        """Each key id: ``seen`` now when the role holding it has open sessions (their
        client addresses listed), else ``not-seen``. ProbeError when the server cannot
        be read."""
        where = f"{credential}: postgres {self.where}: usage"
        with cursor(self._dsn, where, ProbeError, self._connect) as cur:
            tagged = {r: found for r, found in roles_since(cur, self.users).items() if found[0]}
            held = {tag[1]: role for role, (tag, _) in tagged.items() if tag}
            # A role of the ``single`` strategy: when its password was set.
            password_set = {role: since for role, (_, since) in tagged.items()}
            cur.execute(
                "SELECT usename, host(client_addr), client_port, "
                "extract(epoch FROM backend_start) FROM pg_stat_activity "
                "WHERE usename = ANY(%s) AND pid <> pg_backend_pid()",
                (list(self.users),),
            )
            sessions: dict[str, list[str]] = {}
            for user, address, port, started in cur.fetchall():
                client = "local socket" if address is None else f"{address}:{port}"
                set_at = password_set.get(user)
                if set_at is not None and float(started) < set_at:
                    user = _earlier(user)  # authenticated with an earlier password
                sessions.setdefault(user, []).append(client)
        for named, set_at in password_set.items():
            if set_at is not None:
                # Every other key asked about is an earlier password of that role.
                for key_id in key_ids:
                    held.setdefault(key_id, _earlier(named))
        logged = self._logged(credential, since) if self.connection_log else {}
        found = session_usage(key_ids, held, sessions, now, who="role")
        for key_id, usage in found.items():
            role = held.get(key_id)
            if usage.status is UsageStatus.NOT_SEEN and role in logged:
                found[key_id] = KeyUsage(
                    UsageStatus.SEEN,
                    last_seen=logged[role],
                    count=1,
                    detail=f"role {role} connected at {logged[role]:%Y-%m-%d %H:%M:%SZ} "
                    "(connection log)",
                )
        return found

    def _logged(self, credential: str, since: datetime) -> dict[str, datetime]:
        """The last ``connection authorized`` time of each role of ``users`` in the
        connection log since ``since``. ProbeError when no file matches or one cannot
        be read (the gate must not take silence for quiet)."""
        pattern = self.connection_log or ""
        files = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not files or not all(Path(f).is_file() for f in files):
            raise ProbeError(f"{credential}: connection log {pattern}: no such file")
        last: dict[str, datetime] = {}
        for name in files:
            try:
                with open(name, encoding="utf-8", errors="replace") as lines:
                    for line in lines:
                        m = _AUTHORIZED.match(line)
                        if m is None or m["user"] not in self.users:
                            continue
                        at = datetime.strptime(m["ts"], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
                        if at >= since and at > last.get(m["user"], at - timedelta(1)):
                            last[m["user"]] = at
            except OSError as exc:
                raise ProbeError(
                    f"{credential}: connection log {name}: {exc.strerror or exc}"
                ) from None
        return last


def _earlier(role: str) -> str:
    """How a ``single`` role's earlier password is named in the probe's answers."""
    return f"{role} (an earlier password)"


# ``%m`` (with log_timezone = 'UTC') starts the default log_line_prefix.
_AUTHORIZED = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) UTC .*?"
    r"connection authorized: user=(?P<user>\S+)"
)
