"""The engine: the only place that sequences side effects.

``session`` holds a credential's lease and drives the pure machine's actions;
the public names are re-exported here.
"""

from __future__ import annotations

from ..model import Outcome, Result
from ..ports import Target
from .session import BOUNDARIES, Runner, Session, StartRequest, default_holder, env_boundary

__all__ = [
    "BOUNDARIES",
    "Outcome",
    "Result",
    "Runner",
    "Session",
    "StartRequest",
    "Target",
    "default_holder",
    "env_boundary",
]
