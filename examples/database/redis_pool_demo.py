"""Zero downtime for Redis client connections across ACL password rotations.

    ROTATECTL_REDIS_URL='redis://default:...@127.0.0.1:6379/0' \\
        python examples/database/redis_pool_demo.py --host 127.0.0.1 --port 6379 [--rotations 5]

Several client threads run ``GET app:demo`` through a connection of their own
(redis-py) that takes its credentials from rotatectl's store (the JSON secret
``{"username", "password", ...}``), rereads it every ``--refresh`` seconds, recycles
a connection after ``--recycle`` seconds, and reconnects with the current secret when
a connection is refused or closed by the server. Meanwhile ``rotatectl rotate
--wait`` runs ``--rotations`` times with the ``redis`` issuer (two alternating ACL
users) and the ``redis`` usage probe: the old user is retired (``off``, its
connections closed) only once none of its connections is open. After each rotation
the demo checks the server refuses the old username and password. It prints the
figures and exits 0 when no command failed and every old password was refused.

It needs a Redis server (6.0 or later: ACL users) and an admin URL in
``$ROTATECTL_REDIS_URL``; it creates the ACL users ``demo_app`` and ``demo_app_b``
(``--users`` to change them; ``--rules`` sets their permissions), the issuer's tags
in the key ``rotatectl:tags`` and a local store in a temporary directory. The
engine-independent part (the secret, the pool, the client threads, the rotations,
the summary) is in ``pooldemo.py``, shared with the other demos here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import pooldemo
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

RULES = "~app:* +@read +@write -@dangerous"


def config(args: argparse.Namespace) -> str:
    users = json.dumps(args.users)
    credential = f"""
[credentials."{pooldemo.NAME}"]
format = "json"
field = "password"
static = {{ engine = "redis", host = "{args.host}", port = {args.port} }}
issuer = {{ type = "redis", users = {users}, rules = "{args.rules}" }}
usage = {{ type = "redis", users = {users} }}
"""
    return pooldemo.defaults(args) + credential


def connect(s: dict[str, Any]) -> redis.Redis:
    """One connection authenticated with ``s``, opened now (AuthenticationError when
    refused). No automatic retry: redis-py's default retries a refused login or a
    closed connection with the same password."""
    return redis.Redis(
        host=s["host"],
        port=s["port"],
        username=s["username"],
        password=s["password"],
        socket_connect_timeout=5,
        socket_timeout=5,
        single_connection_client=True,
        retry=Retry(NoBackoff(), 0),
    )


REDIS = pooldemo.Engine(
    connect=connect,
    query=lambda conn: conn.get("app:demo"),
    close=lambda conn: conn.close(),
    # Refused (WRONGPASS: AuthenticationError is a ConnectionError) or closed by the
    # server (a retired user's connections are killed).
    errors=(redis.ConnectionError, redis.TimeoutError),
)


def main(argv: list[str] | None = None) -> int:
    parser = pooldemo.parser(__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--users", nargs=2, default=["demo_app", "demo_app_b"])
    parser.add_argument("--rules", default=RULES, help="the users' ACL rules")
    args = parser.parse_args(argv)
    if not os.environ.get("ROTATECTL_REDIS_URL"):
        parser.error("set ROTATECTL_REDIS_URL to the admin connection's URL")
    return pooldemo.main(args, config(args), REDIS, prefix="rotatectl-redis-demo-")


if __name__ == "__main__":
    sys.exit(main())
