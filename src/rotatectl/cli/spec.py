"""The command line, declared once: its commands (and the modules that hold them)
and the options more than one parser reads.

Two parsers read this module. The Typer app (:mod:`.app`) builds every command,
its help and shell completion from it; the entry point (:mod:`.main`) answers
``--version`` and a plain ``status`` from it without importing Typer, because
importing Typer would cost more than the work. :func:`parse` is that second
parser: it reads any command line made of the options declared here, and returns
None for anything else, which then goes to Typer. A differential test runs every
option declared here through both parsers.

Imports nothing: ``--version`` reads it.
"""

from __future__ import annotations

# Not dataclasses nor typing: importing them would double the cost of `--version`.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


class Opt:
    """One option: its flags (long first), what it holds and its help.

    ``value``: the option takes a value (else it is a flag). ``choices``: the
    values it accepts (checked by the command, so both parsers report alike).
    """

    __slots__ = ("choices", "dest", "flags", "help", "metavar", "value")

    def __init__(
        self,
        dest: str,
        flags: tuple[str, ...],
        help: str,
        value: bool = False,
        metavar: str | None = None,
        choices: tuple[str, ...] = (),
    ) -> None:
        self.dest, self.flags, self.help = dest, flags, help
        self.value, self.metavar, self.choices = value, metavar, choices

    def __repr__(self) -> str:
        return f"Opt({self.flags[0]!r})"

    def typer(self, **extra: Any) -> Any:
        """This option as a ``typer.Option`` (imports Typer: only the app calls it)."""
        import typer

        if self.metavar:
            extra.setdefault("metavar", self.metavar)
        return typer.Option(*self.flags, help=self.help, **extra)


OUTPUTS = ("table", "json")

CONFIG = Opt(
    "config",
    ("--config", "-c"),
    "Config file (else $ROTATECTL_CONFIG, ./rotatectl.toml, $XDG_CONFIG_HOME/rotatectl/).",
    value=True,
    metavar="FILE",
)
OUTPUT = Opt("output", ("--output", "-o"), "table or json.", True, "table|json", OUTPUTS)
QUIET = Opt("quiet", ("--quiet", "-q"), "Print only what needs attention (for cron).")
DEBUG = Opt("debug", ("--debug",), "Show tracebacks.")
VERSION = Opt("version", ("--version",), "Print the version and exit.")

WAIT = Opt("wait", ("--wait",), "Follow the rotation to the end, or persist and exit.")
NO_WAIT = Opt("no_wait", ("--no-wait",), "Persist and exit at the first wait (the default).")
PROPAGATION = Opt(
    "propagation",
    ("--propagation",),
    "Override the propagation delay, e.g. 30s.",
    value=True,
    metavar="DURATION",
)
OVERLAP = Opt(
    "overlap", ("--overlap",), "Override the overlap, e.g. 24h.", value=True, metavar="DURATION"
)
DRY_RUN = Opt("dry_run", ("--dry-run",), "Print the plan; change nothing.")

# Before the command: CONFIG, OUTPUT, QUIET, DEBUG, VERSION. After a reporting
# command: OUTPUT and QUIET again (the command's own win over the global ones).
GLOBAL = (CONFIG, OUTPUT, QUIET, DEBUG, VERSION)
REPORTING = (OUTPUT, QUIET)

# Every command, in the order --help lists them, with the module that defines it.
COMMANDS: dict[str, str] = {
    "rotate": "rotation",
    "run": "rotation",
    "emergency": "operations",
    "rollback": "operations",
    "abort": "operations",
    "supply": "person",
    "confirm": "person",
    "usage": "reports",
    "history": "reports",
    "status": "reports",
    "get": "values",
    "exec": "values",
    "check": "check",
    "issuer-test": "check",
    "plugins": "check",
    "audit": "audit",
    "db": "database",
}

# The commands the entry point runs without Typer, with the options they take.
FAST: dict[str, tuple[Opt, ...]] = {
    "status": REPORTING,
    "rotate": (WAIT, NO_WAIT, PROPAGATION, OVERLAP, DRY_RUN, *REPORTING),
}
# Those of them that take at least one argument (Typer reports its absence).
NEEDS_ARGS = frozenset({"rotate"})


class Parsed:
    """A command line :func:`parse` understood: the global options' values, the
    command's own, and its positional arguments."""

    __slots__ = ("args", "command", "globals", "options")

    def __init__(
        self,
        command: str | None,
        globals: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.command = command
        self.globals = globals if globals is not None else {}
        self.options = options if options is not None else {}
        self.args = args if args is not None else []

    def _key(self) -> tuple[Any, ...]:
        return (self.command, self.globals, self.options, self.args)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Parsed) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dataclass

    def __repr__(self) -> str:
        return "Parsed({!r}, {!r}, {!r}, {!r})".format(*self._key())

    def get(self, opt: Opt, default: Any = None) -> Any:
        """The option's value: the command's own, else the global one, else ``default``
        (a flag given in either place is set)."""
        if not opt.value:
            return bool(self.options.get(opt.dest) or self.globals.get(opt.dest))
        return self.options.get(opt.dest, self.globals.get(opt.dest, default))


def _take(argv: Sequence[str], i: int, opts: Sequence[Opt], into: dict[str, Any]) -> int | None:
    """Read the option at ``argv[i]`` into ``into``; the next index, or None when
    it is not one of ``opts`` in a form this parser is sure of."""
    arg = argv[i]
    name, eq, attached = arg.partition("=")
    for opt in opts:
        if name not in opt.flags:
            continue
        if not opt.value:
            if eq:
                return None
            into[opt.dest] = True
            return i + 1
        if eq:
            if not name.startswith("--"):
                return None  # -o=json: click reads "=json"; leave it to Typer
            into[opt.dest] = attached
            return i + 1
        if i + 1 >= len(argv):
            return None
        into[opt.dest] = argv[i + 1]
        return i + 2
    return None


def parse(argv: Sequence[str], commands: dict[str, tuple[Opt, ...]] = FAST) -> Parsed | None:
    """``[GLOBAL...] [COMMAND [OPTION | ARG]...]`` for the options declared here.

    None when unsure: an option not declared for that place, an abbreviated or
    combined flag, ``--``, ``--help``, a value outside an option's choices, a
    command not in ``commands``, no argument to a command that needs one, or both
    ``--wait`` and ``--no-wait``. ``--version`` among the global options is
    answered (``command`` "--version") as Typer's eager option is, whatever follows.
    """
    parsed = Parsed(command=None)
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        nxt = _take(argv, i, GLOBAL, parsed.globals)
        if nxt is None:
            return None
        i = nxt
    if parsed.globals.get(VERSION.dest):
        parsed.command = VERSION.flags[0]
        return parsed
    if i >= len(argv) or argv[i] not in commands:
        return None
    parsed.command = argv[i]
    j = i + 1
    while j < len(argv):
        arg = argv[j]
        if arg.startswith("-"):
            nxt = _take(argv, j, commands[parsed.command], parsed.options)
            if nxt is None:
                return None
            j = nxt
        else:
            parsed.args.append(arg)
            j += 1
    for place in (parsed.globals, parsed.options):
        for opt in (*GLOBAL, *commands[parsed.command]):
            if opt.choices and opt.dest in place and place[opt.dest] not in opt.choices:
                return None
    if parsed.command in NEEDS_ARGS and not parsed.args:
        return None
    if WAIT.dest in parsed.options and NO_WAIT.dest in parsed.options:
        return None  # the last of the two wins, in Typer: its to read
    return parsed
