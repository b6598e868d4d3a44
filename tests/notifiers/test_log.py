"""The log notifier: JSON lines to a 0600 file or to stderr, and what `check` asks of it."""

from __future__ import annotations

import json
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rotatectl.errors import ConfigError, NotifierError
from rotatectl.model import Event
from rotatectl.notifiers.log import LogNotifier
from rotatectl.ports import Notifier
from rotatectl.registry import AdapterContext, build
from rotatectl.testing.notifier_contract import NotifierContract

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def event(kind: str = "promoted", data: dict[str, Any] | None = None) -> Event:
    return Event(kind=kind, credential="partners/acme", at=T0, key_id="k7Hq2", data=data or {})


def ctx(base: Path) -> AdapterContext:
    return AdapterContext(table="notifiers.ops", base_dir=base, state_dir=base)


def test_appends_json_lines_to_a_0600_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    notifier = LogNotifier(path)
    assert isinstance(notifier, Notifier)
    notifier.notify(event("started"))
    notifier.notify(event("promoted", data={"version": 2}))
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        event("started").to_dict(),
        event("promoted", data={"version": 2}).to_dict(),
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_appends_to_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"old": true}\n')
    LogNotifier(path).notify(event())
    assert len(path.read_text().splitlines()) == 2


def test_stderr_when_no_path(capsys: pytest.CaptureFixture[str]) -> None:
    LogNotifier(None).notify(event("completed"))
    err = capsys.readouterr().err
    assert json.loads(err) == event("completed").to_dict()


def test_odd_data_values_do_not_raise(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    LogNotifier(path).notify(event(data={"when": T0, "path": Path("/x")}))
    assert json.loads(path.read_text())["data"]["path"] == "/x"


def test_write_failure_is_a_notifier_error(tmp_path: Path) -> None:
    with pytest.raises(NotifierError) as info:
        LogNotifier(tmp_path / "missing-dir" / "e.jsonl").notify(event())
    assert "missing-dir" in str(info.value)
    with pytest.raises(NotifierError):
        LogNotifier(tmp_path).notify(event())  # a directory


def test_unserialisable_data_is_a_notifier_error(tmp_path: Path) -> None:
    loop: dict[str, object] = {}
    loop["self"] = loop
    with pytest.raises(NotifierError):
        LogNotifier(tmp_path / "e.jsonl").notify(event(data=loop))


def test_closed_stderr_is_a_notifier_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def write(self, _: str) -> int:
            raise OSError("closed")

        def flush(self) -> None: ...

    monkeypatch.setattr("sys.stderr", Broken())
    with pytest.raises(NotifierError):
        LogNotifier(None).notify(event())


def test_from_config(tmp_path: Path) -> None:
    assert LogNotifier.from_config({}, ctx(tmp_path)).path is None
    rel = LogNotifier.from_config({"path": "events.jsonl"}, ctx(tmp_path))
    assert rel.path == tmp_path / "events.jsonl"
    built = build("notifier", {"type": "log", "path": "/tmp/e.jsonl"}, ctx(tmp_path))
    assert isinstance(built, LogNotifier)
    assert built.path == Path("/tmp/e.jsonl")


@pytest.mark.parametrize(
    ("settings", "key"), [({"path": ""}, "path"), ({"path": 1}, "path"), ({"url": "x"}, "url")]
)
def test_from_config_rejects(tmp_path: Path, settings: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        LogNotifier.from_config(settings, ctx(tmp_path))
    assert f"[notifiers.ops] {key}:" in str(info.value)


# -- the contract and the access check ------------------------------------------------------


class TestLogContract(NotifierContract):
    @pytest.fixture
    def notifier(self, tmp_path: Path) -> Notifier:
        self.path, self.root = tmp_path / "events.jsonl", tmp_path
        return LogNotifier(self.path)

    def received(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []

    def unreachable(self) -> Notifier:
        return LogNotifier(self.root / "missing-dir" / "events.jsonl")


def test_check_access_creates_nothing(tmp_path: Path) -> None:
    assert LogNotifier(tmp_path / "events.jsonl").check_access() == []
    assert list(tmp_path.iterdir()) == []
    assert LogNotifier(None).check_access() == []  # stderr


def test_check_access_reports_what_would_make_a_write_fail(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    assert LogNotifier(tmp_path).check_access() == [f"{tmp_path} is a directory, not a file"]
    missing = tmp_path / "missing-dir" / "e.jsonl"
    assert LogNotifier(missing).check_access() == [
        f"cannot create {missing}: directory {missing.parent} does not exist"
    ]
    under_file = tmp_path / "a-file" / "e.jsonl"
    assert LogNotifier(under_file).check_access() == [
        f"cannot create {under_file}: {tmp_path / 'a-file'} is not a directory"
    ]


def test_check_access_on_a_read_only_file_system(tmpfs: Path) -> None:
    """Root may write anywhere but on a read-only file system: a real one here."""
    existing = tmpfs / "old.jsonl"
    LogNotifier(existing).notify(event())
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    new = tmpfs / "new.jsonl"
    assert LogNotifier(new).check_access() == [
        f"cannot create {new}: directory {tmpfs} is not writable"
    ]
    assert LogNotifier(existing).check_access() == [f"{existing} is not writable"]
    for path in (new, existing):
        with pytest.raises(NotifierError):
            LogNotifier(path).notify(event())
