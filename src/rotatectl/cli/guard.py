"""The one place where an error becomes a line on stderr and an exit code.

Both entry points (the fast path in :mod:`.main` and the Typer app in :mod:`.app`)
run their command through :func:`guarded`.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: importing typing would slow `--version` down
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn


def error_exit(message: str, code: int) -> NoReturn:
    """Write ``rotatectl: error: MESSAGE`` (scrubbed of key values) and exit with ``code``."""
    from ..redact import scrub

    sys.stderr.write(f"rotatectl: error: {scrub(message)}\n")
    sys.exit(code)


def guarded(call: Callable[[], int], *, debug: bool) -> NoReturn:
    """Run ``call`` and exit with its code; every error becomes one line on stderr
    and its documented exit code (a traceback only with ``--debug``)."""
    from ..errors import ExitCode, RotatectlError

    try:
        code = call()
    except RotatectlError as exc:
        if debug:
            raise
        error_exit(str(exc).replace("\n", " "), exc.exit_code)
    except KeyboardInterrupt:
        error_exit("interrupted; `rotatectl run` resumes anything left in flight", 130)
    except ImportError as exc:  # an optional dependency an adapter imports late
        from ..extras import missing

        extra = missing(exc, "this command")
        if extra is None or debug:
            raise
        error_exit(str(extra), extra.exit_code)
    except Exception as exc:  # an unexpected bug: still one line unless --debug
        if debug:
            raise
        error_exit(
            f"internal error: {type(exc).__name__} (run with --debug for details)", ExitCode.FAILED
        )
    sys.exit(code)
