"""Rendering of results and status: rich tables for people, JSON for machines.

Nothing here ever receives a key value: only metadata reaches this module.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from ..durations import format_duration, format_remaining
from ..model import VersionState, iso
from ..redact import ScrubbingWriter, scrub

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from ..config import Config
    from ..conformance import Check
    from ..engine import Result
    from ..machine import Action
    from ..model import KeyUsage, Rotation, Version
    from ..report import CredentialStatus, History
    from ..services import CheckItem

# rich is imported only where it renders: output to a pipe or a file (cron, scripts)
# that rich would print without any escape code is written directly (see _plain).

_STATE_STYLE = {
    VersionState.PENDING: "yellow",
    VersionState.CURRENT: "bold green",
    VersionState.PREVIOUS: "cyan",
    VersionState.RETIRED: "dim",
    VersionState.DESTROYED: "dim strike",
}

# Keyed by Outcome values (StrEnum): the runner module need not be imported to render.
_OUTCOME_STYLE = {
    "done": "green",
    "waiting": "cyan",
    "idle": "dim",
    "planned": "yellow",
    "attention": "bold yellow",
    "failed": "bold red",
    "locked": "magenta",
    "preempted": "bold magenta",
}


def console(stderr: bool = False) -> Console:
    """A console that honours NO_COLOR (rich does), never wraps JSON, and scrubs secrets.

    To a pipe or a file it is as wide as any line: rich would otherwise cut a table
    to 80 columns, and a script must find every name, id and time whole.
    """
    from rich.console import Console

    raw = sys.stderr if stderr else sys.stdout
    width = None if not _plain(raw) else _UNLIMITED
    stream = ScrubbingWriter(raw)
    return Console(file=stream, highlight=False, soft_wrap=True, width=width)  # type: ignore[arg-type]


_UNLIMITED = 1_000_000  # columns: "no limit" for rich, whose tables take their natural width

# A table cell: its text, or (text, rich style).
Cell = str | tuple[str, str]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> None:
    """A table to stdout: plain text to a pipe or file (every cell whole), else a
    rich table whose cells fold onto more lines rather than cut an identifier."""
    plain = [[c if isinstance(c, str) else c[0] for c in row] for row in rows]
    if plain_table(headers, plain, sys.stdout):
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(header_style="bold")
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(c if isinstance(c, str) else Text(c[0], c[1]) for c in row))
    console().print(table)


# -- plain output: what rich prints when it emits no escape codes -------------

# What rich's markup or emoji codes could change in a str: a "[" opens markup,
# ":name:" may be an emoji code. Such text goes through rich.
_RICH_SYNTAX = re.compile(r"\[|:\S*?:")
_TABLE_CELL = re.compile(r"[ -~]*")  # printable ASCII: one cell per character


def _plain(stream: IO[str]) -> bool:
    """True when rich would write to ``stream`` without escape codes.

    Mirrors rich's terminal detection for the console :func:`console` builds:
    TTY_COMPATIBLE and FORCE_COLOR first, then ``isatty``. Not a terminal
    means no colour system, so every style renders as plain text.
    """
    tty_compatible = os.environ.get("TTY_COMPATIBLE", "")
    if tty_compatible == "0":
        return True
    if tty_compatible == "1":
        return False
    force = os.environ.get("FORCE_COLOR")
    if force is not None:
        return force == ""
    isatty = getattr(stream, "isatty", None)
    try:
        return isatty is None or not isatty()
    except ValueError:  # a closed stream: rich treats it as no terminal
        return True


def _plain_text_ok(text: str) -> bool:
    """A str rich would print unchanged (no markup, no emoji code, no control character)."""
    return text.isprintable() and _RICH_SYNTAX.search(text) is None


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]], stream: IO[str]) -> bool:
    """Write the table rich's ``Table()`` prints for these cells (heavy-head box, one
    space of padding, natural column widths) to ``stream``; False when only rich can:
    ``stream`` is a terminal, not UTF-8, or a cell is not plain printable ASCII.
    A table wider than the console is printed whole all the same: a script reading
    a pipe must find every name, id and message on one line, never wrapped or cut.
    """
    if not _plain(stream):
        return False
    encoding = (getattr(stream, "encoding", None) or "utf-8").lower()
    if not encoding.startswith("utf"):
        return False
    cells = [*headers, *(c for row in rows for c in row)]
    if not all(_TABLE_CELL.fullmatch(c) and _RICH_SYNTAX.search(c) is None for c in cells):
        return False
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(left: str, fill: str, cross: str, right: str) -> str:
        return left + cross.join(fill * (w + 2) for w in widths) + right

    def row_line(bar: str, values: Sequence[str]) -> str:
        return bar + bar.join(f" {v:<{w}} " for v, w in zip(values, widths, strict=True)) + bar

    out = [line("┏", "━", "┳", "┓"), row_line("┃", headers), line("┡", "━", "╇", "┩")]
    out.extend(row_line("│", row) for row in rows)
    out.append(line("└", "─", "┴", "┘"))
    stream.write(scrub("\n".join(out) + "\n"))
    stream.flush()  # as rich does after each print: a later stderr line stays after it
    return True


def json_text(data: Any) -> str:
    """``data`` as the JSON document every ``-o json`` prints: an object's fields one a
    line, and each entry of a list among them (credentials, results, records) on a
    line of its own, compact; a list's entries likewise. Any JSON parser reads it;
    ``grep`` finds one credential's line; ``jq .`` indents it all.

    Why not ``indent=2``: Python's encoder has no C path for indented output, and the
    document of 10,000 credentials took 0.5 s to indent and then 25 MB to scrub."""
    if isinstance(data, dict):
        fields = [f"  {_compact(str(k))}: {_entries(v, '  ')}" for k, v in data.items()]
        return "{\n" + ",\n".join(fields) + "\n}" if fields else "{}"
    return _entries(data, "")


def _entries(value: Any, indent: str) -> str:
    if not isinstance(value, list) or not value:
        return _compact(value)
    inner = indent + "  "
    return "[\n" + ",\n".join(inner + _compact(v) for v in value) + "\n" + indent + "]"


_COMPACT = json.JSONEncoder(separators=(", ", ": "))  # one encoder: built once, C speed


def _compact(value: Any) -> str:
    return _COMPACT.encode(value)


def emit_json(data: Any) -> None:
    """Print ``data`` as :func:`json_text` does, scrubbed of every registered value."""
    sys.stdout.write(scrub(json_text(data)) + "\n")


def ago(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "-"
    return format_duration(now - then)


_STATUS_COLUMNS = ("credential", "version", "state", "key id", "age", "note")


def status_rows(
    statuses: Sequence[CredentialStatus], now: datetime
) -> list[tuple[str, str, tuple[str, str], str, str, str]]:
    """The status table's cells; the state cell is (text, style)."""
    rows: list[tuple[str, str, tuple[str, str], str, str, str]] = []
    for st in statuses:
        if st.error:
            rows.append((st.name, "-", ("error", "bold red"), "-", "-", st.error))
            continue
        said = _credential_notes(st)
        if not st.versions:
            note = "no key yet" + (
                f"; rotation {st.rotation.phase.value}" if st.in_flight and st.rotation else ""
            )
            rows.append((st.name, "-", ("-", ""), "-", "-", "; ".join([note, *said])))
            continue
        shown = [v for v in reversed(st.versions) if v.state is not VersionState.DESTROYED]
        first = True
        for v in shown or list(reversed(st.versions))[:1]:
            note = ""
            if v.state is VersionState.CURRENT:
                due = st.next_due
                note = f"due in {format_duration(due - now)}" if due and due > now else "due now"
            if v.expires is not None and v.state.accepted:
                left = v.expires - now
                said_expiry = (
                    f"expires in {format_duration(left)}" if left.total_seconds() > 0 else "EXPIRED"
                )
                note = (note + "; " if note else "") + said_expiry
            if first and st.in_flight and st.rotation is not None:
                note = (note + "; " if note else "") + f"rotation {st.rotation.phase.value}"
            if v.compromised:
                note = (note + "; " if note else "") + "compromised"
            if first and st.drift:
                note = (note + "; " if note else "") + "DRIFT: " + "; ".join(st.drift)
            if first and said:
                note = "; ".join([note, *said] if note else said)
            if first and st.disagree:
                views = ", ".join(
                    f"{n}: {'v' + str(c) if isinstance(c, int) else c or 'none'}"
                    for n, c in st.destinations
                )
                note = (note + "; " if note else "") + f"destinations disagree ({views})"
            rows.append(
                (
                    st.name if first else "",
                    f"v{v.number}",
                    (v.state.value, _STATE_STYLE[v.state]),
                    v.key_id,
                    ago(now, v.created),
                    note,
                )
            )
            first = False
    return rows


