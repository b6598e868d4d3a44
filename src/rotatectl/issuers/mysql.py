"""MariaDB/MySQL users as keys (issue 19): two alternating users, or (MySQL 8.0.14 and
later only) one user with two passwords.

Strategy ``alternating`` (the default), as the ``postgres`` issuer: two users take
turns (``users = ["app", "app_b"]``, account host ``host``, default ``%``); both are
granted one role that holds every grant (``group``, their default role), so an object
granted to the role is usable by both and grants never drift between them. A key is a
user's password, and the secret a client reads names the user beside it
(``username``; declare the credential ``format = "json"``, ``field = "password"``):

- ``create``: the user of the pair that holds no key that must keep working gets a
  new password and ``ACCOUNT UNLOCK``; it is tagged ``<version id>, <key id>`` first,
  so a retry after a crash finds it again. The issuer reference is
  ``<user>@<version id>``. The pair and the role are set up on first use (users
  created with an unusable password and ``ACCOUNT LOCK``, each granted the role as
  its default role).
- ``disable``: ``ACCOUNT LOCK`` and the user's sessions killed (a lock alone only
  stops new logins); ``enable``: ``ACCOUNT UNLOCK``; ``delete``: a random password
  nobody knows, locked, sessions killed, the tag removed. Each acts only while the
  user still carries that version's tag: once the user holds a later version's key,
  an old reference no longer touches it.

Tags live in ``<tag_database>.rotatectl_tags`` (see :mod:`rotatectl.mysql` for why a
table and not the user's JSON attributes). MariaDB has no transactional DDL, so every
operation holds a named lock (``GET_LOCK``) on the pair from its read of the tags to
its last change: two rotatectl processes never interleave on one pair.

MariaDB writes statements to its general log (and shows them in the process list)
as sent, password included: it does not rewrite ``IDENTIFIED BY '...'``. So on
MariaDB a password travels as its ``mysql_native_password`` hash
(``IDENTIFIED BY PASSWORD '*...'``, computed here: what the server stores anyway),
and no statement holds the password. (A MariaDB with a password-validation plugin
loaded and ``strict_password_validation`` on refuses hashes: the create then fails
with the server's one-line reason; not tested here.) MySQL rewrites passwords out of its general
log, slow log and binary log itself (unless ``--log-raw``), and its default plugin
(``caching_sha2_password``) takes no precomputed hash, so there the password is sent
in ``IDENTIFIED BY``; use TLS (``ssl_ca`` in the admin URL) to a remote server.

Strategy ``dual-password`` (MySQL 8.0.14 and later; refused on MariaDB, which has no
dual passwords, at first use): one user (``users = ["app"]``), the new key its primary
password with ``RETAIN CURRENT PASSWORD`` keeping the previous one working as its
secondary; retiring the previous key is ``DISCARD OLD PASSWORD``, which cannot be
undone (``enable`` of a discarded key is refused: rotate instead), and sessions are
not killed, since nothing tells which password a session logged in with. This
strategy is untested here: Debian ships no MySQL 8 server.

The admin connection's URL comes from an environment variable (``admin_dsn_env``),
never from argv or the config file, and is never logged. Driver errors are
translated here: one line naming the credential, the server and the step
(:class:`~rotatectl.errors.IssuerError`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self, TypeVar

from .. import alternating, keyformat
from ..alternating import pick
from ..errors import IssuerError
from ..model import IssuedKey, IssuerKey
from ..mysql import (
    DATABASE,
    HOST,
    NAME,
    Admin,
    Server,
    cursor,
    ensure_tag_table,
    native_hash,
    quote_name,
    reason,
    server,
    sessions,
    set_tag,
    tags,
)
from ..registry import AdapterContext, check_settings

T = TypeVar("T")
STRATEGIES = ("alternating", "dual-password")
# Slots of the tag table: the key a user's (primary) password belongs to; with
# dual-password also the secondary's, one whose password was discarded or replaced,
# and the key a create is writing (with the primary's hash before it, to tell after a
# crash whether the change landed).
CURRENT, RETAINED, DISCARDED, REPLACED, PENDING = (
    "current",
    "retained",
    "discarded",
    "replaced",
    "pending",
)
LOCK_WAIT = 30  # seconds to wait for another rotatectl working on the same users


def parse_ref(issuer_ref: str) -> tuple[str, str]:
    """``<user>@<version id>`` as (user, version id); ("", "") when it is not one."""
    return alternating.parse_ref(issuer_ref, lambda user: NAME.match(user) is not None)


class MySQLIssuer:
    """Passwords of two alternating MariaDB/MySQL users (see the module docstring).

    Declares the ``keep`` issuer feature: :meth:`create` is told which keys must keep
    working (``keep``: issuer references), since a pair has room for two keys only.
    """

    FEATURES = frozenset({"keep"})

    def __init__(
        self,
        admin: Admin,
        users: Sequence[str],
        group: str,
        *,
        host: str = "%",
        strategy: str = "alternating",
        tag_database: str = "rotatectl",
        where: str | None = None,
        prefix: str = "my",
        opener: Callable[[Admin], Any] | None = None,
    ) -> None:
        self._admin = admin
        self.users = tuple(users)
        self.group = group
        self.host = host
        self.strategy = strategy
        self.tag_database = tag_database
        self.where = where or admin.where
        self.prefix = prefix
        self._opener = opener

    def __repr__(self) -> str:  # never the admin URL: it holds the admin password
        return (
            f"MySQLIssuer(users={self.users!r}, group={self.group!r}, "
            f"strategy={self.strategy!r}, server={self.where!r})"
        )

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: ``admin_dsn_env`` (the environment variable holding the admin URL,
        default ``ROTATECTL_MYSQL_DSN``), ``users`` (the two users; one with
        ``dual-password``), ``host`` (their account host, default ``%``), ``group``
        (the role holding the grants; default ``<first user>_group``), ``strategy``
        (``alternating`` or ``dual-password``), ``tag_database`` (default
        ``rotatectl``), ``prefix`` of the generated passwords (``my``)."""
        from ..extras import require
        from ..mysql import admin_url

        check_settings(
            settings,
            ctx,
            {
                "admin_dsn_env": str,
                "users": list,
                "host": str,
                "group": str,
                "strategy": str,
                "tag_database": str,
                "prefix": str,
            },
        )
        strategy = settings.get("strategy", "alternating")
        if strategy not in STRATEGIES:
            raise ctx.error(
                "strategy",
                f"{strategy!r} is not supported: 'alternating' (two users take turns) or "
                "'dual-password' (MySQL 8.0.14 and later: one user, two passwords)",
            )
        count = 2 if strategy == "alternating" else 1
        users = settings.get("users")
        if not alternating.well_formed_users(users, NAME.match, count):
            expected = (
                "two distinct user names, e.g. ['app', 'app_b']"
                if count == 2
                else "one user name with strategy 'dual-password', e.g. ['app']"
            )
            raise ctx.error("users", f"expected {expected}")
        host = settings.get("host", "%")
        if not HOST.match(host):
            raise ctx.error("host", f"invalid account host {host!r}")
        group = settings.get("group", f"{users[0]}_group")
        if not NAME.match(group) or group in users:
            raise ctx.error("group", f"invalid role {group!r}: a name other than the users'")
        tag_database = settings.get("tag_database", "rotatectl")
        if not DATABASE.match(tag_database):
            raise ctx.error("tag_database", f"invalid database name {tag_database!r}")
        prefix = settings.get("prefix", "my")
        if not keyformat.is_valid_prefix(prefix):
            raise ctx.error("prefix", f"invalid password prefix {prefix!r}")
        admin = admin_url(settings, ctx)
        require("pymysql", "issuer type 'mysql'")
        return cls(
            admin,
            users,
            group,
            host=host,
            strategy=strategy,
            tag_database=tag_database,
            prefix=prefix,
        )

    # -- the port -------------------------------------------------------------------

    def create(
        self, credential: str, version_id: str, scopes: Sequence[str], keep: Sequence[str] = ()
    ) -> IssuedKey:
        """A new password on the user of the pair that holds no key in ``keep`` (the
        issuer references of keys that must keep working), preferring a locked one; the
        user already tagged with ``version_id`` on a retry. IssuerError when both users
        hold keys that must keep working."""
        password = keyformat.generate(self.prefix)
        parsed = keyformat.parse(password)
        tag = (version_id, parsed.key_id)
        busy = set(keep)

        def run(cur: Any, srv: Server) -> str:
            self._ensure_users(cur, srv)
            if self.strategy == "dual-password":
                self._create_dual(cur, srv, credential, tag, password, busy)
                return self.users[0]
            held = self._tags(cur)
            locked = self._locked(cur, srv)
            holds = {u: {t[0] for s, t in held[u].items() if s == CURRENT} for u in self.users}
            usable = {u: not locked[u] for u in self.users}
            taken = [parse_ref(ref)[0] for ref in busy]
            user = pick(self.users, holds, usable, version_id, taken)
            if user is None:
                raise IssuerError(
                    f"{credential}: both users of {', '.join(self.users)} hold keys that "
                    "must keep working; retire one first (the pair has room for two keys)"
                )
            # The tag first: a retry after a crash here finds this user again.
            set_tag(cur, self.tag_database, user, self.host, CURRENT, tag)
            self._set_password(cur, srv, user, password, unlock=True)
            return user

        return alternating.issued(password, self._run(credential, "create", run), version_id)

    def list_keys(self, credential: str) -> list[IssuerKey] | None:
        """Each tagged key of the users: its reference, the version id it was minted
        for, and whether it works (the user unlocked; a discarded password never)."""

        def run(cur: Any, srv: Server) -> list[IssuerKey]:
            locked = self._locked(cur, srv)
            found = []
            for user, slots in self._tags(cur).items():
                for slot, (version_id, _, _) in sorted(slots.items()):
                    if slot == PENDING:
                        continue
                    active = slot in (CURRENT, RETAINED) and not locked[user]
                    found.append(IssuerKey(f"{user}@{version_id}", version_id, active))
            return found

        return self._run(credential, "list", run)

    def disable(self, credential: str, issuer_ref: str) -> None:
        """``ACCOUNT LOCK`` and the user's sessions killed (the key stops working now),
        while the user still holds this key. Idempotent."""
        self._change(credential, "disable", issuer_ref)

    def enable(self, credential: str, issuer_ref: str) -> None:
        """``ACCOUNT UNLOCK`` again, while the user still holds this key. Idempotent."""
        self._change(credential, "enable", issuer_ref)

    def delete(self, credential: str, issuer_ref: str) -> None:
        """A random password nobody knows, locked, sessions killed and the tag removed,
        while the user still holds this key. Idempotent; an unknown reference is not an
        error."""
        self._change(credential, "delete", issuer_ref)

    # -- alternating ------------------------------------------------------------------

    def _change(self, credential: str, step: str, issuer_ref: str) -> None:
        user, version_id = parse_ref(issuer_ref)
        if user not in self.users:
            return  # not a key of these users: nothing of ours to change

        def run(cur: Any, srv: Server) -> None:
            slots = self._tags(cur)[user]
            if self.strategy == "dual-password":
                self._change_dual(cur, srv, credential, step, user, version_id, slots)
                return
            if slots.get(CURRENT, ("",))[0] != version_id:
                return  # the user holds another key now (or none): not this one's to touch
            if step == "enable":
                cur.execute("ALTER USER %s@%s ACCOUNT UNLOCK", (user, self.host))
                return
            cur.execute("ALTER USER %s@%s ACCOUNT LOCK", (user, self.host))
            if step == "delete":
                self._set_password(cur, srv, user, keyformat.generate(self.prefix))
            self._kill(cur, user)
            if step == "delete":
                set_tag(cur, self.tag_database, user, self.host, CURRENT, None)

        self._run(credential, step, run)

    # -- dual-password (MySQL 8.0.14 and later; untested here) ------------------------

    def _create_dual(
        self,
        cur: Any,
        srv: Server,
        credential: str,
        tag: tuple[str, str],
        password: str,
        busy: set[str],
    ) -> None:
        user = self.users[0]
        slots = self._tags(cur)[user]
        current, retained, pending = slots.get(CURRENT), slots.get(RETAINED), slots.get(PENDING)
        auth = self._auth_string(cur, user)
        if current is not None and current[0] == tag[0]:
            # A retry after the tags moved: a new primary, the secondary kept as it is.
            set_tag(cur, self.tag_database, user, self.host, CURRENT, tag)
            self._set_password(cur, srv, user, password, unlock=True)
            return
        if pending is not None and pending[0] == tag[0] and pending[2] != auth:
            retain = pending[1].startswith("retain:")  # the first try changed the primary
            self._set_password(cur, srv, user, password, unlock=True)
        else:
            retain = current is not None and f"{user}@{current[0]}" in busy
            if retain and retained is not None and f"{user}@{retained[0]}" in busy:
                raise IssuerError(
                    f"{credential}: both passwords of {user} hold keys that must keep "
                    "working; retire one first (a user has room for two passwords)"
                )
            marker = ("retain:" if retain else "replace:") + tag[1]
            set_tag(cur, self.tag_database, user, self.host, PENDING, (tag[0], marker), auth)
            self._set_password(cur, srv, user, password, unlock=True, retain=retain)
        for slot in (REPLACED, *((RETAINED, DISCARDED) if retain else ())):
            set_tag(cur, self.tag_database, user, self.host, slot, None)
        if retain and current is not None:
            set_tag(cur, self.tag_database, user, self.host, RETAINED, current[:2])
        set_tag(cur, self.tag_database, user, self.host, CURRENT, tag)
        set_tag(cur, self.tag_database, user, self.host, PENDING, None)

    def _change_dual(
        self,
        cur: Any,
        srv: Server,
        credential: str,
        step: str,
        user: str,
        version_id: str,
        slots: dict[str, tuple[str, str, str | None]],
    ) -> None:
        found = [s for s, t in slots.items() if t[0] == version_id and s != PENDING]
        if not found:
            return
        slot, tag = found[0], slots[found[0]][:2]
        if step == "enable":
            if slot in (DISCARDED, REPLACED):
                raise IssuerError(
                    f"{credential}: mysql {self.where}: enable: the password of "
                    f"{user}@{version_id} was discarded; MySQL cannot bring it back: rotate"
                )
            cur.execute("ALTER USER %s@%s ACCOUNT UNLOCK", (user, self.host))
            return
        if slot == RETAINED:
            cur.execute("ALTER USER %s@%s DISCARD OLD PASSWORD", (user, self.host))
            set_tag(cur, self.tag_database, user, self.host, RETAINED, None)
            if step == "disable":
                set_tag(cur, self.tag_database, user, self.host, DISCARDED, tag)
        elif slot == CURRENT:
            if RETAINED in slots or step == "delete":
                # The primary replaced by a password nobody knows; the secondary kept.
                self._set_password(cur, srv, user, keyformat.generate(self.prefix))
                set_tag(cur, self.tag_database, user, self.host, CURRENT, None)
                if step == "disable":
                    set_tag(cur, self.tag_database, user, self.host, REPLACED, tag)
                if RETAINED not in slots:
                    cur.execute("ALTER USER %s@%s ACCOUNT LOCK", (user, self.host))
            else:
                cur.execute("ALTER USER %s@%s ACCOUNT LOCK", (user, self.host))
                self._kill(cur, user)
        elif step == "delete":
            set_tag(cur, self.tag_database, user, self.host, slot, None)

    # -- helpers ------------------------------------------------------------------------

    def _ensure_users(self, cur: Any, srv: Server) -> None:
        """Create what is missing of the users (unusable password, locked), the role,
        and each user's membership of the role as its default role."""
        ensure_tag_table(cur, self.tag_database)
        role = quote_name(self.group)
        cur.execute(f"CREATE ROLE IF NOT EXISTS {role}")
        there = self._existing(cur)
        for user in self.users:
            if user not in there:
                unusable = keyformat.generate(self.prefix)
                if srv.mariadb:
                    cur.execute(
                        "CREATE USER %s@%s IDENTIFIED BY PASSWORD %s ACCOUNT LOCK",
                        (user, self.host, native_hash(unusable)),
                    )
                else:
                    cur.execute(
                        "CREATE USER %s@%s IDENTIFIED BY %s ACCOUNT LOCK",
                        (user, self.host, unusable),
                    )
                # A user dropped and made again holds no key: its old tags are stale.
                for slot in (CURRENT, RETAINED, DISCARDED, REPLACED, PENDING):
                    set_tag(cur, self.tag_database, user, self.host, slot, None)
        members = self._members(cur, srv)
        for user in self.users:
            if user not in members:
                cur.execute(f"GRANT {role} TO %s@%s", (user, self.host))
                word = "FOR" if srv.mariadb else "TO"
                cur.execute(f"SET DEFAULT ROLE {role} {word} %s@%s", (user, self.host))

    def _existing(self, cur: Any) -> set[str]:
        cur.execute(
            "SELECT User FROM mysql.user WHERE Host = %s AND User IN %s", (self.host, self.users)
        )
        return {str(row[0]) for row in cur.fetchall()}

    def _members(self, cur: Any, srv: Server) -> set[str]:
        """The users granted the role as their default role."""
        if srv.mariadb:
            cur.execute(
                "SELECT r.User FROM mysql.roles_mapping r JOIN mysql.user u "
                "ON u.User = r.User AND u.Host = r.Host AND u.default_role = r.Role "
                "WHERE r.Host = %s AND r.Role = %s AND r.User IN %s",
                (self.host, self.group, self.users),
            )
        else:
            cur.execute(
                "SELECT e.TO_USER FROM mysql.role_edges e JOIN mysql.default_roles d "
                "ON d.USER = e.TO_USER AND d.HOST = e.TO_HOST "
                "AND d.DEFAULT_ROLE_USER = e.FROM_USER AND d.DEFAULT_ROLE_HOST = e.FROM_HOST "
                "WHERE e.TO_HOST = %s AND e.FROM_USER = %s AND e.TO_USER IN %s",
                (self.host, self.group, self.users),
            )
        return {str(row[0]) for row in cur.fetchall()}

    def _locked(self, cur: Any, srv: Server) -> dict[str, bool]:
        """Each user: whether its account is locked (True when it does not exist)."""
        if srv.mariadb:
            cur.execute(
                "SELECT User, JSON_VALUE(Priv, '$.account_locked') FROM mysql.global_priv "
                "WHERE Host = %s AND User IN %s",
                (self.host, self.users),
            )
            found = {str(u): str(v).lower() in ("1", "true") for u, v in cur.fetchall()}
        else:
            cur.execute(
                "SELECT User, account_locked FROM mysql.user WHERE Host = %s AND User IN %s",
                (self.host, self.users),
            )
            found = {str(u): str(v).upper() == "Y" for u, v in cur.fetchall()}
        return {u: found.get(u, True) for u in self.users}

    def _auth_string(self, cur: Any, user: str) -> str:
        """A digest of the user's stored password hash (to tell whether it changed)."""
        cur.execute(
            "SELECT authentication_string FROM mysql.user WHERE User = %s AND Host = %s",
            (user, self.host),
        )
        row = cur.fetchone()
        raw = row[0] if row else b""
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        return hashlib.sha256(data).hexdigest()

    def _set_password(
        self,
        cur: Any,
        srv: Server,
        user: str,
        password: str,
        *,
        unlock: bool = False,
        retain: bool = False,
    ) -> None:
        """On MariaDB the password's hash (MariaDB logs statements as sent); on MySQL
        the password (MySQL rewrites it out of its logs)."""
        tail = (" RETAIN CURRENT PASSWORD" if retain else "") + (
            " ACCOUNT UNLOCK" if unlock else ""
        )
        import pymysql

        secret = native_hash(password) if srv.mariadb else password
        how = "IDENTIFIED BY PASSWORD" if srv.mariadb else "IDENTIFIED BY"
        try:
            cur.execute(f"ALTER USER %s@%s {how} %s{tail}", (user, self.host, secret))
        except pymysql.err.MySQLError as exc:  # a syntax error quotes the statement
            code = exc.args[0] if exc.args else 0
            text = reason(exc).replace(secret, "<redacted>")
            raise type(exc)(code, text) from None

    def _kill(self, cur: Any, user: str) -> None:
        """End every session of ``user`` (one already gone is no error)."""
        import pymysql

        for ident, _ in sessions(cur, [user])[user]:
            try:
                cur.execute("KILL CONNECTION %s", (ident,))
            except pymysql.err.MySQLError as exc:
                if not exc.args or exc.args[0] != 1094:  # ER_NO_SUCH_THREAD: ended meanwhile
                    raise

    def _tags(self, cur: Any) -> dict[str, dict[str, tuple[str, str, str | None]]]:
        return tags(cur, self.tag_database, self.users, self.host)

    def _lock_name(self) -> str:
        digest = hashlib.sha256(f"{','.join(self.users)}@{self.host}".encode()).hexdigest()
        return f"rotatectl:{digest[:40]}"

    def _run(self, credential: str, step: str, fn: Callable[[Any, Server], T]) -> T:
        """``fn(cursor, server)`` on the admin connection, holding the pair's named lock;
        driver errors become one IssuerError line naming the credential, the server and
        the step."""
        where = f"{credential}: mysql {self.where}: {step}"
        with cursor(self._admin, where, IssuerError, self._opener) as cur:
            srv = server(cur)
            if self.strategy == "dual-password" and (srv.mariadb or srv.version < (8, 0, 14)):
                raise IssuerError(
                    f"{where}: strategy 'dual-password' needs MySQL 8.0.14 or later "
                    f"(RETAIN CURRENT PASSWORD); this server is {srv.name}: "
                    "use strategy 'alternating'"
                )
            cur.execute("SELECT GET_LOCK(%s, %s)", (self._lock_name(), LOCK_WAIT))
            if cur.fetchone()[0] != 1:
                raise IssuerError(
                    f"{where}: another rotatectl has been changing {', '.join(self.users)} "
                    f"for {LOCK_WAIT}s; try again"
                )
            return fn(cur, srv)  # the lock ends with the connection
