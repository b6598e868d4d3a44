"""``run`` settles credentials with nothing to do from one snapshot, without their lease.

``engine.fleet.settled`` must give exactly the result the runner gives under the
lock, and must leave to the runner every credential that has a step to take
or whose lease someone holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rotatectl.config import load_config
from rotatectl.engine import Runner
from rotatectl.engine.fleet import settled
from rotatectl.report import snapshots
from rotatectl.testing.fakes import FakeClock, FakeProbe
from rotatectl.workspace import Workspace

from .test_store_memory import CoreOnly

START = datetime(2026, 1, 5, 12, tzinfo=UTC)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    (tmp_path / "rotatectl.toml").write_text(
        '[defaults]\nmax_age = "30d"\n'
        '[credentials."idle"]\n[credentials."waiting"]\n'
        '[credentials."due"]\nmax_age = "5d"\n'
        '[credentials."locked"]\n[credentials."new"]\n'
    )
    env = {"ROTATECTL_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path)}
    with Workspace(load_config(None, env=env, cwd=tmp_path)) as workspace:
        yield workspace


def test_settled_results_are_the_runners_and_need_no_lock(ws: Workspace) -> None:
    clock = FakeClock(START)
    runner = Runner(clock, holder="me@here:1")
    targets = {name: ws.target(name) for name in ws.names()}
    for name in ("idle", "waiting", "due", "locked"):
        runner.rotate(targets[name])  # first keys
    clock.advance(timedelta(days=10))  # "due" is past its max_age; the others are not
    runner.rotate(targets["waiting"], propagation=timedelta(hours=2))
    lease = targets["locked"].store.acquire_lock(
        "locked", "other@there:2", timedelta(minutes=5), clock.now()
    )
    order = [targets[n] for n in sorted(targets)]

    quick = settled(order, clock.now())
    assert sorted(quick) == ["idle", "waiting"]
    assert quick["idle"].outcome.value == "idle"
    assert quick["waiting"].outcome.value == "waiting"
    # The runner, deciding under the lock, gives the same results.
    for name, result in quick.items():
        assert result == runner.advance(targets[name])

    # Left to the runner: a step to take (due: start; new: its first key; waiting
    # once its propagation has elapsed: promote) and a lease another holder has.
    clock.advance(timedelta(hours=3))
    quick = settled(order, clock.now())
    assert sorted(quick) == ["idle"]
    targets["locked"].store.release_lock(lease)
    quick = settled(order, clock.now())
    assert sorted(quick) == ["idle", "locked"]


def test_a_retired_key_a_probe_watches_is_left_to_the_runner(ws: Workspace) -> None:
    clock = FakeClock(START)
    runner = Runner(clock, holder="me@here:1")
    target = ws.target("idle")
    runner.rotate(target)
    runner.rotate(target, propagation=timedelta(0), overlap=timedelta(0))  # v1 retired
    assert [v.state.value for v in target.store.versions("idle")] == ["retired", "current"]
    # With no usage probe, nothing watches the retired key: idle without the lock.
    assert sorted(settled([target], clock.now())) == ["idle"]
    # A probe may see the retired key still presented: the runner asks it.
    watched = replace(target, probe=FakeProbe())
    assert settled([watched], clock.now()) == {}


def test_a_store_with_the_default_batched_read_is_settled_the_same(ws: Workspace) -> None:
    """A store that implements only the core port gets StoreBase's batched read (a
    loop): run settles its idle credentials like any other, without the lease."""
    clock = FakeClock(START)
    target = ws.target("idle")
    Runner(clock, holder="me@here:1").rotate(target)

    plain = replace(target, store=CoreOnly(target.store))
    assert plain.store.features() == frozenset()
    [(name, snapshot)] = snapshots([plain]).items()
    assert name == "idle" and [v.number for v in snapshot[0]] == [1] and not snapshot[3]
    assert sorted(settled([plain], clock.now())) == ["idle"]


def test_settled_in_shares_gives_what_one_pass_gives(tmp_path: Path) -> None:
    """The lock-free pass on several threads, each over a share of the fleet, settles
    exactly what one pass settles (65 credentials; a store whose batched read takes
    20: shares of 20, 20, 20 and 5 at --jobs 4; of one each for a store that reads
    credential by credential)."""
    from rotatectl.engine.fleet import settled_in_shares
    from rotatectl.stores.local import LocalStore

    class BatchOf(LocalStore):
        read_batch = 20

    class OneByOne(LocalStore):
        read_batch = 1

    names = [f"fleet/c{n:02d}" for n in range(65)]
    (tmp_path / "rotatectl.toml").write_text(
        '[defaults]\nmax_age = "30d"\n' + "".join(f'[credentials."{n}"]\n' for n in names)
    )
    env = {"ROTATECTL_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path)}
    with Workspace(load_config(None, env=env, cwd=tmp_path)) as ws:
        clock = FakeClock(START)
        runner = Runner(clock, holder="me@here:1")
        targets = [ws.target(n) for n in names]
        for target in targets[::2]:  # half have a key (idle); half have none (due)
            runner.rotate(target)
        one = settled(targets, clock.now())
        assert sorted(one) == names[::2]
        file = tmp_path / "state" / "state.db"
        for kind in (BatchOf, OneByOne):
            with kind(file) as store:
                shared = [replace(t, store=store) for t in targets]
                for jobs in (1, 2, 4, 16):
                    assert settled_in_shares(shared, clock.now(), jobs) == one, (kind, jobs)