def _minute(at: datetime) -> str:
    """A time to the minute for a table cell (``-o json`` has it to the second)."""
    return f"{at:%Y-%m-%d %H:%M}Z"


def _credential_notes(st: CredentialStatus) -> list[str]:
    """What the status line says of the credential as a whole: why it has no key,
    when run retries after a failure, when a closed window opens."""
    notes = []
    rotation = st.rotation
    if st.current is None and st.versions and rotation is not None and not st.in_flight:
        notes.append("no current key")
    if rotation is not None and rotation.failed:
        notes.append(f"rotation {rotation.id} failed: {rotation.failure}")
    if st.retry_after is not None:
        notes.append(f"retry after {_minute(st.retry_after)}")
    if st.window_opens is not None:
        notes.append(f"window opens {_minute(st.window_opens)}")
    if st.person is not None:
        ask, since, _ = st.person
        notes.append(f"waiting for a person since {_minute(since)}: {ask}")
    return notes


def print_status(
    statuses: Sequence[CredentialStatus],
    now: datetime,
    output: str,
    where: Config | None = None,
) -> None:
    """The status table (or JSON); with ``where``, a last line naming the config file
    (or that none was found, and where rotatectl looked), the state directory and
    the audit log (JSON: ``config``, ``state_dir``, ``audit_log``)."""
    if output == "json":
        doc: dict[str, Any] = {"credentials": [s.to_dict() for s in statuses]}
        if where is not None:
            doc.update(
                config=where.source(),
                state_dir=str(where.state_dir),
                audit_log=str(where.audit_file),
            )
        emit_json(doc)
        return
    if not statuses:
        sys.stdout.write("No credentials yet. Start one with: rotatectl rotate NAME\n")
    else:
        print_table(_STATUS_COLUMNS, status_rows(statuses, now))
    if where is not None:
        _line(f"config: {where.source()}; state: {where.state_dir}; audit: {where.audit_file}")


