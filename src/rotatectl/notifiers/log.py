"""Notifier that writes one JSON line per event to a file or to stderr."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from ..errors import NotifierError
from ..model import Event
from ..registry import AdapterContext, check_settings
from .base import NotifierBase


class LogNotifier(NotifierBase):
    """Appends ``Event.to_dict()`` as JSON lines to ``path`` (created 0600), or stderr."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = None if path is None else Path(path)

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: ``path`` (optional; relative to ctx.base_dir). Without it: stderr."""
        check_settings(settings, ctx, {"path": str})
        raw = settings.get("path")
        if raw is None:
            return cls(None)
        if not raw:
            raise ctx.error("path", "must not be empty (omit it to log to stderr)")
        path = Path(raw).expanduser()
        return cls(path if path.is_absolute() else ctx.base_dir / path)

    def check_access(self) -> list[str]:
        """Problems ``rotatectl check`` should report, found without writing: the
        file is not a writable file, or it does not exist and its directory is
        missing or not writable (so it cannot be created). [] for stderr."""
        if self.path is None:
            return []
        path = self.path
        if path.exists():
            if path.is_dir():
                return [f"{path} is a directory, not a file"]
            if not os.access(path, os.W_OK):
                return [f"{path} is not writable"]
            return []
        parent = path.parent
        if not parent.exists():
            return [f"cannot create {path}: directory {parent} does not exist"]
        if not parent.is_dir():
            return [f"cannot create {path}: {parent} is not a directory"]
        if not os.access(parent, os.W_OK | os.X_OK):
            return [f"cannot create {path}: directory {parent} is not writable"]
        return []

    def notify(self, event: Event) -> None:
        """Write the event. Raises only NotifierError."""
        try:
            # default=str: an odd value in event.data must not turn into a TypeError.
            line = json.dumps(event.to_dict(), sort_keys=True, default=str) + "\n"
            if self.path is None:
                sys.stderr.write(line)
                sys.stderr.flush()
            else:
                self._append(self.path, line.encode("utf-8"))
        except NotifierError:
            raise
        except Exception as exc:
            where = "stderr" if self.path is None else str(self.path)
            raise NotifierError(
                f"log notifier: cannot write {event.kind} event to {where}: {exc}"
            ) from exc

    @staticmethod
    def _append(path: Path, data: bytes) -> None:
        # One os.write on an O_APPEND fd keeps concurrent writers' lines whole.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            os.close(fd)
