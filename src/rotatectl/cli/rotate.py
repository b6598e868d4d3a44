"""``rotate``: start a rotation for each name, or continue the one in flight. Needs no
Typer, so the entry point (:mod:`rotatectl.cli.main`) runs it without Typer, as it does
``status``, and the Typer command (:mod:`rotatectl.cli.commands.rotation`) runs the
same function."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .context import duration, report, runner, validated, workspace

if TYPE_CHECKING:
    from .context import Options


def run_rotate(
    opts: Options,
    names: list[str],
    *,
    wait: bool = False,
    propagation: str | None = None,
    overlap: str | None = None,
    dry_run: bool = False,
) -> int:
    """``rotatectl rotate NAME...``: the exit code. ``propagation``/``overlap``: the
    options' text (UsageError naming the option when it is not a duration)."""
    from .. import services
    from ..engine.fleet import follow
    from .follow import TerminalDisplay

    prop, over = duration("--propagation", propagation), duration("--overlap", overlap)
    names = validated(names)
    with workspace(opts) as ws:
        targets = [ws.target(n) for n in names]
        if not opts.quiet:
            for note in services.adhoc_notes(ws, names):
                sys.stderr.write(f"note: {note}\n")
        run = runner(opts, ws)
        if dry_run:
            planned = [run.rotate(t, propagation=prop, overlap=over, dry_run=True) for t in targets]
            return report(opts, planned, summary=False)
        display = TerminalDisplay(speak=opts.output == "table" and not opts.quiet)
        try:
            results = follow(
                run, targets, propagation=prop, overlap=over, wait=wait, display=display
            )
        except KeyboardInterrupt:
            # The session released its lease on the way out; say where each stands.
            from ..errors import Interrupted

            raise Interrupted(services.where_it_stands(ws, names)) from None
        if wait and opts.output == "table" and not opts.quiet:
            from .status import print_statuses

            code = print_statuses(ws, names, opts.output)
            if code:
                return code
        printed = opts.output == "table" and not opts.quiet
        return report(opts, results, summary=True, printed=printed)
