"""The side-effect boundaries a rotation crosses, and the test hook that pauses there."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

# In the order a rotation crosses them. A test hook may pause at any of them so
# that a real process can be killed there.
BOUNDARIES = (
    "after-start",
    "after-issue",
    "after-publish",
    "after-publish-record",
    "after-promote",
    "after-promote-record",
    "after-retire-intent",
    "after-disable",
    "after-retire",
    "after-retire-record",
    "after-destroy-issuer",
    "after-destroy",
)


# With a store that saves a version change and its rotation record in one write
# (the "atomic-record" feature) nothing lies between the two: each of these
# boundaries is crossed right after the one it maps to, in the same state.
SAME_POINT_WHEN_ATOMIC = {
    "after-publish-record": "after-publish",
    "after-promote-record": "after-promote",
    "after-retire-record": "after-retire",
}


def env_boundary() -> Callable[[str], None]:
    """Test-only hook: ``ROTATECTL_TEST_PAUSE_AT=<boundary>`` pauses the process there.

    It writes ``ROTATECTL_TEST_PAUSE_FILE`` (so a test knows it arrived) and
    sleeps until killed. Pausing never changes what is written, so the hook
    cannot corrupt state; without the variable it does nothing.
    """
    target = os.environ.get("ROTATECTL_TEST_PAUSE_AT")
    if not target:
        return lambda name: None
    marker = os.environ.get("ROTATECTL_TEST_PAUSE_FILE")

    def pause(name: str) -> None:
        if name != target:
            return
        if marker:
            Path(marker).write_text(f"{os.getpid()} {name}\n")
        while True:  # until SIGKILL
            time.sleep(3600)

    return pause
