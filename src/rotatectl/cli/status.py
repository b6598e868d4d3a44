"""``status``: read every credential's state and print it. Needs neither Typer nor rich
(to a pipe), so the entry point (:mod:`rotatectl.cli.main`) runs it without Typer and
the Typer command (:mod:`rotatectl.cli.commands.reports`) runs the same function."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..errors import ExitCode, RotatectlError

if TYPE_CHECKING:
    from ..workspace import Workspace


def run_status(config: str | None, names: list[str], output: str, quiet: bool = False) -> int:
    """``rotatectl status [NAME...]``: load the config, print, return the exit code."""
    from ..config import load_config, validate_name
    from ..workspace import Workspace

    with Workspace(load_config(config)) as ws:
        checked = [validate_name(n) for n in names]
        return print_statuses(
            ws, checked or None, output, strict=bool(names), quiet=quiet, where=True
        )


def print_statuses(
    ws: Workspace,
    names: list[str] | None,
    output: str,
    strict: bool = False,
    quiet: bool = False,
    where: bool = False,
) -> int:
    """Print the status of ``names`` (default: all); the exit code (0, 1 or 3).

    ``strict``: the names were given, so an undeclared one with nothing in its
    store is an error (UnknownCredentialError), not an empty row. ``quiet``: only
    the credentials that need attention (nothing at all when none does). ``where``:
    end with where the config, the state and the audit log are (not when quiet).
    """
    from ..ports import SystemClock
    from ..report import collect_statuses
    from .render import print_status

    now = SystemClock().now()
    views = []
    failed: RotatectlError | None = None
    for name in names or ws.names():
        try:
            views.append(ws.view(name))
        except RotatectlError as exc:
            failed = exc  # raised below, after an unknown credential named before it
            break
    statuses = collect_statuses(views, now)  # batched reads where the store offers them
    for name, st in zip((v.name for v in views), statuses, strict=True):
        unknown = strict and not st.versions and st.rotation is None and not st.error
        if unknown and not ws.credential(name).declared:
            raise ws.unknown(name)
    if failed is not None:
        raise failed
    shown = [st for st in statuses if st.needs_attention] if quiet else statuses
    if shown or not quiet or output == "json":
        print_status(shown, now, output, ws.config if where and not quiet else None)
    broken = [st for st in statuses if st.error]
    if broken:
        for st in broken:
            sys.stderr.write(f"rotatectl: error: {st.name}: {st.error}\n")
        return int(ExitCode.FAILED)
    if any(st.drift for st in statuses):
        # Changed behind rotatectl's back: a human decides (check --adopt / --restore).
        return int(ExitCode.ATTENTION)
    return int(ExitCode.OK)
