"""The invariant checker itself: it flags what it must, and only that.

The suites prove the engine against :mod:`.invariants`; these tests prove the
checker against states the engine must never leave, written straight into a
store (here the local one: the checks are the same for every store).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rotatectl.model import VersionState
from tests.conftest import Cli

from .conftest import NAME, Backend, seed_current
from .invariants import InvariantError, Store

HOUR = {"overlap": "1h", "retain": "1h"}


def retire(store: Store, number: int) -> None:
    """Retire version ``number`` now, as an engine bug would."""
    v = next(v for v in store.versions(NAME) if v.number == number)
    store.set_state(NAME, v.version_id, VersionState.RETIRED, v.state, datetime.now(UTC))


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_invariant_8_flags_a_key_retired_within_its_overlap_after_a_rollback(
    cli: Cli, backend: Backend
) -> None:
    """v1 in use for 2 h, rotated to v2 and rolled back at once: v2 must stay accepted
    for the overlap from the rollback, however old v1 is (issue 15, item 1)."""
    backend.configure(**HOUR)
    store = backend.store()
    seed_current(store, timedelta(hours=2))
    assert cli("rotate", NAME).code == 0
    assert cli("rollback", NAME).code == 0
    inv = backend.invariants(seeded=1, **HOUR)
    inv.check("after the rollback", versions=2)

    retire(store, 2)
    with pytest.raises(
        InvariantError, match=r"v2 retired .* rollback rotation .* within its overlap"
    ):
        inv.check("v2 retired at once")


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_invariant_8_flags_an_old_key_retired_within_its_overlap(
    cli: Cli, backend: Backend
) -> None:
    backend.configure(**HOUR)
    store = backend.store()
    assert cli("rotate", NAME).code == 0
    assert cli("rotate", NAME, "--overlap", "30m").code == 0
    inv = backend.invariants(**HOUR)
    inv.check("in the overlap", versions=2)

    retire(store, 1)
    with pytest.raises(InvariantError, match=r"v1 retired .* within its overlap 0:30:00"):
        inv.check("v1 retired at once")


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_invariant_8_exempts_the_keys_an_emergency_retires(cli: Cli, backend: Backend) -> None:
    """An emergency retires the current key and the previous one at once: no violation."""
    backend.configure(**HOUR)
    assert cli("rotate", NAME).code == 0
    assert cli("rotate", NAME).code == 0
    inv = backend.invariants(**HOUR)
    assert inv.check("in the overlap").states() == [(1, "previous"), (2, "current")]
    assert cli("emergency", NAME, "--reason", "leak", "--yes").code == 0
    snap = inv.check("after the emergency", settled=True, versions=3)
    assert snap.states() == [(1, "retired"), (2, "retired"), (3, "current")]
