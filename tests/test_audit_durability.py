"""The audit log survives a full disk, a crash mid-write and an unreadable file (issue 15, item 8).

Nothing here mocks ``os.write``: the disk is really full (a small tmpfs filled
to the last page), the file size is really limited (``RLIMIT_FSIZE`` in a child
process), the file is really unreadable (mode 000, in a child process that has
dropped the root capabilities that would override it). Tests run as root here
and in CI; a tmpfs that cannot be mounted fails the test, it never skips it.
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rotatectl.audit import AuditLog
from rotatectl.errors import AuditError, OperationError

from .conftest import Cli
from .fulldisk import PAGE, fill

TORN = b'{"action":"promoted","actor":{"host":"h1","pid":41'  # a record cut short by a crash


# -- a really full disk (tests/fulldisk.py: the tmpfs fixture, fill) ---------------------


def snapshot(log: AuditLog) -> tuple[bytes, bytes | None]:
    head = log.head.read_bytes() if log.head.exists() else None
    return log.path.read_bytes(), head


def append(log: AuditLog, i: int = 0) -> dict[str, object]:
    return log.append("retired", f"cred/{i % 3}", version=i + 1, key_id=f"k{i}", outcome="ok")


@pytest.mark.parametrize("where", ["crosses-a-page", "fits-in-the-page"])
def test_append_on_a_full_disk_fails_whole_and_leaves_the_log_as_it_was(
    tmpfs: Path, where: str
) -> None:
    # crosses-a-page: the record needs a new page, so the write is short (or fails at once).
    # fits-in-the-page: the record fits in the log's last page and is written; the head file
    # then cannot be, and the record must be taken back out.
    log = AuditLog(tmpfs / "audit.jsonl")
    for i in range(200):
        append(log, i)
        room = PAGE - log.path.stat().st_size % PAGE
        if (where == "crosses-a-page" and room < 40) or (
            where == "fits-in-the-page" and 1200 < room < 2000
        ):
            break
    else:
        pytest.fail("could not place the log's end where the test needs it")
    fill(tmpfs)
    before = snapshot(log)
    count = len(before[0].splitlines())
    for _ in range(3):  # and again: a failed append leaves nothing behind to trip on
        with pytest.raises(AuditError) as caught:
            append(log, 999)
        assert str(caught.value) == f"audit log {log.path}: No space left on device"
        assert isinstance(caught.value, OperationError)
        assert snapshot(log) == before
    assert not log.head.with_name(log.head.name + ".tmp").exists()
    assert log.verify() == (count, None)
    (tmpfs / "filler").unlink()
    record = append(log, 1000)  # space again: the chain goes on
    assert record["seq"] == count + 1
    assert log.verify() == (count + 1, None)


_CHILD = """
import sys
from pathlib import Path
from rotatectl.audit import AuditLog
from rotatectl.errors import AuditError
try:
    AuditLog(Path(sys.argv[1])).append("read-value", "a", version=1, key_id="k1")
except AuditError as exc:
    print(exc)
    sys.exit(9)
