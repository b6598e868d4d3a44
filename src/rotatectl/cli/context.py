"""The steps between parsing a command line and the service layer, without Typer: the
global options, loading the workspace, building the runner, and ending with the
results' exit code. The Typer commands (:mod:`.common`) and the entry point's fast
path (:mod:`.main`) both use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from ..errors import UsageError
from . import spec

if TYPE_CHECKING:
    from ..audit import AuditLog
    from ..config import Config
    from ..engine import Result, Runner
    from ..workspace import Workspace


@dataclass
class Options:
    """The global options, and the subcommand invoked (the audit log's ``via``)."""

    config: str | None = None
    output: str = "table"
    quiet: bool = False
    debug: bool = False
    invoked: str | None = None


def check_output(output: str) -> str:
    """``output`` if it is one of spec.OUTPUTS; UsageError naming them if not."""
    if output not in spec.OUTPUTS:
        raise UsageError(f"--output must be one of {', '.join(spec.OUTPUTS)}, not {output!r}")
    return output


def duration(option: str, text: str | None) -> timedelta | None:
    """``text`` parsed as a duration (None stays None); UsageError naming ``option``."""
    if text is None:
        return None
    from ..durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from exc


def load(opts: Options) -> Config:
    """The config file the options name (or the default one); ConfigError."""
    from ..config import load_config

    return load_config(opts.config)


def workspace(opts: Options) -> Workspace:
    """The workspace of the config file the options name."""
    from ..workspace import Workspace

    return Workspace(load(opts))


def audit_log(opts: Options, config: Config) -> AuditLog:
    """``config.audit_log()``, with this invocation's subcommand as the actor's ``via``."""
    return config.audit_log(opts.invoked or "api")


def runner(opts: Options, ws: Workspace) -> Runner:
    """The engine's runner on the system clock, auditing as this invocation."""
    from ..engine import Runner
    from ..ports import SystemClock

    return Runner(SystemClock(), audit=audit_log(opts, ws.config))


def validated(names: list[str]) -> list[str]:
    """``names``, each checked (UsageError for an invalid one)."""
    from ..config import validate_name

    return [validate_name(n) for n in names]


def validated_one(name: str) -> str:
    return validated([name])[0]


def report(
    opts: Options,
    results: list[Result],
    *,
    summary: bool,
    printed: bool = False,
    run_mode: bool = False,
) -> int:
    """Print ``results`` (unless the display already did); their exit code."""
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
    return int(code)
