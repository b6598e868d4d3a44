"""The access check: the capabilities the token lacks, asked of the server."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...errors import PermissionDeniedError
from .kv import VaultKv


class VaultAccess(VaultKv):
    """The access check of :class:`VaultStore`."""

    if TYPE_CHECKING:

        def list_paths(self) -> list[str]: ...  # :class:`VaultStore`'s

    def check_access(self, paths: Sequence[str] = ()) -> list[str]:
        """Missing capabilities, one line each, for listing and for ``paths``
        (default: every credential found in the store). Asks the server with
        ``sys/capabilities-self``; never raises for a denial."""
        wanted: dict[str, set[str]] = {}

        def need(api_path: str, *caps: str) -> None:
            wanted.setdefault(api_path, set()).update(caps)

        need(f"{self.mount}/metadata/{self.prefix}".rstrip("/") + "/", "list")
        creds = list(paths)
        if not creds:
            with contextlib.suppress(PermissionDeniedError):  # reported by the list check
                creds = self.list_paths()
        for path in creds:
            full = self._full(path)
            value = self._value_rel(path, "example")
            # Data writes need "update" only: each path's metadata is written first.
            need(self._api("data", full), "read", "update")
            need(self._api("metadata", full), "create", "update")
            for leaf in ("index", "lock", "versions/example"):
                rel = self._rel(path, leaf)
                need(self._api("data", rel), "read", "update")
                need(self._api("metadata", rel), "read", "create", "update")
            # Format 1's rotation record: read until the index's next write, and its
            # KV history (earlier records) for `history`.
            legacy = self._rel(path, "rotation")
            need(self._api("data", legacy), "read")
            need(self._api("metadata", legacy), "read")
            need(self._api("delete", value), "update")
            need(self._api("destroy", value), "update")
        resp = self._call(
            "vault check access",
            "sys/capabilities-self",
            "update",
            lambda c: c.adapter.post("/v1/sys/capabilities-self", json={"paths": list(wanted)}),
        )
        granted = resp.get("data") or resp
        problems = []
        for api_path, caps in wanted.items():
            have = set(granted.get(api_path) or ())
            if "root" in have:
                continue
            missing = sorted(caps - have)
            if missing:
                names = ", ".join(f"'{m}'" for m in missing)
                problems.append(f"permission denied: needs {names} on {api_path}")
        return problems
