"""Zero downtime for a PostgreSQL connection pool across password rotations.

    ROTATECTL_POSTGRES_DSN='host=... user=postgres password=...' \\
        python examples/database/pg_pool_demo.py --host 127.0.0.1 --port 5432 [--rotations 5]

Several client threads run queries through a small pool that takes its credentials
from rotatectl's store (the JSON secret ``{"username", "password", ...}``), rereads
it every ``--refresh`` seconds, recycles a connection after ``--recycle`` seconds,
and reconnects with the current secret when a connection is refused or ended.
Meanwhile ``rotatectl rotate --wait`` runs ``--rotations`` times with the
``postgres`` issuer (two alternating roles) and the ``postgres`` usage probe: the
old role is retired only once none of its sessions is open. After each rotation
the demo checks the server refuses the old username and password. It prints the
figures and exits 0 when no query failed and every old password was refused.

It needs a PostgreSQL server and an admin DSN in ``$ROTATECTL_POSTGRES_DSN``; it
creates the roles ``demo_app``, ``demo_app_b`` and ``demo_app_group`` (``--users``
to change them) and a local store in a temporary directory. The engine-independent
part (the secret, the pool, the client threads, the rotations, the summary) is in
``pooldemo.py``, shared with the other demos here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import pooldemo
import psycopg


def config(args: argparse.Namespace) -> str:
    users = json.dumps(args.users)
    server = f'host = "{args.host}", port = {args.port}, dbname = "{args.dbname}"'
    credential = f"""
[credentials."{pooldemo.NAME}"]
format = "json"
field = "password"
static = {{ engine = "postgres", {server} }}
issuer = {{ type = "postgres", users = {users}, group = "{args.users[0]}_group" }}
usage = {{ type = "postgres", users = {users} }}
"""
    return pooldemo.defaults(args) + credential


def connect(s: dict[str, Any]) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=s["host"],
        port=s["port"],
        dbname=s["dbname"],
        user=s["username"],
        password=s["password"],
        connect_timeout=5,
        autocommit=True,
    )


POSTGRES = pooldemo.Engine(
    connect=connect,
    query=lambda conn: conn.execute("SELECT 1").fetchone(),
    close=lambda conn: conn.close(),
    errors=(psycopg.OperationalError,),
)


def main(argv: list[str] | None = None) -> int:
    parser = pooldemo.parser(__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--dbname", default="postgres")
    parser.add_argument("--users", nargs=2, default=["demo_app", "demo_app_b"])
    args = parser.parse_args(argv)
    if not os.environ.get("ROTATECTL_POSTGRES_DSN"):
        parser.error("set ROTATECTL_POSTGRES_DSN to the admin connection's DSN")
    return pooldemo.main(args, config(args), POSTGRES, prefix="rotatectl-pg-demo-")


if __name__ == "__main__":
    sys.exit(main())
