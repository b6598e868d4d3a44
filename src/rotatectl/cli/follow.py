"""``rotate``: start rotations, and with ``--wait`` follow them to the end.

While it waits it holds every credential's lease, renewing it, and shows a
live countdown on a terminal (plain lines elsewhere).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..durations import format_duration, format_remaining
from ..engine import Outcome, Result, Runner, Session, StartRequest, Target
from ..model import RotationKind, UsageStatus
from .render import print_results

if TYPE_CHECKING:
    from rich.table import Table


def follow(
    runner: Runner,
    targets: Sequence[Target],
    *,
    propagation: timedelta | None,
    overlap: timedelta | None,
    wait: bool,
    opts: object,
) -> list[Result]:
    """Start (or continue) a rotation per target; with ``wait``, drive them until none waits."""
    output = getattr(opts, "output", "table")
    quiet = bool(getattr(opts, "quiet", False))
    speak = output == "table" and not quiet
    with contextlib.ExitStack() as stack:
        sessions = [stack.enter_context(runner.session(t)) for t in targets]
        request = StartRequest(RotationKind.MANUAL, propagation, overlap)
        results = [s.drive(start=request) for s in sessions]
        if speak:
            for r in results:
                _print_progress(r, runner.clock.now())
        if not wait:
            return results
        live_ok = speak and sys.stdout.isatty()
        while True:
            waiting = [i for i, r in enumerate(results) if r.outcome is Outcome.WAITING]
            if not waiting:
                return results
            deadline = min(results[i].until or runner.clock.now() for i in waiting)
            _sleep_until(runner, sessions, results, deadline, live=live_ok)
            now = runner.clock.now()
            for i in waiting:
                until = results[i].until
                if until is None or until <= now:
                    results[i] = sessions[i].drive()
                    if speak:
                        _print_progress(results[i], runner.clock.now())


def _print_progress(result: Result, now: datetime) -> None:
    """Its steps, warnings and outcome line (rich only on a terminal: see render)."""
    print_results([result], now, "table", quiet=False, summary=False)


def _sleep_until(
    runner: Runner,
    sessions: Sequence[Session],
    results: Sequence[Result],
    deadline: datetime,
    *,
    live: bool,
) -> None:
    """Sleep in short slices until ``deadline``, renewing leases and refreshing the display."""
    renew_every = max(1.0, runner.lock_ttl.total_seconds() / 3)
    last_renew = runner.clock.now()
    if live:
        from rich.live import Live
    display = (
        Live(_countdown(results, runner.clock.now()), refresh_per_second=2, transient=True)
        if live
        else None
    )
    with display if display is not None else contextlib.nullcontext():
        while True:
            now = runner.clock.now()
            remaining = (deadline - now).total_seconds()
            if remaining <= 0:
                return
            if (now - last_renew).total_seconds() >= renew_every:
                for s in sessions:
                    s.renew()
                last_renew = now
            if display is not None:
                display.update(_countdown(results, now))
            runner.clock.sleep(min(1.0, remaining, renew_every))


def _countdown(results: Sequence[Result], now: datetime) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=True, header_style="bold", box=None)
    for column in ("credential", "phase", "next step in", "old key last seen", "why"):
        table.add_column(column)
    for r in results:
        left = format_remaining(r.until - now) if r.until and r.until > now else "now"
        seen = "-"
        if r.usage is not None:
            if r.usage.status is UsageStatus.SEEN and r.usage.last_seen is not None:
                who = f" by {', '.join(r.usage.clients)}" if r.usage.clients else ""
                seen = f"{format_duration(now - r.usage.last_seen)} ago{who}"
            else:
                seen = r.usage.status.value
        phase = r.phase.value if r.phase else r.outcome.value
        table.add_row(
            r.credential, phase, left, seen, Text(r.message, "yellow" if r.attention else "")
        )
    return table
