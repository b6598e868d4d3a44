"""MariaDB/MySQL plumbing shared by the ``mysql`` issuer and usage probe: the admin
connection (its URL from an environment variable, errors translated to one line), the
server's flavour, and the tags rotatectl keeps on the users it manages.

The admin URL has the form ``mysql://USER:PASSWORD@HOST:PORT/`` (``mariadb://`` too;
user and password percent-encoded; port 3306 by default); the query may add
``unix_socket=/path`` (then host and port only name the server in messages) and
``ssl_ca=/path/ca.pem`` (TLS, the server's certificate and name verified). It is
never logged, nor put in any message: messages name ``host:port`` only.

Tags live in a small table, ``<tag database>.rotatectl_tags`` (default database
``rotatectl``), created on first use: one row per user and slot (``current``; the
``dual-password`` strategy adds ``retained`` and ``discarded``) naming the version id
and key id that user's password belongs to. MariaDB has no comment on a user, and
the alternative, a key of our own in the user's JSON in ``mysql.global_priv``, means
writing a grant table by hand and ``FLUSH PRIVILEGES`` (a reload of every account,
server-wide) on each change, in a layout MariaDB does not document for other keys and
MySQL does not have: a table of ours is plain SQL on both, and no server upgrade
(``mariadb-upgrade``) or ``ALTER USER`` rewrites it.

PyMySQL is imported only when a connection is made (the ``mysql`` extra).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import RotatectlError
from .registry import AdapterContext

DSN_ENV = "ROTATECTL_MYSQL_DSN"
# User and role names rotatectl manages: MySQL allows 32 characters.
NAME = re.compile(r"^[a-z_][a-z0-9_]{0,31}$")
# The host part of an account: '%', a name, an address, a pattern of them.
HOST = re.compile(r"^[A-Za-z0-9_.%:-]{1,255}$")
DATABASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
TAG_TABLE = "rotatectl_tags"
# Server errors that mean the admin user lacks a privilege.
_DENIED = {1044, 1142, 1143, 1227, 1370}


@dataclass(frozen=True)
class Admin:
    """How to reach the server as the admin user; ``repr`` never shows the password."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    unix_socket: str | None = None
    ssl_ca: str | None = None

    @property
    def where(self) -> str:
        """``host:port``, for messages."""
        return f"{self.host}:{self.port}"


def parse_url(url: str) -> Admin:
    """``mysql://USER:PASSWORD@HOST:PORT/?unix_socket=..&ssl_ca=..`` as an Admin.
    ValueError (never quoting the URL, which holds the password) when it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port or 3306
    except ValueError:
        raise ValueError("not a URL of the form mysql://USER:PASSWORD@HOST:PORT/") from None
    if parts.scheme not in ("mysql", "mariadb") or not parts.username:
        raise ValueError("not a URL of the form mysql://USER:PASSWORD@HOST:PORT/")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - {"unix_socket", "ssl_ca"})
    if unknown:
        raise ValueError(f"unknown URL parameter(s): {', '.join(unknown)}")
    return Admin(
        host=parts.hostname or "localhost",
        port=port,
        user=unquote(parts.username),
        password=unquote(parts.password or ""),
        unix_socket=query.get("unix_socket"),
        ssl_ca=query.get("ssl_ca"),
    )


def admin_url(settings: Mapping[str, Any], ctx: AdapterContext) -> Admin:
    """The admin URL from the variable ``admin_dsn_env`` names (default
    ``ROTATECTL_MYSQL_DSN``). ConfigError naming the variable when it is not set or not
    such a URL; the URL itself is never in a message."""
    variable = settings.get("admin_dsn_env", DSN_ENV)
    url = ctx.env.get(variable)
    if not url:
        raise ctx.error(
            "admin_dsn_env",
            f"${variable} is not set: it must hold the admin URL "
            "(mysql://USER:PASSWORD@HOST:PORT/)",
        )
    try:
        return parse_url(url)
    except ValueError as exc:
        raise ctx.error("admin_dsn_env", f"${variable}: {exc}") from None


def connect(admin: Admin) -> Any:
    """An autocommit connection as the admin user (10 s to connect)."""
    import pymysql

    ssl = {"ca": admin.ssl_ca, "check_hostname": True} if admin.ssl_ca else None
    return pymysql.connect(
        host=admin.host,
        port=admin.port,
        user=admin.user,
        password=admin.password,
        unix_socket=admin.unix_socket,
        ssl=ssl,
        connect_timeout=10,
        read_timeout=60,
        write_timeout=60,
        autocommit=True,
        charset="utf8mb4",
    )


@contextmanager
def cursor(
    admin: Admin,
    where: str,
    error: type[RotatectlError],
    opener: Callable[[Admin], Any] | None = None,
) -> Iterator[Any]:
    """A cursor on an autocommit admin connection; a driver error becomes ``error``
    with one line: ``where``, then the server's reason (never the URL or password)."""
    import pymysql

    conn = None
    try:
        conn = (opener or connect)(admin)
        with conn.cursor() as cur:
            yield cur
    except pymysql.err.MySQLError as exc:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if code in _DENIED:
            raise error(f"{where}: permission denied ({reason(exc)})") from None
        raise error(f"{where}: {reason(exc)}") from None
    finally:
        if conn is not None:
            with suppress(Exception):  # already closed by the server: nothing to release
                conn.close()


