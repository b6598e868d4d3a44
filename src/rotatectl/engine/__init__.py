"""The engine: the only place that sequences side effects.

- :mod:`.session`: the runner and the session loop (lease, read, decide, step).
- :mod:`.steps`: one function per action kind, in a table.
- :mod:`.effects`: audit, notify and hooks, written before a result is reported.
- :mod:`.lease`: the lease lock, its renewal and its pre-emption by an emergency.
- :mod:`.fleet`: many credentials: isolation, follow/wait, ``run``.
"""

from __future__ import annotations

from ..model import Outcome, Result
from ..ports import Target
from .boundaries import BOUNDARIES, SAME_POINT_WHEN_ATOMIC, env_boundary
from .lease import default_holder
from .session import Runner, Session, StartRequest

__all__ = [
    "BOUNDARIES",
    "SAME_POINT_WHEN_ATOMIC",
    "Outcome",
    "Result",
    "Runner",
    "Session",
    "StartRequest",
    "Target",
    "default_holder",
    "env_boundary",
]
