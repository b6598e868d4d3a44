"""Builds runner targets from a loaded config: one adapter instance per table.

Adapters are built lazily, so a command that touches only the local store
never imports boto3 or hvac.
"""

from __future__ import annotations

import contextlib
from typing import Any

from . import registry
from .config import AdapterSpec, Config, CredentialConfig
from .errors import ConfigError, RotatectlError
from .ports import Notifier, SecretStore
from .runner import Target
from .stores.fanout import FanoutStore


class Workspace:
    """The adapters of one command invocation. Close it when done."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stores: dict[str, SecretStore] = {}
        self._notifiers: dict[str, Notifier] = {}

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        stores, self._stores = self._stores, {}
        for store in stores.values():
            # Closing is best effort: the work is already done.
            with contextlib.suppress(RotatectlError):
                store.close()

    def _build(self, kind: str, spec: AdapterSpec) -> Any:
        return registry.build(
            kind, {"type": spec.type, **spec.settings}, self.config.context(spec.table)
        )

    def store(self, name: str) -> SecretStore:
        """The store declared as ``[stores.NAME]`` (``local`` always exists)."""
        if name not in self._stores:
            spec = self.config.stores.get(name)
            if spec is None:
                raise ConfigError(f"unknown store {name!r}")
            self._stores[name] = self._build("store", spec)
        return self._stores[name]

    def notifier(self, name: str) -> Notifier:
        if name not in self._notifiers:
            self._notifiers[name] = self._build("notifier", self.config.notifiers[name])
        return self._notifiers[name]

    def credential(self, name: str, *, allow_adhoc: bool = True) -> CredentialConfig:
        return self.config.credential(name, allow_adhoc=allow_adhoc)

    def target(self, name: str, *, allow_adhoc: bool = True) -> Target:
        """Everything the runner needs for credential ``name``.

        Raises UnknownCredentialError for an undeclared name when the config
        declares credentials, and ConfigError for adapter settings.
        """
        cred = self.credential(name, allow_adhoc=allow_adhoc)
        store: SecretStore = self.store(cred.stores[0])
        if len(cred.stores) > 1:
            store = FanoutStore([(n, self.store(n)) for n in cred.stores])
        return Target(
            name=cred.name,
            path=cred.path,
            store=store,
            issuer=self._build("issuer", cred.issuer),
            probe=self._build("probe", cred.usage),
            policy=cred.policy,
            store_name="+".join(cred.stores),
            scopes=cred.scopes,
            notifiers=[(n, self.notifier(n)) for n in cred.notify],
            hooks=cred.hooks,
            pretest=cred.pretest,
        )

    def names(self) -> list[str]:
        """The credentials commands without a NAME act on.

        The declared ones when the config declares any; otherwise every ad hoc
        credential found in the default store.
        """
        if self.config.credentials:
            return sorted(self.config.credentials)
        return self.store(self.config.default_store).list_paths()
