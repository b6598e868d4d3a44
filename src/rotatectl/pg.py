"""PostgreSQL plumbing shared by the ``postgres`` issuer and usage probe: the admin
connection (its DSN from an environment variable, errors translated to one line), and
the tags rotatectl puts on the roles it manages.

psycopg is imported only when a connection is made (the ``postgres`` extra).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from .errors import RotatectlError
from .registry import AdapterContext

TAG = "rotatectl:"
ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
DSN_ENV = "ROTATECTL_POSTGRES_DSN"
T = TypeVar("T")


def admin_dsn(settings: Mapping[str, Any], ctx: AdapterContext) -> tuple[Callable[[], str], str]:
    """The admin connection's DSN, as a function called when it is first needed, and
    where it comes from for messages (never the DSN, which may hold a password).

    ``admin_credential`` names another credential of the config that rotatectl
    manages: its current value is a database secret (``host``, ``port``, ``dbname``,
    ``username``, ``password``) or a DSN, read from its store at the first connection.
    Else ``admin_dsn_env`` names the variable holding the DSN (default
    ``ROTATECTL_POSTGRES_DSN``). ConfigError naming the key when neither is usable."""
    credential = settings.get("admin_credential")
    if credential is not None:
        if "admin_dsn_env" in settings:
            raise ctx.error("admin_credential", "use admin_credential or admin_dsn_env, not both")
        reader = ctx.credential_value
        if reader is None:
            raise ctx.error("admin_credential", "not available here")
        known: list[str] = []

        def from_credential() -> str:
            if not known:
                known.append(dsn_of(reader(credential)))
            return known[0]

        return from_credential, f"(admin {credential})"
    variable = settings.get("admin_dsn_env", DSN_ENV)
    dsn = ctx.env.get(variable)
    if not dsn:
        raise ctx.error(
            "admin_dsn_env", f"${variable} is not set: it must hold the admin connection DSN"
        )
    return (lambda: dsn), server_of(dsn)


def dsn_of(value: str) -> str:
    """A DSN from a credential's value: a database secret's fields (the JSON document
    AWS's templates use), or the value itself when it is not a JSON object."""
    from . import secretformat

    try:
        doc = secretformat.fields(value)
    except secretformat.DocumentError:
        return value
    from psycopg.conninfo import make_conninfo

    parts = {
        "host": doc.get("host"),
        "port": doc.get("port"),
        "dbname": doc.get("dbname"),
        "user": doc.get("username"),
        "password": doc.get("password"),
    }
    return make_conninfo(**{k: str(v) for k, v in parts.items() if v is not None})


def parse_tag(comment: str | None) -> tuple[str, str] | None:
    """A role comment ``rotatectl:<version id>:<key id>[ since=<epoch>]`` as (version
    id, key id)."""
    if not comment or not comment.startswith(TAG):
        return None
    head = comment[len(TAG) :].partition(" ")[0]
    version_id, sep, key_id = head.rpartition(":")
    return (version_id, key_id) if sep and version_id else None


def tag_since(comment: str | None) -> float | None:
    """When the role's password was set, as the ``single`` strategy records it in the
    tag (``since=<epoch seconds>``, the server's clock); None for any other comment."""
    if parse_tag(comment) is None:
        return None
    for word in (comment or "").split(" ")[1:]:
        name, _, value = word.partition("=")
        if name == "since":
            try:
                return float(value)
            except ValueError:
                return None
    return None


def comment_of(cur: Any, role: str) -> str | None:
    """The role's comment (None when it has none or does not exist)."""
    cur.execute(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)
    )
    row = cur.fetchone()
    return None if row is None else row[0]


def roles(cur: Any, names: Sequence[str]) -> dict[str, tuple[bool, tuple[str, str] | None]]:
    """Each of ``names``: whether the role can log in, and its tag (False, None when the
    role does not exist)."""
    return {r: (login, parse_tag(comment)) for r, (login, comment) in _roles(cur, names).items()}