def reason(exc: BaseException) -> str:
    """The first line of a driver error's message (without its error number)."""
    args = exc.args
    text = str(args[1]) if len(args) > 1 else str(exc)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@dataclass(frozen=True)
class Server:
    """The server's flavour and version, from ``VERSION()``."""

    mariadb: bool
    version: tuple[int, int, int]
    text: str

    @property
    def name(self) -> str:
        return f"{'MariaDB' if self.mariadb else 'MySQL'} {'.'.join(map(str, self.version))}"


def server(cur: Any) -> Server:
    cur.execute("SELECT VERSION()")
    text = str(cur.fetchone()[0])
    numbers = [int(n) for n in re.findall(r"\d+", text.partition("-")[0])[:3]] + [0, 0, 0]
    return Server("mariadb" in text.lower(), (numbers[0], numbers[1], numbers[2]), text)


def native_hash(password: str) -> str:
    """The ``mysql_native_password`` hash of ``password`` (what the server stores and
    ``IDENTIFIED BY PASSWORD`` takes): ``*`` and SHA1(SHA1(password)) in hex."""
    inner = hashlib.sha1(password.encode()).digest()  # noqa: S324 (the server's own format)
    return "*" + hashlib.sha1(inner).hexdigest().upper()  # noqa: S324


def quote_name(name: str) -> str:
    """A backquoted identifier (names are checked against NAME/DATABASE first)."""
    return "`" + name.replace("`", "``") + "`"


# -- tags --------------------------------------------------------------------------


def ensure_tag_table(cur: Any, database: str) -> None:
    """Create the tag database and table when missing."""
    db = quote_name(database)
    cur.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    cur.execute(
        f"CREATE TABLE IF NOT EXISTS {db}.{TAG_TABLE} ("
        "user VARCHAR(80) NOT NULL, host VARCHAR(255) NOT NULL, slot VARCHAR(16) NOT NULL, "
        "version_id VARCHAR(255) NOT NULL, key_id VARCHAR(255) NOT NULL, "
        "auth TEXT NULL, PRIMARY KEY (user, host, slot)) ENGINE=InnoDB"
    )


def tags(
    cur: Any, database: str, users: Sequence[str], host: str | None
) -> dict[str, dict[str, tuple[str, str, str | None]]]:
    """Each of ``users``: slot -> (version id, key id, auth) ({} when untagged, or when
    the tag table does not exist yet). ``host`` None: any host (the probe)."""
    cur.execute(
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        (database, TAG_TABLE),
    )
    found: dict[str, dict[str, tuple[str, str, str | None]]] = {u: {} for u in users}
    if cur.fetchone() is None or not users:
        return found
    table = f"{quote_name(database)}.{TAG_TABLE}"  # a name checked against DATABASE
    sql = f"SELECT user, slot, version_id, key_id, auth FROM {table} WHERE user IN %s"  # noqa: S608
    args: list[Any] = [tuple(users)]
    if host is not None:
        sql += " AND host = %s"
        args.append(host)
    cur.execute(sql, args)
    for user, slot, version_id, key_id, auth in cur.fetchall():
        found[str(user)][str(slot)] = (str(version_id), str(key_id), auth)
    return found


def set_tag(
    cur: Any,
    database: str,
    user: str,
    host: str,
    slot: str,
    tag: tuple[str, str] | None,
    auth: str | None = None,
) -> None:
    """Put (version id, key id) on ``user@host`` in ``slot``; None removes it."""
    table = f"{quote_name(database)}.{TAG_TABLE}"  # a name checked against DATABASE
    if tag is None:
        cur.execute(
            f"DELETE FROM {table} WHERE user = %s AND host = %s AND slot = %s",  # noqa: S608
            (user, host, slot),
        )
        return
    cur.execute(
        f"REPLACE INTO {table} (user, host, slot, version_id, key_id, auth) "  # noqa: S608
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (user, host, slot, tag[0], tag[1], auth),
    )


def sessions(cur: Any, users: Sequence[str]) -> dict[str, list[tuple[int, str]]]:
    """Each of ``users``: its open sessions (processlist id, client ``host:port`` or
    ``local socket``), this connection left out."""
    found: dict[str, list[tuple[int, str]]] = {u: [] for u in users}
    if not users:
        return found
    cur.execute(
        "SELECT ID, USER, HOST FROM information_schema.PROCESSLIST "
        "WHERE USER IN %s AND ID <> CONNECTION_ID()",
        (tuple(users),),
    )
    for ident, user, client in cur.fetchall():
        text = str(client or "")
        found[str(user)].append((int(ident), text if ":" in text else "local socket"))
    return found
