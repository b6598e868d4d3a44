"""Errors from the environment (issue 17): permissions, HOME, the umask.

Each case runs the real CLI in a subprocess and expects exactly one line on
stderr, ``rotatectl: error: ...``, naming the path and what to do; the exit code
the README's table gives it (2: the setup must be fixed before anything can
run; 1: the audit log refused an action); and nothing half-written.

**Permission denials are real, as root too.** The suite runs as root here and
in CI (a Debian container), where mode 000 means nothing: CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH override it. So the CLI child drops both from its
capability bounding set just before the exec (``prctl(PR_CAPBSET_DROP)``, as
tests/test_audit_durability.py does); after the exec it has neither, and the
kernel checks the mode bits against it as against any user: a real EACCES from
the real system calls. Running the child as ``nobody`` (``setpriv``) was the
other way, but it needs an interpreter and site-packages ``nobody`` can read,
which a Python under /root (pyenv here) is not. As a non-root user the drop is
skipped and the modes apply as they are. HOME as a regular file needs no such
help: ENOTDIR is the same for everyone.
"""

from __future__ import annotations

import ctypes
import os
import stat
import subprocess
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rotatectl.stores.local import LocalStore

from .conftest import Cli, CliRun

NAME = "demo/api"
STATE_HINT = "set ROTATECTL_STATE_DIR to a directory this user can write"
XDG_HINT = "set XDG_STATE_HOME or ROTATECTL_STATE_DIR to a directory this user can write"


def _child(umask: int | None, deny: bool) -> Callable[[], None]:
    """What the CLI child does before its exec: set the umask, drop root's overrides."""

    def setup() -> None:
        if umask is not None:
            os.umask(umask)
        if deny and os.geteuid() == 0:
            libc = ctypes.CDLL(None, use_errno=True)
            for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
                if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                    raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    return setup


