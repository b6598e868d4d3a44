"""The access-log probe: formats, rotated and gzip files, incremental state, coverage."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rotatectl.errors import ConfigError, ProbeError
from rotatectl.model import UsageStatus, iso
from rotatectl.ports import UsageProbe
from rotatectl.probes import access_log
from rotatectl.probes.access_log import AccessLogProbe
from rotatectl.registry import AdapterContext, build
from rotatectl.testing.probe_contract import CREDENTIAL, ProbeContract

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(minutes=15)

NGINX = (
    r'^(?P<client>\S+) \S+ \S+ \[(?P<ts>[^\]]+)\] "[^"]*" (?P<result>\d{3}) \S+'
    r' "[^"]*" "[^"]*" "(?P<key_id>[^"]*)"$'
)
NGINX_TIME = "%d/%b/%Y:%H:%M:%S %z"


def ctx(base: Path) -> AdapterContext:
    return AdapterContext(table="credentials.x.usage", base_dir=base, state_dir=base / "state")


def rec(key_id: str, at: datetime, **extra: Any) -> str:
    data = {"ts": iso(at), "credential": CREDENTIAL, "key_id": key_id, "result": "ok", **extra}
    return json.dumps(data) + "\n"


def nginx_line(key_id: str, at: datetime, client: str | None = None, status: int = 200) -> str:
    stamp = at.strftime("%d/%b/%Y:%H:%M:%S +0000")
    return (
        f'{client or "-"} - - [{stamp}] "GET /v1/orders HTTP/1.1" {status} 512'
        f' "-" "curl/8.5.0" "{key_id}"\n'
    )


def append(path: Path, *lines: str) -> None:
    with path.open("a") as fh:
        fh.write("".join(lines))


def statuses(answer: dict[str, Any]) -> dict[str, UsageStatus]:
    return {k: u.status for k, u in answer.items()}


# -- the contract, for each format ------------------------------------------------------


class TestJsonLinesContract(ProbeContract):
    @pytest.fixture
    def probe(self, tmp_path: Path) -> UsageProbe:
        self.log = tmp_path / "usage.jsonl"
        self.log.touch()
        return AccessLogProbe(self.log, state_dir=tmp_path / "state")

    def record_use(
        self, key_id: str, at: datetime, client: str | None = None, *, rejected: bool = False
    ) -> None:
        extra = {"client": client} if client else {}
        append(self.log, rec(key_id, at, result="rejected" if rejected else "ok", **extra))

    def plant_secret(self, value: str) -> None:
        record = {"ts": iso(self.now()), "key_id": "k-planted", "authorization": value}
        append(self.log, json.dumps(record) + "\n", f"Authorization: Bearer {value}\n")

    def unreadable(self) -> UsageProbe:
        return AccessLogProbe(self.log.parent)  # a directory


class TestNginxContract(ProbeContract):
    @pytest.fixture
    def probe(self, tmp_path: Path) -> UsageProbe:
        self.log = tmp_path / "access.log"
        self.log.touch()
        return AccessLogProbe(
            self.log,
            log_format="regex",
            pattern=NGINX,
            time_format=NGINX_TIME,
            rejected_results=["401", "403"],
            state_dir=tmp_path / "state",
        )

    def record_use(
        self, key_id: str, at: datetime, client: str | None = None, *, rejected: bool = False
    ) -> None:
        append(self.log, nginx_line(key_id, at, client, 401 if rejected else 200))

    def plant_secret(self, value: str) -> None:
        append(self.log, nginx_line(value, self.now()).replace("GET", f"GET /?key={value}"))

    def unreadable(self) -> UsageProbe:
        return AccessLogProbe(self.log / "nested", log_format="regex", pattern=NGINX)


# -- formats ---------------------------------------------------------------------------------------


def test_nginx_log_with_statuses_and_clients(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(
        log,
        nginx_line("k1", NOW - timedelta(minutes=9), "10.0.0.7"),
        nginx_line("k1", NOW - timedelta(minutes=3), "10.0.0.9", status=403),
        nginx_line("-", NOW - timedelta(minutes=2), "10.0.0.1"),  # no key: not a usage record
        "garbage that is no access log line\n",
        nginx_line("k2", NOW - timedelta(hours=2), "10.0.0.8"),
    )
    probe = AccessLogProbe.from_config(
        {
            "path": "access.log",
            "format": "regex",
            "pattern": NGINX,
            "time_format": NGINX_TIME,
            "rejected_results": ["401", "403"],
        },
        ctx(tmp_path),
    )
    got = probe.usage(CREDENTIAL, ["k1", "k2"], SINCE, NOW)
    assert got["k1"].status is UsageStatus.SEEN
    assert got["k1"].last_seen == NOW - timedelta(minutes=3)
    assert (got["k1"].count, got["k1"].rejected) == (2, 1)
    assert got["k1"].clients == ("10.0.0.7", "10.0.0.9")
    assert got["k1"].detail == "1 of 2 attempts rejected; 1 unmatched lines skipped"
    assert got["k2"].status is UsageStatus.NOT_SEEN


def test_regex_with_credential_group_and_epoch_times(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    at = NOW - timedelta(minutes=1)
    append(
        log,
        f"{at.timestamp():.3f} cred=partners/acme key=k1 ok\n",
        f"{at.timestamp():.3f} cred=someone/else key=k2 ok\n",
    )
    probe = AccessLogProbe(
        log,
        log_format="regex",
        pattern=r"^(?P<ts>\S+) cred=(?P<credential>\S+) key=(?P<key_id>\S+) (?P<result>\w+)",
        time_format="epoch",
    )
    got = probe.usage(CREDENTIAL, ["k1", "k2"], SINCE, NOW)
    assert statuses(got) == {"k1": UsageStatus.SEEN, "k2": UsageStatus.NOT_SEEN}
    assert got["k1"].last_seen == at


def test_a_pattern_that_matches_nothing_is_unknown(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, nginx_line("k1", NOW).replace('"k1"', "k1"))  # the pattern expects quotes
    probe = AccessLogProbe(log, log_format="regex", pattern=NGINX, time_format=NGINX_TIME)
    got = probe.usage(CREDENTIAL, ["k1"], SINCE, NOW)["k1"]
    assert got.status is UsageStatus.UNKNOWN
    assert "no line of the log matches the pattern" in got.detail


def test_json_lines_with_no_record_at_all_is_unknown(tmp_path: Path) -> None:
    log = tmp_path / "u.jsonl"
    append(log, "this is a plain log\n", "not a usage record either\n")
    got = AccessLogProbe(log).usage(CREDENTIAL, ["k1"], SINCE, NOW)["k1"]
    assert got.status is UsageStatus.UNKNOWN
    assert "2 malformed lines skipped" in got.detail


# -- rotated and compressed files ------------------------------------------------------------------


def test_rotated_and_gzipped_siblings_are_read(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    append(log, rec("k1", NOW - timedelta(minutes=1), client="live"))
    append(tmp_path / "usage.jsonl.1", rec("k1", NOW - timedelta(minutes=5), client="one"))
    with gzip.open(tmp_path / "usage.jsonl.2.gz", "wt") as fh:
        fh.write(rec("k1", NOW - timedelta(minutes=10), client="two"))
        fh.write(rec("k2", NOW - timedelta(minutes=11)))
    append(
        tmp_path / "usage.jsonl-20261126",
        rec("k0", SINCE - timedelta(hours=1)),  # the history reaches back before the window
        rec("k3", NOW - timedelta(minutes=12)),
    )
    append(tmp_path / "usage.jsonl.bak", rec("k4", NOW - timedelta(minutes=1)))  # not ours
    got = AccessLogProbe(log).usage(CREDENTIAL, ["k1", "k2", "k3", "k4"], SINCE, NOW)
    assert got["k1"].count == 3
    assert got["k1"].clients == ("live", "one", "two")
    assert got["k1"].last_seen == NOW - timedelta(minutes=1)
    assert statuses(got) == {
        "k1": UsageStatus.SEEN,
        "k2": UsageStatus.SEEN,
        "k3": UsageStatus.SEEN,
        "k4": UsageStatus.NOT_SEEN,
    }


def test_glob_path_reads_every_match(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    append(tmp_path / "logs" / "a.jsonl", rec("k1", NOW - timedelta(minutes=20)))
    with gzip.open(tmp_path / "logs" / "b.jsonl.gz", "wt") as fh:
        fh.write(rec("k1", NOW - timedelta(minutes=2)))
    (tmp_path / "logs" / "dir.jsonl").mkdir()  # a directory that matches is skipped
    probe = AccessLogProbe.from_config({"path": "logs/*.jsonl*"}, ctx(tmp_path))
    got = probe.usage(CREDENTIAL, ["k1"], SINCE, NOW)["k1"]
    assert (got.status, got.count) == (UsageStatus.SEEN, 1)
    empty = AccessLogProbe(tmp_path / "nothing" / "*.log").usage(CREDENTIAL, ["k1"], SINCE, NOW)
    assert empty["k1"].status is UsageStatus.UNKNOWN
    assert "no file matches" in empty["k1"].detail


def test_a_corrupt_gzip_file_is_a_probe_error(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    append(log, rec("k1", NOW))
    data = gzip.compress(rec("k1", NOW).encode() * 50)
    (tmp_path / "usage.jsonl.1.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ProbeError, match=r"usage\.jsonl\.1\.gz"):
        AccessLogProbe(log).usage(CREDENTIAL, ["k1"], SINCE, NOW)


# -- incremental -----------------------------------------------------------------------------------


@pytest.fixture
def parsed_lines(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the lines the JSON parser sees."""
    seen = [0]
    original = access_log._json_fields

    def counting(line: bytes) -> Any:
        seen[0] += 1
        return original(line)

    monkeypatch.setattr(access_log, "_json_fields", counting)
    return seen


