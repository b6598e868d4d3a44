"""The command-line interface: parse, load config, call the runner, render.

No business logic lives here. Every error becomes one line on stderr and a
documented exit code; a traceback appears only with ``--debug``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from .. import __version__
from ..errors import ExitCode, RotatectlError, UsageError
from .guard import error_exit, guarded

if TYPE_CHECKING:
    from datetime import datetime

    from ..audit import AuditLog
    from ..config import Config
    from ..engine import Result, Runner, Target
    from ..workspace import Workspace

app = typer.Typer(
    name="rotatectl",
    help="Rotate API keys and other credentials with zero downtime.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # tracebacks (and their locals) only with --debug
    context_settings={"help_option_names": ["-h", "--help"]},
)

OUTPUTS = ("table", "json")

# Typer vendors its own copy of click in recent releases; find its base error class
# through a public name instead of importing a private module.
_CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)

OutputOption = Annotated[
    str | None, typer.Option("--output", "-o", help="table or json.", show_default=False)
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Only problems (for cron).")]


@dataclass
class Options:
    config: str | None = None
    output: str = "table"
    quiet: bool = False
    debug: bool = False


# The subcommand, for the audit log's actor field. Handed to the audit module only
# by _audit_log, so commands that never write the log (status) do not import it.
_invocation: str | None = None


def _audit_log(config: Config) -> AuditLog:
    """``config.audit_log()``, with this invocation's subcommand as the actor's ``via``."""
    from ..audit import set_invocation

    if _invocation:
        set_invocation(_invocation)
    return config.audit_log()


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"rotatectl {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Option(
            "--config", "-c", help="Config file (else $ROTATECTL_CONFIG, ./rotatectl.toml, XDG)."
        ),
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only problems (for cron).")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Rotate API keys and other credentials with zero downtime."""
    if output not in OUTPUTS:
        raise UsageError(f"--output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    ctx.obj = Options(config=config, output=output, quiet=quiet, debug=debug)
    global _invocation
    _invocation = ctx.invoked_subcommand or None


def _opts(ctx: typer.Context, output: str | None = None, quiet: bool = False) -> Options:
    """The global options, with a command's own --output/--quiet taking precedence."""
    obj = ctx.find_root().obj
    assert isinstance(obj, Options)
    if output is not None:
        if output not in OUTPUTS:
            raise UsageError(f"--output must be one of {', '.join(OUTPUTS)}, not {output!r}")
        obj.output = output
    obj.quiet = obj.quiet or quiet
    return obj


def _duration(option: str, text: str | None) -> timedelta | None:
    if text is None:
        return None
    from ..durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from exc


def _workspace(opts: Options) -> Workspace:
    from ..config import load_config
    from ..workspace import Workspace

    return Workspace(load_config(opts.config))


def _runner(ws: Workspace) -> Runner:
    from ..engine import Runner
    from ..ports import SystemClock

    return Runner(SystemClock(), audit=_audit_log(ws.config))


def _validated_names(names: list[str]) -> list[str]:
    from ..config import validate_name

    return [validate_name(n) for n in names]


@app.command()
def rotate(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="Credential names.", show_default=False)],
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait", help="Follow the rotation to the end, or persist and exit."
        ),
    ] = False,
    propagation: Annotated[
        str | None, typer.Option(help="Override the propagation delay, e.g. 30s.")
    ] = None,
    overlap: Annotated[str | None, typer.Option(help="Override the overlap, e.g. 24h.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; change nothing.")
    ] = False,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Start a rotation for each NAME, or continue the one in flight (never both).

    --overlap/--propagation apply to a rotation in flight too, or are refused.
    """
    from ..engine.fleet import follow
    from .follow import TerminalDisplay

    opts = _opts(ctx, output, quiet)
    prop, over = _duration("--propagation", propagation), _duration("--overlap", overlap)
    names = _validated_names(names)
    with _workspace(opts) as ws:
        targets = [ws.target(n) for n in names]
        if not opts.quiet:
            from .. import services

            for note in services.adhoc_notes(ws, names):
                sys.stderr.write(f"note: {note}\n")
        runner = _runner(ws)
        if dry_run:
            results = [
                runner.rotate(t, propagation=prop, overlap=over, dry_run=True) for t in targets
            ]
            _finish(opts, results, summary=False)
        display = TerminalDisplay(speak=opts.output == "table" and not opts.quiet)
        try:
            results = follow(
                runner, targets, propagation=prop, overlap=over, wait=wait, display=display
            )
        except KeyboardInterrupt:
            # The session released its lease on the way out; say where each stands.
            from .. import services
            from ..errors import Interrupted

            raise Interrupted(services.where_it_stands(ws, names)) from None
        if wait and opts.output == "table" and not opts.quiet:
            _print_status(ws, names, opts)
        _finish(opts, results, summary=True, printed=opts.output == "table" and not opts.quiet)


@app.command()
def run(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; change nothing.")
    ] = False,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, max=64, help="Credentials in parallel.")
    ] = 1,
    jitter: Annotated[
        str | None,
        typer.Option(
            help="Before starting, sleep a random time up to this (e.g. 5m; default: no "
            "sleep), unless on a terminal.",
        ),
    ] = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """The cron entry: advance every in-flight rotation, start due ones, destroy expired keys.

    Never sleeps through an overlap: it does what is possible now and exits.
    Each credential is isolated: one failing does not stop the others.
    """
    from ..engine import fleet
    from ..model import Outcome, Result

    opts = _opts(ctx, output, quiet)
    spread = _duration("--jitter", jitter)
    if spread and not dry_run and not sys.stdin.isatty():
        import secrets

        # Many hosts' cron fire at the same second; spreading them spares the store.
        time.sleep(secrets.randbelow(int(spread.total_seconds() * 1000) + 1) / 1000)
    with _workspace(opts) as ws:
        runner = _runner(ws)
        work: list[Target | Result] = []
        for name in ws.names():
            try:
                work.append(ws.target(name))
            except RotatectlError as exc:
                work.append(Result(name, Outcome.FAILED, str(exc)))
        results = fleet.run(runner, work, jobs=jobs, dry_run=dry_run)
        _finish(opts, results, summary=True, run_mode=True)


@app.command()
def emergency(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Credential name.")],
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why (goes into the incident record).")
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    propagation: Annotated[
        str | None, typer.Option(help="Wait this long before promoting (default: none).")
    ] = None,
    output: OutputOption = None,
) -> None:
    """The key leaked: publish and promote a new key now, and retire the old one now."""
    started = time.monotonic()
    opts = _opts(ctx, output)
    prop = _duration("--propagation", propagation)
    if not reason.strip():
        raise UsageError("--reason must say why (it goes into the incident record)")
    name = validate_single(name)
    with _workspace(opts) as ws:
        target = ws.target(name)
        if not target.store.versions(target.path):
            raise UsageError(f"unknown credential {name!r}: no versions in its store")
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError("emergency needs --yes when not run on a terminal")
            typer.confirm(
                f"Revoke the current key of {name} now? Clients still using it will fail",
                abort=True,
            )
        result = _runner(ws).emergency(target, reason, prop, started=started)
    if result.revoked_after is not None and opts.output == "table":
        result.steps.append(
            f"old key revoked {result.revoked_after:.2f}s after the command started"
        )
    if result.revoked_after is not None and any("AUDIT LOG" in w for w in result.warnings):
        result.message += "; the audit log missed part of this emergency (see the warnings)"
    _finish(opts, [result], summary=False)


@app.command()
def rollback(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Credential name.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why.")] = "",
    output: OutputOption = None,
) -> None:
    """Re-promote the key the latest rotation replaced (while it is not destroyed)."""
    _operate(ctx, output, name, lambda runner, target: runner.rollback(target, reason))


@app.command()
def abort(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Credential name.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why.")] = "",
    output: OutputOption = None,
) -> None:
    """Cancel the in-flight rotation before promotion and revoke its new key."""
    _operate(ctx, output, name, lambda runner, target: runner.abort(target, reason))


def _operate(
    ctx: typer.Context,
    output: str | None,
    name: str,
    operation: Callable[[Runner, Target], Result],
) -> NoReturn:
    """Run one runner operation on one credential and finish with its exit code."""
    opts = _opts(ctx, output)
    with _workspace(opts) as ws:
        result = operation(_runner(ws), ws.target(validate_single(name)))
    _finish(opts, [result], summary=False)


@app.command()
def usage(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Credential name.")],
    output: OutputOption = None,
) -> None:
    """What the usage probe sees for each version, and what the gate will decide."""
    from .render import print_usage

    opts = _opts(ctx, output)
    with _workspace(opts) as ws:
        target = ws.target(validate_single(name))
        runner = _runner(ws)
        rows, action = runner.usage_report(target)
        print_usage(target.name, rows, action, runner.clock.now(), opts.output)


@app.command()
def history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Credential name.")],
    output: OutputOption = None,
) -> None:
    """A timeline of the credential's versions and rotations."""
    from ..ports import SystemClock
    from ..report import collect_history
    from .render import print_history

    opts = _opts(ctx, output)
    with _workspace(opts) as ws:
        target = ws.target(validate_single(name))
        found = collect_history(target, SystemClock().now())
    if not found.versions and not found.rotations:
        raise UsageError(f"unknown credential {name!r}: no versions in its store")
    print_history(found, opts.output)


