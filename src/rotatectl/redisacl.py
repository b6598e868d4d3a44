"""Redis plumbing shared by the ``redis`` issuer and usage probe (issue 19): the admin
connection (its URL from an environment variable, errors translated to one line), the
state of an ACL user, and the tags rotatectl keeps for the users it manages.

Tags: PostgreSQL roles carry a comment; Redis ACL users carry nothing of the kind, and
every ACL rule that could hold text grants something (a key pattern ``~tag``, a
channel ``&tag``), so no rule is harmless enough to carry one. The tags live in one
hash key instead, ``rotatectl:tags`` by default (``tag_key``), with one field per user:
a JSON object of the versions whose keys the user holds,
``{"<version id>": {"key": "<key id>", "hash": "<SHA-256 of the password>"}}``. The
hash is what Redis itself stores for a password (``ACL GETUSER`` shows it): it tells
whether a version's password is still one the user accepts, and lets a password be
removed (``!<hash>``) or given back (``#<hash>``) without knowing it. Keep the tag key
out of the applications' key patterns (``~app:*`` does), so only the admin can change
it.

redis-py is imported only when a connection is made (the ``redis`` extra).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from . import alternating
from .errors import RotatectlError
from .registry import AdapterContext

URL_ENV = "ROTATECTL_REDIS_URL"
TAG_KEY = "rotatectl:tags"
USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
SCHEMES = ("redis", "rediss", "unix")
# ACL SAVE's answer on a server that keeps no ACL file (users in redis.conf, or none).
_NO_ACL_FILE = "not configured to use an ACL file"

T = TypeVar("T")
Command = tuple[str, ...]


@dataclass(frozen=True)
class Tag:
    """What rotatectl recorded for one version a user holds."""

    key_id: str
    hash: str


@dataclass(frozen=True)
class AclUser:
    """An ACL user as the server has it now (all False/empty when it does not exist)."""

    exists: bool
    on: bool
    passwords: frozenset[str]


def admin_url(settings: Mapping[str, Any], ctx: AdapterContext) -> tuple[str, str]:
    """The admin URL from the variable ``admin_url_env`` names (default
    ``ROTATECTL_REDIS_URL``), and ``host:port`` for messages. ConfigError naming the
    variable when it is not set or holds no Redis URL; the URL itself is never in a
    message."""
    variable = settings.get("admin_url_env", URL_ENV)
    url = ctx.env.get(variable)
    if not url:
        raise ctx.error(
            "admin_url_env",
            f"${variable} is not set: it must hold the admin connection URL "
            "(redis://USER:PASSWORD@HOST:PORT/0)",
        )
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in SCHEMES:
        raise ctx.error(
            "admin_url_env", f"${variable} does not hold a redis://, rediss:// or unix:// URL"
        )
    return url, server_of(url)


def server_of(url: str) -> str:
    """``host:port`` of a URL (the socket path of a unix:// one), for messages; never
    the password."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return parts.path or "socket"
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
    except ValueError:
        return "server"


def password_hash(password: str) -> str:
    """What Redis stores for a password, and what ``#<hash>`` sets: SHA-256, hex."""
    return hashlib.sha256(password.encode()).hexdigest()


def parse_ref(issuer_ref: str) -> tuple[str, str]:
    """``<user>@<version id>`` as (user, version id); ("", "") when it is not one."""
    return alternating.parse_ref(issuer_ref, lambda user: USER.match(user) is not None)


def parse_tags(raw: str | None) -> dict[str, Tag]:
    """A user's tag field as version id -> Tag; {} for none, or for anything that is
    not rotatectl's (a value someone else wrote is never taken as a key)."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    found = {}
    for version_id, tag in data.items():
        if isinstance(tag, dict) and isinstance(tag.get("key"), str):
            found[version_id] = Tag(tag["key"], str(tag.get("hash", "")))
    return found


def dump_tags(tags: Mapping[str, Tag]) -> str:
    return json.dumps(
        {v: {"key": t.key_id, "hash": t.hash} for v, t in tags.items()}, sort_keys=True
    )


def read_tags(client: Any, tag_key: str, users: Sequence[str]) -> dict[str, dict[str, Tag]]:
    """Each of ``users``: the versions it holds, by rotatectl's tags."""
    values = client.hmget(tag_key, list(users))
    return {user: parse_tags(raw) for user, raw in zip(users, values, strict=True)}


def acl_user(client: Any, name: str) -> AclUser:
    """``ACL GETUSER``: whether the user exists, is ``on``, and its password hashes."""
    info = client.acl_getuser(name)
    if not info:
        return AclUser(False, False, frozenset())
    flags = [str(f) for f in info.get("flags") or ()]
    passwords = frozenset(str(p) for p in info.get("passwords") or ())
    return AclUser(True, "on" in flags, passwords)


def connections(client: Any, users: Sequence[str]) -> dict[str, list[str]]:
    """``CLIENT LIST``: the addresses of each user's open connections (this admin
    connection left out), as the server sees them."""
    me = str(client.client_id())
    found: dict[str, list[str]] = {u: [] for u in users}
    for entry in client.client_list():
        user = entry.get("user")
        if user in found and str(entry.get("id")) != me:
            found[user].append(str(entry.get("addr", "?")))
    return found


def transact(
    client: Any,
    tag_key: str,
    plan: Callable[[Any], tuple[T, list[Command]]],
    where: str,
    error: type[RotatectlError],
    attempts: int = 5,
) -> tuple[T, bool]:
    """Check, then act, atomically with respect to the tags: ``plan(pipe)`` reads
    (through ``pipe``, which watches ``tag_key``) and returns its result and the
    commands to run; they run in one MULTI/EXEC, which fails and is planned again
    when the tags changed meanwhile. Returns the result and whether anything ran."""
    from redis.exceptions import WatchError

    for _ in range(attempts):
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(tag_key)
                result, commands = plan(pipe)
                if not commands:
                    return result, False
                pipe.multi()
                for command in commands:
                    pipe.execute_command(*command)
                pipe.execute()
                return result, True
            except WatchError:
                continue
    raise error(f"{where}: {tag_key} kept changing under this change ({attempts} tries)")


def persist(client: Any, mode: str) -> None:
    """Make the ACL changes survive a restart: ``auto``: ``ACL SAVE`` when the server
    keeps an ACL file (nothing otherwise); ``acl-save``: ``ACL SAVE``, an error when
    there is no file; ``config-rewrite``: ``CONFIG REWRITE`` (users in redis.conf);
    ``none``: nothing (the operator's job)."""
    from redis.exceptions import ResponseError

    if mode == "config-rewrite":
        client.execute_command("CONFIG", "REWRITE")
    elif mode in ("auto", "acl-save"):
        try:
            client.execute_command("ACL", "SAVE")
        except ResponseError as exc:
            if mode == "acl-save" or _NO_ACL_FILE not in str(exc):
                raise


def _connect(url: str) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=10,
        retry=Retry(NoBackoff(), 1),  # the runner retries steps; no backoff of its own
    )


@contextmanager
def session(
    url: str,
    where: str,
    error: type[RotatectlError],
    connect: Callable[[str], Any] | None = None,
) -> Iterator[Any]:
    """A client connected with ``url``; a driver error becomes ``error`` with one line:
    ``where``, then the server's reason (never the URL or its password)."""
    import redis

    client = None
    try:
        try:
            client = (connect or _connect)(url)
        except ValueError:
            raise error(f"{where}: the admin URL is not a valid Redis URL") from None
        yield client
    except redis.exceptions.NoPermissionError as exc:
        raise error(f"{where}: permission denied ({reason(exc, url)})") from None
    except redis.exceptions.RedisError as exc:
        raise error(f"{where}: {reason(exc, url)}") from None
    finally:
        if client is not None:
            client.close()


def reason(exc: BaseException, url: str = "") -> str:
    """The first line of a driver error, with the admin URL and its password cut out
    should the driver ever quote them."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    secrets = [url]
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        secrets += [password, unquote(password)]
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text or type(exc).__name__