def usage_needs_attention(version: Version, usage: KeyUsage) -> bool:
    """A key seen in use that no client should hold: retired, destroyed or compromised."""
    retired = version.state in (VersionState.RETIRED, VersionState.DESTROYED)
    return (retired or version.compromised) and usage.last_seen is not None


def print_usage(
    name: str,
    rows: Sequence[tuple[Version, KeyUsage]],
    action: Action,
    now: datetime,
    output: str,
    quiet: bool = False,
) -> None:
    """Per version: last seen, count, who; then what the gate decides next. ``quiet``:
    only keys in use that should not be, and the decision when a human must look."""
    attention = action.kind.value == "attention"
    if quiet:
        rows = [(v, u) for v, u in rows if usage_needs_attention(v, u)]
        if not rows and not attention and output != "json":
            return
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
    if rows:
        print_table(
            ("version", "state", "key id", "last seen", "count", "who"),
            [
                (
                    f"v{v.number}",
                    (v.state.value, _STATE_STYLE[v.state]),
                    v.key_id,
                    f"{ago(now, u.last_seen)} ago" if u.last_seen else u.status.value,
                    str(u.count),
                    ", ".join(u.clients) or "-",
                )
                for v, u in rows
            ],
        )
    if quiet and not attention:
        return
    when = f" at {action.until:%Y-%m-%d %H:%M:%SZ}" if action.until else ""
    _line(f"next: {action.kind.value}{when} - {action.reason}")


def _line(text: str, stderr: bool = False) -> None:
    """One line of plain text (no markup), scrubbed."""
    stream = sys.stderr if stderr else sys.stdout
    stream.write(scrub(text.replace("\n", " ") + "\n"))
    stream.flush()


def _result_parts(result: Result, now: datetime) -> list[tuple[str, str]]:
    """The pieces of a result's line, each with its style."""
    outcome = result.outcome.value
    parts = [(f"{result.credential}: ", "bold"), (outcome, _OUTCOME_STYLE[outcome])]
    if result.phase is not None and outcome == "waiting":
        parts.append((f" ({result.phase.value})", ""))
    if result.until is not None and outcome in ("waiting", "idle"):
        parts.append((f", next step in {format_remaining(result.until - now)}", ""))
    if result.message:
        parts.append((f" - {result.message}", ""))
    return parts


def result_line(result: Result, now: datetime) -> Text:
    from rich.text import Text

    text = Text()
    for piece, style in _result_parts(result, now):
        text.append(piece, style or None)
    return text


def is_loud(result: Result) -> bool:
    """Results that go to stderr and survive --quiet."""
    return (
        result.outcome.value in ("failed", "attention", "locked", "preempted") or result.attention
    )


