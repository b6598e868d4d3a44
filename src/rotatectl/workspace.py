"""Builds runner targets from a loaded config: one adapter instance per table.

Adapters are built lazily, so a command that touches only the local store
never imports boto3 or hvac.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from . import registry
from .errors import ConfigError, RotatectlError

if TYPE_CHECKING:
    from .config import AdapterSpec, Config, CredentialConfig
    from .errors import UnknownCredentialError
    from .model import Policy
    from .ports import KeyIssuer, Notifier, SecretStore, Target


@dataclass(frozen=True)
class CredentialView:
    """What reporting reads of a credential (see report.StatusSource): its store and
    policy. Unlike a runner Target it does not need the runner module imported."""

    name: str
    path: str
    store: SecretStore
    store_name: str
    policy: Policy


class Workspace:
    """The adapters of one command invocation. Close it when done."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stores: dict[str, SecretStore] = {}
        self._notifiers: dict[str, Notifier] = {}
        self._checked: dict[int, AdapterSpec] = {}  # adapter tables view() has built

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
        ctx = replace(self.config.context(spec.table), credential_value=self._current_value)
        return registry.build(kind, {"type": spec.type, **spec.settings}, ctx)

    def _current_value(self, name: str) -> str:
        """The current value of credential ``name`` (an adapter's admin connection that
        rotatectl manages too), read from its store when the adapter first needs it.
        UnknownCredentialError for a name the config does not declare, NotFoundError
        when it has no current value."""
        from . import secretformat

        cred = self.credential(name, allow_adhoc=False)
        value = self._credential_store(cred).read_value(cred.path)
        secretformat.register(value)
        return value

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

    def unknown(self, name: str) -> UnknownCredentialError:
        """The error for a credential with nothing in its store; when no config file
        was found, it says so and where it looked (the usual cause: run from another
        directory than the config's)."""
        from .errors import UnknownCredentialError

        message = f"unknown credential {name!r}: no versions in its store"
        if self.config.file is None:
            message += (
                f" (config file: {self.config.source()}; run where the config is, or name it"
                " with --config or $ROTATECTL_CONFIG)"
            )
        return UnknownCredentialError(message)

    def credential(self, name: str, *, allow_adhoc: bool = True) -> CredentialConfig:
        return self.config.credential(name, allow_adhoc=allow_adhoc)

    def target(self, name: str, *, allow_adhoc: bool = True) -> Target:
        """Everything the runner needs for credential ``name``.

        Raises UnknownCredentialError for an undeclared name when the config
        declares credentials, and ConfigError for adapter settings.
        """
        from .ports import Target

        cred = self.credential(name, allow_adhoc=allow_adhoc)
        _declare_public(cred)
        return Target(
            name=cred.name,
            path=cred.path,
            store=self._window_checked(cred, self._credential_store(cred)),
            issuer=self._build("issuer", cred.issuer),
            probe=self._build("probe", cred.usage),
            policy=cred.policy,
            store_name="+".join(cred.stores),
            scopes=cred.scopes,
            notifiers=[(n, self.notifier(n)) for n in cred.notify],
            hooks=cred.hooks,
            pretest=cred.pretest,
            secret_format=cred.secret_format,
        )

    def issuer(self, name: str) -> KeyIssuer:
        """Credential ``name``'s issuer alone (``issuer-test``): nothing else is built.
        UnknownCredentialError for a name the config does not declare, ConfigError for
        the issuer's settings."""
        return self._build("issuer", self.credential(name, allow_adhoc=False).issuer)  # type: ignore[no-any-return]

    def view(self, name: str, *, allow_adhoc: bool = True) -> CredentialView:
        """Credential ``name`` for reading its status, with the same checks and errors
        as :meth:`target` (its adapters are built, so their settings are checked) but
        without importing the runner."""
        cred = self.credential(name, allow_adhoc=allow_adhoc)
        store = self._window_checked(cred, self._credential_store(cred))
        for kind, spec in (("issuer", cred.issuer), ("probe", cred.usage)):
            # Built once per table: credentials without their own share the default's.
            if id(spec) not in self._checked:
                self._build(kind, spec)
                self._checked[id(spec)] = spec
        for notifier in cred.notify:
            self.notifier(notifier)
        return CredentialView(cred.name, cred.path, store, "+".join(cred.stores), cred.policy)

    def _window_checked(self, cred: CredentialConfig, store: SecretStore) -> SecretStore:
        check_window(cred.name, cred.policy.keep_previous, "+".join(cred.stores), store)
        return store

    def _credential_store(self, cred: CredentialConfig) -> SecretStore:
        """The credential's store; a FanoutStore when it is kept in several."""
        store: SecretStore = self.store(cred.stores[0])
        if len(cred.stores) > 1:
            from .stores.fanout import FanoutStore

            store = FanoutStore([(n, self.store(n)) for n in cred.stores])
        return store

    def names(self) -> list[str]:
        """The credentials commands without a NAME act on.

        The declared ones when the config declares any; otherwise every ad hoc
        credential found in the default store.
        """
        if self.config.credentials:
            return sorted(self.config.credentials)
        return self.store(self.config.default_store).list_paths()


def _declare_public(cred: CredentialConfig) -> None:
    """A JSON secret's static fields are in the config file: never masked in output."""
    from . import redact

    for value in cred.secret_format.static.values():
        if isinstance(value, str):
            redact.public(value)


def check_window(name: str, keep_previous: int, store_name: str, store: SecretStore) -> None:
    """ConfigError when credential ``name`` keeps several previous keys
    (``keep_previous`` > 1) and ``store`` cannot represent them: it does not declare
    the rolling-window feature (every built-in store does; a plug-in may not)."""
    if keep_previous > 1 and "rolling-window" not in store.features():
        from .errors import ConfigError

        raise ConfigError(
            f"{name}: keep_previous = {keep_previous}: store {store_name!r} keeps one "
            "previous key at a time (it does not declare the rolling-window feature); "
            "use keep_previous = 1 with it"
        )
