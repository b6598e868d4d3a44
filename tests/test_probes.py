from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rotatectl.errors import ConfigError, ProbeError
from rotatectl.model import UsageStatus, iso
from rotatectl.ports import UsageProbe
from rotatectl.probes.access_log import AccessLogProbe
from rotatectl.probes.none import NoProbe
from rotatectl.registry import AdapterContext, build

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(minutes=15)
CRED = "partners/acme"


def ctx(base: Path) -> AdapterContext:
    return AdapterContext(table="credentials.x.usage", base_dir=base, state_dir=base)


def rec(key_id: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return {"ts": iso(at), "credential": CRED, "key_id": key_id, "result": "ok", **extra}


def write_log(path: Path, *lines: dict[str, Any] | str) -> Path:
    with path.open("w") as fh:
        for line in lines:
            fh.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    return path


# -- none ----------------------------------------------------------------------


def test_no_probe(tmp_path: Path) -> None:
    probe = NoProbe.from_config({}, ctx(tmp_path))
    assert isinstance(probe, UsageProbe)
    got = probe.usage(CRED, ["a", "b"], SINCE, NOW)
    assert set(got) == {"a", "b"}
    assert all(u.status is UsageStatus.NOT_MEASURED for u in got.values())
    with pytest.raises(ConfigError):
        NoProbe.from_config({"path": "x"}, ctx(tmp_path))


# -- access-log -------------------------------------------------------------------


def test_seen_and_not_seen(tmp_path: Path) -> None:
    log = write_log(
        tmp_path / "usage.jsonl",
        rec("k1", NOW - timedelta(minutes=10), client="10.0.0.7"),
        rec("k1", NOW - timedelta(minutes=2), client="10.0.0.8"),
        rec("k1", NOW - timedelta(minutes=5), client="10.0.0.7"),
        rec("other", NOW),
    )
    probe = AccessLogProbe(log)
    assert isinstance(probe, UsageProbe)
    got = probe.usage(CRED, ["k1", "k2"], SINCE, NOW)
    assert got["k1"].status is UsageStatus.SEEN
    assert got["k1"].last_seen == NOW - timedelta(minutes=2)
    assert got["k1"].count == 3
    assert got["k1"].clients == ("10.0.0.7", "10.0.0.8")
    assert got["k1"].detail == ""
    assert got["k2"].status is UsageStatus.NOT_SEEN
    assert got["k2"].last_seen is None
    assert "other" not in got


def test_window_boundaries_are_inclusive(tmp_path: Path) -> None:
    log = write_log(
        tmp_path / "u.jsonl",
        rec("at-since", SINCE),
        rec("at-now", NOW),
        rec("before", SINCE - timedelta(seconds=1)),
        rec("after", NOW + timedelta(seconds=1)),
    )
    got = AccessLogProbe(log).usage(CRED, ["at-since", "at-now", "before", "after"], SINCE, NOW)
    assert got["at-since"].status is UsageStatus.SEEN
    assert got["at-since"].last_seen == SINCE
    assert got["at-now"].status is UsageStatus.SEEN
    assert got["before"].status is UsageStatus.NOT_SEEN
    assert got["after"].status is UsageStatus.NOT_SEEN


def test_last_seen_ignores_records_outside_window(tmp_path: Path) -> None:
    log = write_log(
        tmp_path / "u.jsonl",
        rec("k1", NOW - timedelta(minutes=1)),
        rec("k1", NOW + timedelta(hours=1)),  # clock skew on the writer: outside [since, now]
    )
    got = AccessLogProbe(log).usage(CRED, ["k1"], SINCE, NOW)
    assert got["k1"].last_seen == NOW - timedelta(minutes=1)
    assert got["k1"].count == 1


def test_timestamps_with_offsets_and_naive(tmp_path: Path) -> None:
    log = write_log(
        tmp_path / "u.jsonl",
        {"ts": "2026-11-27T13:55:00+02:00", "key_id": "k1"},  # 11:55Z
        {"ts": "2026-11-27T11:50:00", "key_id": "k2"},  # naive: taken as UTC
    )
    got = AccessLogProbe(log).usage(CRED, ["k1", "k2"], SINCE, NOW)
    assert got["k1"].last_seen == datetime(2026, 11, 27, 11, 55, tzinfo=UTC)
    assert got["k1"].last_seen is not None and got["k1"].last_seen.tzinfo == UTC
    assert got["k2"].status is UsageStatus.SEEN


def test_credential_filter(tmp_path: Path) -> None:
    log = write_log(
        tmp_path / "u.jsonl",
        rec("k1", NOW, credential="someone/else"),
        rec("k2", NOW, credential="someone/else"),
        {"ts": iso(NOW), "key_id": "k2"},  # no credential: counts for any
    )
    got = AccessLogProbe(log).usage(CRED, ["k1", "k2"], SINCE, NOW)
    assert got["k1"].status is UsageStatus.NOT_SEEN
    assert got["k2"].status is UsageStatus.SEEN
    assert got["k2"].count == 1


def test_rejected_attempts_count_as_usage(tmp_path: Path) -> None:
    log = write_log(
        tmp_path / "u.jsonl",
        rec("k1", NOW, result="denied"),
        rec("k1", NOW, result="ok"),
        rec("k2", NOW, result="expired"),
    )
    got = AccessLogProbe(log).usage(CRED, ["k1", "k2"], SINCE, NOW)
    assert got["k1"].status is UsageStatus.SEEN
    assert got["k1"].count == 2
    assert "1 of 2 attempts rejected" in got["k1"].detail
    assert got["k2"].status is UsageStatus.SEEN
    assert "1 of 1 attempts rejected" in got["k2"].detail


def test_malformed_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "u.jsonl"
    write_log(
        log,
        "not json",
        "[1, 2]",
        json.dumps({"ts": "yesterday", "key_id": "k1"}),
        json.dumps({"ts": iso(NOW)}),  # no key_id
        json.dumps({"ts": iso(NOW), "key_id": 5}),
        json.dumps({"ts": iso(NOW), "key_id": "k1", "credential": 7}),
        "[" * 100_000,  # deep nesting must not crash the probe
        "",  # blank lines are not malformed
        rec("k1", NOW),
    )
    with log.open("ab") as fh:
        fh.write(b'{"ts": "\xff\xfe", "key_id": "k1"}\n')  # invalid UTF-8
        fh.write(json.dumps(rec("k1", NOW)).encode())  # last line without newline
    got = AccessLogProbe(log).usage(CRED, ["k1", "k2"], SINCE, NOW)
    assert got["k1"].status is UsageStatus.SEEN
    assert got["k1"].count == 2
    assert "8 malformed lines skipped" in got["k1"].detail
    assert got["k2"].status is UsageStatus.NOT_SEEN
    assert got["k2"].detail == "8 malformed lines skipped"


def test_clients_are_sorted_distinct_and_capped(tmp_path: Path) -> None:
    log = write_log(
        tmp_path / "u.jsonl",
        *[rec("k1", NOW, client=f"10.0.0.{i:02d}") for i in range(25, 0, -1)],
        rec("k1", NOW, client=None),
        rec("k1", NOW, client=42),
    )
    got = AccessLogProbe(log).usage(CRED, ["k1"], SINCE, NOW)["k1"]
    assert got.count == 27
    assert got.clients == tuple(f"10.0.0.{i:02d}" for i in range(1, 11))
    assert "more than 10 clients" in got.detail


def test_empty_log_means_not_seen(tmp_path: Path) -> None:
    log = write_log(tmp_path / "u.jsonl")
    got = AccessLogProbe(log).usage(CRED, ["k1"], SINCE, NOW)
    assert got["k1"].status is UsageStatus.NOT_SEEN


def test_missing_file_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    got = AccessLogProbe(path).usage(CRED, ["k1", "k2"], SINCE, NOW)
    assert {k: u.status for k, u in got.items()} == {
        "k1": UsageStatus.UNKNOWN,
        "k2": UsageStatus.UNKNOWN,
    }
    assert str(path) in got["k1"].detail


def test_unreadable_path_raises_probe_error(tmp_path: Path) -> None:
    # A directory cannot be read as a log even by root (chmod 000 would not stop root).
    with pytest.raises(ProbeError) as info:
        AccessLogProbe(tmp_path).usage(CRED, ["k1"], SINCE, NOW)
    assert str(tmp_path) in str(info.value)
    assert isinstance(info.value.__cause__, OSError)


def test_path_through_a_file_raises_probe_error(tmp_path: Path) -> None:
    file = write_log(tmp_path / "u.jsonl")
    with pytest.raises(ProbeError):
        AccessLogProbe(file / "nested.jsonl").usage(CRED, ["k1"], SINCE, NOW)


def test_from_config(tmp_path: Path) -> None:
    relative = AccessLogProbe.from_config({"path": "logs/u.jsonl"}, ctx(tmp_path))
    assert relative.path == tmp_path / "logs" / "u.jsonl"
    absolute = build("probe", {"type": "access-log", "path": "/var/log/u.jsonl"}, ctx(tmp_path))
    assert isinstance(absolute, AccessLogProbe)
    assert absolute.path == Path("/var/log/u.jsonl")


@pytest.mark.parametrize(
    ("settings", "key"),
    [({}, "path"), ({"path": ""}, "path"), ({"path": 3}, "path"), ({"path": "x", "pth": 1}, "pth")],
)
def test_from_config_rejects(tmp_path: Path, settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        AccessLogProbe.from_config(settings, ctx(tmp_path))
    assert f"[credentials.x.usage] {key}:" in str(info.value)
