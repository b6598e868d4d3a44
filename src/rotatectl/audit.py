"""The tamper-evident audit log: append-only JSON lines, each hash-chained to the last.

Every record carries ``seq`` (1, 2, ...), ``prev`` (the previous record's
``hash``) and ``hash``: SHA-256 over the record's canonical encoding (sorted
keys, no spaces, UTF-8) without the ``hash`` field — or HMAC-SHA256 with a key
from the environment, so that someone who can write the file cannot rewrite
the chain consistently. A head file next to the log holds the last ``seq``
and ``hash``, so that cutting records off the end is detected too.

Appends take an exclusive ``flock`` on the log, so processes on one host can
share it. Records never hold a key value: fingerprints and key ids only.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import hmac
import json
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import OperationError
from .model import iso, parse_iso, utcnow

GENESIS = "0" * 64
_invocation = "api"


def set_invocation(command: str) -> None:
    """Name how rotatectl was invoked (the CLI subcommand), for the actor field."""
    global _invocation
    _invocation = command


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes that are hashed: sorted keys, compact separators, UTF-8."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def actor() -> dict[str, Any]:
    """Who acts: user, host, process, and how rotatectl was invoked."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return {"user": user, "host": socket.gethostname(), "pid": os.getpid(), "via": _invocation}


@dataclass(frozen=True)
class Problem:
    """The first record that does not verify, and why."""

    line: int  # 1-based line in the file (0: the file as a whole)
    reason: str

    def __str__(self) -> str:
        where = f"record at line {self.line}" if self.line else "the log"
        return f"{where}: {self.reason}"


class AuditLog:
    """Append and verify. ``key`` turns the plain hash chain into an HMAC chain."""

    def __init__(self, path: Path, key: bytes | None = None) -> None:
        self.path = Path(path)
        self.head = self.path.with_name(self.path.name + ".head")
        self.key = key

    def _digest(self, record: Mapping[str, Any]) -> str:
        body = canonical({k: v for k, v in record.items() if k != "hash"})
        if self.key is not None:
            return hmac.new(self.key, body, hashlib.sha256).hexdigest()
        return hashlib.sha256(body).hexdigest()

    def append(self, action: str, credential: str, **fields: Any) -> dict[str, Any]:
        """Add one record and return it. Raises OperationError if the log cannot be written."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise OperationError(f"audit log {self.path}: {exc.strerror}") from exc
        with os.fdopen(fd, "r+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                seq, prev = self._last(fh)
                record: dict[str, Any] = {
                    "seq": seq + 1,
                    "ts": iso(utcnow()),
                    "actor": actor(),
                    "credential": credential,
                    "action": action,
                    **{k: v for k, v in fields.items() if v is not None},
                    "keyed": self.key is not None,
                    "prev": prev,
                }
                record["hash"] = self._digest(record)
                fh.write(canonical(record) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
                self._write_head(record["seq"], record["hash"])
            except OSError as exc:
                raise OperationError(f"audit log {self.path}: {exc.strerror}") from exc
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return record

    def _last(self, fh: Any) -> tuple[int, str]:
        """The last record's seq and hash (0, GENESIS for an empty log)."""
        end = fh.seek(0, os.SEEK_END)
        if end == 0:
            return 0, GENESIS
        chunk = b""
        pos = end
        while pos > 0 and chunk.count(b"\n") < 2:
            step = min(4096, pos)
            pos -= step
            fh.seek(pos)
            chunk = fh.read(step) + chunk
        last = chunk.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        record = json.loads(last)
        return int(record["seq"]), str(record["hash"])

    def _write_head(self, seq: int, digest: str) -> None:
        tmp = self.head.with_name(self.head.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"seq": seq, "hash": digest}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.head)  # atomic: a reader sees the old head or the new one

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, record) for every line; raises ValueError on a line that is not JSON."""
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                yield number, json.loads(raw)

    def verify(self) -> tuple[int, Problem | None]:
        """Check the whole chain. Returns (records checked, the first problem or None)."""
        seq, prev, count = 0, GENESIS, 0
        try:
            for number, record in self.records():
                count += 1
                if not isinstance(record, dict) or "hash" not in record:
                    return count, Problem(number, "not an audit record")
                if record.get("keyed") and self.key is None:
                    return count, Problem(number, "HMAC-keyed; set the audit key to verify")
                if record.get("seq") != seq + 1:
                    got = record.get("seq")
                    return count, Problem(number, f"sequence {got} where {seq + 1} was expected")
                if record.get("prev") != prev:
                    return count, Problem(number, "does not follow the previous record")
                if not hmac.compare_digest(str(record["hash"]), self._digest(record)):
                    return count, Problem(number, "its content was changed")
                seq, prev = int(record["seq"]), str(record["hash"])
        except (ValueError, UnicodeDecodeError):
            return count, Problem(count + 1, "not valid JSON")
        try:
            head = json.loads(self.head.read_text()) if self.head.exists() else None
        except ValueError:
            return count, Problem(0, "the head file is damaged")
        if head is not None and (head.get("seq"), head.get("hash")) != (seq, prev):
            if isinstance(head.get("seq"), int) and head["seq"] > seq:
                return count, Problem(
                    0, f"truncated: {head['seq'] - seq} records after {seq} are gone"
                )
            return count, Problem(0, "the last record does not match the head file")
        if head is None and count:
            return count, Problem(0, "the head file is missing")
        return count, None

    def show(
        self,
        credential: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Records filtered by credential and time (inclusive)."""
        out = []
        for _, record in self.records():
            at = parse_iso(record.get("ts"))
            if credential is not None and record.get("credential") != credential:
                continue
            if since is not None and (at is None or at < since):
                continue
            if until is not None and (at is None or at > until):
                continue
            out.append(record)
        return out