def print_results(
    results: Sequence[Result],
    now: datetime,
    output: str,
    *,
    quiet: bool,
    summary: bool,
    exit_code: int | None = None,
) -> None:
    """The results, one line each (steps and warnings before it), and with
    ``summary`` a closing ``summary:`` line; as JSON, always one whole document."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
    if output == "json":
        from ..report import result_to_dict

        doc: dict[str, object] = {"results": [result_to_dict(r) for r in results]}
        if summary:
            doc["summary"] = dict(sorted(counts.items()))
        if exit_code is not None:
            doc["exit_code"] = exit_code
        emit_json(doc)
        return
    # Each line is a rich Text (no markup): to a pipe or file rich prints its text as is.
    lines: list[tuple[bool, str, str]] = []  # (to stderr, text, style)
    for r in results:
        loud = is_loud(r)
        if quiet and not loud:
            continue
        for step in r.steps:
            lines.append((False, f"{r.credential}: {step}", "dim"))
        for warning in r.warnings:
            lines.append((True, f"{r.credential}: warning: {warning}", "yellow"))
        lines.append((loud, "".join(p for p, _ in _result_parts(r, now)), ""))
    closing = ""
    if summary and not quiet and len(results) > 1:
        closing = "summary: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    if (
        _plain(sys.stdout)
        and _plain(sys.stderr)
        and all(text.isprintable() for _, text, _ in lines)
        and _plain_text_ok(closing)
    ):
        if closing:
            lines.append((False, closing, ""))
        # Consecutive lines to the same stream go out in one write, scrubbed once:
        # scrub's cost grows with the number of keys this process has seen, so a
        # run over 10,000 credentials must not scrub 10,000 lines one by one. (No
        # key contains a newline, so scrubbing the joined lines masks the same.)
        start = 0
        while start < len(lines):
            to_err = lines[start][0]
            end = start
            while end < len(lines) and lines[end][0] == to_err:
                end += 1
            stream = sys.stderr if to_err else sys.stdout
            stream.write(scrub("".join(text + "\n" for _, text, _ in lines[start:end])))
            stream.flush()  # keep the order of the two streams, as rich's flushes did
            start = end
        return
    from rich.text import Text

    out, err = console(), console(stderr=True)
    by_text = iter(lines)
    for r in results:
        loud = is_loud(r)
        if quiet and not loud:
            continue
        for _ in r.steps:
            _, text, style = next(by_text)
            out.print(Text(text, style))
        for _ in r.warnings:
            _, text, style = next(by_text)
            err.print(Text(text, style))
        next(by_text)
        (err if loud else out).print(result_line(r, now))
    if closing:
        out.print(closing)


_BAR = {
    VersionState.PENDING: ("░", "yellow"),
    VersionState.CURRENT: ("█", "green"),
    VersionState.PREVIOUS: ("▒", "cyan"),
    VersionState.RETIRED: ("·", "dim"),
    VersionState.DESTROYED: (" ", ""),
}
_EVENT_KINDS = {"emergency": "!", "rollback": "↺"}


def history_needs_attention(rotation: Rotation) -> bool:
    """A rotation worth a look: an emergency, a rollback, or one that was aborted."""
    return rotation.kind.value in _EVENT_KINDS or rotation.phase.value == "aborted"


def print_history(history: History, output: str, width: int = 60, quiet: bool = False) -> None:
    """One bar per version across the credential's lifetime, events marked on it.
    ``quiet``: only compromised keys and the rotations that need attention
    (:func:`history_needs_attention`), without the bars."""
    if quiet:
        history = history.only(history.compromised, history_needs_attention)
    if output == "json":
        emit_json(history.to_dict())
        return
    if quiet:
        for v, _ in history.versions:
            _line(f"{history.name}: v{v.number} ({v.key_id}) compromised")
        for r in history.rotations:
            _line(f"{history.name}: {_rotation_line(r)}")
        return
    from rich.text import Text

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
        if history.compromised(version):
            notes.append("compromised")
        label = Text(f"v{version.number:<3} {version.key_id:<10} ")
        out.print(
            label
            + bar
            + Text(f"  {version.state.value}" + (f"  {'; '.join(notes)}" if notes else ""))
        )
    for r in history.rotations:
        out.print(Text(f"  {_rotation_line(r)}", "dim"))


def _rotation_line(r: Rotation) -> str:
    """A rotation in the history: started, kind, phase, and when it ended (or that it
    is still in flight), with its reason."""
    end = f"ended {iso(r.finished)}" if r.finished else "still in flight"
    extra = f" - {r.reason}" if r.reason else ""
    return f"{iso(r.started)}  {r.kind.value:<9} {r.phase.value:<11} {end}{extra}"


def audit_needs_attention(record: dict[str, Any]) -> bool:
    """A failed action, or any part of an emergency."""
    return record.get("outcome") not in (None, "ok") or "emergency" in str(record.get("action"))


def print_audit(records: Sequence[dict[str, Any]], output: str, quiet: bool = False) -> None:
    """The records as a table (JSON: as they are); ``quiet``: only those that need
    attention (:func:`audit_needs_attention`)."""
    if quiet:
        records = [r for r in records if audit_needs_attention(r)]
    if output == "json":
        emit_json({"records": list(records)})
        return
    if quiet and not records:
        return
    rows: list[list[Cell]] = []
    for r in records:
        who = r.get("actor", {})
        rows.append(
            [
                str(r.get("seq")),
                str(r.get("ts")),
                str(r.get("credential")),
                (str(r.get("action")), "bold red" if r.get("outcome") == "failed" else ""),
                f"v{r['version']}" if r.get("version") else "-",
                str(r.get("key_id") or "-"),
                f"{who.get('user')}@{who.get('host')} ({who.get('via')})",
                str(r.get("reason") or ""),
            ]
        )
    print_table(("#", "time", "credential", "action", "version", "key id", "who", "reason"), rows)


def print_check(config: Config, items: Sequence[CheckItem], output: str, quiet: bool) -> None:
    """``check``'s report: where the config, state and audit log are, then a line per
    item; to stderr when any failed. ``quiet``: nothing when all is well."""
    failed = any(item.error for item in items)
    if output == "json":
        emit_json(
            {
                "config": config.source(),
                "state_dir": str(config.state_dir),
                "audit_log": str(config.audit_file),
                "ok": not failed,
                "checks": [item.to_dict() for item in items],
            }
        )
        return
    if quiet and not failed:
        return
    lines = [
        f"config: {config.source()}",
        f"state: {config.state_dir}",
        f"audit: {config.audit_file}",
    ]
    for item in items:
        mark = "error" if item.error else "ok"
        lines.append(f"  {mark} {item.item}" + (f" - {item.detail}" if item.detail else ""))
    stream = sys.stderr if failed else sys.stdout
    if _plain(stream):
        stream.write(scrub("".join(line.replace("\n", " ") + "\n" for line in lines)))
        stream.flush()
        return
    from rich.text import Text

    out = console(stderr=failed)
    for line in lines:
        text = Text(line)
        for mark, style in (("  ok ", "green"), ("  error ", "bold red")):
            if line.startswith(mark):
                text.stylize(style, 2, len(mark) - 1)
        out.print(text)


def print_conformance(credential: str, checks: Sequence[Check], output: str, quiet: bool) -> None:
    """``issuer-test``'s report: a line per check (``PASS``/``FAIL``, the check, why),
    then the count; to stderr when any failed. ``quiet``: only the failed checks."""
    failed = [c for c in checks if not c.ok]
    if output == "json":
        emit_json(
            {
                "credential": credential,
                "ok": not failed,
                "passed": len(checks) - len(failed),
                "failed": len(failed),
                "checks": [c.to_dict() for c in checks],
            }
        )
        return
    shown = failed if quiet else checks
    lines = [
        f"{'PASS' if c.ok else 'FAIL'}  {c.name}" + (f" - {c.detail}" if c.detail else "")
        for c in shown
    ]
    if not quiet or failed:
        lines.append(f"{credential}: {len(checks) - len(failed)} passed, {len(failed)} failed")
    stream = sys.stderr if failed else sys.stdout
    stream.write(scrub("".join(line.replace("\n", " ") + "\n" for line in lines)))
    stream.flush()


def print_plugins(found: dict[str, dict[str, str]], output: str) -> None:
    """The installed adapters by kind: type and the object it loads."""
    if output == "json":
        emit_json(
            {
                kind: [{"type": t, "target": target} for t, target in items.items()]
                for kind, items in found.items()
            }
        )
        return
    lines = []
    for kind, items in found.items():
        lines.append(f"{kind}s")
        lines.extend(f"  {type_name:<22} {target}" for type_name, target in items.items())
    sys.stdout.write(scrub("".join(line + "\n" for line in lines)))
