"""A fleet on the local store: 500 credentials with staggered ages and windows;
two concurrent `run` processes rotate exactly the due ones, each once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rotatectl import keyformat
from rotatectl.model import Version, VersionState
from rotatectl.schedule import DAYS

from .conftest import Cli

COUNT = 500


def seed(cli: Cli) -> set[str]:
    """Credentials fleet/c000..c499, aged i * 0.1 days; returns the names run must start."""
    now = datetime.now(UTC)
    closed_day = DAYS[(now.weekday() + 3) % 7]  # a window that is not open today
    lines = ['[defaults]\nmax_age = "30d"\npropagation = "0s"\noverlap = "1h"\n']
    due_in_window: set[str] = set()
    cli.state_dir.mkdir(parents=True)
    store = cli.store()
    try:
        for i in range(COUNT):
            name = f"fleet/c{i:03d}"
            age = timedelta(days=i / 10)
            lines.append(f'[credentials."{name}"]')
            if i % 2:
                lines.append(f'window = {{ days = ["{closed_day}"] }}')
            value = keyformat.generate()
            parsed = keyformat.parse(value)
            at = now - age
            v = Version(f"{name}-v1", 1, parsed.key_id, keyformat.fingerprint(value),
                        VersionState.PENDING, at)  # fmt: skip
            store.publish(name, v, value)
            store.promote(name, v.version_id, None, at)
            if age >= timedelta(days=30) and i % 2 == 0:
                due_in_window.add(name)
    finally:
        store.close()
    (cli.cwd / "rotatectl.toml").write_text("\n".join(lines) + "\n")
    return due_in_window


def started(run_output: str) -> list[str]:
    return [
        r["credential"]
        for r in json.loads(run_output)["results"]
        if any(s.startswith("started") for s in r["steps"])
    ]


@pytest.mark.slow
def test_run_rotates_exactly_the_due_credentials_inside_their_windows(cli: Cli) -> None:
    expected = seed(cli)
    assert len(expected) == 100

    plan = cli("run", "--dry-run", "-o", "json")
    assert plan.code == 0, plan.err
    predicted = {
        r["credential"]
        for r in json.loads(plan.out)["results"]
        if r["message"].startswith("would issue")
    }
    assert predicted == expected
    closed = [r for r in json.loads(plan.out)["results"] if "window opens" in r["message"]]
    assert len(closed) == 100  # due, but their window is closed today

    # Two runners at once: each credential is started by exactly one of them.
    procs = [cli.popen("run", "--jobs", "4", "-o", "json") for _ in range(2)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        cli.record(("run", "concurrent"), proc.returncode, out, err)
        assert proc.returncode == 0, err
        outputs.append(out)
    first, second = started(outputs[0]), started(outputs[1])
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(expected)

    store = cli.store()
    try:
        for i in range(COUNT):
            name = f"fleet/c{i:03d}"
            states = [(v.number, v.state) for v in store.versions(name)]
            if name in expected:
                assert states == [(1, VersionState.PREVIOUS), (2, VersionState.CURRENT)], name
            else:
                assert states == [(1, VersionState.CURRENT)], name
    finally:
        store.close()

    # A second pass starts nothing new: the started ones are in their overlap.
    again = cli("run", "-o", "json")
    assert again.code == 0 and started(again.out) == []


def test_run_jobs_isolates_a_failing_credential(cli: Cli) -> None:
    (cli.cwd / "rotatectl.toml").write_text(
        '[credentials."good"]\n'
        '[credentials."broken"]\n'
        'issuer = { type = "generated", prefix = "Bad Prefix" }\n'
    )
    run = cli("run", "--jobs", "2", "-o", "json")
    assert run.code == 1
    results = {r["credential"]: r for r in json.loads(run.out)["results"]}
    assert results["good"]["outcome"] == "done"
    assert results["broken"]["outcome"] == "failed" and "prefix" in results["broken"]["message"]


def test_run_jitter_is_validated(cli: Cli) -> None:
    run = cli("run", "--jitter", "soon")
    assert run.code == 2 and "--jitter" in run.err


def test_history_renders_and_exports(cli: Cli) -> None:
    cli("rotate", "a")
    cli("rotate", "a", "--propagation", "0s", "--overlap", "0s")
    cli("emergency", "a", "--reason", "drill", "--yes")
    run = cli("history", "a")
    assert run.code == 0, run.err
    assert "v3" in run.out and "emergency" in run.out and "drill" in run.out
    data = json.loads(cli("history", "a", "-o", "json").out)
    assert [v["state"] for v in data["versions"]] == ["retired", "retired", "current"]
    assert [r["kind"] for r in data["rotations"]] == ["manual", "manual", "emergency"]
    assert data["versions"][1]["spans"][0]["state"] == "pending"
