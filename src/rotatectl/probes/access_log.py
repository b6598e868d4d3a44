"""Usage probe that reads usage records from log files: JSON lines or any text log.

**Formats.** ``format = "json"`` (the default) reads the usage records of
DESIGN.md, one per line::

    {"ts": "2026-11-27T12:00:00Z", "credential": "partners/acme",
     "key_id": "k7Hq2", "result": "ok", "client": "10.0.0.7"}

``ts`` and ``key_id`` are required; ``credential``, ``result`` and ``client``
are optional. ``format = "regex"`` reads plain access logs (nginx, Apache):
``pattern`` is a regular expression (``re.search`` on each line) with the
named groups ``key_id`` and ``ts`` and optionally ``client``, ``result`` and
``credential``. ``time_format`` says how ``ts`` is written: ``iso``
(ISO-8601, the default), ``epoch`` (Unix seconds) or a ``strptime`` format
such as nginx's ``%d/%b/%Y:%H:%M:%S %z``. Timestamps without a zone are
UTC. A record without ``credential`` counts for any credential; ``-`` means
"no value" in any field (the access-log convention), so a line whose key id
is ``-`` is no usage record. A line that is not a record (bad JSON, no
match, bad timestamp) is skipped and counted in ``detail``.

**Results.** Every record counts as usage, whatever its ``result``: a
rejected attempt still means some client holds the key. Records whose result
is in ``rejected_results`` (default: any result other than ``ok``; for nginx
e.g. ``["401", "403"]``) are also counted in ``KeyUsage.rejected``.

**Files.** ``path`` is either a glob (it contains ``*``, ``?`` or ``[``:
every matching file is read) or one file plus its rotated siblings in the
same directory: ``path.1``, ``path.2.gz``, ``path-20261127`` (logrotate's
numbered and ``dateext`` names). Gzip files are recognised by their magic
bytes, whatever their name.

**Incremental.** A small SQLite file, ``<state_dir>/access-log/<hash>.db``
(``state_dir`` defaults to the config's state directory; in memory when the
probe is built directly without one), remembers per file how far it was
read, and per key the counts and first/last sighting in time buckets
(seconds for the last 15 minutes, minutes for the last day, hours beyond,
dropped after ``history``) and the last clients. A later run reads only the
bytes added since. A file is recognised
by its first line, not its name or inode, so a renamed, copied
(``copytruncate``) or compressed file that was already read is not counted
twice; a file whose bytes before the remembered offset changed (truncated,
rewritten) is read again from the start. At the window's edges the buckets
round outwards: a use up to one bucket outside ``[since, now]`` may count
(never the other way round), and a reported ``last_seen`` is clamped into the
window.

**Coverage.** A key that was not seen is NOT_SEEN only when the log covers
the window, else UNKNOWN: the gate must never retire a key on missing
history. The log covers ``[since, now]`` when any of these holds:

- the earliest record known (in a file read now, or in an earlier run and
  still within ``history``) is at or before ``since``;
- the log was never rotated: a plain ``path`` without rotated siblings, never
  seen replaced or truncated, holds all its history;
- a present file is older than ``since``: its mtime is before ``since``
  (nothing was written since), or an earlier run saw the same file (same
  inode at the same path) before ``since``.

So just after a rotation that no run witnessed, a window reaching back
before the oldest file left is UNKNOWN. Files with lines but not a single
record (a wrong ``pattern``) answer UNKNOWN too.

A missing log answers UNKNOWN; an unreadable one raises ProbeError.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import hashlib
import io
import json
import json.scanner
import math
import os
import re
import sqlite3
import stat
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from ..durations import parse_duration
from ..errors import ProbeError
from ..model import KeyUsage, UsageStatus
from ..registry import AdapterContext, check_settings

MAX_CLIENTS = 10  # named in an answer
TRACKED_CLIENTS = 100  # remembered per key
HEAD_BYTES = 4096  # a file is identified by its first line, up to this many bytes
TAIL_BYTES = 64  # bytes before the offset that must not change between runs
SCHEMA = "1"
GROUPS = {"key_id", "ts", "client", "result", "credential"}
# Bucket resolution by age (relative to the newest ``now`` asked about): fine
# where windows start and end (promotion, the quiet period), coarse for the past.
TIERS = ((timedelta(minutes=15), 1), (timedelta(days=1), 60))
COARSE = 3600

_Bucket = list[float]  # [count, first, last] (epoch seconds)
_BucketKey = tuple[str, str, int, int, int]  # credential, key id, rejected, resolution, start
_Fields = tuple[str, str, str, str, str | None]  # ts, credential or "", key id, result, client


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _epoch(value: datetime) -> float:
    return _utc(value).timestamp()


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass
class _Scan:
    """What one run read from one file, before it is merged into the state."""

    buckets: dict[_BucketKey, _Bucket] = field(default_factory=dict)
    clients: dict[tuple[str, str], dict[str, list[float]]] = field(default_factory=dict)
    overflow: set[tuple[str, str]] = field(default_factory=set)
    records: int = 0
    malformed: int = 0
    tail: bytes = b""  # the last bytes read


@dataclass
class _LogFile:
    path: Path
    st: os.stat_result


class AccessLogProbe:
    """Reads usage logs (see the module docstring) and reports each key id's last sighting."""

    def __init__(
        self,
        path: Path | str,
        *,
        log_format: str = "json",
        pattern: str | None = None,
        time_format: str = "iso",
        rejected_results: Sequence[str] | None = None,
        state_dir: Path | None = None,
        history: timedelta = timedelta(days=30),
    ) -> None:
        """Raises ValueError for a bad format, pattern or time format."""
        self.path = Path(path)
        if log_format not in ("json", "regex"):
            raise ValueError(f"unknown format {log_format!r} (json or regex)")
        self.log_format = log_format
        self.pattern: re.Pattern[str] | None = None
        if log_format == "regex":
            if not pattern:
                raise ValueError("format 'regex' needs a pattern")
            self.pattern = _compile(pattern)
        if time_format not in ("iso", "epoch") and "%" not in time_format:
            raise ValueError(f"time_format {time_format!r}: use iso, epoch or a strptime format")
        self.time_format = time_format
        self.rejected_results = None if rejected_results is None else frozenset(rejected_results)
        self.history = history
        self.glob = any(c in str(self.path) for c in "*?[")
        identity = json.dumps(
            [SCHEMA, str(self.path), log_format, pattern, time_format, rejected_results]
        )
        digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
        self.state_file = (
            None if state_dir is None else Path(state_dir) / "access-log" / f"{digest}.db"
        )
        self._memory: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Build from a config table; ConfigError names the offending key.

        Settings: ``path`` (required; relative to ctx.base_dir), ``format``,
        ``pattern``, ``time_format``, ``rejected_results``, ``state_dir``
        (default ctx.state_dir), ``history`` (default ``30d``).
        """
        check_settings(
            settings,
            ctx,
            {
                "path": str,
                "format": str,
                "pattern": str,
                "time_format": str,
                "rejected_results": list,
                "state_dir": str,
                "history": str,
            },
        )
        raw = settings.get("path")
        if not raw:
            raise ctx.error("path", "required: the usage log file (JSON lines) or a glob")
        log_format = settings.get("format", "json")
        if log_format not in ("json", "regex"):
            raise ctx.error("format", f"unknown format {log_format!r} (json or regex)")
        pattern = settings.get("pattern")
        if log_format == "regex" and not pattern:
            raise ctx.error("pattern", "required with format = 'regex'")
        if log_format == "json" and pattern is not None:
            raise ctx.error("pattern", "only used with format = 'regex'")
        if pattern:
            try:
                _compile(pattern)
            except ValueError as exc:
                raise ctx.error("pattern", str(exc)) from None
        time_format = settings.get("time_format", "iso")
        if time_format not in ("iso", "epoch") and "%" not in time_format:
            raise ctx.error("time_format", "use iso, epoch or a strptime format such as %d/%b/%Y")
        rejected = settings.get("rejected_results")
        if rejected is not None and not all(isinstance(r, str) and r for r in rejected):
            raise ctx.error("rejected_results", "expected a list of non-empty strings")
        try:
            history = parse_duration(settings.get("history", "30d"))
        except ValueError as exc:
            raise ctx.error("history", str(exc)) from None
        if history <= timedelta(0):
            raise ctx.error("history", "must be longer than 0s")
        state_raw = settings.get("state_dir")
        if state_raw is not None and not state_raw:
            raise ctx.error("state_dir", "must not be empty")
        return cls(
            _resolve(raw, ctx.base_dir),
            log_format=log_format,
            pattern=pattern,
            time_format=time_format,
            rejected_results=rejected,
            state_dir=ctx.state_dir if state_raw is None else _resolve(state_raw, ctx.base_dir),
            history=history,
        )

    # -- the probe ------------------------------------------------------------------

    def usage(
        self, credential: str, key_ids: Sequence[str], since: datetime, now: datetime
    ) -> dict[str, KeyUsage]:
        """Each key id's sightings within [since, now]; every id gets an answer.

        Raises ProbeError when a log file or the state file cannot be read.
        """
        t0, t1 = _epoch(since), _epoch(now)
        files = self._files()
        if not files:
            what = "no file matches" if self.glob else "usage log"
            detail = f"{what} {self.path}" + ("" if self.glob else " does not exist")
            return {k: KeyUsage(status=UsageStatus.UNKNOWN, detail=detail) for k in key_ids}
        try:
            with self._lock, self._state() as db:
                horizon = max(t1, _meta_float(db, "newest") or t1)
                _set_meta(db, "newest", horizon)
                present: set[str] = set()
                for log in files:
                    fp = self._ingest(db, log, horizon, t1)
                    if fp is not None:
                        present.add(fp)
                self._compact(db, horizon, present)
                return self._answer(db, files, present, credential, key_ids, t0, t1)
        except (sqlite3.Error, OSError) as exc:  # the state; log files raise ProbeError
            raise ProbeError(
                f"access-log probe: cannot use its state {self.state_file or '(in memory)'}: {exc}"
            ) from exc

    # -- files ------------------------------------------------------------------------

    def _files(self) -> list[_LogFile]:
        """The log files present now (regular files only), sorted by path."""
        if self.glob:
            names = [Path(p) for p in glob.glob(str(self.path))]
        else:
            names = [self.path]
            with contextlib.suppress(OSError):
                sibling = re.compile(re.escape(self.path.name) + r"[.-]\d+(\.gz)?")
                with os.scandir(self.path.parent) as it:
                    names += [self.path.parent / e.name for e in it if sibling.fullmatch(e.name)]
        found: list[_LogFile] = []
        for name in sorted(set(names)):
            try:
                st = name.stat()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _read_error(name, exc) from exc
            # The named log itself is read whatever it is, so a directory fails loudly.
            if stat.S_ISREG(st.st_mode) or (name == self.path and not self.glob):
                found.append(_LogFile(name, st))
        return found

    def _ingest(
        self, db: sqlite3.Connection, log: _LogFile, horizon: float, now: float
    ) -> str | None:
        """Read what is new in one file and merge it into the state; return its identity."""
        try:
            with log.path.open("rb") as raw:
                gz = raw.read(2) == b"\x1f\x8b"
                raw.seek(0)
                reader: io.BufferedIOBase = gzip.GzipFile(fileobj=raw) if gz else raw
                return self._ingest_open(db, log, reader, raw, gz, horizon, now)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise _read_error(log.path, exc) from exc

    def _ingest_open(
        self,
        db: sqlite3.Connection,
        log: _LogFile,
        fh: io.BufferedIOBase,
        raw: io.BufferedIOBase,
        gz: bool,
        horizon: float,
        now: float,
    ) -> str | None:
        head = fh.read(HEAD_BYTES)
        newline = head.find(b"\n")
        first_line = head[:newline] if newline >= 0 else head
        # The first line without its newline, so a file whose only line is
        # still being written keeps its identity once the newline arrives.
        fp = hashlib.sha256(first_line).hexdigest()[:32] if first_line else None
        self._watch(db, log, fp, now)
        if fp is None:
            return None  # empty, or starts with an empty line still being written
        gz_stat = f"{log.st.st_size}:{log.st.st_mtime_ns}" if gz else None
        row = db.execute("SELECT offset, tail, gz_stat FROM files WHERE fp = ?", (fp,)).fetchone()
        start = 0
        if row is not None:
            offset, tail, seen_gz = row
            if gz and seen_gz == gz_stat:
                return fp  # a compressed file already read to its end
            if gz and _gzip_size(raw, log.st.st_size) == offset % 2**32:
                # Read before it was compressed (ISIZE trailer = uncompressed size).
                db.execute("UPDATE files SET gz_stat = ? WHERE fp = ?", (gz_stat, fp))
                return fp
            if offset and self._tail_matches(fh, offset, tail):
                start = offset
            else:
                _forget(db, fp)  # truncated or rewritten: read it again from the start
        fh.seek(start)
        scan = _Scan()
        end = self._parse(fh, start, scan, gz, horizon)
        tail_bytes = scan.tail
        if len(tail_bytes) < min(end, TAIL_BYTES):  # few new bytes: the tail reaches back
            fh.seek(max(0, end - TAIL_BYTES))
            tail_bytes = fh.read(end - max(0, end - TAIL_BYTES))
        tail = hashlib.sha256(tail_bytes).hexdigest()[:32]
        self._merge(db, fp, scan, end, tail, gz_stat, log.path, now)
        return fp

    @staticmethod
    def _tail_matches(fh: io.BufferedIOBase, offset: int, tail: str) -> bool:
        back = max(0, offset - TAIL_BYTES)
        fh.seek(back)
        data = fh.read(offset - back)
        return len(data) == offset - back and hashlib.sha256(data).hexdigest()[:32] == tail

    def _watch(self, db: sqlite3.Connection, log: _LogFile, fp: str | None, now: float) -> None:
        """Remember since when this path holds this file; note replacements (rotation)."""
        key = str(log.path)
        row = db.execute("SELECT dev, ino, fp FROM paths WHERE path = ?", (key,)).fetchone()
        ident = (log.st.st_dev, log.st.st_ino)
        if row is None:
            db.execute(
                "INSERT INTO paths (path, dev, ino, fp, seen) VALUES (?, ?, ?, ?, ?)",
                (key, *ident, fp, now),
            )
            return
        replaced = (row[0], row[1]) != ident
        rewritten = row[2] is not None and fp is not None and row[2] != fp
        if replaced or rewritten or (row[2] is not None and fp is None):
            _set_meta(db, "rotated", now)
        if replaced or rewritten:  # a new file at this path: watched from now on
            db.execute(
                "UPDATE paths SET dev = ?, ino = ?, fp = ?, seen = ? WHERE path = ?",
                (*ident, fp, now, key),
            )
        elif fp is not None and row[2] != fp:
            db.execute("UPDATE paths SET fp = ? WHERE path = ?", (fp, key))

    # -- parsing ------------------------------------------------------------------------

    def _parse(
        self, fh: io.BufferedIOBase, start: int, scan: _Scan, gz: bool, horizon: float
    ) -> int:
        """Tally the records from the current position; return the offset read up to.

        An unterminated last line is consumed only when it is a whole record
        (or the file is compressed, so complete); else the next run reads it.
        This loop runs once per line of a large log, hence its flat shape.
        """
        cut_fine, cut_minute = (horizon - age.total_seconds() for age, _ in TIERS)
        buckets, clients, overflow = scan.buckets, scan.clients, scan.overflow
        rejected_set = self.rejected_results
        fields = _json_fields if self.pattern is None else self._regex_fields
        to_epoch = self._to_epoch
        cache: dict[str, float] = {}
        records = malformed = 0
        pos = start
        recent: deque[bytes] = deque(maxlen=TAIL_BYTES)  # each line is >= 1 byte
        for line in fh:
            parsed = fields(line)
            at = None
            if parsed is not None:
                ts = parsed[0]
                at = cache.get(ts)
                if at is None:
                    try:
                        at = to_epoch(ts)
                    except (ValueError, OverflowError, OSError):
                        parsed = None
                    else:
                        if len(cache) > 8192:
                            cache.clear()  # stamps repeat within a second; bound it anyway
                        cache[ts] = at
            if parsed is None or at is None:
                if line[-1:] != b"\n" and not gz:
                    break  # a line still being written
                pos += len(line)
                recent.append(line)
                if line.strip():
                    malformed += 1
                continue
            pos += len(line)
            recent.append(line)
            _, credential, key_id, result, client = parsed
            if key_id == "-":
                continue  # the access-log way of saying "no key on this request"
            records += 1
            if rejected_set is None:
                rejected = 0 if result == "ok" else 1
            else:
                rejected = 1 if result in rejected_set else 0
            res = 1 if at >= cut_fine else 60 if at >= cut_minute else COARSE
            bkey = (credential, key_id, rejected, res, int(at // res) * res)
            bucket = buckets.get(bkey)
            if bucket is None:
                buckets[bkey] = [1, at, at]
            else:
                bucket[0] += 1
                if at < bucket[1]:
                    bucket[1] = at
                elif at > bucket[2]:
                    bucket[2] = at
            if client is not None:
                ckey = (credential, key_id)
                seen = clients.get(ckey)
                if seen is None:
                    seen = clients[ckey] = {}
                span = seen.get(client)
                if span is None:
                    seen[client] = [at, at]
                    if len(seen) > 10 * TRACKED_CLIENTS:
                        _trim(seen)  # amortised: keep memory bounded on huge logs
                        overflow.add(ckey)
                elif at < span[0]:
                    span[0] = at
                elif at > span[1]:
                    span[1] = at
        scan.records += records
        scan.malformed += malformed
        scan.tail = b"".join(recent)[-TAIL_BYTES:]
        return pos

    def _to_epoch(self, text: str) -> float:
        """Epoch seconds of a timestamp; ValueError if it cannot be parsed."""
        if self.time_format == "iso":
            parsed = datetime.fromisoformat(text)
        elif self.time_format == "epoch":
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(text)
            return value
        else:
            parsed = datetime.strptime(text, self.time_format)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()

    def _regex_fields(self, line: bytes) -> _Fields | None:
        """(ts, credential or "", key_id, result, client) of a regex-format line, or None."""
        assert self.pattern is not None
        try:
            text = line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            return None
        match = self.pattern.search(text)
        if match is None:
            return None
        found = match.groupdict()
        key_id, ts = found.get("key_id"), found.get("ts")
        if not key_id or not ts:
            return None
        credential = found.get("credential") or ""
        client = found.get("client")
        return (
            ts,
            "" if credential == "-" else credential,
            key_id,
            found.get("result") or "ok",
            client if client and client != "-" else None,
        )

    # -- state --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _state(self) -> Iterator[sqlite3.Connection]:
        """The state database inside one write transaction, so two runs never read
        the same bytes twice. In memory, kept on the probe, without a state_dir."""
        if self.state_file is None:
            if self._memory is None:
                self._memory = _open(":memory:")
            db = self._memory
        else:
            db = _open_file(self.state_file)
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if db is not self._memory:
                db.close()

    def _merge(
        self,
        db: sqlite3.Connection,
        fp: str,
        scan: _Scan,
        offset: int,
        tail: str,
        gz_stat: str | None,
        path: Path,
        now: float,
    ) -> None:
        db.executemany(
            "INSERT INTO buckets (cred, key_id, rej, res, start, fp, n, first, last)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (cred, key_id, rej, res, start, fp) DO UPDATE SET n = n + excluded.n,"
            " first = min(first, excluded.first), last = max(last, excluded.last)",
            ((*k, fp, int(b[0]), b[1], b[2]) for k, b in scan.buckets.items()),
        )
        db.executemany(
            "INSERT INTO clients (cred, key_id, client, fp, first, last)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (cred, key_id, client, fp) DO UPDATE SET"
            " first = min(first, excluded.first), last = max(last, excluded.last)",
            (
                (cred, key_id, client, fp, span[0], span[1])
                for (cred, key_id), seen in scan.clients.items()
                for client, span in seen.items()
            ),
        )
        db.executemany("INSERT OR IGNORE INTO overflow (cred, key_id) VALUES (?, ?)", scan.overflow)
        first = min((b[1] for b in scan.buckets.values()), default=None)
        db.execute(
            "INSERT INTO files (fp, offset, tail, gz_stat, path, seen, first, records, malformed)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fp) DO UPDATE SET"
            " offset = excluded.offset, tail = excluded.tail,"
            " gz_stat = coalesce(excluded.gz_stat, gz_stat), path = excluded.path,"
            " first = min(coalesce(first, excluded.first), coalesce(excluded.first, first)),"
            " records = records + excluded.records, malformed = malformed + excluded.malformed",
            (fp, offset, tail, gz_stat, str(path), now, first, scan.records, scan.malformed),
        )

    def _compact(self, db: sqlite3.Connection, horizon: float, present: set[str]) -> None:
        """Coarsen buckets that aged out of their tier; drop what is older than history."""
        coarser = [res for _, res in TIERS[1:]] + [COARSE]
        for (age, res), to in zip(TIERS, coarser, strict=True):
            cut = horizon - age.total_seconds()
            db.execute(
                "INSERT INTO buckets (cred, key_id, rej, res, start, fp, n, first, last)"
                " SELECT cred, key_id, rej, ?, (start / ?) * ?, fp, sum(n), min(first), max(last)"
                " FROM buckets WHERE res = ? AND start + res <= ?"
                " GROUP BY cred, key_id, rej, (start / ?), fp"
                " ON CONFLICT (cred, key_id, rej, res, start, fp) DO UPDATE SET n = n + excluded.n,"
                " first = min(first, excluded.first), last = max(last, excluded.last)",
                (to, to, to, res, cut, to),
            )
            db.execute("DELETE FROM buckets WHERE res = ? AND start + res <= ?", (res, cut))
        oldest = horizon - self.history.total_seconds()
        dropped = db.execute("DELETE FROM buckets WHERE last < ?", (oldest,)).rowcount
        db.execute("DELETE FROM clients WHERE last < ?", (oldest,))
        if dropped:
            _set_meta(db, "pruned", oldest)
            # Forget files that are gone from disk and from the kept history.
            gone = [
                fp
                for (fp,) in db.execute("SELECT fp FROM files")
                if fp not in present
                and db.execute("SELECT 1 FROM buckets WHERE fp = ? LIMIT 1", (fp,)).fetchone()
                is None
            ]
            db.executemany("DELETE FROM files WHERE fp = ?", ((fp,) for fp in gone))
        # Keep the most recent clients of each key.
        db.execute(
            "DELETE FROM clients WHERE rowid IN (SELECT rowid FROM (SELECT rowid, row_number()"
            " OVER (PARTITION BY cred, key_id ORDER BY last DESC) AS n FROM clients) WHERE n > ?)",
            (TRACKED_CLIENTS,),
        )

    # -- the answer ---------------------------------------------------------------------

    def _answer(
        self,
        db: sqlite3.Connection,
        files: list[_LogFile],
        present: set[str],
        credential: str,
        key_ids: Sequence[str],
        t0: float,
        t1: float,
    ) -> dict[str, KeyUsage]:
        records = malformed = 0
        earliest: float | None = None
        for fp, n, bad, first in db.execute("SELECT fp, records, malformed, first FROM files"):
            if fp in present:  # lines skipped in files still there
                records, malformed = records + n, malformed + bad
            if first is not None and (earliest is None or first < earliest):
                earliest = first
        gap = self._coverage_gap(db, files, earliest, t0)
        skipped = ""
        if malformed:
            noun = "malformed lines" if self.pattern is None else "unmatched lines"
            skipped = f"{malformed} {noun} skipped"
        result: dict[str, KeyUsage] = {}
        for key_id in dict.fromkeys(key_ids):
            count = rejected = 0
            last: float | None = None
            for rej, n, last_at in db.execute(
                "SELECT rej, n, last FROM buckets"
                " WHERE cred IN (?, '') AND key_id = ? AND last >= ? AND first <= ?",
                (credential, key_id, t0, t1),
            ):
                count += n
                rejected += n if rej else 0
                # A bucket straddling an edge counts whole (rounded outwards), clamped.
                seen_at = min(max(last_at, t0), t1)
                last = seen_at if last is None else max(last, seen_at)
            notes = []
            if rejected:
                notes.append(f"{rejected} of {count} attempts rejected")
            if count:
                clients, more = self._clients(db, credential, key_id, t0, t1)
                if more:
                    notes.append(f"more than {MAX_CLIENTS} clients")
                notes.append(skipped)
                assert last is not None
                result[key_id] = KeyUsage(
                    status=UsageStatus.SEEN,
                    last_seen=_at(last),
                    count=count,
                    clients=clients,
                    rejected=rejected,
                    detail="; ".join(n for n in notes if n),
                )
            elif malformed and not records:
                why = "no line of the log is a usage record"
                if self.pattern is not None:
                    why = "no line of the log matches the pattern"
                result[key_id] = KeyUsage(status=UsageStatus.UNKNOWN, detail=f"{why} ({skipped})")
            elif gap:
                result[key_id] = KeyUsage(status=UsageStatus.UNKNOWN, detail=gap)
            else:
                result[key_id] = KeyUsage(status=UsageStatus.NOT_SEEN, detail=skipped)
        return result

    def _clients(
        self, db: sqlite3.Connection, credential: str, key_id: str, t0: float, t1: float
    ) -> tuple[tuple[str, ...], bool]:
        names = [
            name
            for (name,) in db.execute(
                "SELECT DISTINCT client FROM clients WHERE cred IN (?, '') AND key_id = ?"
                " AND last >= ? AND first <= ? ORDER BY client LIMIT ?",
                (credential, key_id, t0, t1, MAX_CLIENTS + 1),
            )
        ]
        overflowed = db.execute(
            "SELECT 1 FROM overflow WHERE cred IN (?, '') AND key_id = ?", (credential, key_id)
        ).fetchone()
        return tuple(names[:MAX_CLIENTS]), len(names) > MAX_CLIENTS or overflowed is not None

    def _coverage_gap(
        self, db: sqlite3.Connection, files: list[_LogFile], earliest: float | None, t0: float
    ) -> str:
        """Why the log may miss uses in the window, or "" when it covers it."""
        pruned = _meta_float(db, "pruned")
        known_from = earliest if pruned is None or earliest is None else max(earliest, pruned)
        if known_from is not None and known_from <= t0:
            return ""
        rotated = self.glob or len(files) > 1 or _meta_float(db, "rotated") is not None
        if not rotated and pruned is None:
            return ""  # one file, never seen rotated: it holds all its history
        for log in files:
            if log.st.st_mtime <= t0:
                return ""  # untouched since before the window: it was there all along
            row = db.execute(
                "SELECT seen FROM paths WHERE path = ? AND dev = ? AND ino = ?",
                (str(log.path), log.st.st_dev, log.st.st_ino),
            ).fetchone()
            if row is not None and row[0] <= t0:
                return ""  # an earlier run saw this very file before the window began
        start = (
            "no records"
            if known_from is None
            else f"records from {_at(known_from):%Y-%m-%dT%H:%M:%SZ}"
        )
        return (
            f"the log history does not reach back to the window start"
            f" {_at(t0):%Y-%m-%dT%H:%M:%SZ} ({start}; older files rotated away?)"
        )


# -- helpers ---------------------------------------------------------------------------------


# typeshed types the scanner's context oddly; a JSONDecoder is what json itself passes.
_scan_json = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _json_fields(line: bytes) -> _Fields | None:
    """(ts, credential or "", key_id, result, client) of a JSON-lines record, or None.

    The scanner is json.loads without its per-call overhead, which dominates
    on a large log; a line must hold exactly one JSON object.
    """
    try:
        text = line.decode("utf-8")
        if text[:1].isspace():
            text = text.lstrip()  # as json.loads allows
        data, end = _scan_json(text, 0)
    except (ValueError, StopIteration, RecursionError):  # not JSON (or not UTF-8)
        return None
    if type(data) is not dict or (end != len(text) and not text[end:].isspace()):
        return None
    ts, key_id, credential = data.get("ts"), data.get("key_id"), data.get("credential")
    if type(ts) is not str or type(key_id) is not str or not key_id:
        return None
    if credential is not None and type(credential) is not str:
        return None
    result = data.get("result", "ok")
    client = data.get("client")
    return (
        ts,
        "" if credential is None or credential == "-" else credential,
        key_id,
        result if type(result) is str else str(result),
        client if type(client) is str and client and client != "-" else None,
    )


def _compile(pattern: str) -> re.Pattern[str]:
    """Compile a regex-format pattern; ValueError names what is wrong."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    names = set(compiled.groupindex)
    missing = {"key_id", "ts"} - names
    if missing:
        raise ValueError(
            f"needs the named groups key_id and ts (missing: {', '.join(sorted(missing))})"
        )
    unknown = names - GROUPS
    if unknown:
        allowed = ", ".join(sorted(GROUPS))
        raise ValueError(f"unknown named groups {', '.join(sorted(unknown))} (allowed: {allowed})")
    return compiled


