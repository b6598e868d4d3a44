"""The Typer app: the global options, and a command group that loads only the
module of the command invoked (:data:`.spec.COMMANDS`).

Parsing and rendering only: the commands call the service layer and the runner.
Every error becomes one line on stderr and a documented exit code; a traceback
appears only with ``--debug``.
"""

from __future__ import annotations

import sys
from functools import cache
from importlib import import_module
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperGroup

from .. import __version__
from ..errors import ExitCode
from . import spec
from .common import Options, check_output
from .guard import error_exit, guarded

# Typer vendors its own copy of click in recent releases; find its base error class
# through a public name instead of importing a private module.
_CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


@cache
def _module_group(module: str) -> Any:
    """The click group of the commands one module of :mod:`.commands` registers."""
    found = import_module(f"{__package__}.commands.{module}")
    group = typer.main.get_group(found.app)
    for command in [group, *group.commands.values()]:
        _plain_arguments(command)
    return group


_STRING = typer.main.get_click_type(annotation=str, parameter_info=typer.models.ArgumentInfo())


class _Untyped(type(_STRING)):  # type: ignore[misc]
    """A string whose type the help does not print (Typer would show ``<str>``)."""

    def get_metavar(self, *args: Any, **kwargs: Any) -> str:
        return ""


def _plain_arguments(command: Any) -> None:
    """Say an argument as declared (``NAME...``), where Typer would print a required
    one as ``{NAME...}`` in the usage line and its type as ``<str>``."""
    for param in command.params:
        if isinstance(param, TyperArgument) and param.metavar:
            declared = param.metavar
            param.make_metavar = lambda *args, _m=declared, **kwargs: _m  # type: ignore[method-assign]
            param.type = _Untyped()


class LazyGroup(TyperGroup):
    """A group whose commands are built from their module when first asked for, so a
    command line builds the one command it names (``--help`` and completion, which
    list every command, build them all)."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(spec.COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        module = spec.COMMANDS.get(cmd_name)
        if module is None:
            return None
        group = _module_group(module)
        if group.name == cmd_name:  # a module that is a group of its own (audit)
            return group
        return group.get_command(ctx, cmd_name)


app = typer.Typer(
    name="rotatectl",
    cls=LazyGroup,
    help="Rotate API keys and other credentials with zero downtime.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # tracebacks (and their locals) only with --debug
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"rotatectl {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[str | None, spec.CONFIG.typer()] = None,
    output: Annotated[str, spec.OUTPUT.typer()] = "table",
    quiet: Annotated[bool, spec.QUIET.typer()] = False,
    debug: Annotated[bool, spec.DEBUG.typer()] = False,
    version: Annotated[bool, spec.VERSION.typer(callback=_version, is_eager=True)] = False,
) -> None:
    """Rotate API keys and other credentials with zero downtime."""
    ctx.obj = Options(
        config=config,
        output=check_output(output),
        quiet=quiet,
        debug=debug,
        invoked=ctx.invoked_subcommand or None,
    )


def main() -> None:
    """The Typer CLI (:mod:`.main` answers ``--version`` and plain ``status`` before
    it): maps every error to one line and an exit code."""
    from ..redact import install_logging_filter

    argv = sys.argv[1:]
    debug = "--debug" in argv
    install_logging_filter()

    def call() -> int:
        try:
            # Named, not taken from argv[0]: `python -m rotatectl` would otherwise
            # name the completion scripts and their variable after "python -m".
            rv = app(prog_name="rotatectl", standalone_mode=False)
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
