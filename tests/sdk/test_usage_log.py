"""UsageLog: buffered JSON lines that never block or fail the request path."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from rotatectl.sdk import UsageLog
from rotatectl.sdk.usage_log import usage_line


def test_line_format() -> None:
    line = usage_line(1795766400.5, "partners/acme", "k7Hq2AbC", "ok", "10.0.0.7")
    assert line.endswith("\n")
    assert json.loads(line) == {
        "ts": "2026-11-27T08:00:00.500Z",
        "credential": "partners/acme",
        "key_id": "k7Hq2AbC",
        "result": "ok",
        "client": "10.0.0.7",
    }


def test_records_wait_in_memory_until_flushed(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    log = UsageLog(path, start=False)
    log.record("c", "k1", "ok", "1.2.3.4")
    log.record(None, "k2", "rejected")
    assert not path.exists() and log.pending == 2
    assert log.flush() == 2
    assert log.flush() == 0
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["credential"], r["key_id"], r["result"], r["client"]) for r in rows] == [
        ("c", "k1", "ok", "1.2.3.4"),
        (None, "k2", "rejected", None),
    ]
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o007 == 0  # not world-readable
    log.close()


def test_background_thread_flushes_and_close_writes_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    with UsageLog(path, flush_interval=0.05) as log:
        log.record("c", "k1", "ok")
        deadline = time.monotonic() + 5
        while not path.exists():
            assert time.monotonic() < deadline, "the writer thread did not flush"
            time.sleep(0.01)
        log.flush_interval = 3600  # the thread's current wait is short; close must flush
        log.record("c", "k2", "ok")
    assert [json.loads(x)["key_id"] for x in path.read_text().splitlines()] == ["k1", "k2"]
    log.close()  # twice is fine


def test_a_full_queue_drops_records_instead_of_growing(tmp_path: Path) -> None:
    log = UsageLog(tmp_path / "u.jsonl", max_pending=3, start=False)
    for i in range(5):
        log.record("c", f"k{i}", "ok")
    assert (log.pending, log.dropped) == (3, 2)
    log.close()
    assert log.written == 3


def test_an_unwritable_log_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = UsageLog(tmp_path / "missing-dir" / "u.jsonl", start=False)
    log.record("c", "k", "ok")
    with caplog.at_level(logging.WARNING, logger="rotatectl.sdk.usage_log"):
        assert log.flush() == 0
    assert log.dropped == 1 and "cannot write" in caplog.text


def test_many_threads_many_lines_every_line_whole(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    log = UsageLog(path, flush_interval=0.01)

    def work(n: int) -> None:
        for i in range(2000):
            log.record("c", f"k{n}-{i}", "ok", "127.0.0.1")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 8000 == log.written
    assert len({json.loads(line)["key_id"] for line in lines}) == 8000


def test_rejects_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        UsageLog(tmp_path / "u", flush_interval=0)
    with pytest.raises(ValueError):
        UsageLog(tmp_path / "u", max_pending=0)