@app.command()
def status(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None, typer.Argument(help="Credential names (default: all).")
    ] = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Credentials, versions, states, ages, next due time and in-flight phase."""
    opts = _opts(ctx, output, quiet)
    with _workspace(opts) as ws:
        _print_status(ws, _validated_names(names or []) or None, opts, strict=bool(names))


def _print_status(
    ws: Workspace, names: list[str] | None, opts: Options, strict: bool = False
) -> None:
    from .status import print_statuses

    code = print_statuses(ws, names, opts.output, strict, quiet=opts.quiet)
    if code:
        raise typer.Exit(code)


@app.command()
def get(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Credential name.")],
    version: Annotated[
        int | None,
        typer.Option("--version-number", "-V", help="A version number instead of the current one."),
    ] = None,
    reveal: Annotated[
        bool, typer.Option("--reveal", help="Print the key even when stdout is a terminal.")
    ] = False,
) -> None:
    """Print the current key to stdout (the only command besides exec that reveals a value).

    To a pipe or file it prints as asked; to a terminal only with --reveal, so a
    key does not end up in scrollback or a screen share by accident.
    """
    opts = _opts(ctx)
    if sys.stdout.isatty() and not reveal:
        raise UsageError("refusing to print a key to a terminal; pipe it, or add --reveal")
    with _workspace(opts) as ws:
        from .. import services

        value = services.read_value(
            ws, validate_single(name), version, "get", _audit_log(ws.config)
        )
    sys.stdout.write(value + "\n")


@app.command(
    name="exec",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def exec_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Credential name.")],
    command: Annotated[list[str], typer.Argument(help="The command to run, after --.")],
    env: Annotated[
        str, typer.Option("--env", "-e", help="Environment variable to set.")
    ] = "ROTATECTL_KEY",
) -> None:
    """Run COMMAND with the current key in an environment variable (never in argv)."""
    opts = _opts(ctx)
    if not env.isidentifier():
        raise UsageError(f"--env: {env!r} is not a valid environment variable name")
    with _workspace(opts) as ws:
        from .. import services

        value = services.read_value(ws, validate_single(name), None, "exec", _audit_log(ws.config))
    program = shutil.which(command[0])
    if program is None:
        from ..errors import CommandNotFoundError

        raise CommandNotFoundError(f"exec: command not found: {command[0]}")
    child_env = dict(os.environ)
    child_env[env] = value
    sys.stdout.flush()
    # Replaces this process (no copy of the value lingers here); no shell is involved.
    os.execve(program, command, child_env)  # noqa: S606


def validate_single(name: str) -> str:
    return _validated_names([name])[0]


@app.command()
def check(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None, typer.Argument(help="Credentials to check for drift (default: all).")
    ] = None,
    adopt: Annotated[
        bool, typer.Option("--adopt", help="Drift found: take the store's state as the truth.")
    ] = False,
    restore: Annotated[
        bool, typer.Option("--restore", help="Drift found: put rotatectl's state back.")
    ] = False,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Validate the config, reach every store and notifier, report missing
    permissions, unset notifier credentials and drift.

    Drift (a store changed behind rotatectl's back) exits 3 and blocks rotations
    of that credential until --adopt or --restore resolves it; both are audited.
    """
    from .render import console, emit_json

    opts = _opts(ctx, output, quiet)
    if adopt and restore:
        raise UsageError("choose one of --adopt and --restore")
    from .. import services

    how = "adopt" if adopt else "restore" if restore else None
    problems: list[RotatectlError] = []
    report: list[dict[str, str]] = []

    def probe(item: str, fn) -> None:  # type: ignore[no-untyped-def]
        try:
            detail = fn() or ""
            report.append({"item": item, "status": "ok", "detail": detail})
        except RotatectlError as exc:
            problems.append(exc)
            report.append({"item": item, "status": "error", "detail": str(exc)})

    with _workspace(opts) as ws:
        cfg = ws.config
        for name in sorted(cfg.stores):
            probe(f"store {name}", lambda n=name: services.check_store(ws, n))
        for name in sorted(cfg.notifiers):
            probe(f"notifier {name}", lambda n=name: services.check_notifier(ws, n))
        for name in sorted(cfg.credentials):
            probe(f"credential {name}", lambda n=name: services.check_target(ws, n))
        for name in _validated_names(names or []) or ws.names():
            probe(
                f"drift {name}",
                lambda n=name: services.check_drift(ws, n, how, lambda: _audit_log(ws.config)),
            )
    where = cfg.source()
    if opts.output == "json":
        emit_json(
            {
                "config": where,
                "state_dir": str(cfg.state_dir),
                "audit_log": str(cfg.audit_file),
                "ok": not problems,
                "checks": report,
            }
        )
    elif not opts.quiet or problems:
        from rich.markup import escape

        out = console(stderr=bool(problems))
        out.print(f"config: {escape(where)}")
        out.print(f"state: {escape(str(cfg.state_dir))}")
        out.print(f"audit: {escape(str(cfg.audit_file))}")
        for row in report:
            mark = "[green]ok[/green]" if row["status"] == "ok" else "[bold red]error[/bold red]"
            # Escaped: messages hold table names ("[stores.aws]") and extras
            # ("rotatectl[aws]") that rich would take for markup and drop.
            detail = f" - {escape(row['detail'])}" if row["detail"] else ""
            out.print(f"  {mark} {escape(row['item'])}{detail}", markup=True)
    if problems:
        # A settings mistake first (2), then an operation failure such as an
        # unreachable store (1), then drift that needs a decision (3).
        codes = {p.exit_code for p in problems}
        for code in (ExitCode.USAGE, ExitCode.FAILED, ExitCode.LOCKED, ExitCode.ATTENTION):
            if code in codes:
                raise typer.Exit(int(code))


