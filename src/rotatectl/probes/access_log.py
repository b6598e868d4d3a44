"""Usage probe that reads JSON-lines usage records (see DESIGN.md, "Usage records").

One record per line::

    {"ts": "2026-11-27T12:00:00Z", "credential": "partners/acme",
     "key_id": "k7Hq2", "result": "ok", "client": "10.0.0.7"}

``ts`` and ``key_id`` are required; ``credential``, ``result`` and ``client``
are optional. A record without ``credential`` counts for any credential.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from ..errors import ProbeError
from ..model import KeyUsage, UsageStatus, parse_iso
from ..registry import AdapterContext, check_settings

MAX_CLIENTS = 10


@dataclass
class _Tally:
    count: int = 0
    rejected: int = 0
    last_seen: datetime | None = None
    clients: set[str] = field(default_factory=set)
    more_clients: bool = False

    def add(self, at: datetime, result: object, client: object) -> None:
        self.count += 1
        if result != "ok":
            self.rejected += 1
        if self.last_seen is None or at > self.last_seen:
            self.last_seen = at
        if isinstance(client, str) and client and client not in self.clients:
            self.clients.add(client)
            # Keep only the MAX_CLIENTS smallest so memory stays bounded on big logs.
            if len(self.clients) > MAX_CLIENTS:
                self.clients.remove(max(self.clients))
                self.more_clients = True


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class AccessLogProbe:
    """Reads a JSON-lines usage log and reports each key id's last sighting.

    Every record in the window counts as usage, whatever its ``result``: a
    rejected attempt still means some client holds the key. A missing log
    file answers UNKNOWN (we cannot tell); an unreadable one raises ProbeError.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: ``path`` (required; relative paths resolve against ctx.base_dir)."""
        check_settings(settings, ctx, {"path": str})
        raw = settings.get("path")
        if not raw:
            raise ctx.error("path", "required: the usage log file (JSON lines)")
        path = Path(raw).expanduser()
        return cls(path if path.is_absolute() else ctx.base_dir / path)

    def usage(
        self, credential: str, key_ids: Sequence[str], since: datetime, now: datetime
    ) -> dict[str, KeyUsage]:
        since, now = _utc(since), _utc(now)
        tallies: dict[str, _Tally] = {key_id: _Tally() for key_id in key_ids}
        try:
            malformed = self._scan(credential, tallies, since, now)
        except FileNotFoundError:
            detail = f"usage log {self.path} does not exist"
            return {k: KeyUsage(status=UsageStatus.UNKNOWN, detail=detail) for k in key_ids}
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ProbeError(f"access-log probe: cannot read {self.path}: {reason}") from exc

        result: dict[str, KeyUsage] = {}
        for key_id, tally in tallies.items():
            notes = []
            if tally.rejected:
                notes.append(f"{tally.rejected} of {tally.count} attempts rejected")
            if tally.more_clients:
                notes.append(f"more than {MAX_CLIENTS} clients")
            if malformed:
                notes.append(f"{malformed} malformed lines skipped")
            detail = "; ".join(notes)
            if tally.count:
                result[key_id] = KeyUsage(
                    status=UsageStatus.SEEN,
                    last_seen=tally.last_seen,
                    count=tally.count,
                    clients=tuple(sorted(tally.clients)),
                    detail=detail,
                )
            else:
                result[key_id] = KeyUsage(status=UsageStatus.NOT_SEEN, detail=detail)
        return result

    def _scan(
        self, credential: str, tallies: dict[str, _Tally], since: datetime, now: datetime
    ) -> int:
        """Stream the file line by line into ``tallies``; return the malformed count."""
        malformed = 0
        # Binary, so a line of invalid UTF-8 is one malformed line, not a failed read.
        with self.path.open("rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                record = _parse_record(line)
                if record is None:
                    malformed += 1
                    continue
                at, rec_credential, key_id, result, client = record
                tally = tallies.get(key_id)
                if tally is None or not since <= at <= now:
                    continue
                if rec_credential is not None and rec_credential != credential:
                    continue
                tally.add(at, result, client)
        return malformed


def _parse_record(line: bytes) -> tuple[datetime, str | None, str, object, object] | None:
    """(ts, credential, key_id, result, client), or None if the line is malformed."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError
        return None
    if not isinstance(data, dict):
        return None
    ts, key_id, credential = data.get("ts"), data.get("key_id"), data.get("credential")
    if not isinstance(ts, str) or not isinstance(key_id, str) or not key_id:
        return None
    if credential is not None and not isinstance(credential, str):
        return None
    try:
        at = parse_iso(ts)
    except ValueError:
        return None
    if at is None:
        return None
    return _utc(at), credential, key_id, data.get("result", "ok"), data.get("client")