def run(
    cli: Cli,
    *args: str,
    env: dict[str, str] | None = None,
    unset: Iterable[str] = (),
    deny: bool = True,
    umask: int | None = None,
) -> CliRun:
    """``rotatectl ARGS`` as the harness runs it, with variables set or unset, the
    child's umask, and (``deny``) without root's power to ignore file modes."""
    gone = set(unset)
    environ = {k: v for k, v in {**cli.env, **(env or {})}.items() if k not in gone}
    proc = subprocess.run(
        cli.argv(*args),
        cwd=cli.cwd,
        env=environ,
        preexec_fn=_child(umask, deny),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return cli.record(tuple(args), proc.returncode, proc.stdout, proc.stderr)


def error(result: CliRun) -> str:
    """The one line on stderr (there must be exactly one, and no traceback)."""
    assert "Traceback" not in result.err, result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


@contextmanager
def mode(path: Path, bits: int) -> Iterator[None]:
    """``path`` at mode ``bits`` for the block, then back as it was."""
    before = stat.S_IMODE(path.stat().st_mode)
    path.chmod(bits)
    try:
        yield
    finally:
        path.chmod(before)


def status(cli: Cli) -> str:
    result = cli("status", "-o", "json")
    assert result.code in (0, 3), result.err
    return result.out


# -- the config file and its directory ---------------------------------------------------


def test_an_unreadable_config_file_is_one_line_exit_2(cli: Cli) -> None:
    file = cli.cwd / "rotatectl.toml"
    file.write_text("[defaults]\n")
    with mode(file, 0):
        result = run(cli, "status")
    assert result.code == 2
    assert error(result) == (
        f"rotatectl: error: {file}: cannot read: Permission denied; give this user read "
        "access to it, or name another config file with --config"
    )
    assert result.out == ""


@pytest.mark.parametrize("blocked", ["xdg", "xdg/rotatectl"])
def test_an_unsearchable_config_directory_is_one_line_exit_2(cli: Cli, blocked: str) -> None:
    """$XDG_CONFIG_HOME/rotatectl, or $XDG_CONFIG_HOME itself, that this user cannot enter:
    rotatectl cannot tell whether a config file is there, so it does not guess."""
    xdg = cli.root / "xdg"
    file = xdg / "rotatectl" / "rotatectl.toml"
    file.parent.mkdir(parents=True)
    file.write_text("[defaults]\n")
    where = cli.root / blocked
    with mode(where, 0):
        result = run(cli, "status", env={"XDG_CONFIG_HOME": str(xdg)})
    assert result.code == 2
    assert error(result) == (
        f"rotatectl: error: {file}: cannot look for a config file: {where}: Permission "
        f"denied; give this user access to {where}, or name a config file with --config "
        "or $ROTATECTL_CONFIG"
    )
    assert result.out == ""


def test_a_config_file_named_behind_an_unsearchable_directory_is_one_line_exit_2(
    cli: Cli,
) -> None:
    where = cli.root / "etc"
    file = where / "rotatectl.toml"
    where.mkdir()
    file.write_text("[defaults]\n")
    with mode(where, 0):
        result = run(cli, "--config", str(file), "status")
    assert result.code == 2
    assert error(result) == (
        f"rotatectl: error: --config: config file {file}: cannot look for it: {where}: "
        f"Permission denied; give this user access to {where}"
    )


# -- HOME and the default state directory ------------------------------------------------


def test_home_unset_says_which_variable_to_set(cli: Cli) -> None:
    result = run(cli, "status", unset=("HOME", "ROTATECTL_STATE_DIR"))
    assert result.code == 2
    assert error(result) == (
        "rotatectl: error: HOME is not set, so there is no default state directory "
        f"(~/.local/state/rotatectl); {XDG_HINT}"
    )
    # Doing what it says works, HOME or not.
    state = cli.root / "xdg-state"
    result = run(
        cli,
        "rotate",
        NAME,
        env={"XDG_STATE_HOME": str(state)},
        unset=("HOME", "ROTATECTL_STATE_DIR"),
    )
    assert result.code == 0, result.err
    assert (state / "rotatectl" / "state.db").is_file()


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_home_that_is_no_directory_says_which_variable_to_set(cli: Cli, kind: str) -> None:
    home = cli.root / "nohome"
    if kind == "a file":
        home.write_text("")
    result = run(cli, "rotate", NAME, env={"HOME": str(home)}, unset=("ROTATECTL_STATE_DIR",))
    assert result.code == 2
    problem = "does not exist" if kind == "missing" else "is not a directory"
    assert error(result) == (
        f"rotatectl: error: HOME={home} {problem}, so the default state directory "
        f"{home}/.local/state/rotatectl cannot be created; {XDG_HINT}, or HOME to an "
        "existing one"
    )
    assert home.exists() == (kind == "a file"), "rotatectl created a home directory"


def test_an_unwritable_home_says_which_variable_to_set_and_creates_nothing(cli: Cli) -> None:
    home = Path(cli.env["HOME"])
    with mode(home, 0o555):
        result = run(cli, "rotate", NAME, unset=("ROTATECTL_STATE_DIR",))
    assert result.code == 2
    assert error(result) == (
        f"rotatectl: error: state directory {home}/.local/state/rotatectl: cannot create "
        f"{home}/.local: Permission denied; {XDG_HINT}"
    )
    assert list(home.iterdir()) == []


# -- the local store's directory and file ------------------------------------------------


def test_an_unwritable_state_directory_is_one_line_exit_2(cli: Cli) -> None:
    state = cli.state_dir
    state.mkdir()
    with mode(state, 0o555):
        result = run(cli, "rotate", NAME)
    assert result.code == 2
    assert error(result) == (
        f"rotatectl: error: local store {state / 'state.db'}: cannot create it: Permission "
        f"denied; give this user write access to {state}, or {STATE_HINT}"
    )
    assert list(state.iterdir()) == []


def test_a_state_directory_that_cannot_be_created_is_one_line_exit_2(cli: Cli) -> None:
    parent = cli.root / "locked"
    parent.mkdir()
    state = parent / "state"
    with mode(parent, 0o555):
        result = run(cli, "status", env={"ROTATECTL_STATE_DIR": str(state)})
    assert result.code == 2
    assert error(result) == (
        f"rotatectl: error: state directory {state}: cannot create it: Permission denied; "
        f"{STATE_HINT}"
    )
    assert not state.exists()


@pytest.mark.parametrize("command", [("status",), ("rotate", NAME)])
def test_a_store_whose_directory_became_read_only_is_one_line_exit_2(
    cli: Cli, command: tuple[str, ...]
) -> None:
    """SQLite keeps the -wal and -shm files next to the store: its directory must be
    writable even to read it."""
    assert cli("rotate", NAME).code == 0
    before = status(cli)
    state, db = cli.state_dir, cli.state_dir / "state.db"
    with mode(state, 0o555):
        result = run(cli, *command)
    assert result.code == 2
    assert error(result) == (
        f"rotatectl: error: local store {db}: cannot open it: {state} is not writable by "
        "this user, and SQLite keeps the store's -wal and -shm files there; give this user "
        f"write access to {state}"
    )
    assert status(cli) == before


def test_a_configured_store_behind_an_unsearchable_directory_is_one_line_exit_2(
    cli: Cli,
) -> None:
    hidden = cli.root / "hidden"
    (hidden / "sub").mkdir(parents=True)
    db = hidden / "sub" / "keys.db"
    file = cli.cwd / "rotatectl.toml"
    file.write_text(f'[stores.local]\ntype = "local"\npath = "{db}"\n')
    with mode(hidden, 0):
        result = run(cli, "status")
    assert result.code == 2
    assert error(result) == (
        f"rotatectl: error: {file}: [stores.local] path: {db}: cannot look at it: Permission "
        "denied; give this user access to every directory on its path"
    )
    assert not db.exists()


def test_an_unreadable_store_file_is_one_line_exit_2(cli: Cli) -> None:
    assert cli("rotate", NAME).code == 0
    before = status(cli)
    db = cli.state_dir / "state.db"
    with mode(db, 0):
        result = run(cli, "status")
    assert result.code == 2
    assert error(result) == (
        f"rotatectl: error: local store {db}: cannot open it for reading and writing: "
        "Permission denied; give this user read and write access to it"
    )
    assert status(cli) == before


# -- the audit log -------------------------------------------------------------------------


def _log_bytes(log: Path) -> tuple[bytes, bytes]:
    return log.read_bytes(), log.with_name(log.name + ".head").read_bytes()


@pytest.mark.parametrize(
    "command",
    [("rotate", NAME), ("rotate", NAME, "other/api"), ("rotate", NAME, "--wait"), ("abort", NAME)],
    ids=["rotate", "rotate-two", "rotate-wait", "abort"],
)
def test_an_unwritable_audit_log_refuses_the_action_and_changes_nothing(
    cli: Cli, command: tuple[str, ...]
) -> None:
    assert cli("rotate", NAME).code == 0
    assert cli("rotate", "other/api").code == 0
    if command[0] == "abort":  # something to abort: a rotation in flight
        assert cli("rotate", NAME, "--propagation", "1h").code == 0
    before = status(cli)
    log = cli.state_dir / "audit.jsonl"
    written = _log_bytes(log)
    with mode(log, 0o400):
        result = run(cli, *command)
    assert result.code == 1
    assert error(result) == (
        f"rotatectl: error: audit log {log}: Permission denied; give this user write access "
        f"to it and to {log.parent}, or set path in [audit]"
    )
    assert result.out == ""
    assert status(cli) == before, "the store changed although the action was refused"
    assert _log_bytes(log) == written


def test_an_audit_log_in_an_unwritable_directory_refuses_the_action(cli: Cli) -> None:
    """The log itself is writable, but its head file is replaced by a rename there."""
    logs = cli.root / "logs"
    logs.mkdir()
    log = logs / "audit.jsonl"
    (cli.cwd / "rotatectl.toml").write_text(f'[audit]\npath = "{log}"\n')
    assert cli("rotate", NAME).code == 0
    before, written = status(cli), _log_bytes(log)
    with mode(logs, 0o555):
        result = run(cli, "rotate", NAME)
    assert result.code == 1
    assert error(result) == (
        f"rotatectl: error: audit log {log}: Permission denied; give this user write access "
        f"to it and to {logs}, or set path in [audit]"
    )
    assert status(cli) == before
    assert _log_bytes(log) == written
    assert sorted(p.name for p in logs.iterdir()) == ["audit.jsonl", "audit.jsonl.head"]


@pytest.mark.parametrize("command", [("audit", "show"), ("audit", "verify")])
def test_an_unreadable_audit_log_is_one_line_exit_1(cli: Cli, command: tuple[str, ...]) -> None:
    assert cli("rotate", NAME).code == 0
    log = cli.state_dir / "audit.jsonl"
    with mode(log, 0):
        result = run(cli, *command)
    assert result.code == 1
    assert error(result) == (
        f"rotatectl: error: audit log {log}: Permission denied; give this user read access to it"
    )
    assert result.out == ""


def test_an_unreadable_audit_head_file_is_named(cli: Cli) -> None:
    assert cli("rotate", NAME).code == 0
    log = cli.state_dir / "audit.jsonl"
    head = log.with_name("audit.jsonl.head")
    with mode(head, 0):
        result = run(cli, "audit", "verify")
    assert result.code == 1
    assert error(result) == (
        f"rotatectl: error: audit log {log}: head file {head}: Permission denied; give this "
        "user read access to it"
    )


# -- files that hold key values are 0600, directories 0700, whatever the umask -----------


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in root.rglob("*")}


