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

import contextlib
import errno
import fcntl
import getpass
import hashlib
import hmac
import json
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import AuditError
from .files import denied, make_private_dirs, reason
from .model import iso, parse_iso, utcnow

GENESIS = "0" * 64


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes that are hashed: sorted keys, compact separators, UTF-8."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def actor(via: str = "api") -> dict[str, Any]:
    """Who acts: user, host, process, and how rotatectl was invoked (``via``: the CLI
    subcommand, or "api")."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return {"user": user, "host": socket.gethostname(), "pid": os.getpid(), "via": via}


TORN = "an interrupted write (crash or full disk)"


@dataclass(frozen=True)
class Problem:
    """The first record that does not verify, and why."""

    line: int  # 1-based line in the file (0: the file as a whole)
    reason: str
    # Set when the only problem is torn writes: every torn line, in order (``line`` is the first).
    torn: tuple[int, ...] = ()

    def __str__(self) -> str:
        if self.torn:
            shown = ", ".join(str(n) for n in self.torn[:10])
            more = ", ..." if len(self.torn) > 10 else ""
            if len(self.torn) == 1:
                return f"torn record at line {shown}: {self.reason}"
            return f"torn records at lines {shown}{more}: {self.reason}"
        where = f"record at line {self.line}" if self.line else "the log"
        return f"{where}: {self.reason}"


_NOT_JSON = object()


def _parse(raw: bytes) -> Any:
    """The JSON value of one line, or ``_NOT_JSON`` (torn, zeros, not UTF-8, too deep)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return _NOT_JSON


def _chain_link(value: Any) -> tuple[int, str] | None:
    """(seq, hash) of a value that looks like a record, else None."""
    if not isinstance(value, dict):
        return None
    seq, digest = value.get("seq"), value.get("hash")
    if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(digest, str):
        return None
    return seq, digest


def _torn_ack(torn: bytes) -> dict[str, Any]:
    """What the record after a torn tail says about it: line count, size and SHA-256."""
    return {
        "lines": torn.count(b"\n"),
        "bytes": len(torn),
        "sha256": hashlib.sha256(torn).hexdigest(),
    }


@dataclass(frozen=True)
class _Tail:
    """The end of the log, as ``append`` finds it under the lock."""

    size: int  # the file's size: what a failed append truncates back to
    seq: int  # the last whole record's seq and hash (0, GENESIS: none)
    prev: str
    prefix: bytes  # b"\n" when the file ends in an unterminated line
    torn: bytes  # the bytes after the last whole record, prefix included (b"": none)


