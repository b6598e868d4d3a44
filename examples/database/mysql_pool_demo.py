"""Zero downtime for a MariaDB/MySQL connection pool across password rotations.

    ROTATECTL_MYSQL_DSN='mysql://root:...@127.0.0.1:3306/' \\
        python examples/database/mysql_pool_demo.py --host 127.0.0.1 --port 3306 [--rotations 5]

Several client threads run queries through a small pool (PyMySQL) that takes its
credentials from rotatectl's store (the JSON secret ``{"username", "password", ...}``),
rereads it every ``--refresh`` seconds, recycles a connection after ``--recycle``
seconds, and reconnects with the current secret when a connection is refused or
killed. Meanwhile ``rotatectl rotate --wait`` runs ``--rotations`` times with the
``mysql`` issuer (two alternating users sharing a role) and the ``mysql`` usage
probe: the old user is retired (``ACCOUNT LOCK``, its sessions killed) only once
none of its sessions is open. After each rotation the demo checks the server
refuses the old username and password. It prints the figures and exits 0 when no
query failed and every old password was refused.

It needs a MariaDB (or MySQL) server and an admin URL in ``$ROTATECTL_MYSQL_DSN``;
it creates the users ``demo_app``, ``demo_app_b`` and the role ``demo_app_group``
(``--users`` to change them), the issuer's tag table (database ``rotatectl``) and a
local store in a temporary directory. The engine-independent part (the secret, the
pool, the client threads, the rotations, the summary) is in ``pooldemo.py``, shared
with the other demos here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any

import pooldemo
import pymysql


def config(args: argparse.Namespace) -> str:
    users = json.dumps(args.users)
    server = f'host = "{args.host}", port = {args.port}'
    if args.dbname:
        server += f', dbname = "{args.dbname}"'
    credential = f"""
[credentials."{pooldemo.NAME}"]
format = "json"
field = "password"
static = {{ engine = "mysql", {server} }}
issuer = {{ type = "mysql", users = {users}, group = "{args.users[0]}_group" }}
usage = {{ type = "mysql", users = {users} }}
"""
    return pooldemo.defaults(args) + credential


def connect(s: dict[str, Any]) -> pymysql.Connection:
    return pymysql.connect(
        host=s["host"],
        port=s["port"],
        database=s.get("dbname") or None,
        user=s["username"],
        password=s["password"],
        connect_timeout=5,
        autocommit=True,
    )


def query(conn: pymysql.Connection) -> object:
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        return cur.fetchone()


def close(conn: pymysql.Connection) -> None:
    with contextlib.suppress(pymysql.err.Error):  # "Already closed"
        conn.close()


MYSQL = pooldemo.Engine(
    connect=connect,
    query=query,
    close=close,
    # Refused (1045 wrong password, 4151 locked), killed (2013 lost, 2006 gone away),
    # or a connection whose socket is already gone (InterfaceError).
    errors=(pymysql.err.OperationalError, pymysql.err.InterfaceError),
)


def main(argv: list[str] | None = None) -> int:
    parser = pooldemo.parser(__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3306)
    parser.add_argument("--dbname", default="", help="database to connect to (none)")
    parser.add_argument("--users", nargs=2, default=["demo_app", "demo_app_b"])
    args = parser.parse_args(argv)
    if not os.environ.get("ROTATECTL_MYSQL_DSN"):
        parser.error("set ROTATECTL_MYSQL_DSN to the admin connection's URL")
    return pooldemo.main(args, config(args), MYSQL, prefix="rotatectl-mysql-demo-")


if __name__ == "__main__":
    sys.exit(main())
