"""Drift: a store changed behind rotatectl's back.

Generic check: the current value no longer matches the current version's
fingerprint. A store can add checks of its own layout (a label moved, a field
overwritten) and repairs by implementing :class:`rotatectl.ports.DriftAware`.
While a credential has drift, ``run`` and ``rotate`` refuse to start a
rotation on it (exit 3) until the operator adopts the store's state or
restores rotatectl's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from . import redact
from .errors import NotFoundError, RotatectlError, UsageError
from .keyformat import fingerprint_matches
from .machine import current_version
from .ports import DriftAware, SecretStore

if TYPE_CHECKING:
    from .model import Version
    from .runner import Target


def detect(target: Target, versions: Sequence[Version] | None = None) -> list[str]:
    """One line per difference between the store and rotatectl's records; [] when none.

    ``versions``: the credential's versions when the caller has just read them
    (``status`` reads many at once), so they are not read again.
    """
    store = target.store
    problems: list[str] = []
    if versions is None:
        versions = store.versions(target.path)
    current = current_version(versions)
    if current is not None:
        try:
            value = store.read_value(target.path)
        except NotFoundError:
            problems.append(f"v{current.number} is current but its value is gone")
        else:
            redact.register(value)
            if not fingerprint_matches(current.fingerprint, value):
                problems.append(
                    f"the current value does not match v{current.number} ({current.key_id}): "
                    "it was changed outside rotatectl"
                )
            del value
    if isinstance(store, DriftAware):
        problems.extend(store.drift(target.path))
    return problems


def resolve(target: Target, how: str, at: datetime) -> None:
    """``adopt`` (take the store as truth) or ``restore`` (put rotatectl's state back).

    Raises UsageError when the store cannot do it.
    """
    store = target.store
    if not isinstance(store, DriftAware):
        raise UsageError(f"{target.name}: store {target.store_name} cannot {how} drift")
    if how == "adopt":
        store.adopt(target.path, at)
    elif how == "restore":
        store.restore(target.path, at)
    else:  # pragma: no cover - the CLI offers only these two
        raise UsageError(f"unknown drift resolution {how!r}")


log = logging.getLogger(__name__)


@contextlib.contextmanager
def repair_lease(store: SecretStore, path: str, at: datetime) -> Iterator[None]:
    """Hold ``path``'s lease lock around a store's adopt/restore, so no rotation
    step interleaves. Raises LockedError when a run holds it."""
    from .runner import default_holder  # lazily: the engine is only needed here

    lease = store.acquire_lock(path, default_holder(), timedelta(minutes=5), at)
    try:
        yield
    finally:
        try:
            store.release_lock(lease)
        except RotatectlError as exc:  # it expires on its own; the repair stands
            log.warning("%s: could not release the lease after a drift repair: %s", path, exc)
