"""The ``command`` issuer: any credential, through a program (issue 20).

rotatectl runs the program (``command``, an argv list: no shell) once per issuer
operation, with one JSON request on stdin, and reads one JSON reply from stdout
(:mod:`rotatectl.issuers.protocol`, version 1). Keys travel only on stdin and stdout:
never in argv or the environment. The program gets rotatectl's environment without
its ``ROTATECTL_*`` variables, plus ``ROTATECTL_OPERATION`` (the operation's name).

Exit 0 with a reply is success. Exit 75 (``EX_TEMPFAIL``) is a failure worth retrying
(a service that is down): the engine retries it with backoff. Any other exit, a
timeout (``timeout``, default 30s; the program's process group is killed), or a
program that cannot be run is one IssuerError line naming the program and the
operation, with the last line of the program's stderr (scrubbed of every key
rotatectl knows).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from .. import redact
from ..errors import IssuerError
from ..registry import AdapterContext, check_settings, positive_seconds
from .protocol import REPLY_LIMIT, ProtocolIssuer

TEMPFAIL = 75  # sysexits.h EX_TEMPFAIL: try again later
_STDERR_LIMIT = 300


class CommandTransport:
    """Runs ``argv`` for each request (see the module docstring)."""

    def __init__(self, argv: Sequence[str], *, timeout: float = 30.0) -> None:
        self.argv = tuple(argv)
        self.timeout = timeout
        self.where = f"command {_program_name(self.argv)}"

    def exchange(self, credential: str, operation: str, body: bytes) -> bytes:
        """The program's stdout. IssuerError (one line) on a failure; retryable on
        exit 75 and on a timeout."""
        where = f"{credential}: {self.where}: {operation}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATECTL_")}
        env["ROTATECTL_OPERATION"] = operation
        try:
            proc = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,  # a timeout kills its children too
            )
        except OSError as exc:
            raise IssuerError(f"{where}: cannot run {self.argv[0]}: {exc.strerror}") from None
        try:
            out, err = proc.communicate(body, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise IssuerError(
                f"{where}: timed out after {self.timeout:g}s", retryable=True
            ) from None
        if proc.returncode != 0:
            reason = _last_line(err)
            status = f"exit {proc.returncode}" if proc.returncode > 0 else "killed"
            raise IssuerError(
                f"{where}: {status}" + (f": {reason}" if reason else ""),
                retryable=proc.returncode == TEMPFAIL,
            )
        if len(out) > REPLY_LIMIT:
            raise IssuerError(f"{where}: malformed reply: longer than {REPLY_LIMIT} bytes")
        return out


def _program_name(argv: Sequence[str]) -> str:
    """The plug-in's name for messages: the program, or the script an interpreter
    runs (``python3 plugin.py`` is ``plugin.py``)."""
    program = Path(argv[0]).name
    if re.fullmatch(r"(python|perl|ruby|node|bash|sh|dash|zsh)[0-9.]*", program):
        script = next((a for a in argv[1:] if not a.startswith("-")), None)
        if script is not None:
            return Path(script).name
    return program


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()
    proc.communicate()


def _last_line(err: bytes) -> str:
    """The last non-empty line of stderr, scrubbed and cut short."""
    lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return ""
    return redact.scrub(lines[-1].strip())[:_STDERR_LIMIT]


class CommandIssuer(ProtocolIssuer):
    """The protocol over a program's stdin and stdout."""

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: ``command`` (required: the program and its arguments, a list, or a
        string split like a shell would without running one; a relative program path
        is taken from the config file's directory), ``timeout`` (default ``30s``)."""
        check_settings(settings, ctx, {"command": (list, str), "timeout": str})
        command = settings.get("command")
        if isinstance(command, str):
            try:
                command = shlex.split(command)
            except ValueError as exc:
                raise ctx.error("command", f"cannot split it: {exc}") from None
        if not command or not all(isinstance(part, str) and part for part in command):
            raise ctx.error("command", "required: the program to run and its arguments")
        program = Path(command[0]).expanduser()
        if not program.is_absolute() and os.sep in command[0]:
            program = ctx.base_dir / program
        argv = [str(program) if os.sep in command[0] else command[0], *command[1:]]
        timeout = positive_seconds(settings, ctx, "timeout", "30s")
        return cls(CommandTransport(argv, timeout=timeout))
