"""What ``rotate`` shows while the engine follows its rotations (engine/fleet.py):
each result as it comes, and a live countdown on a terminal while it waits."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from ..durations import format_duration, format_remaining
from ..model import Result, UsageStatus
from .render import print_results

if TYPE_CHECKING:
    from rich.table import Table


class TerminalDisplay:
    """Progress lines (rich only on a terminal: see render) and, on a terminal, a
    countdown of what each waiting rotation waits for. ``speak`` False: silent."""

    def __init__(self, *, speak: bool) -> None:
        self.speak = speak
        self.live = speak and sys.stdout.isatty()

    def progress(self, result: Result, now: datetime) -> None:
        if self.speak:
            print_results([result], now, "table", quiet=False, summary=False)

    @contextlib.contextmanager
    def waiting(self, results: Sequence[Result]) -> Iterator[Callable[[datetime], None]]:
        if not self.live:
            yield lambda now: None
            return
        from rich.live import Live

        from ..model import utcnow

        with Live(_countdown(results, utcnow()), refresh_per_second=2, transient=True) as live:
            yield lambda now: live.update(_countdown(results, now))


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
