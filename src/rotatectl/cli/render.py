"""Rendering of results and status: rich tables for people, JSON for machines.

Nothing here ever receives a key value: only metadata reaches this module.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..durations import format_duration, format_remaining
from ..machine import Action
from ..model import KeyUsage, Version, VersionState, iso
from ..redact import ScrubbingWriter, scrub
from ..report import CredentialStatus, History, result_to_dict
from ..runner import Outcome, Result

_STATE_STYLE = {
    VersionState.PENDING: "yellow",
    VersionState.CURRENT: "bold green",
    VersionState.PREVIOUS: "cyan",
    VersionState.RETIRED: "dim",
    VersionState.DESTROYED: "dim strike",
}

_OUTCOME_STYLE = {
    Outcome.DONE: "green",
    Outcome.WAITING: "cyan",
    Outcome.IDLE: "dim",
    Outcome.PLANNED: "yellow",
    Outcome.ATTENTION: "bold yellow",
    Outcome.FAILED: "bold red",
    Outcome.LOCKED: "magenta",
}


def console(stderr: bool = False) -> Console:
    """A console that honours NO_COLOR (rich does), never wraps JSON, and scrubs secrets."""
    stream = ScrubbingWriter(sys.stderr if stderr else sys.stdout)
    return Console(file=stream, highlight=False, soft_wrap=True)  # type: ignore[arg-type]


def emit_json(data: Any) -> None:
    sys.stdout.write(scrub(json.dumps(data, indent=2, sort_keys=False)) + "\n")


def ago(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "-"
    return format_duration(now - then)


def status_table(statuses: Sequence[CredentialStatus], now: datetime) -> Table:
    table = Table(title=None, show_lines=False, header_style="bold")
    for column in ("credential", "version", "state", "key id", "age", "note"):
        table.add_column(column)
    for st in statuses:
        if st.error:
            table.add_row(st.name, "-", Text("error", "bold red"), "-", "-", st.error)
            continue
        if not st.versions:
            note = "no key yet" + (
                f"; rotation {st.rotation.phase.value}" if st.in_flight and st.rotation else ""
            )
            table.add_row(st.name, "-", "-", "-", "-", note)
            continue
        shown = [v for v in reversed(st.versions) if v.state is not VersionState.DESTROYED]
        first = True
        for v in shown or list(reversed(st.versions))[:1]:
            note = ""
            if v.state is VersionState.CURRENT:
                due = st.next_due
                note = f"due in {format_duration(due - now)}" if due and due > now else "due now"
            if first and st.in_flight and st.rotation is not None:
                note = (note + "; " if note else "") + f"rotation {st.rotation.phase.value}"
            if v.compromised:
                note = (note + "; " if note else "") + "compromised"
            if first and st.drift:
                note = (note + "; " if note else "") + "DRIFT: " + "; ".join(st.drift)
            if first and st.disagree:
                views = ", ".join(
                    f"{n}: {'v' + str(c) if isinstance(c, int) else c or 'none'}"
                    for n, c in st.destinations
                )
                note = (note + "; " if note else "") + f"destinations disagree ({views})"
            table.add_row(
                st.name if first else "",
                f"v{v.number}",
                Text(v.state.value, _STATE_STYLE[v.state]),
                v.key_id,
                ago(now, v.created),
                note,
            )
            first = False
    return table


def print_status(statuses: Sequence[CredentialStatus], now: datetime, output: str) -> None:
    if output == "json":
        emit_json({"credentials": [s.to_dict() for s in statuses]})
        return
    out = console()
    if not statuses:
        out.print("No credentials yet. Start one with: rotatectl rotate NAME")
        return
    out.print(status_table(statuses, now))


def print_usage(
    name: str,
    rows: Sequence[tuple[Version, KeyUsage]],
    action: Action,
    now: datetime,
    output: str,
) -> None:
    """Per version: last seen, count, who; then what the gate decides next."""
    decision = {
        "action": action.kind.value,
        "reason": action.reason,
        "at": iso(action.until) if action.until else None,
    }
    if output == "json":
        emit_json(
            {
                "credential": name,
                "versions": [
                    {
                        "number": v.number,
                        "state": v.state.value,
                        "key_id": v.key_id,
                        "usage": u.status.value,
                        "last_seen": iso(u.last_seen),
                        "count": u.count,
                        "rejected": u.rejected,
                        "clients": list(u.clients),
                        "detail": u.detail,
                    }
                    for v, u in rows
                ],
                "gate": decision,
            }
        )
        return
    table = Table(header_style="bold")
    for column in ("version", "state", "key id", "last seen", "count", "who"):
        table.add_column(column)
    for v, u in rows:
        seen = f"{ago(now, u.last_seen)} ago" if u.last_seen else u.status.value
        table.add_row(
            f"v{v.number}",
            Text(v.state.value, _STATE_STYLE[v.state]),
            v.key_id,
            seen,
            str(u.count),
            ", ".join(u.clients) or "-",
        )
    out = console()
    out.print(table)
    when = f" at {action.until:%Y-%m-%d %H:%M:%SZ}" if action.until else ""
    out.print(f"next: {action.kind.value}{when} - {action.reason}")


def result_line(result: Result, now: datetime) -> Text:
    text = Text()
    text.append(f"{result.credential}: ", "bold")
    text.append(result.outcome.value, _OUTCOME_STYLE[result.outcome])
    if result.phase is not None and result.outcome is Outcome.WAITING:
        text.append(f" ({result.phase.value})")
    if result.until is not None and result.outcome in (Outcome.WAITING, Outcome.IDLE):
        text.append(f", next step in {format_remaining(result.until - now)}")
    if result.message:
        text.append(f" - {result.message}")
    return text


def is_loud(result: Result) -> bool:
    """Results that go to stderr and survive --quiet."""
    return result.outcome in (Outcome.FAILED, Outcome.ATTENTION, Outcome.LOCKED) or result.attention


def print_results(
    results: Sequence[Result], now: datetime, output: str, *, quiet: bool, summary: bool
) -> None:
    if output == "json":
        emit_json({"results": [result_to_dict(r) for r in results]})
        return
    out, err = console(), console(stderr=True)
    for r in results:
        loud = is_loud(r)
        if quiet and not loud:
            continue
        for step in r.steps:
            out.print(Text(f"{r.credential}: {step}", "dim"))
        for warning in r.warnings:
            err.print(Text(f"{r.credential}: warning: {warning}", "yellow"))
        (err if loud else out).print(result_line(r, now))
    if summary and not quiet and len(results) > 1:
        counts: dict[str, int] = {}
        for r in results:
            counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
        out.print("summary: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))


_BAR = {
    VersionState.PENDING: ("░", "yellow"),
    VersionState.CURRENT: ("█", "green"),
    VersionState.PREVIOUS: ("▒", "cyan"),
    VersionState.RETIRED: ("·", "dim"),
    VersionState.DESTROYED: (" ", ""),
}
_EVENT_KINDS = {"emergency": "!", "rollback": "↺"}


def print_history(history: History, output: str, width: int = 60) -> None:
    """One bar per version across the credential's lifetime, events marked on it."""
    if output == "json":
        emit_json(history.to_dict())
        return
    out = console()
    if not history.versions:
        out.print(f"{history.name}: no versions yet")
        return
    start = min(v.created for v, _ in history.versions)
    total = max((history.now - start).total_seconds(), 1.0)

    def column(at: datetime) -> int:
        return min(width - 1, int((at - start).total_seconds() / total * width))

    out.print(
        Text(f"{history.name}: {iso(start)} .. {iso(history.now)}  ", "bold")
        + Text("█ current ", "green")
        + Text("░ pending ", "yellow")
        + Text("▒ previous ", "cyan")
        + Text("· retired", "dim")
    )
    by_version: dict[str, list[str]] = {}
    for r in history.rotations:
        mark = _EVENT_KINDS.get(r.kind.value)
        if mark:
            by_version.setdefault(r.new_version_id, []).append(f"{mark} {r.kind.value}")
    for version, spans in history.versions:
        cells = [Text(" ")] * width
        for span in spans:
            char, style = _BAR[span.state]
            for i in range(column(span.start), max(column(span.end), column(span.start) + 1)):
                cells[i] = Text(char, style)
        bar = Text("").join(cells)
        notes = by_version.get(version.version_id, [])
        if version.compromised:
            notes.append("compromised")
        label = Text(f"v{version.number:<3} {version.key_id:<10} ")
        out.print(
            label
            + bar
            + Text(f"  {version.state.value}" + (f"  {'; '.join(notes)}" if notes else ""))
        )
    for r in history.rotations:
        end = iso(r.finished) or "in flight"
        extra = f" - {r.reason}" if r.reason else ""
        out.print(
            Text(
                f"  {iso(r.started)}  {r.kind.value:<9} {r.phase.value:<11} until {end}{extra}",
                "dim",
            )
        )


def print_audit(records: Sequence[dict[str, Any]], output: str) -> None:
    if output == "json":
        emit_json({"records": list(records)})
        return
    table = Table(header_style="bold")
    for column in ("#", "time", "credential", "action", "version", "key id", "who", "reason"):
        table.add_column(column)
    for r in records:
        who = r.get("actor", {})
        table.add_row(
            str(r.get("seq")),
            str(r.get("ts")),
            str(r.get("credential")),
            Text(str(r.get("action")), "bold red" if r.get("outcome") == "failed" else ""),
            f"v{r['version']}" if r.get("version") else "-",
            str(r.get("key_id") or "-"),
            f"{who.get('user')}@{who.get('host')} ({who.get('via')})",
            str(r.get("reason") or ""),
        )
    console().print(table)