"""


def _limit_file_size(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG and a short write, not a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize("room", [0, 1, 37, 200])
@pytest.mark.parametrize("torn_tail", [False, True])
def test_a_write_past_the_file_size_limit_is_taken_back(
    tmp_path: Path, room: int, torn_tail: bool
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(4):
        append(log, i)
    if torn_tail:
        with log.path.open("ab") as fh:
            fh.write(TORN)
    before = snapshot(log)
    limit = len(before[0]) + room  # the record needs ~300 bytes: the write is short or fails
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(log.path)],
        preexec_fn=lambda: _limit_file_size(limit),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 9, proc.stderr
    assert proc.stdout == f"audit log {log.path}: File too large\n"
    assert proc.stderr == ""
    assert snapshot(log) == before
    _, problem = log.verify()
    if torn_tail:
        assert problem is not None and problem.torn == (5,)
    else:
        assert problem is None


def test_a_head_file_that_cannot_be_replaced_takes_the_record_back(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(3):
        append(log, i)
    before = log.path.read_bytes()
    log.head.unlink()
    log.head.mkdir()  # os.replace onto a non-empty directory fails
    (log.head / "x").write_text("x")
    with pytest.raises(AuditError, match=r"^audit log .*audit\.jsonl: Is a directory$"):
        append(log, 3)
    assert log.path.read_bytes() == before
    assert not log.head.with_name(log.head.name + ".tmp").exists()


# -- a torn tail, as a crash leaves it ---------------------------------------------------


@pytest.mark.parametrize(
    "tail",
    [TORN, b"\0" * 700, TORN + b"\n", b"\n"],
    ids=["cut-short", "zeros-after-power-loss", "garbage-line", "bare-newline"],
)
def test_a_torn_tail_is_kept_stepped_over_and_reported(tmp_path: Path, tail: bytes) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(3):
        append(log, i)
    good = log.path.read_bytes()
    log.path.write_bytes(good + tail)
    count, problem = log.verify()
    assert count == 3 and problem is not None
    assert (problem.line, problem.torn) == (4, (4,))
    assert str(problem) == "torn record at line 4: an interrupted write (crash or full disk)"
    assert [r["seq"] for r in log.show()] == [1, 2, 3]

    record = append(log, 3)  # does not fail; chains from the last whole record
    data = log.path.read_bytes()
    assert data.startswith(good + tail)  # the evidence is kept, byte for byte
    separator = b"" if tail.endswith(b"\n") else b"\n"
    acknowledged = tail + separator
    assert record["seq"] == 4
    assert record["prev"] == json.loads(good.splitlines()[-1])["hash"]
    assert record["torn"] == {
        "lines": 1,
        "bytes": len(acknowledged),
        "sha256": hashlib.sha256(acknowledged).hexdigest(),
    }
    append(log, 4)
    count, problem = log.verify()
    assert count == 5 and problem is not None
    assert (problem.line, problem.torn) == (4, (4,))  # only the torn line, nothing else
    assert [r["seq"] for r in log.show()] == [1, 2, 3, 4, 5]


def test_a_whole_record_missing_only_its_newline_is_completed(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(3):
        append(log, i)
    head = log.head.read_bytes()
    append(log, 3)
    data = log.path.read_bytes()
    log.path.write_bytes(data[:-1])  # the crash came just before the newline (and the head)
    log.head.write_bytes(head)
    _, problem = log.verify()
    assert problem is not None and problem.torn == (4,)
    record = append(log, 4)
    assert record["seq"] == 5 and "torn" not in record
    assert log.verify() == (5, None)


def test_two_crashes_in_a_row_are_acknowledged_together(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(2):
        append(log, i)
    with log.path.open("ab") as fh:
        fh.write(TORN)  # crash 1
    append(log, 2)
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])  # crash 2, in the next append
    log.head.write_text(json.dumps({"seq": 2, "hash": json.loads(lines[1])["hash"]}))
    _, problem = log.verify()
    assert problem is not None and problem.torn == (3, 4)
    record = append(log, 3)
    assert record["seq"] == 3 and record["torn"]["lines"] == 2
    count, problem = log.verify()
    assert count == 3 and problem is not None and problem.torn == (3, 4)
    assert str(problem).startswith("torn records at lines 3, 4: ")


def test_an_acknowledged_torn_line_cannot_be_edited_or_garbage_added(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(2):
        append(log, i)
    with log.path.open("ab") as fh:
        fh.write(TORN)
    append(log, 2)
    lines = log.path.read_bytes().splitlines(keepends=True)
    edited = [*lines[:2], lines[2].replace(b"h1", b"h2"), *lines[3:]]
    log.path.write_bytes(b"".join(edited))
    _, problem = log.verify()
    assert problem is not None and not problem.torn and problem.line == 3
    assert "acknowledges" in problem.reason
    # garbage between two records that no record acknowledges is tampering, as before
    log.path.write_bytes(b"".join([*lines[:1], b"{not json\n", *lines[1:]]))
    _, problem = log.verify()
    assert problem is not None and (problem.line, problem.reason) == (2, "not valid JSON")


# -- through the CLI ---------------------------------------------------------------------


def _on(cli: Cli, log: Path) -> None:
    (cli.cwd / "rotatectl.toml").write_text(f'[audit]\npath = "{log}"\n')


def _one_line(text: str) -> str:
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_cli_on_a_full_disk_refuses_to_reveal_and_leaves_the_log_intact(
    tmpfs: Path,
    cli: Cli,  # in this order: the leak check reads the tmpfs before it goes
) -> None:
    log = tmpfs / "audit.jsonl"
    _on(cli, log)
    assert cli("rotate", "a").code == 0
    fill(tmpfs)
    before = log.read_bytes(), log.with_name("audit.jsonl.head").read_bytes()
    run = cli("get", "a")
    assert run.code == 1
    assert run.out == ""  # the value is never handed out unaudited
    assert _one_line(run.err) == f"rotatectl: error: audit log {log}: No space left on device"
    assert (log.read_bytes(), log.with_name("audit.jsonl.head").read_bytes()) == before
    run = cli("audit", "verify")
    assert run.code == 0 and "chain intact" in run.out, run.err


def test_cli_torn_tail_is_reported_and_every_command_goes_on(cli: Cli) -> None:
    assert cli("rotate", "a").code == 0
    log = cli.state_dir / "audit.jsonl"
    good = log.read_bytes()
    n = len(good.splitlines())
    log.write_bytes(good + TORN)  # the crash

    run = cli("audit", "verify")
    assert run.code == 3
    assert f"torn record at line {n + 1}: an interrupted write" in _one_line(run.err)
    run = cli("audit", "show", "-o", "json")
    assert run.code == 0, run.err
    assert [r["seq"] for r in json.loads(run.out)["records"]] == list(range(1, n + 1))
    assert f"line {n + 1}" in _one_line(run.err)
    assert cli("audit", "show").code == 0
    assert cli("status").code == 0

    run = cli("rotate", "b")
    assert run.code == 0, run.err
    assert "audit" not in run.out + run.err
    run = cli("emergency", "a", "--reason", "leaked in a paste", "--yes")
    assert run.code == 0, run.err + run.out
    assert "audit" not in run.out + run.err

    data = log.read_bytes()
    assert data.startswith(good + TORN + b"\n")
    records = [json.loads(x) for x in data[len(good + TORN) + 1 :].splitlines()]
    assert records[0]["seq"] == n + 1 and records[0]["torn"]["lines"] == 1
    assert records[0]["prev"] == json.loads(good.splitlines()[-1])["hash"]
    for before, after in itertools.pairwise(records):
        assert (after["seq"], after["prev"]) == (before["seq"] + 1, before["hash"])
    run = cli("audit", "verify", "-o", "json")
    assert run.code == 3
    report = json.loads(run.out)
    assert report["records"] == n + len(records)
    assert report["torn"] == [n + 1]
    assert report["problem"].startswith(f"torn record at line {n + 1}:")


def _without_dac_override() -> None:
    """Root reads any file; drop that power (from this child only) so mode 000 means it."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: gone after the exec
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _cli_unprivileged(cli: Cli, *args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        cli.argv(*args),
        cwd=cli.cwd,
        env=cli.env,
        preexec_fn=_without_dac_override,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    cli.record(args, proc.returncode, proc.stdout, proc.stderr)
    return proc.returncode, proc.stdout, proc.stderr


def test_cli_unreadable_log_is_one_line_and_exit_1(cli: Cli) -> None:
    assert cli("rotate", "a").code == 0
    log = cli.state_dir / "audit.jsonl"
    log.chmod(0)
    try:
        read = "read access to it"
        write = f"write access to it and to {log.parent}, or set path in [audit]"
        for args, advice in (
            (("audit", "verify"), read),
            (("audit", "show"), read),
            (("get", "a"), write),  # it appends the record of the read before revealing
        ):
            code, out, err = _cli_unprivileged(cli, *args)
            assert code == 1, (args, err)
            assert _one_line(err) == (
                f"rotatectl: error: audit log {log}: Permission denied; give this user {advice}"
            )
            assert out == ""
    finally:
        log.chmod(0o600)


def test_cli_unwritable_log_directory_is_one_line_and_exit_1(cli: Cli) -> None:
    assert cli("rotate", "a").code == 0
    logs = cli.root / "logs"
    logs.mkdir()
    _on(cli, logs / "audit.jsonl")
    logs.chmod(0o500)
    try:
        code, out, err = _cli_unprivileged(cli, "get", "a")
        assert code == 1 and out == ""
        line = _one_line(err)
        assert line == (
            f"rotatectl: error: audit log {logs / 'audit.jsonl'}: Permission denied; give this "
            f"user write access to it and to {logs}, or set path in [audit]"
        )
    finally:
        logs.chmod(0o700)
    assert not (logs / "audit.jsonl").exists()
