"""Buffered usage records as JSON lines, in the format the ``access-log`` probe reads.

One line per verification attempt that names a key id (DESIGN.md, "Usage records")::

    {"ts": "2026-11-27T12:00:00.123Z", "credential": "partners/acme",
     "key_id": "k7Hq2AbC", "result": "ok", "client": "10.0.0.7"}

``result`` is ``"ok"`` or ``"rejected"``; ``credential`` and ``client`` may be
``null`` (a key id the verifier does not know belongs to no credential).

:meth:`UsageLog.record` only appends to an in-memory queue, so the request
path never waits for the disk; a background thread writes the queue out every
``flush_interval`` seconds, and :meth:`close` writes what is left. Each flush
is appended with one ``write`` to a file opened with ``O_APPEND``, so several
processes may share one log, and a file moved away by logrotate is simply
created again by the next flush.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

UsageResult = Literal["ok", "rejected"]

logger = logging.getLogger(__name__)

_Record = tuple[float, str | None, str, str, str | None]


def usage_line(
    ts: float, credential: str | None, key_id: str, result: str, client: str | None
) -> str:
    """One JSON-lines record (with its newline) for epoch seconds ``ts``."""
    when = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    record = {
        "ts": when.replace("+00:00", "Z"),
        "credential": credential,
        "key_id": key_id,
        "result": result,
        "client": client,
    }
    return json.dumps(record, separators=(", ", ": ")) + "\n"


class UsageLog:
    """Appends usage records to ``path`` from a background thread. Thread-safe.

    ``max_pending`` bounds the memory the queue may use while the disk is slow
    or unwritable: records beyond it are dropped and counted in ``dropped``
    rather than slowing the request path down.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        flush_interval: float = 1.0,
        max_pending: int = 100_000,
        start: bool = True,
    ) -> None:
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.path = Path(path)
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.written = 0
        self.dropped = 0
        # deque.append/popleft are atomic in CPython: the request path takes no lock.
        self._pending: deque[_Record] = deque()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        if start:
            self.start()

    def __repr__(self) -> str:
        return f"UsageLog({str(self.path)!r}, pending={len(self._pending)})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the background writer (idempotent)."""
        if self._thread is not None or self._closed:
            return
        self._thread = threading.Thread(target=self._run, name="rotatectl-usage-log", daemon=True)
        self._thread.start()
        # A daemon thread dies with the process: write what is queued at exit.
        atexit.register(self.close)

    def record(
        self,
        credential: str | None,
        key_id: str,
        result: UsageResult,
        client: str | None = None,
    ) -> None:
        """Queue one record; never blocks and never raises for I/O."""
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending.append((time.time(), credential, key_id, result, client))

    @property
    def pending(self) -> int:
        """Records queued but not written yet."""
        return len(self._pending)

    def flush(self) -> int:
        """Write every queued record now; returns how many were written.

        An unwritable file is logged and its records dropped (counted in
        ``dropped``): usage records are telemetry and must not pile up.
        """
        with self._write_lock:
            batch: list[_Record] = []
            pop = self._pending.popleft
            try:
                while True:
                    batch.append(pop())
            except IndexError:
                pass
            if not batch:
                return 0
            data = "".join(usage_line(*r) for r in batch).encode("utf-8")
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
            except OSError as exc:
                self.dropped += len(batch)
                logger.warning(
                    "usage log %s: cannot write %d records: %s", self.path, len(batch), exc
                )
                return 0
            self.written += len(batch)
            return len(batch)

    def close(self) -> None:
        """Stop the writer and write what is queued. Safe to call twice."""
        self._closed = True
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            atexit.unregister(self.close)
            if thread is not threading.current_thread():
                thread.join(timeout=max(5.0, self.flush_interval * 2))
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception:  # keep the writer alive whatever happens
                logger.exception("usage log %s: flush failed", self.path)