def _resolve(raw: str, base: Path) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else base / path


def _read_error(path: Path, exc: BaseException) -> ProbeError:
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return ProbeError(f"access-log probe: cannot read {path}: {reason}")


def _trim(seen: dict[str, list[float]]) -> None:
    keep = sorted(seen, key=lambda c: seen[c][1], reverse=True)[:TRACKED_CLIENTS]
    kept = {c: seen[c] for c in keep}
    seen.clear()
    seen.update(kept)


def _gzip_size(raw: io.BufferedIOBase, size: int) -> int | None:
    """The ISIZE trailer of a gzip file: its uncompressed size modulo 2**32."""
    if size < 18:
        return None
    raw.seek(size - 4)
    return int.from_bytes(raw.read(4), "little")


def _forget(db: sqlite3.Connection, fp: str) -> None:
    for table in ("buckets", "clients", "files"):
        db.execute(f"DELETE FROM {table} WHERE fp = ?", (fp,))  # noqa: S608 - fixed names


def _meta_float(db: sqlite3.Connection, key: str) -> float | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else float(row[0])


def _set_meta(db: sqlite3.Connection, key: str, value: float) -> None:
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, repr(value)),
    )


_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    fp TEXT PRIMARY KEY, offset INTEGER NOT NULL, tail TEXT NOT NULL, gz_stat TEXT,
    path TEXT NOT NULL, seen REAL NOT NULL, first REAL,
    records INTEGER NOT NULL, malformed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS paths (
    path TEXT PRIMARY KEY, dev INTEGER NOT NULL, ino INTEGER NOT NULL, fp TEXT,
    seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS buckets (
    cred TEXT NOT NULL, key_id TEXT NOT NULL, rej INTEGER NOT NULL, res INTEGER NOT NULL,
    start INTEGER NOT NULL, fp TEXT NOT NULL, n INTEGER NOT NULL, first REAL NOT NULL,
    last REAL NOT NULL, PRIMARY KEY (cred, key_id, rej, res, start, fp)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS clients (
    cred TEXT NOT NULL, key_id TEXT NOT NULL, client TEXT NOT NULL, fp TEXT NOT NULL,
    first REAL NOT NULL, last REAL NOT NULL, UNIQUE (cred, key_id, client, fp));
CREATE TABLE IF NOT EXISTS overflow (
    cred TEXT NOT NULL, key_id TEXT NOT NULL, PRIMARY KEY (cred, key_id));
"""


def _open(target: str) -> sqlite3.Connection:
    db = sqlite3.connect(target, timeout=30, isolation_level=None, check_same_thread=False)
    db.executescript(_TABLES)
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is None:
        db.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA,))
    elif row[0] != SCHEMA:
        raise sqlite3.DatabaseError(f"state schema {row[0]}, expected {SCHEMA}")
    return db


def _open_file(path: Path) -> sqlite3.Connection:
    """Open (or create, 0600 in a 0700 directory) the state file. It is a cache:
    one that is corrupt or of another schema is replaced by a fresh one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        return _open(str(path))
    except sqlite3.OperationalError:
        # Locked, busy, I/O: the file is in use, not damaged. Deleting it here
        # pulled it from under another run (a "disk I/O error" there).
        raise
    except sqlite3.DatabaseError:
        path.unlink(missing_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return _open(str(path))
