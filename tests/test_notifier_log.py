from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rotatectl.errors import ConfigError, NotifierError
from rotatectl.model import Event
from rotatectl.notifiers.log import LogNotifier
from rotatectl.ports import Notifier
from rotatectl.registry import AdapterContext, build

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