@app.command()
def plugins(ctx: typer.Context, output: OutputOption = None) -> None:
    """List the installed adapters (stores, issuers, probes, notifiers)."""
    from .. import registry
    from .render import console, emit_json

    opts = _opts(ctx, output)
    found = {kind: registry.available(kind) for kind in registry.GROUPS}
    if opts.output == "json":
        emit_json(
            {
                kind: [{"type": t, "target": target} for t, target in items.items()]
                for kind, items in found.items()
            }
        )
        return
    out = console()
    for kind, items in found.items():
        out.print(f"[bold]{kind}s[/bold]", markup=True)
        for type_name, target in items.items():
            out.print(f"  {type_name:<22} {target}")


audit_app = typer.Typer(help="Show or verify the tamper-evident audit log.", no_args_is_help=False)
app.add_typer(audit_app, name="audit")


def _since(option: str, text: str | None) -> datetime | None:
    """An ISO time, or a duration meaning that long ago."""
    if text is None:
        return None
    from ..model import parse_iso, utcnow

    try:
        return parse_iso(text)
    except ValueError:
        delta = _duration(option, text)
        assert delta is not None
        return utcnow() - delta


@audit_app.callback(invoke_without_command=True)
def audit_main(ctx: typer.Context, output: OutputOption = None) -> None:
    """Show the audit log (the default) or verify it."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(audit_show, ctx=ctx, output=output)


@audit_app.command("show")
def audit_show(
    ctx: typer.Context,
    credential: Annotated[str | None, typer.Option("--credential", help="Only this one.")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time or a duration ago (24h).")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time or a duration ago.")] = None,
    output: OutputOption = None,
) -> None:
    """Records, oldest first, filtered by credential and time. Torn lines are skipped."""
    from .render import print_audit

    opts = _opts(ctx, output)
    log = _audit_log(_load(opts))
    skipped: list[int] = []
    records = log.show(credential, _since("--since", since), _since("--until", until), skipped)
    print_audit(records, opts.output)
    if skipped:
        numbers = ", ".join(str(n) for n in skipped[:10]) + (", ..." if len(skipped) > 10 else "")
        what = f"line {numbers} is not a whole record"
        if len(skipped) > 1:
            what = f"lines {numbers} are not whole records"
        sys.stderr.write(
            f"rotatectl: audit log {log.path}: {what} (a torn write, or damage), skipped;"
            " `rotatectl audit verify` checks the log\n"
        )


@audit_app.command("verify")
def audit_verify(ctx: typer.Context, output: OutputOption = None) -> None:
    """Check the hash chain; name the first record that was edited, removed, moved or added,
    or else any torn record (an interrupted write). Exit 3 for either."""
    from .render import emit_json

    opts = _opts(ctx, output)
    log = _audit_log(_load(opts))
    count, problem = log.verify()
    if opts.output == "json":
        emit_json(
            {
                "log": str(log.path),
                "records": count,
                "ok": problem is None,
                "problem": str(problem) if problem else None,
                "torn": list(problem.torn) if problem else [],
            }
        )
    elif problem is None and not opts.quiet:
        keyed = "HMAC-keyed" if log.key else "not keyed: set $ROTATECTL_AUDIT_KEY to key it"
        sys.stdout.write(f"audit log {log.path}: {count} records, chain intact ({keyed})\n")
    if problem is not None:
        if opts.output != "json":
            sys.stderr.write(f"rotatectl: audit log {log.path}: {problem}\n")
        raise typer.Exit(int(ExitCode.ATTENTION))


def _load(opts: Options) -> Config:
    from ..config import load_config

    return load_config(opts.config)


def _finish(
    opts: Options,
    results: list[Result],
    *,
    summary: bool,
    printed: bool = False,
    run_mode: bool = False,
) -> NoReturn:
    from ..model import overall_exit
    from ..ports import SystemClock
    from .render import print_results

    # A credential locked by another runner is that runner's to advance: not a failure of cron.
    code = overall_exit(results, locked_is_ok=run_mode)
    if not printed or opts.output == "json":
        print_results(
            results,
            SystemClock().now(),
            opts.output,
            quiet=opts.quiet,
            summary=summary,
            exit_code=int(code),
        )
    raise typer.Exit(int(code))


# Global options that take a value, and those that do not (see main_options).
_VALUED = frozenset(("-c", "--config", "-o", "--output"))
_FLAGS = frozenset(("-q", "--quiet", "--debug"))


def _invoked(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` when only plain global options precede it.

    None when unsure (an abbreviated, combined or unknown option, --help,
    --version): then the whole command tree is built, as always.
    """
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _VALUED:
            i += 2
        elif arg in _FLAGS or arg.startswith(("--config=", "--output=")):
            i += 1
        elif arg.startswith("-"):
            return None
        else:
            return arg
    return None


