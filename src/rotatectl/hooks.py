"""Hooks: commands run at points of a rotation (certbot's deploy hooks, for keys).

A hook gets metadata in ``ROTATECTL_*`` environment variables and, for
``on_promote`` only, the new key value on stdin — never in argv or the
environment, where other users and crash reports can see it. Hooks run
without a shell. They must be idempotent: a resumed rotation may run a hook
again if the previous run died between the hook and recording its effect.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

HOOK_EVENTS = ("on_promote", "on_retire", "on_failure")
_OUTPUT_LIMIT = 2000


@dataclass(frozen=True)
class HookSpec:
    """The hooks of one credential. ``abort_on_failure`` applies before promotion."""

    on_promote: tuple[str, ...] = ()
    on_retire: tuple[str, ...] = ()
    on_failure: tuple[str, ...] = ()
    abort_on_failure: bool = True
    timeout: timedelta = timedelta(seconds=60)

    def command(self, event: str) -> tuple[str, ...]:
        value: tuple[str, ...] = getattr(self, event)
        return value


@dataclass(frozen=True)
class HookResult:
    """What a hook did. ``output`` is truncated and never holds the key value."""

    event: str
    program: str
    code: int | None  # None: could not start or timed out
    output: str
    seconds: float
    started: bool = True  # False: the program could not be run at all

    @property
    def ok(self) -> bool:
        return self.code == 0

    def summary(self) -> str:
        if not self.started:
            status = "cannot run"
        elif self.code is None:
            status = "timed out"
        else:
            status = "ok" if self.ok else f"exit {self.code}"
        tail = self.output.strip().splitlines()[-1:] if self.output.strip() else []
        return f"hook {self.event} ({self.program}): {status}" + (f": {tail[0]}" if tail else "")


def run_hook(
    event: str,
    argv: tuple[str, ...],
    metadata: Mapping[str, str],
    *,
    timeout: timedelta,
    stdin_value: str | None = None,
) -> HookResult:
    """Run one hook. Never raises: a failure is a HookResult with a non-zero code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATECTL_")}
    env.update({f"ROTATECTL_{k.upper()}": v for k, v in metadata.items()})
    env["ROTATECTL_EVENT"] = event
    started = time.monotonic()
    program = os.path.basename(argv[0])
    ran = True
    try:
        proc = subprocess.run(
            list(argv),
            input=stdin_value if stdin_value is not None else "",
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout.total_seconds(),
            check=False,
        )
        code: int | None = proc.returncode
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code = None
        output = _text(exc.stdout) + _text(exc.stderr) + "\n(timed out)"
    except OSError as exc:
        code, ran = None, False
        output = f"{argv[0]}: {exc.strerror}"
    if stdin_value:
        # A hook that echoes its input must not leak the key into our records.
        output = output.replace(stdin_value, "<redacted>")
    return HookResult(
        event, program, code, output[-_OUTPUT_LIMIT:], time.monotonic() - started, started=ran
    )


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")
