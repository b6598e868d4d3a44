"""Several runners over one fleet take it in orders of their own (issue 21 item 2):
:func:`rotatectl.engine.fleet.spread`. That they rotate each credential exactly once
on every store is `tests/reliability/test_concurrency.py::test_four_runs_share_a_fleet`."""

from __future__ import annotations

from rotatectl.engine.fleet import spread
from rotatectl.model import Outcome, Result

FLEET = [f"fleet/c{n:02d}" for n in range(12)]


def test_each_runner_has_an_order_of_its_own_and_keeps_it() -> None:
    work = [Result(name, Outcome.IDLE) for name in FLEET]
    orders = {tuple(spread(f"ops@host:{pid}", work)) for pid in range(8)}
    assert len(orders) == 8
    assert spread("ops@host:1", work) == spread("ops@host:1", work)
    assert sorted(spread("ops@host:1", work)) == list(range(len(FLEET)))
    # Four runners started together begin with four different credentials.
    assert len({spread(f"ops@host:{pid}", work)[0] for pid in range(4)}) >= 3