def _narrow_to(name: str | None) -> None:
    """Register only the invoked command, so Typer builds one command, not all of them.

    Typer builds a click command (evaluating the signature) for every registered
    command on each start; a command line naming one of them needs only that one.
    Anything else (no command, a typo, --help of the group) keeps the full tree,
    so group help and "No such command" with suggestions are unchanged.
    """
    if name is None:
        return
    from typer.main import get_command_name

    commands = [
        c
        for c in app.registered_commands
        if (c.name or get_command_name(c.callback.__name__ if c.callback else "")) == name
    ]
    groups = [g for g in app.registered_groups if g.name == name]
    if len(commands) + len(groups) == 1:
        app.registered_commands = commands
        app.registered_groups = groups


def main() -> None:
    """The Typer CLI (``cli.main`` answers ``--version`` and plain ``status`` before it):
    maps every error to one line and an exit code."""
    from ..redact import install_logging_filter

    argv = sys.argv[1:]
    debug = "--debug" in argv
    install_logging_filter()
    _narrow_to(_invoked(argv))

    def call() -> int:
        try:
            rv = app(standalone_mode=False)
        except typer.Exit as exc:  # pragma: no cover - click returns it instead
            return int(exc.exit_code)
        except typer.Abort:
            error_exit("aborted", ExitCode.INTERRUPTED)
        except _CLICK_ERROR as exc:
            if debug:
                raise
            message = exc.format_message().replace("\n", " ")  # type: ignore[attr-defined]
            # click prints the help of a bare `rotatectl` and raises with no message.
            error_exit(f"{message or 'no command given'} (see --help)", ExitCode.USAGE)
        if rv == ExitCode.INTERRUPTED:
            # Typer turns Ctrl-C in a command into a silent exit 130.
            error_exit("interrupted; `rotatectl run` resumes anything left in flight", rv)
        return rv if isinstance(rv, int) else 0

    guarded(call, debug=debug)