def roles_since(
    cur: Any, names: Sequence[str]
) -> dict[str, tuple[tuple[str, str] | None, float | None]]:
    """Each of ``names``: its tag, and when its password was set (:func:`tag_since`;
    None but for a ``single`` role), in one query."""
    return {
        r: (parse_tag(comment), tag_since(comment))
        for r, (_, comment) in _roles(cur, names).items()
    }


def _roles(cur: Any, names: Sequence[str]) -> dict[str, tuple[bool, str | None]]:
    cur.execute(
        "SELECT rolname, rolcanlogin, shobj_description(oid, 'pg_authid') FROM pg_roles "
        "WHERE rolname = ANY(%s)",
        (list(names),),
    )
    found = {row[0]: (bool(row[1]), row[2]) for row in cur.fetchall()}
    return {r: found.get(r, (False, None)) for r in names}


@contextmanager
def cursor(
    dsn: str | Callable[[], str],
    where: str,
    error: type[RotatectlError],
    connect: Callable[[str], Any] | None = None,
) -> Iterator[Any]:
    """A cursor in one transaction on a connection to ``dsn`` (or the DSN it returns);
    a driver error becomes ``error`` with one line: ``where``, then the server's reason
    (never the DSN)."""
    import psycopg

    if callable(dsn):
        dsn = dsn()

    try:
        opened = connect or (lambda d: psycopg.connect(d, connect_timeout=10))
        with opened(dsn) as conn, conn.transaction(), conn.cursor() as cur:
            yield cur
    except psycopg.errors.InsufficientPrivilege as exc:
        raise error(f"{where}: permission denied ({reason(exc)})") from None
    except psycopg.Error as exc:
        raise error(f"{where}: {reason(exc)}") from None


def server_of(dsn: str) -> str:
    """``host:port`` of a DSN, for messages (never the password)."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(dsn)
    except Exception:
        return "server"
    host = str(parts.get("host") or "localhost")
    port = str(parts.get("port") or 5432)
    return f"{host}:{port}"


def reason(exc: BaseException) -> str:
    """The first line of a driver error; libpq never puts a password in one."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def run_admin(
    dsn: str | Callable[[], str],
    connect: Callable[[str], Any] | None,
    where: str,
    fn: Callable[[Any], T],
) -> T:
    """``fn(cursor)`` in one transaction on the admin connection; driver errors become
    one IssuerError line starting with ``where`` (the credential, the server, the step)."""
    from .errors import IssuerError

    with cursor(dsn, where, IssuerError, connect) as cur:
        return fn(cur)


def set_password(cur: Any, role: str, password: str, *, login: bool = False) -> None:
    """Give ``role`` ``password`` (and ``LOGIN`` when asked) as a SCRAM-SHA-256 verifier
    computed here, so no statement, log line or ``pg_stat_activity`` row holds it."""
    from psycopg import sql

    verifier = cur.connection.pgconn.encrypt_password(
        password.encode(), role.encode(), b"scram-sha-256"
    ).decode()
    cur.execute(
        sql.SQL("ALTER ROLE {} WITH " + ("LOGIN " if login else "") + "PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(verifier)
        )
    )


def set_comment(cur: Any, role: str, tag: str | None) -> None:
    """Tag ``role`` (its comment), or clear the tag (None)."""
    from psycopg import sql

    cur.execute(
        sql.SQL("COMMENT ON ROLE {} IS {}").format(
            sql.Identifier(role), sql.Literal(tag) if tag is not None else sql.SQL("NULL")
        )
    )


def terminate_sessions(cur: Any, role: str, before: float | None = None) -> None:
    """End ``role``'s sessions (only those started before ``before``, epoch seconds on
    the server's clock, when given)."""
    query = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s"
    if before is None:
        cur.execute(query, (role,))
    else:
        cur.execute(query + " AND backend_start < to_timestamp(%s)", (role, before))
