"""Redis ACL users' passwords as keys (issue 19): two alternating ACL users, or one
user with two passwords during the overlap.

The secret a client reads names the user beside the password (``username``; declare
the credential ``format = "json"``, ``field = "password"``). Both strategies apply the
configured ``rules`` (keys, channels, commands: e.g. ``~app:* +@read +@write``) to
every user they manage on every ``create``, after clearing the user's earlier
permissions, so the rules are the users' whole permissions and never drift.

``alternating`` (the default): two users take turns (``users = ["app", "app_b"]``).

- ``create``: the user that holds no key that must keep working (``keep``), preferring
  one that is ``off``, gets ``on resetpass #<hash>`` (its earlier password gone, its
  connections closed); the tag store records the version and key id it holds. The
  issuer reference is ``<user>@<version id>``.
- ``disable``: ``off`` and ``CLIENT KILL USER`` (its open connections end now);
  ``enable``: ``on``; ``delete``: ``resetpass off`` (no password works), connections
  closed, tag removed. Each acts only while the user's tag still names that version:
  once the user holds a later version's key, an old reference no longer touches it.

``dual-password``: one user (``users = ["app"]``) holds several passwords at once,
which Redis allows (ACL users have no limit on passwords; rotatectl keeps only the
accepted versions': pending, current, previous).

- ``create``: adds the new password (``#<hash>``) beside the current one.
- ``disable``/``delete``: remove that version's password (``!<hash>``) and close every
  connection of the user (Redis cannot tell which password a connection used, so
  clients holding the new one reconnect too); ``enable`` adds the hash back. The tag
  store maps each version to its password's hash, so no step needs the password.

Alternating is the default because it retires a key without touching the connections
of the other, and the ``redis`` probe can tell which key a connection used (the user);
with one user holding two passwords it cannot, so the usage gate learns nothing while
connections are open (see :mod:`rotatectl.probes.redis`). Dual-password suits clients
that cannot change their user name.

Passwords travel only as their SHA-256 (``#<hash>``, ``!<hash>``), never in clear: no
command on the wire, in ``MONITOR``, ``SLOWLOG``, a proxy's log or a server error
(which quotes the offending modifier) holds one. Tags are kept in a hash key, as
:mod:`rotatectl.redisacl` explains (ACL users carry no comments). Each change runs as
one MULTI/EXEC that fails if the tags changed since they were read; afterwards
``ACL SAVE`` keeps it across a restart when the server has an ACL file (``persist``).
ACL users are per server: neither replicas nor cluster nodes copy them, so give each
its own credential. The admin URL comes from an environment variable
(``admin_url_env``), never from argv or the config file, and is never logged. Driver
errors become one line naming the credential, the server and the step
(:class:`~rotatectl.errors.IssuerError`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from .. import keyformat
from ..alternating import issued, pick, well_formed_users
from ..errors import IssuerError
from ..model import IssuedKey, IssuerKey
from ..redisacl import (
    TAG_KEY,
    USER,
    AclUser,
    Command,
    Tag,
    acl_user,
    admin_url,
    dump_tags,
    parse_ref,
    password_hash,
    persist,
    read_tags,
    session,
    transact,
)
from ..registry import AdapterContext, check_settings

T = TypeVar("T")

# Rules that would touch passwords or the on/off switch: rotatectl's alone.
_RESERVED = {"on", "off", "nopass", "resetpass", "reset"}
PERSIST = ("auto", "acl-save", "config-rewrite", "none")


def parse_rules(value: object) -> tuple[str, ...] | None:
    """The ``rules`` setting as ACL rules: a string split at spaces, or a list (for
    selectors, whose parentheses hold spaces). None when empty or when a rule is
    about passwords or on/off."""
    rules = value.split() if isinstance(value, str) else value
    if not isinstance(rules, list | tuple) or not rules:
        return None
    if not all(isinstance(r, str) and r.strip() for r in rules):
        return None
    for rule in rules:
        if rule.lower() in _RESERVED or rule[:1] in (">", "<", "#", "!"):
            return None
    return tuple(rules)


class RedisIssuer:
    """Shared by the strategies: settings, the admin connection, the rules, the tags.
    :meth:`from_config` builds the strategy's class."""

    FEATURES: ClassVar[frozenset[str]] = frozenset()
    STRATEGY: ClassVar[str] = ""
    SLOTS: ClassVar[int] = 0  # how many users the strategy manages

    def __init__(
        self,
        url: str,
        users: Sequence[str],
        rules: Sequence[str],
        *,
        tag_key: str = TAG_KEY,
        where: str = "redis",
        prefix: str = "rd",
        persist: str = "auto",
        connect: Callable[[str], Any] | None = None,
    ) -> None:
        self._url = url
        self.users = tuple(users)
        self.rules = tuple(rules)
        self.tag_key = tag_key
        self.where = where
        self.prefix = prefix
        self.persist = persist
        self._connect = connect
        self._selectors: bool | None = None  # the server knows clearselectors (7.0+)

    def __repr__(self) -> str:  # never the URL: it holds the admin password
        return (
            f"{type(self).__name__}(users={self.users!r}, rules={' '.join(self.rules)!r}, "
            f"server={self.where!r})"
        )

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> RedisIssuer:
        """Settings: ``strategy`` (``alternating``, the default, or ``dual-password``),
        ``users`` (two users for alternating, one for dual-password), ``rules`` (the
        users' ACL rules, required), ``admin_url_env`` (the environment variable holding
        the admin URL, default ``ROTATECTL_REDIS_URL``), ``tag_key`` (default
        ``rotatectl:tags``), ``persist`` (``auto``, ``acl-save``, ``config-rewrite``,
        ``none``), ``prefix`` of the generated passwords (``rd``)."""
        from ..extras import require

        check_settings(
            settings,
            ctx,
            {
                "strategy": str,
                "users": list,
                "rules": (str, list),
                "admin_url_env": str,
                "tag_key": str,
                "persist": str,
                "prefix": str,
            },
        )
        strategy = settings.get("strategy", "alternating")
        kinds: dict[str, type[RedisIssuer]] = {
            k.STRATEGY: k for k in (AlternatingUsers, DualPassword)
        }
        kind = kinds.get(strategy)
        if kind is None:
            raise ctx.error(
                "strategy",
                f"{strategy!r} is not supported: 'alternating' (two users take turns) or "
                "'dual-password' (one user, two passwords during the overlap)",
            )
        users = settings.get("users")
        if not well_formed_users(
            users, lambda u: bool(USER.match(u)) and u != "default", kind.SLOTS
        ):
            example = "['app', 'app_b']" if kind.SLOTS == 2 else "['app']"
            raise ctx.error(
                "users",
                f"expected {kind.SLOTS} distinct ACL user name(s) for {strategy}, e.g. "
                f"{example} (not 'default')",
            )
        rules = parse_rules(settings.get("rules"))
        if rules is None:
            raise ctx.error(
                "rules",
                "expected the users' ACL rules, e.g. '~app:* +@read +@write' (no password "
                "or on/off rules: rotatectl sets those)",
            )
        tag_key = settings.get("tag_key", TAG_KEY)
        if not tag_key:
            raise ctx.error("tag_key", "expected a key name, e.g. 'rotatectl:tags'")
        mode = settings.get("persist", "auto")
        if mode not in PERSIST:
            raise ctx.error("persist", f"expected one of {', '.join(PERSIST)}, got {mode!r}")
        prefix = settings.get("prefix", "rd")
        if not keyformat.is_valid_prefix(prefix):
            raise ctx.error("prefix", f"invalid password prefix {prefix!r}")
        url, where = admin_url(settings, ctx)
        require("redis", "issuer type 'redis'")
        return kind(url, users, rules, tag_key=tag_key, where=where, prefix=prefix, persist=mode)

    # -- shared by the strategies ---------------------------------------------------

    def _mint(self) -> tuple[str, str, str]:
        """A new password, its key id and its hash."""
        password = keyformat.generate(self.prefix)
        return password, keyformat.parse(password).key_id, password_hash(password)

    def _issued(self, password: str, key_id: str, user: str, version_id: str) -> IssuedKey:
        return issued(password, user, version_id)

    def _apply_rules(self, pipe: Any) -> None:
        """Every user of the strategy gets exactly the configured rules: earlier keys,
        channels, commands (and selectors) cleared first. Runs on its own, before the
        change: a rule the server refuses fails here, with nothing else changed.
        Passwords and on/off are left as they are."""
        if self._selectors is None:
            version = str(pipe.info("server").get("redis_version", "0"))
            self._selectors = int(version.partition(".")[0] or 0) >= 7
        clear = ["resetkeys", "resetchannels", "-@all"]
        if self._selectors:
            clear.append("clearselectors")
        for user in self.users:
            pipe.execute_command("ACL", "SETUSER", user, *clear, *self.rules)

    def _state(
        self, pipe: Any, users: Sequence[str]
    ) -> tuple[dict[str, dict[str, Tag]], dict[str, AclUser]]:
        return read_tags(pipe, self.tag_key, users), {u: acl_user(pipe, u) for u in users}

    def _change(
        self,
        credential: str,
        step: str,
        issuer_ref: str,
        act: Callable[[str, str, Tag, dict[str, Tag], AclUser], list[Command]],
    ) -> None:
        """``act(user, version id, its tag, the user's tags, the user)`` plans the
        commands of a change to one key; only while the user's tags hold that
        version (an unknown reference changes nothing)."""
        user, version_id = parse_ref(issuer_ref)
        if user not in self.users:
            return  # not a key of these users: nothing of ours to change

        def plan(pipe: Any) -> tuple[None, list[Command]]:
            tags, state = self._state(pipe, [user])
            tag = tags[user].get(version_id)
            if tag is None:
                return None, []  # the user holds another key now (or none): not ours
            return None, act(user, version_id, tag, tags[user], state[user])

        self._run(credential, step, plan)

    def _run(self, credential: str, step: str, plan: Callable[[Any], tuple[T, list[Command]]]) -> T:
        """``plan`` in one checked transaction on the admin connection, then the ACL
        saved; driver errors become one IssuerError line naming the credential, the
        server and the step."""
        where = f"{credential}: redis {self.where}: {step}"
        with session(self._url, where, IssuerError, self._connect) as client:
            result, changed = transact(client, self.tag_key, plan, where, IssuerError)
            if changed:
                persist(client, self.persist)
            return result

    def _kill(self, user: str) -> Command:
        return ("CLIENT", "KILL", "USER", user)

    def _tags(self, user: str, tags: Mapping[str, Tag]) -> Command:
        """The command that records ``tags`` as ``user``'s (removes the field when none)."""
        if not tags:
            return ("HDEL", self.tag_key, user)
        return ("HSET", self.tag_key, user, dump_tags(tags))


