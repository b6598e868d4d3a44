"""The ``single`` strategy of the ``postgres`` issuer: one login role, its password
changed at promotion (issue 19).

PostgreSQL gives a role one password. So a new key cannot work beside the old one:
it works from its promotion, and a client still holding the old password fails to
connect until it re-reads the secret. The config must acknowledge that
(``accept_login_failures = true``); ``alternating`` has no such window.

- ``create``: a new password, the server untouched (the role is created ``NOLOGIN``
  when missing). The issuer reference is ``<role>@<version id>``.
- ``promote`` (the ``promote`` issuer feature): the role gets the key's password and
  ``LOGIN``; its comment tags it ``rotatectl:<version id>:<key id> since=<epoch>``
  (the server's clock). Idempotent: a role already tagged with the version is left
  alone. A rollback re-promotes the earlier key, which gives its password back.
- ``disable``: the key in force: ``NOLOGIN`` and every session ended. An earlier
  key: the sessions that authenticated with it (started before the password in
  force was set) are ended; its password stopped working at the next promotion.
- ``enable``: ``LOGIN`` again for the key in force; nothing for an earlier key (its
  password comes back only by promoting it). ``delete``: nothing to delete (the role
  holds one password), but the key in force is wiped as alternating's is.
- ``list_keys``: None; one password cannot be orphaned at the server.

Sessions opened before the password in force was set are the earlier key's usage, as
the ``postgres`` probe reports them, so the usage gate holds while any is open.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .. import alternating, keyformat
from ..model import IssuedKey, IssuerKey
from ..pg import (
    ROLE,
    TAG,
    comment_of,
    parse_tag,
    run_admin,
    set_comment,
    set_password,
    tag_since,
    terminate_sessions,
)

ACKNOWLEDGE = "accept_login_failures"


class PostgresSingleRoleIssuer:
    """One role's password, changed at promotion (see the module docstring). Declares
    the ``promote`` issuer feature."""

    FEATURES = frozenset({"promote"})

    def __init__(
        self,
        dsn: str | Callable[[], str],
        role: str,
        *,
        where: str = "postgres",
        prefix: str = "pg",
        connect: Callable[[str], Any] | None = None,
    ) -> None:
        self._dsn = dsn
        self.role = role
        self.where = where
        self.prefix = prefix
        self._connect = connect

    def __repr__(self) -> str:  # never the DSN: it may hold the admin password
        return f"PostgresSingleRoleIssuer(role={self.role!r}, server={self.where!r})"

    def create(self, credential: str, version_id: str, scopes: Sequence[str]) -> IssuedKey:
        """A new password for the role, set only at :meth:`promote`; the role is
        created ``NOLOGIN`` when it does not exist."""
        from psycopg import sql

        def run(cur: Any) -> None:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.role,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(self.role)))

        self._run(credential, "create", run)
        return alternating.issued(keyformat.generate(self.prefix), self.role, version_id)

    def promote(self, credential: str, issuer_ref: str, key: str) -> None:
        """The role's password becomes ``key`` (with ``LOGIN``), tagged with the
        reference's version and the time, unless it holds that version's already."""
        role, version_id = self._parse(issuer_ref)
        if role is None:
            return

        def run(cur: Any) -> None:
            tag = parse_tag(comment_of(cur, role))
            if tag is not None and tag[0] == version_id:
                return
            set_password(cur, role, key, login=True)
            cur.execute("SELECT extract(epoch FROM statement_timestamp())")
            since = float(cur.fetchone()[0])
            key_id = keyformat.parse(key).key_id if keyformat.validate(key) else "-"
            set_comment(cur, role, f"{TAG}{version_id}:{key_id} since={since:.6f}")

        self._run(credential, "promote", run)

    def list_keys(self, credential: str) -> list[IssuerKey] | None:
        """None: the role holds one password, which cannot be orphaned."""
        return None

    def disable(self, credential: str, issuer_ref: str) -> None:
        """The key in force: ``NOLOGIN``, every session ended. An earlier key: its
        sessions (started before the password in force was set) ended. Idempotent."""
        self._change(credential, "disable", issuer_ref, in_force="NOLOGIN")

    def enable(self, credential: str, issuer_ref: str) -> None:
        """``LOGIN`` again for the key in force; an earlier key's password comes back
        only by promoting it. Idempotent."""
        self._change(credential, "enable", issuer_ref, in_force="LOGIN")

    def delete(self, credential: str, issuer_ref: str) -> None:
        """The key in force: a random password, ``NOLOGIN``, its sessions ended, the
        tag removed. An earlier key: nothing is left of it. Idempotent."""
        self._change(credential, "delete", issuer_ref, in_force="NOLOGIN", wipe=True)

    def _change(
        self, credential: str, step: str, issuer_ref: str, *, in_force: str, wipe: bool = False
    ) -> None:
        role, version_id = self._parse(issuer_ref)
        if role is None:
            return
        from psycopg import sql

        def run(cur: Any) -> None:
            comment = comment_of(cur, role)
            tag = parse_tag(comment)
            if tag is None:
                return  # never promoted by rotatectl: not ours to touch
            if tag[0] != version_id:
                since = tag_since(comment)
                if step == "disable" and since is not None:
                    terminate_sessions(cur, role, before=since)
                return
            cur.execute(sql.SQL("ALTER ROLE {} WITH " + in_force).format(sql.Identifier(role)))
            if wipe:
                set_password(cur, role, keyformat.generate(self.prefix))
                set_comment(cur, role, None)
            if in_force == "NOLOGIN":
                terminate_sessions(cur, role)

        self._run(credential, step, run)

    def _parse(self, issuer_ref: str) -> tuple[str | None, str]:
        role, version_id = alternating.parse_ref(issuer_ref, lambda r: ROLE.match(r) is not None)
        return (role, version_id) if role == self.role else (None, "")

    def _run(self, credential: str, step: str, fn: Callable[[Any], Any]) -> Any:
        where = f"{credential}: postgres {self.where}: {step}"
        return run_admin(self._dsn, self._connect, where, fn)