def test_a_second_run_reads_only_new_lines(tmp_path: Path, parsed_lines: list[int]) -> None:
    log = tmp_path / "usage.jsonl"
    append(log, *(rec("k1", NOW - timedelta(minutes=10)) for _ in range(100)))
    first = AccessLogProbe(log, state_dir=tmp_path / "state")
    assert first.usage(CREDENTIAL, ["k1"], SINCE, NOW)["k1"].count == 100
    assert parsed_lines[0] == 100
    append(log, rec("k1", NOW - timedelta(minutes=1)), rec("k2", NOW))
    # A new probe (a new process, as with cron) picks up where the last one stopped.
    second = AccessLogProbe(log, state_dir=tmp_path / "state")
    got = second.usage(CREDENTIAL, ["k1", "k2"], SINCE, NOW)
    assert parsed_lines[0] == 102
    assert got["k1"].count == 101
    assert got["k1"].last_seen == NOW - timedelta(minutes=1)
    assert got["k2"].count == 1
    # Nothing new: nothing parsed, same answer.
    assert second.usage(CREDENTIAL, ["k1", "k2"], SINCE, NOW) == got
    assert parsed_lines[0] == 102
    state = tmp_path / "state" / "access-log"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    (db,) = state.glob("*.db")
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_a_line_still_being_written_is_read_once_complete(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    line = rec("k1", NOW - timedelta(minutes=1))
    append(log, rec("k1", NOW - timedelta(minutes=2)), line[:20])
    probe = AccessLogProbe(log, state_dir=tmp_path / "state")
    got = probe.usage(CREDENTIAL, ["k1"], SINCE, NOW)["k1"]
    assert (got.count, got.detail) == (1, "")  # the half line is neither counted nor malformed
    append(log, line[20:])
    got = probe.usage(CREDENTIAL, ["k1"], SINCE, NOW)["k1"]
    assert (got.count, got.last_seen, got.detail) == (2, NOW - timedelta(minutes=1), "")
    # A whole record without its newline yet is read; the newline later is no new line.
    append(log, line.rstrip("\n"))
    assert probe.usage(CREDENTIAL, ["k1"], SINCE, NOW)["k1"].count == 3
    append(log, "\n")
    assert probe.usage(CREDENTIAL, ["k1"], SINCE, NOW)["k1"].count == 3


def test_truncated_or_rewritten_file_is_read_again(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    append(log, *(rec("k1", NOW - timedelta(minutes=5)) for _ in range(3)))
    probe = AccessLogProbe(log, state_dir=tmp_path / "state")
    assert probe.usage(CREDENTIAL, ["k1"], SINCE, NOW)["k1"].count == 3
    log.write_text(rec("k2", NOW - timedelta(minutes=4)))  # truncated and rewritten
    got = probe.usage(CREDENTIAL, ["k1", "k2"], SINCE, NOW)
    # The old content is remembered (it happened), the new one is read from its start.
    assert (got["k1"].count, got["k2"].count) == (3, 1)
    # Same first line, different content after it: read again, not appended to.
    log.write_text(rec("k2", NOW - timedelta(minutes=4)) + rec("k3", NOW) * 5)
    got = probe.usage(CREDENTIAL, ["k2", "k3"], SINCE, NOW)
    assert (got["k2"].count, got["k3"].count) == (1, 5)
    log.write_text(rec("k2", NOW - timedelta(minutes=4)))  # shrunk, same first line
    got = probe.usage(CREDENTIAL, ["k2", "k3"], SINCE, NOW)
    assert (got["k2"].count, got["k3"].count) == (1, 0)
    assert got["k3"].status is not UsageStatus.SEEN


def test_rename_compress_and_copytruncate_count_nothing_twice(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    one, two = tmp_path / "usage.jsonl.1", tmp_path / "usage.jsonl.2.gz"
    probe = AccessLogProbe(log, state_dir=tmp_path / "state")

    def count() -> int:
        return probe.usage(CREDENTIAL, ["k1"], SINCE, NOW)["k1"].count

    append(log, rec("k1", NOW - timedelta(minutes=9)), rec("k1", NOW - timedelta(minutes=8)))
    assert count() == 2
    # logrotate "create": rename, then a new file; a line landed before the rename.
    append(log, rec("k1", NOW - timedelta(minutes=7)))
    log.rename(one)
    append(log, rec("k1", NOW - timedelta(minutes=6)))
    assert count() == 4
    # ... then compression of the rotated file (a new inode, same content).
    with one.open("rb") as src, gzip.open(two, "wb") as dst:
        shutil.copyfileobj(src, dst)
    one.unlink()
    assert count() == 4
    # "copytruncate": copy, then truncate the live file in place.
    append(log, rec("k1", NOW - timedelta(minutes=5)))
    shutil.copy(log, one)
    with log.open("r+") as fh:
        fh.truncate(0)
    append(log, rec("k1", NOW - timedelta(minutes=4)))
    assert count() == 6
    # Renaming a compressed file again changes nothing.
    two.rename(tmp_path / "usage.jsonl.3.gz")
    assert count() == 6


def test_parallel_runs_share_the_state_without_double_counting(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    append(log, *(rec(f"k{i % 7}", NOW - timedelta(seconds=i)) for i in range(5000)))
    answers: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            probe = AccessLogProbe(log, state_dir=tmp_path / "state")
            got = probe.usage(CREDENTIAL, ["k1"], NOW - timedelta(hours=2), NOW)
            answers.append(got["k1"].count)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert answers == [5000 // 7 + 1] * 4  # k1: i = 1, 8, ..., 4999 -> 715


def test_buckets_coarsen_with_age_and_answers_stay_right(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    start = NOW - timedelta(days=3)
    append(log, *(rec("k1", start + timedelta(minutes=7 * i)) for i in range(3 * 24 * 60 // 7)))
    probe = AccessLogProbe(log, state_dir=tmp_path / "state")
    week = probe.usage(CREDENTIAL, ["k1"], NOW - timedelta(days=7), NOW)["k1"]
    assert week.count == 3 * 24 * 60 // 7
    assert week.last_seen == start + timedelta(minutes=7 * (3 * 24 * 60 // 7 - 1))
    # Later runs move older buckets to coarser tiers; totals and last_seen hold.
    later = NOW + timedelta(days=2)
    append(log, rec("k1", later - timedelta(seconds=30)))
    again = probe.usage(CREDENTIAL, ["k1"], NOW - timedelta(days=7), later)["k1"]
    assert again.count == week.count + 1
    assert again.last_seen == later - timedelta(seconds=30)
    recent = probe.usage(CREDENTIAL, ["k1"], later - timedelta(minutes=1), later)["k1"]
    assert (recent.count, recent.last_seen) == (1, later - timedelta(seconds=30))


def test_history_older_than_the_setting_is_dropped(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    append(tmp_path / "usage.jsonl.1", rec("k1", NOW - timedelta(days=3)))
    append(log, rec("k2", NOW - timedelta(hours=1)))
    probe = AccessLogProbe(log, state_dir=tmp_path / "state", history=timedelta(days=1))
    got = probe.usage(CREDENTIAL, ["k1", "k3"], NOW - timedelta(days=5), NOW)
    # k1's use is gone from the state; the window reaches before what is kept.
    assert statuses(got) == {"k1": UsageStatus.UNKNOWN, "k3": UsageStatus.UNKNOWN}
    fine = probe.usage(CREDENTIAL, ["k3"], NOW - timedelta(hours=2), NOW)
    assert fine["k3"].status is UsageStatus.NOT_SEEN


def test_a_corrupt_state_file_is_replaced(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    append(log, rec("k1", NOW))
    probe = AccessLogProbe(log, state_dir=tmp_path / "state")
    assert probe.usage(CREDENTIAL, ["k1"], SINCE, NOW)["k1"].count == 1
    (db,) = (tmp_path / "state" / "access-log").glob("*.db")
    db.write_bytes(b"not a database at all" * 100)
    assert probe.usage(CREDENTIAL, ["k1"], SINCE, NOW)["k1"].count == 1


def test_an_unusable_state_dir_is_a_probe_error(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    append(log, rec("k1", NOW))
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    with pytest.raises(ProbeError, match="state"):
        AccessLogProbe(log, state_dir=blocker).usage(CREDENTIAL, ["k1"], SINCE, NOW)


# -- coverage --------------------------------------------------------------------------------------


def test_history_rotated_away_is_unknown_for_unseen_keys(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    one = tmp_path / "usage.jsonl.1"
    append(one, rec("k1", NOW - timedelta(minutes=10)))  # the oldest file left starts late
    append(log, rec("k1", NOW - timedelta(minutes=2)))
    got = AccessLogProbe(log).usage(CREDENTIAL, ["k1", "k2"], SINCE, NOW)
    assert got["k1"].status is UsageStatus.SEEN  # seen is seen, however short the history
    assert got["k2"].status is UsageStatus.UNKNOWN
    assert "does not reach back to the window start" in got["k2"].detail
    # A rotated file that reaches back before the window start covers it.
    one.write_text(rec("k1", SINCE - timedelta(minutes=1)) + rec("k1", NOW - timedelta(minutes=10)))
    got = AccessLogProbe(log).usage(CREDENTIAL, ["k2"], SINCE, NOW)
    assert got["k2"].status is UsageStatus.NOT_SEEN


def test_a_replaced_file_is_rotation_even_without_siblings(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    append(log, rec("k1", NOW - timedelta(minutes=10)))
    probe = AccessLogProbe(log, state_dir=tmp_path / "state")
    # One file, never rotated: it is all the history there is.
    assert probe.usage(CREDENTIAL, ["k2"], SINCE, NOW)["k2"].status is UsageStatus.NOT_SEEN
    log.unlink()  # rotated with "rotate 0": the old file is gone, a new one starts
    append(log, rec("k3", NOW - timedelta(minutes=1)))
    later = NOW + timedelta(hours=1)
    window = later - timedelta(minutes=90)  # starts before anything either file held
    got = probe.usage(CREDENTIAL, ["k2"], window, later)
    assert got["k2"].status is UsageStatus.UNKNOWN
    # Windows inside what the state remembers are still answered.
    inside = probe.usage(CREDENTIAL, ["k2"], NOW - timedelta(minutes=10), later)
    assert inside["k2"].status is UsageStatus.NOT_SEEN


def test_a_file_older_than_the_window_covers_it(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    append(tmp_path / "usage.jsonl.1", rec("k1", NOW - timedelta(minutes=5)))
    log.touch()
    old = (SINCE - timedelta(minutes=1)).timestamp()
    os.utime(log, (old, old))  # created (and last written) before the window began
    got = AccessLogProbe(log).usage(CREDENTIAL, ["k2"], SINCE, NOW)
    assert got["k2"].status is UsageStatus.NOT_SEEN


def test_a_file_watched_since_before_the_window_covers_it(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    append(tmp_path / "usage.jsonl.1", rec("k1", NOW - timedelta(minutes=30)))
    probe = AccessLogProbe(log, state_dir=tmp_path / "state")
    log.touch()
    probe.usage(CREDENTIAL, ["k1"], NOW - timedelta(hours=1), NOW)  # sees the empty live file
    append(log, rec("k1", NOW + timedelta(minutes=20)))
    later = NOW + timedelta(minutes=30)
    got = probe.usage(CREDENTIAL, ["k2"], NOW - timedelta(minutes=5), later)
    assert got["k2"].status is UsageStatus.NOT_SEEN


# -- config ----------------------------------------------------------------------------------------


def test_from_config_defaults_and_state_dir(tmp_path: Path) -> None:
    probe = build("probe", {"type": "access-log", "path": "u.jsonl"}, ctx(tmp_path))
    assert isinstance(probe, AccessLogProbe)
    assert probe.path == tmp_path / "u.jsonl"
    assert probe.state_file is not None
    assert probe.state_file.parent == tmp_path / "state" / "access-log"
    other = AccessLogProbe.from_config(
        {"path": "u.jsonl", "state_dir": "cache", "history": "7d"}, ctx(tmp_path)
    )
    assert (
        other.state_file is not None
        and other.state_file.parent == tmp_path / "cache" / "access-log"
    )
    assert other.history == timedelta(days=7)


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"path": "x", "format": "csv"}, "format"),
        ({"path": "x", "format": "regex"}, "pattern"),
        ({"path": "x", "pattern": "(?P<key_id>.)(?P<ts>.)"}, "pattern"),
        ({"path": "x", "format": "regex", "pattern": "("}, "pattern"),
        ({"path": "x", "format": "regex", "pattern": "(?P<key_id>.)"}, "pattern"),
        (
            {"path": "x", "format": "regex", "pattern": "(?P<key_id>.)(?P<ts>.)(?P<who>.)"},
            "pattern",
        ),
        ({"path": "x", "time_format": "nginx"}, "time_format"),
        ({"path": "x", "rejected_results": [401]}, "rejected_results"),
        ({"path": "x", "rejected_results": "401"}, "rejected_results"),
        ({"path": "x", "history": "forever"}, "history"),
        ({"path": "x", "history": "0s"}, "history"),
        ({"path": "x", "state_dir": ""}, "state_dir"),
    ],
)
def test_from_config_rejects(tmp_path: Path, settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        AccessLogProbe.from_config(settings, ctx(tmp_path))
    assert f"[credentials.x.usage] {key}:" in str(info.value)


# -- scale -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_million_lines_second_run_is_fast(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    # 1,000 blocks of 1,000 lines (50 keys, 91 clients), one timestamp per block,
    # spread over the day before NOW; written with one bulk write.
    block = "".join(
        f'{{"ts":"TTTTTTTTTTTTTTTTTTTT","credential":"partners/acme","key_id":"k{i % 50}",'
        f'"result":"ok","client":"10.0.{i % 7}.{i % 13}"}}\n'
        for i in range(1000)
    ).encode()
    day = NOW - timedelta(days=1)
    stamps = [iso(day + timedelta(seconds=86 * b)).encode() for b in range(1000)]
    assert all(len(stamp) == 20 for stamp in stamps)
    log.write_bytes(b"".join(block.replace(b"TTTTTTTTTTTTTTTTTTTT", stamp) for stamp in stamps))
    state = tmp_path / "state"

    started = time.perf_counter()
    first = AccessLogProbe(log, state_dir=state).usage(
        CREDENTIAL, ["k1", "k49"], NOW - timedelta(days=2), NOW
    )
    first_s = time.perf_counter() - started
    assert first["k1"].count == 20_000

    append(log, rec("k1", NOW - timedelta(seconds=5), client="late"), rec("k50", NOW))
    started = time.perf_counter()
    second = AccessLogProbe(log, state_dir=state).usage(
        CREDENTIAL, ["k1", "k49", "k50", "nope"], NOW - timedelta(days=2), NOW
    )
    second_s = time.perf_counter() - started
    print(f"\n1,000,000-line log: first run {first_s:.2f}s, second run {second_s * 1000:.0f}ms")
    assert second["k1"].count == 20_001
    assert second["k1"].last_seen == NOW - timedelta(seconds=5)
    assert second["k50"].clients == ()
    assert second["k49"].count == 20_000
    assert (second["k50"].count, second["k50"].last_seen) == (1, NOW)
    assert second["nope"].status is UsageStatus.NOT_SEEN
    assert second_s < 1.0