class AlternatingUsers(RedisIssuer):
    """Two ACL users take turns (see the module docstring).

    Declares the ``keep`` issuer feature: :meth:`create` is told which keys must keep
    working (``keep``: issuer references), since the pair has room for two keys only.
    """

    FEATURES = frozenset({"keep"})
    STRATEGY = "alternating"
    SLOTS = 2

    def create(
        self, credential: str, version_id: str, scopes: Sequence[str], keep: Sequence[str] = ()
    ) -> IssuedKey:
        """A new password on the user of the pair that holds no key in ``keep``,
        preferring one that is ``off``; the user already tagged with ``version_id`` on a
        retry. IssuerError when both users hold keys that must keep working."""
        password, key_id, digest = self._mint()
        busy = [parse_ref(ref)[0] for ref in keep]

        def plan(pipe: Any) -> tuple[str, list[Command]]:
            tags, state = self._state(pipe, self.users)
            usable = {u: state[u].on for u in self.users}
            user = pick(self.users, {u: set(tags[u]) for u in self.users}, usable, version_id, busy)
            if user is None:
                raise IssuerError(
                    f"{credential}: both users of {', '.join(self.users)} hold keys that must "
                    "keep working; retire one first (the pair has room for two keys)"
                )
            self._apply_rules(pipe)
            return user, [
                ("ACL", "SETUSER", user, "on", "resetpass", f"#{digest}"),
                self._kill(user),  # connections of a password that no longer exists
                self._tags(user, {version_id: Tag(key_id, digest)}),
            ]

        user = self._run(credential, "create", plan)
        return self._issued(password, key_id, user, version_id)

    def list_keys(self, credential: str) -> list[IssuerKey] | None:
        """Each user of the pair that carries a tag: its reference, the version id it
        was minted for, and whether the key works (the user is on and has the password)."""

        def plan(pipe: Any) -> tuple[list[IssuerKey], list[Command]]:
            tags, state = self._state(pipe, self.users)
            found = []
            for user in self.users:
                for version_id, tag in tags[user].items():
                    works = state[user].on and tag.hash in state[user].passwords
                    found.append(IssuerKey(f"{user}@{version_id}", version_id, works))
            return found, []

        return self._run(credential, "list", plan)

    def disable(self, credential: str, issuer_ref: str) -> None:
        """``off`` and the user's connections closed (the key stops working now), while
        the user still holds this key. Idempotent."""
        self._change(
            credential,
            "disable",
            issuer_ref,
            lambda user, *_: [("ACL", "SETUSER", user, "off"), self._kill(user)],
        )

    def enable(self, credential: str, issuer_ref: str) -> None:
        """``on`` again, while the user still holds this key. Idempotent."""
        self._change(
            credential, "enable", issuer_ref, lambda user, *_: [("ACL", "SETUSER", user, "on")]
        )

    def delete(self, credential: str, issuer_ref: str) -> None:
        """No password and ``off``, connections closed and the tag removed, while the
        user still holds this key. Idempotent; an unknown reference is not an error."""
        self._change(
            credential,
            "delete",
            issuer_ref,
            lambda user, *_: [
                ("ACL", "SETUSER", user, "resetpass", "off"),
                self._kill(user),
                self._tags(user, {}),
            ],
        )


