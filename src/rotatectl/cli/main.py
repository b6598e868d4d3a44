"""The console-script entry point: answers the commonest calls without loading Typer.

``rotatectl --version`` and a plain ``rotatectl status [NAME...] [-o table|json]``
(the cron and monitoring calls) run here directly; importing Typer and building
its command tree would cost more than the work itself. Every other command
line, and any variation of these two this module is not sure about (another
option, an invalid value, ``--help``), goes to the Typer app in
:mod:`rotatectl.cli.app`, so parsing, help and error messages stay Typer's.
Errors are mapped to one line and an exit code exactly as ``app.main`` does.
"""

from __future__ import annotations

import sys

from .. import __version__
from .guard import guarded

_OUTPUTS = ("table", "json")


def _plain_status(argv: list[str]) -> tuple[str | None, str, list[str], bool] | None:
    """(config, output, names, quiet) for
    ``[-c FILE] [-o OUT] [-q] [--debug] status [NAME|-o OUT|-q]...`` with valid output
    values; None for anything else."""
    config: str | None = None
    outputs: list[str] = []
    quiet = False
    i, seen_status = 0, False
    names: list[str] = []
    while i < len(argv):
        arg = argv[i]
        takes_value = arg in ("-o", "--output") or (not seen_status and arg in ("-c", "--config"))
        if takes_value:
            if i + 1 >= len(argv):
                return None
            if arg in ("-c", "--config"):
                config = argv[i + 1]
            else:
                outputs.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith("--output="):
            outputs.append(arg.partition("=")[2])
        elif not seen_status and arg.startswith("--config="):
            config = arg.partition("=")[2]
        elif arg in ("-q", "--quiet"):
            quiet = True
        elif not seen_status and arg == "--debug":
            pass
        elif arg.startswith("-"):
            return None
        elif not seen_status:
            if arg != "status":
                return None
            seen_status = True
        else:
            names.append(arg)
        i += 1
    if not seen_status or any(o not in _OUTPUTS for o in outputs):
        return None
    return config, (outputs[-1] if outputs else "table"), names, quiet


def _status(config: str | None, output: str, names: list[str], quiet: bool = False) -> int:
    """What the Typer ``status`` command does, without Typer."""
    from ..config import load_config, validate_name
    from ..workspace import Workspace
    from .status import print_statuses

    with Workspace(load_config(config)) as ws:
        checked = [validate_name(n) for n in names]
        return print_statuses(ws, checked or None, output, strict=bool(names), quiet=quiet)


def main() -> None:
    """Console-script entry point: maps every error to one line and an exit code."""
    argv = sys.argv[1:]
    if argv == ["--version"]:
        sys.stdout.write(f"rotatectl {__version__}\n")
        sys.exit(0)
    status = _plain_status(argv)
    if status is None:
        from .app import main as typer_main

        typer_main()
        return
    from ..redact import install_logging_filter

    install_logging_filter()
    guarded(lambda: _status(*status), debug="--debug" in argv)
