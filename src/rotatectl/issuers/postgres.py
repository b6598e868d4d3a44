"""PostgreSQL login roles as keys, alternating between two of them (issue 19); the
``single`` strategy (one role) is :mod:`rotatectl.issuers.postgres_single`.

Two login roles take turns (``users = ["app", "app_b"]``); both are members of one
group role that holds every grant (``group``), so an object granted to the group is
usable by both and grants never drift between them. A key is a role's password, and
the secret a client reads names the role beside it (``username``; declare the
credential ``format = "json"``, ``field = "password"``):

- ``create``: the role of the pair that holds no key that must keep working gets a
  new password and ``LOGIN``; its comment tags it ``rotatectl:<version id>:<key id>``.
  The issuer reference is ``<role>@<version id>``. The pair and the group are set up
  on first use (roles created ``NOLOGIN``, each granted the group).
- ``disable``: ``NOLOGIN`` and the role's sessions terminated; ``enable``: ``LOGIN``
  again; ``delete``: a random password nobody knows, ``NOLOGIN``, the tag removed.
  Each acts only while the role still carries that version's tag: once the role
  holds a later version's key, an old reference no longer touches it.

Passwords travel as SCRAM-SHA-256 verifiers computed here (libpq's
``PQencryptPasswordConn``), so no statement, log line or ``pg_stat_activity`` row
ever holds one. The admin connection's DSN comes from an environment variable
(``admin_dsn_env``), never from argv or the config file, and is never logged.
Driver errors are translated here: one line naming the credential, the server and
the step (:class:`~rotatectl.errors.IssuerError`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .. import alternating, keyformat
from ..alternating import pick
from ..errors import IssuerError
from ..model import IssuedKey, IssuerKey
from ..pg import (
    ROLE,
    TAG,
    admin_dsn,
    roles,
    run_admin,
    set_comment,
    set_password,
    terminate_sessions,
)
from ..registry import AdapterContext, check_settings

if TYPE_CHECKING:
    from .postgres_single import PostgresSingleRoleIssuer

T = TypeVar("T")


def parse_ref(issuer_ref: str) -> tuple[str, str]:
    """``<role>@<version id>`` as (role, version id); ("", "") when it is not one."""
    return alternating.parse_ref(issuer_ref, lambda role: ROLE.match(role) is not None)


class PostgresIssuer:
    """Passwords of two alternating login roles (see the module docstring).

    Declares the ``keep`` issuer feature (:meth:`create` is told which keys must keep
    working, since a pair has room for two keys only) and ``setup`` (:meth:`setup`,
    for ``rotatectl db init``).
    """

    FEATURES = frozenset({"keep", "setup"})

    def __init__(
        self,
        dsn: str | Callable[[], str],
        users: Sequence[str],
        group: str,
        *,
        where: str = "postgres",
        prefix: str = "pg",
        connect: Callable[[str], Any] | None = None,
    ) -> None:
        self._dsn = dsn
        self.users = tuple(users)
        self.group = group
        self.where = where
        self.prefix = prefix
        self._connect = connect

    def __repr__(self) -> str:  # never the DSN: it may hold the admin password
        return f"PostgresIssuer(users={self.users!r}, group={self.group!r}, server={self.where!r})"

    @classmethod
    def from_config(
        cls, settings: Mapping[str, Any], ctx: AdapterContext
    ) -> PostgresIssuer | PostgresSingleRoleIssuer:
        """Settings: ``admin_dsn_env`` (the environment variable holding the admin DSN,
        default ``ROTATECTL_POSTGRES_DSN``) or ``admin_credential`` (another credential
        of the config whose value is the admin's database secret); ``strategy``
        (``alternating``, the default, or ``single``); ``users`` (the two login roles
        of the pair, or the one role of ``single``); ``group`` (alternating: the role
        holding the grants; default ``<first user>_group``); ``accept_login_failures``
        (``single`` only, required true: it acknowledges that clients holding the old
        password fail until they re-read the secret); ``prefix`` of the generated
        passwords. ConfigError names the offending key."""
        from ..extras import require
        from .postgres_single import ACKNOWLEDGE, PostgresSingleRoleIssuer

        check_settings(
            settings,
            ctx,
            {
                "admin_dsn_env": str,
                "admin_credential": str,
                "users": list,
                "group": str,
                "strategy": str,
                ACKNOWLEDGE: bool,
                "prefix": str,
            },
        )
        strategy = settings.get("strategy", "alternating")
        if strategy not in ("alternating", "single"):
            raise ctx.error(
                "strategy",
                f"{strategy!r} is not supported: 'alternating' (two roles take turns) or "
                "'single' (one role, new password at promotion)",
            )
        single = strategy == "single"
        users = settings.get("users")
        if not alternating.well_formed_users(users, ROLE.match, 1 if single else 2):
            example = "['app']" if single else "['app', 'app_b']"
            raise ctx.error(
                "users", f"expected {1 if single else 2} distinct role name(s), e.g. {example}"
            )
        if single and settings.get(ACKNOWLEDGE) is not True:
            raise ctx.error(
                ACKNOWLEDGE,
                "strategy 'single' changes the one role's password at promotion: a client "
                "still holding the old password fails to connect until it re-reads the secret "
                f"(PostgreSQL gives a role one password); set {ACKNOWLEDGE} = true to accept "
                "that, or use 'alternating', which has no such window",
            )
        if not single and ACKNOWLEDGE in settings:
            raise ctx.error(ACKNOWLEDGE, "only strategy 'single' has login failures to accept")
        if single and "group" in settings:
            raise ctx.error(
                "group", "strategy 'single' has no group: its one role keeps its grants"
            )
        group = settings.get("group", f"{users[0]}_group")
        if not ROLE.match(group) or group in users:
            raise ctx.error("group", f"invalid group role {group!r}: a third role name")
        prefix = settings.get("prefix", "pg")
        if not keyformat.is_valid_prefix(prefix):
            raise ctx.error("prefix", f"invalid password prefix {prefix!r}")
        dsn, where = admin_dsn(settings, ctx)
        require("psycopg", "issuer type 'postgres'")
        if single:
            return PostgresSingleRoleIssuer(dsn, users[0], where=where, prefix=prefix)
        return cls(dsn, users, group, where=where, prefix=prefix)

    # -- the port -------------------------------------------------------------------

    def create(
        self, credential: str, version_id: str, scopes: Sequence[str], keep: Sequence[str] = ()
    ) -> IssuedKey:
        """A new password on the role of the pair that holds no key in ``keep`` (the
        issuer references of keys that must keep working), preferring one that cannot
        log in; the role already tagged with ``version_id`` on a retry. IssuerError when
        both roles hold keys that must keep working."""
        password = keyformat.generate(self.prefix)
        parsed = keyformat.parse(password)
        busy = [parse_ref(ref)[0] for ref in keep]

        def run(cur: Any) -> str:
            self._ensure_pair(cur)
            roles = self._roles(cur)
            holds = {r: {tag[0]} if tag else set() for r, (_, tag) in roles.items()}
            usable = {r: login for r, (login, _) in roles.items()}
            role = pick(self.users, holds, usable, version_id, busy)
            if role is None:
                raise IssuerError(
                    f"{credential}: both roles of {', '.join(self.users)} hold keys that must "
                    "keep working; retire one first (the pair has room for two keys)"
                )
            set_password(cur, role, password, login=True)
            set_comment(cur, role, f"{TAG}{version_id}:{parsed.key_id}")
            return role

        return alternating.issued(password, self._run(credential, "create", run), version_id)

    def list_keys(self, credential: str) -> list[IssuerKey] | None:
        """Each role of the pair that carries a tag: its reference, the version id it
        was minted for, and whether it can log in."""

        def run(cur: Any) -> list[IssuerKey]:
            found = []
            for role, (login, tag) in self._roles(cur).items():
                if tag is not None:
                    found.append(IssuerKey(f"{role}@{tag[0]}", tag[0], login))
            return found

        return self._run(credential, "list", run)

    def disable(self, credential: str, issuer_ref: str) -> None:
        """``NOLOGIN`` and the role's sessions terminated (the key stops working now),
        while the role still holds this key. Idempotent."""
        self._change(credential, "disable", issuer_ref, "NOLOGIN", terminate=True)

    def enable(self, credential: str, issuer_ref: str) -> None:
        """``LOGIN`` again, while the role still holds this key. Idempotent."""
        self._change(credential, "enable", issuer_ref, "LOGIN")

    def delete(self, credential: str, issuer_ref: str) -> None:
        """A random password nobody knows, ``NOLOGIN``, sessions ended and the tag
        removed, while the role still holds this key. Idempotent; an unknown reference
        is not an error."""
        self._change(credential, "delete", issuer_ref, "NOLOGIN", terminate=True, wipe=True)

    # -- helpers ------------------------------------------------------------------------

    def _change(
        self,
        credential: str,
        step: str,
        issuer_ref: str,
        login: str,
        *,
        terminate: bool = False,
        wipe: bool = False,
    ) -> None:
        role, version_id = parse_ref(issuer_ref)
        if role not in self.users:
            return  # not a key of this pair: nothing of ours to change

        def run(cur: Any) -> None:
            roles = self._roles(cur)
            tag = roles.get(role, (False, None))[1]
            if tag is None or tag[0] != version_id:
                return  # the role holds another key now (or none): not this one's to touch
            sql = self._sql()
            cur.execute(sql.SQL("ALTER ROLE {} WITH " + login).format(sql.Identifier(role)))
            if wipe:
                set_password(cur, role, keyformat.generate(self.prefix))
                set_comment(cur, role, None)
            if terminate:
                terminate_sessions(cur, role)

        self._run(credential, step, run)

    def setup(self, credential: str, *, apply: bool) -> list[str]:
        """What setting the pair up takes, as SQL statements (no secret in any): the
        missing roles (``NOLOGIN``) and group, the memberships, and every table
        privilege either role holds directly moved to the group (granted to it, revoked
        from the role, which keeps it through the group). ``apply``: run them, in one
        transaction; else only say them (``db init --dry-run``). [] when all is set."""

        def run(cur: Any) -> list[str]:
            plan = self._setup_plan(cur, move_grants=True)
            if apply:
                for statement in plan:
                    cur.execute(statement)
            return [statement.as_string(cur) for statement in plan]

        return self._run(credential, "setup", run)

    def _ensure_pair(self, cur: Any) -> None:
        """Create what is missing of the pair and the group (roles NOLOGIN), and make
        both roles members of the group (the first rotation's part of :meth:`setup`)."""
        for statement in self._setup_plan(cur, move_grants=False):
            cur.execute(statement)

    def _setup_plan(self, cur: Any, *, move_grants: bool) -> list[Any]:
        sql = self._sql()
        cur.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
            ([*self.users, self.group],),
        )
        there = {row[0] for row in cur.fetchall()}
        plan = [
            sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role))
            for role in (self.group, *self.users)
            if role not in there
        ]
        cur.execute(
            "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member "
            "JOIN pg_roles g ON g.oid = a.roleid WHERE g.rolname = %s",
            (self.group,),
        )
        members = {row[0] for row in cur.fetchall()}
        plan += [
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(self.group), sql.Identifier(role))
            for role in self.users
            if role not in members
        ]
        if move_grants:
            cur.execute(
                "SELECT grantee, table_schema, table_name, privilege_type "
                "FROM information_schema.role_table_grants WHERE grantee = ANY(%s) "
                "ORDER BY 1, 2, 3, 4",
                (list(self.users),),
            )
            for grantee, schema, table, privilege in cur.fetchall():
                name = sql.Identifier(schema, table)
                plan.append(
                    sql.SQL("GRANT " + privilege + " ON {} TO {}").format(
                        name, sql.Identifier(self.group)
                    )
                )
                plan.append(
                    sql.SQL("REVOKE " + privilege + " ON {} FROM {}").format(
                        name, sql.Identifier(grantee)
                    )
                )
        return plan

    def _roles(self, cur: Any) -> dict[str, tuple[bool, tuple[str, str] | None]]:
        """Each role of the pair: whether it can log in, and its tag."""
        return roles(cur, self.users)

    @staticmethod
    def _sql() -> Any:
        from psycopg import sql

        return sql

    def _run(self, credential: str, step: str, fn: Callable[[Any], T]) -> T:
        return run_admin(
            self._dsn, self._connect, f"{credential}: postgres {self.where}: {step}", fn
        )