class DualPassword(RedisIssuer):
    """One ACL user with a password per accepted key (see the module docstring)."""

    STRATEGY = "dual-password"
    SLOTS = 1

    @property
    def user(self) -> str:
        return self.users[0]

    def create(self, credential: str, version_id: str, scopes: Sequence[str]) -> IssuedKey:
        """The new password added beside the user's others (a retry replaces the one it
        added before)."""
        password, key_id, digest = self._mint()
        user = self.user

        def plan(pipe: Any) -> tuple[None, list[Command]]:
            tags, state = self._state(pipe, [user])
            self._apply_rules(pipe)
            setuser = ["ACL", "SETUSER", user, "on", f"#{digest}"]
            earlier = tags[user].get(version_id)
            if earlier is not None and earlier.hash in state[user].passwords:
                setuser.append(f"!{earlier.hash}")
            mine = {**tags[user], version_id: Tag(key_id, digest)}
            return None, [tuple(setuser), self._tags(user, mine)]

        self._run(credential, "create", plan)
        return self._issued(password, key_id, user, version_id)

    def list_keys(self, credential: str) -> list[IssuerKey] | None:
        """Each version the user's tags hold: its reference, and whether its password
        works (the user is on and still has it)."""

        def plan(pipe: Any) -> tuple[list[IssuerKey], list[Command]]:
            tags, state = self._state(pipe, [self.user])
            found = []
            for version_id, tag in tags[self.user].items():
                works = state[self.user].on and tag.hash in state[self.user].passwords
                found.append(IssuerKey(f"{self.user}@{version_id}", version_id, works))
            return found, []

        return self._run(credential, "list", plan)

    def disable(self, credential: str, issuer_ref: str) -> None:
        """This version's password removed and the user's connections closed (all of
        them: Redis cannot tell which password a connection used). Idempotent: once the
        password is gone nothing more happens."""

        def act(user: str, _: str, tag: Tag, __: dict[str, Tag], state: AclUser) -> list[Command]:
            if tag.hash not in state.passwords:
                return []
            return [("ACL", "SETUSER", user, f"!{tag.hash}"), self._kill(user)]

        self._change(credential, "disable", issuer_ref, act)

    def enable(self, credential: str, issuer_ref: str) -> None:
        """This version's password given back (by its hash). Idempotent."""

        def act(user: str, _: str, tag: Tag, __: dict[str, Tag], state: AclUser) -> list[Command]:
            if tag.hash in state.passwords and state.on:
                return []
            add = [f"#{tag.hash}"] if tag.hash not in state.passwords else []
            return [("ACL", "SETUSER", user, "on", *add)]

        self._change(credential, "enable", issuer_ref, act)

    def delete(self, credential: str, issuer_ref: str) -> None:
        """This version's password removed (the user's connections closed if it was
        still accepted) and its tag dropped. Idempotent; an unknown reference is not an
        error."""

        def act(
            user: str, version_id: str, tag: Tag, tags: dict[str, Tag], state: AclUser
        ) -> list[Command]:
            rest = {v: t for v, t in tags.items() if v != version_id}
            commands: list[Command] = []
            if tag.hash in state.passwords:
                commands += [("ACL", "SETUSER", user, f"!{tag.hash}"), self._kill(user)]
            return [*commands, self._tags(user, rest)]

        self._change(credential, "delete", issuer_ref, act)