def test_the_default_state_directory_is_private_whatever_the_umask(cli: Cli) -> None:
    """Under umask 000: every directory rotatectl creates on the way to
    ~/.local/state/rotatectl is 0700 (a world-writable ~/.local/state would let
    anyone swap the state directory), every file 0600."""
    home = Path(cli.env["HOME"])
    result = run(cli, "rotate", NAME, unset=("ROTATECTL_STATE_DIR",), umask=0, deny=False)
    assert result.code == 0, result.err
    result = run(
        cli, "rotate", NAME, "--propagation", "1s", "--overlap", "1s", "--wait",
        unset=("ROTATECTL_STATE_DIR",), umask=0, deny=False,
    )  # fmt: skip
    assert result.code == 0, result.err
    found = _modes(home)
    assert found == {
        ".local": 0o700,
        ".local/state": 0o700,
        ".local/state/rotatectl": 0o700,
        ".local/state/rotatectl/state.db": 0o600,
        ".local/state/rotatectl/audit.jsonl": 0o600,
        ".local/state/rotatectl/audit.jsonl.head": 0o600,
    }


def test_a_configured_store_and_audit_log_are_private_whatever_the_umask(cli: Cli) -> None:
    data = cli.root / "data"
    data.mkdir()
    logs = cli.root / "logs"
    (cli.cwd / "rotatectl.toml").write_text(
        f'[stores.local]\ntype = "local"\npath = "{data}/keys.db"\n\n'
        f'[audit]\npath = "{logs}/sub/audit.jsonl"\n'
    )
    result = run(cli, "rotate", NAME, umask=0, deny=False)
    assert result.code == 0, result.err
    assert _modes(data) == {"keys.db": 0o600}
    assert _modes(logs) == {"sub": 0o700, "sub/audit.jsonl": 0o600, "sub/audit.jsonl.head": 0o600}
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700


def test_the_sqlite_side_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """The -wal and -shm files, there while the store is open, are 0600 under umask 000 too."""
    db = tmp_path / "state.db"
    old = os.umask(0)
    try:
        with LocalStore(db) as store:
            store.list_paths()
            found = _modes(tmp_path)  # while open: the side files are there
    finally:
        os.umask(old)
    assert found == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}


def test_check_reports_an_audit_log_that_cannot_take_a_record(cli: Cli) -> None:
    """``check`` says so before an action is refused for it: exit 1, the line names
    the log and what to do; with a writable log, it says the log is writable."""
    assert cli("rotate", NAME).code == 0
    log = cli.state_dir / "audit.jsonl"
    fine = cli("check")
    assert fine.code == 0
    assert "  ok audit log - writable (not HMAC-keyed: set $ROTATECTL_AUDIT_KEY to key it)" in (
        fine.out.splitlines()
    )
    with mode(log, 0o400):
        result = run(cli, "check")
    assert result.code == 1
    assert (
        f"  error audit log - audit log {log}: Permission denied; give this user write access "
        f"to it and to {log.parent}, or set path in [audit]"
    ) in result.err.splitlines()
