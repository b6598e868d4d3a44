"""``audit show`` (the default) and ``audit verify``: the tamper-evident audit log."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from ...errors import ExitCode
from ..common import OutputOption, QuietOption, audit_log, command_app, duration, load, opts

if TYPE_CHECKING:
    from datetime import datetime

app = command_app(
    name="audit", help="Show or verify the tamper-evident audit log.", no_args_is_help=False
)

Since = Annotated[
    str | None,
    typer.Option(help="ISO time, or a duration ago (e.g. 24h).", metavar="TIME|DURATION"),
]


def _since(option: str, text: str | None) -> datetime | None:
    """An ISO time, or a duration meaning that long ago."""
    if text is None:
        return None
    from ...model import parse_iso, utcnow

    try:
        return parse_iso(text)
    except ValueError:
        delta = duration(option, text)
        assert delta is not None
        return utcnow() - delta


@app.callback(invoke_without_command=True)
def audit_main(ctx: typer.Context, output: OutputOption = None, quiet: QuietOption = False) -> None:
    """Show the audit log (the default) or verify it."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(audit_show, ctx=ctx, output=output, quiet=quiet)
    else:
        opts(ctx, output, quiet)


@app.command("show")
def audit_show(
    ctx: typer.Context,
    credential: Annotated[
        str | None, typer.Option("--credential", help="Only this one.", metavar="NAME")
    ] = None,
    since: Since = None,
    until: Since = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Records, oldest first, filtered by credential and time. Torn lines are skipped.

    With -q, only the records that need attention: failures and emergencies.
    """
    from ..render import print_audit

    o = opts(ctx, output, quiet)
    log = audit_log(o, load(o))
    skipped: list[int] = []
    records = log.show(credential, _since("--since", since), _since("--until", until), skipped)
    print_audit(records, o.output, quiet=o.quiet)
    if skipped:
        numbers = ", ".join(str(n) for n in skipped[:10]) + (", ..." if len(skipped) > 10 else "")
        what = f"line {numbers} is not a whole record"
        if len(skipped) > 1:
            what = f"lines {numbers} are not whole records"
        sys.stderr.write(
            f"rotatectl: audit log {log.path}: {what} (a torn write, or damage), skipped;"
            " `rotatectl audit verify` checks the log\n"
        )


@app.command("verify")
def audit_verify(
    ctx: typer.Context, output: OutputOption = None, quiet: QuietOption = False
) -> None:
    """Check the hash chain; name the first record that was edited, removed, moved or added,
    or else any torn record (an interrupted write). Exit 3 for either."""
    from ..render import emit_json

    o = opts(ctx, output, quiet)
    log = audit_log(o, load(o))
    count, problem = log.verify()
    if o.output == "json":
        emit_json(
            {
                "log": str(log.path),
                "records": count,
                "ok": problem is None,
                "problem": str(problem) if problem else None,
                "torn": list(problem.torn) if problem else [],
            }
        )
    elif problem is None and not o.quiet:
        keyed = "HMAC-keyed" if log.key else "not keyed: set $ROTATECTL_AUDIT_KEY to key it"
        sys.stdout.write(f"audit log {log.path}: {count} records, chain intact ({keyed})\n")
    if problem is not None:
        if o.output != "json":
            sys.stderr.write(f"rotatectl: audit log {log.path}: {problem}\n")
        raise typer.Exit(int(ExitCode.ATTENTION))