class AuditLog:
    """Append and verify. ``key`` turns the plain hash chain into an HMAC chain.

    **Whole records or nothing.** ``append`` builds the full line, writes it
    with ``os.write`` until every byte is written, fsyncs it, then
    replaces the head file (write a temporary file, ``fsync``, ``os.replace``).
    If any of that fails (ENOSPC, EFBIG, EIO, EACCES...), the log is truncated
    back to its size before the append, so log and head stay as they were,
    and :class:`AuditError` says ``audit log <path>: <reason>``. (Should that
    truncation fail too, what is left is a torn tail, handled as below.)

    **Torn tails.** A crash (or power loss) mid-append can still leave a last
    line that is cut short, has no newline, or is not JSON. Such bytes are
    evidence and are never rewritten or dropped: the next ``append`` ends the
    line with a newline if it has none, chains its record from the last whole
    record, and acknowledges the torn bytes in a ``torn`` field (their line
    count, size and SHA-256), so they are part of the hash chain from then on.
    One exception: a last line that is a whole record continuing the chain and
    only lacks its newline (the crash came between the last byte and the
    newline) gets its newline and stays in the chain. ``show`` skips torn
    lines; ``verify`` reports them (``torn record at line N``) after checking
    the rest of the chain, which is reported first if it is broken. Garbage
    between records that no ``torn`` field acknowledges is tampering, as before.
    """

    def __init__(self, path: Path, key: bytes | None = None, via: str = "api") -> None:
        self.path = Path(path)
        self.via = via
        self.head = self.path.with_name(self.path.name + ".head")
        self.key = key

    def _digest(self, record: Mapping[str, Any]) -> str:
        body = canonical({k: v for k, v in record.items() if k != "hash"})
        if self.key is not None:
            return hmac.new(self.key, body, hashlib.sha256).hexdigest()
        return hashlib.sha256(body).hexdigest()

    def _error(self, exc: OSError, *, reading: bool = False) -> AuditError:
        """``audit log <path>: [head file <head>: ]<reason>``, and what to do when the
        reason is a lack of permission."""
        where = ""
        if exc.filename is not None and Path(exc.filename) == self.head:
            where = f"head file {self.head}: "
        hint = ""
        if denied(exc) and reading:
            hint = "; give this user read access to it"
        elif denied(exc):
            # A directory that could not be created needs its parent writable.
            made = Path(exc.filename) if exc.filename is not None else self.path
            directory = self.path.parent if made.parent == self.path.parent else made.parent
            hint = f"; give this user write access to it and to {directory}, or set path in [audit]"
        return AuditError(
            " ".join(f"audit log {self.path}: {where}{reason(exc)}{hint}".splitlines())
        )

    def check_writable(self) -> None:
        """Raise AuditError unless a record could be appended now, and change nothing
        else: the log's directory exists (else is created, 0700), the log (when there)
        opens for appending, and a file can be made beside it (the head file is
        replaced by a rename). So an action is refused before it starts when the log
        cannot take its record for lack of permission, a read-only file system or a
        path through a file; a full disk shows only when a record is written."""
        try:
            make_private_dirs(self.path.parent)
        except OSError as exc:
            raise self._error(exc) from exc
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND))
        except FileNotFoundError:
            pass  # append creates it
        except OSError as exc:
            raise self._error(exc) from exc
        probe = self.path.with_name(f".{self.path.name}.{os.getpid()}-{threading.get_ident()}")
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
        except OSError as exc:
            exc.filename = str(self.path)  # the log is what cannot be written, not the probe
            raise self._error(exc) from exc

    def append(self, action: str, credential: str, **fields: Any) -> dict[str, Any]:
        """Add one record and return it, or raise AuditError and leave the log as it was."""
        try:
            make_private_dirs(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise self._error(exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            tail = self._tail(fd)
            record: dict[str, Any] = {
                "seq": tail.seq + 1,
                "ts": iso(utcnow()),
                "actor": actor(self.via),
                "credential": credential,
                "action": action,
                **{k: v for k, v in fields.items() if v is not None},
                "keyed": self.key is not None,
                "prev": tail.prev,
            }
            if tail.torn:
                record["torn"] = _torn_ack(tail.torn)
            record["hash"] = self._digest(record)
            data = tail.prefix + canonical(record) + b"\n"
            try:
                _write_all(fd, data)
                os.fsync(fd)
                self._write_head(record["seq"], record["hash"])
            except OSError as exc:
                _truncate(fd, tail.size)
                raise self._error(exc) from exc
        except OSError as exc:  # flock, or reading the tail
            raise self._error(exc) from exc
        finally:
            os.close(fd)  # also releases the lock
        return record

    def _tail(self, fd: int) -> _Tail:
        """Find the last whole record: a newline-terminated line that parses as a record.

        Reads backwards, a growing chunk at a time; usually one 4 KiB read.
        """
        size = os.fstat(fd).st_size
        pos, data, step = size, b"", 4096
        while True:
            if pos > 0:
                take = min(step, pos)
                pos -= take
                data = _read_at(fd, take, pos) + data
                step = min(step * 2, 1 << 20)
            lines = data.split(b"\n")  # the last item is the unterminated rest (b"": none)
            first = 0 if pos == 0 else 1  # lines[0] may start before ``data``
            for i in range(len(lines) - 2, first - 1, -1):
                link = _chain_link(_parse(lines[i]))
                if link is not None:
                    end = pos + sum(len(x) + 1 for x in lines[: i + 1])
                    return self._after(size, link, data[end - pos :])
            if pos == 0:
                return self._after(size, (0, GENESIS), data)

    def _after(self, size: int, link: tuple[int, str], torn: bytes) -> _Tail:
        seq, prev = link
        if not torn:
            return _Tail(size, seq, prev, b"", b"")
        if torn.endswith(b"\n"):
            return _Tail(size, seq, prev, b"", torn)
        last = _parse(torn.rsplit(b"\n", 1)[-1])
        found = _chain_link(last)
        if found is not None and found[0] == seq + 1 and last.get("prev") == prev:
            # A whole record that only lacks its newline: finish it; it stays in the chain
            # (and acknowledges any torn bytes before it itself).
            return _Tail(size, found[0], found[1], b"\n", b"")
        return _Tail(size, seq, prev, b"\n", torn + b"\n")

    def _write_head(self, seq: int, digest: str) -> None:
        """Replace the head file atomically; on failure the old head stays and no temp file."""
        tmp = self.head.with_name(self.head.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, json.dumps({"seq": seq, "hash": digest}).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.head)  # atomic: a reader sees the old head or the new one
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def _lines(self) -> Iterator[tuple[int, bytes, Any]]:
        """(line number, raw bytes, JSON value or ``_NOT_JSON``) for every line.

        A last line without its newline counts as not JSON, whatever it holds.
        """
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._error(exc, reading=True) from exc
        with fh:
            number = 0
            while True:
                try:
                    raw = fh.readline()
                except OSError as exc:
                    raise self._error(exc, reading=True) from exc
                if not raw:
                    return
                number += 1
                yield number, raw, (_parse(raw) if raw.endswith(b"\n") else _NOT_JSON)

    def records(self, skipped: list[int] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, record) for every whole record. Lines that are not one (torn
        writes, damage) are skipped; their numbers go into ``skipped`` when given.
        Raises AuditError when the log cannot be read."""
        for number, _, value in self._lines():
            if isinstance(value, dict):
                yield number, value
            elif skipped is not None:
                skipped.append(number)

    def verify(self) -> tuple[int, Problem | None]:
        """Check the whole chain. Returns (records checked, the first problem or None).

        Torn lines (see the class docstring) are reported only when the rest of the
        chain, the head file included, is intact. Raises AuditError when unreadable.
        """
        seq, prev, count = 0, GENESIS, 0
        pending: list[tuple[int, bytes]] = []  # lines that are not JSON since the last record
        torn: list[int] = []
        for number, raw, record in self._lines():
            if record is _NOT_JSON:
                pending.append((number, raw))
                continue
            count += 1
            if not isinstance(record, dict) or "hash" not in record:
                return count, Problem(number, "not an audit record")
            ack = record.get("torn")
            if pending or ack is not None:
                if not pending:
                    return count, Problem(number, "acknowledges torn bytes that are gone")
                if ack is None:
                    return count, Problem(pending[0][0], "not valid JSON")
                if ack != _torn_ack(b"".join(raw for _, raw in pending)):
                    return count, Problem(
                        pending[0][0],
                        f"not the torn bytes the record at line {number} acknowledges",
                    )
                torn += [n for n, _ in pending]
                pending = []
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
        torn += [n for n, _ in pending]  # a torn tail nothing acknowledges yet
        try:
            head = json.loads(self.head.read_bytes())
        except FileNotFoundError:
            head = None
        except (ValueError, RecursionError):
            return count, Problem(0, "the head file is damaged")
        except OSError as exc:
            raise self._error(exc, reading=True) from exc
        if head is not None and not isinstance(head, dict):
            return count, Problem(0, "the head file is damaged")
        if head is not None and (head.get("seq"), head.get("hash")) != (seq, prev):
            if isinstance(head.get("seq"), int) and head["seq"] > seq:
                return count, Problem(
                    0, f"truncated: {head['seq'] - seq} records after {seq} are gone"
                )
            return count, Problem(0, "the last record does not match the head file")
        if head is None and count:
            return count, Problem(0, "the head file is missing")
        if torn:
            return count, Problem(torn[0], TORN, tuple(torn))
        return count, None

    def show(
        self,
        credential: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        skipped: list[int] | None = None,
    ) -> list[dict[str, Any]]:
        """Records filtered by credential and time (inclusive); torn lines are skipped
        (their numbers go into ``skipped`` when given)."""
        out = []
        for _, record in self.records(skipped):
            try:
                at = parse_iso(record.get("ts"))
            except (TypeError, ValueError):  # a damaged record: kept, without a time
                at = None
            if credential is not None and record.get("credential") != credential:
                continue
            if since is not None and (at is None or at < since):
                continue
            if until is not None and (at is None or at > until):
                continue
            out.append(record)
        return out


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte or raise: a short write is followed by another, which then fails
    with the reason (ENOSPC, EFBIG...)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        view = view[written:]


def _read_at(fd: int, size: int, offset: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _truncate(fd: int, size: int) -> None:
    """Take a failed append back out. Best effort: if even this fails, the next append
    finds a torn tail and steps over it."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)
        os.fsync(fd)
