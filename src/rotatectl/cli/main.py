"""The console-script entry point: answers the commonest calls without loading Typer.

``rotatectl --version``, ``rotatectl status`` (the cron and monitoring calls) and
``rotatectl rotate`` run here directly, parsed by :func:`.spec.parse` from the same
declarations the Typer app is built from; importing Typer and building its command
tree would cost more than the work itself (a third of a rotation's own CPU against a
local server). Every other command line (another command, an option
the fast parser is not sure of, an invalid value, ``--help``, a shell-completion
request) goes to the Typer app in :mod:`.app`, so help and parse errors stay Typer's.
Errors are mapped to one line and an exit code by the same guard as there.
"""

from __future__ import annotations

import gc
import os
import sys

from .. import __version__
from . import spec
from .guard import guarded

# Set by the completion scripts Typer generates (`--show-completion`).
_COMPLETING = "_ROTATECTL_COMPLETE"
# The collector's first generation is scanned after this many new container objects
# (Python's default: 700). A command builds records, dicts and statuses by the
# hundred thousand and almost none form cycles: at 700 the scans that find nothing
# took 15% of the CPU of `status -o json` over 10,000 credentials (0.3 s).
GC_YOUNG = 10_000


def main() -> None:
    """Console-script entry point: maps every error to one line and an exit code."""
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
    argv = sys.argv[1:]
    parsed = None if _COMPLETING in os.environ else spec.parse(argv)
    if parsed is None:
        from .app import main as typer_main

        typer_main()
        return
    if parsed.command == spec.VERSION.flags[0]:
        sys.stdout.write(f"rotatectl {__version__}\n")
        sys.exit(0)
    from ..redact import install_logging_filter

    install_logging_filter()
    guarded(lambda: _run(parsed), debug=parsed.get(spec.DEBUG))


def _run(parsed: spec.Parsed) -> int:
    """The command ``parsed`` names (one of spec.FAST), as its Typer command runs it."""
    config, output, quiet = (
        parsed.get(spec.CONFIG),
        parsed.get(spec.OUTPUT, "table"),
        parsed.get(spec.QUIET),
    )
    if parsed.command == "status":
        from .status import run_status

        return run_status(config, parsed.args, output, quiet=quiet)
    from .context import Options
    from .rotate import run_rotate

    options = Options(config, output, quiet, parsed.get(spec.DEBUG), invoked=parsed.command)
    return run_rotate(
        options,
        parsed.args,
        wait=parsed.get(spec.WAIT),
        propagation=parsed.get(spec.PROPAGATION),
        overlap=parsed.get(spec.OVERLAP),
        dry_run=parsed.get(spec.DRY_RUN),
    )
