"""Operator scenarios of issue 15, items 4-7, through the real CLI on every store.

- 4. cron hears about drift: ``run`` exits 3 and names the drifted credential;
- 5. one credential's failure (an unreachable store) never hides the others;
- 6. one command, one intent: ``rotate`` continues an in-flight rotation and
  starts no second one; overrides apply or are refused, never ignored;
- 7. the record tells the truth: superseded rotations, emergency figures and
  event data, hook environment and errors, rotation windows.

Each test runs on the local store, moto_server and OpenBao (``backend``), and
reads what the CLI left straight from the store with an adapter of its own.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import sqlite3
import stat
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rotatectl.model import Version
from tests.aws.conftest import FAKE_ENV, REGION
from tests.conftest import Cli, CliRun
from tests.reliability.conftest import AwsBackend, LocalBackend, VaultBackend

from .conftest import NAME, PREFIX, STORES, Backend, crash_at

GOOD = "good/one"
BAD = "bad/two"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# -- config ---------------------------------------------------------------------------


def write_config(
    backend: Backend,
    credentials: Mapping[str, str] | None = None,
    *,
    extra: str = "",
    defaults_toml: str = "",
    **defaults: str,
) -> None:
    """rotatectl.toml: ``credentials`` (name -> extra TOML lines of its table) on the
    backend's store unless a line says otherwise; ``extra`` adds tables (stores,
    notifiers); ``defaults_toml`` adds raw lines to [defaults] (inline tables)."""
    settings = {
        "store": backend.table,
        "propagation": "0s",
        "overlap": "0s",
        "retain": "1s",
        **defaults,
    }
    lines = ["[defaults]", *(f"{k} = {json.dumps(v)}" for k, v in settings.items())]
    if defaults_toml:
        lines.append(defaults_toml)
    lines += ["", backend.store_toml(None), extra, ""]
    for name, table in (credentials if credentials is not None else {NAME: ""}).items():
        lines += [
            f'[credentials."{name}"]',
            f'issuer = {{ type = "generated", prefix = "{PREFIX}" }}',
            table,
            "",
        ]
    (backend.cli.cwd / "rotatectl.toml").write_text("\n".join(lines) + "\n")


def log_notifier(path: Path) -> str:
    return f'[notifiers.log]\ntype = "log"\npath = "{path}"\n'


def script(cli: Cli, name: str, body: str) -> Path:
    """An executable /bin/sh script in the test's directory (a hook)."""
    path = cli.root / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# -- reading the store ------------------------------------------------------------------


def versions(backend: Backend, path: str = NAME) -> list[Version]:
    """The credential's versions, read by an adapter of our own, oldest first."""
    return sorted(backend.store().versions(path), key=lambda v: v.number)


def states(backend: Backend, path: str = NAME) -> dict[int, str]:
    return {v.number: v.state.value for v in versions(backend, path)}


def key_id(backend: Backend, number: int, path: str = NAME) -> str:
    return next(v.key_id for v in versions(backend, path) if v.number == number)


# -- behind rotatectl's back --------------------------------------------------------------


def tamper(backend: Backend, path: str) -> None:
    """Change the value clients read as current, the way someone outside rotatectl would."""
    value = f"{PREFIX}_tampered_{secrets.token_urlsafe(24)}"
    if isinstance(backend, LocalBackend):
        conn = sqlite3.connect(backend.db, timeout=30)
        try:
            with conn:
                conn.execute(
                    "UPDATE versions SET value = ? WHERE path = ? AND state = 'current'",
                    (value, path),
                )
        finally:
            conn.close()
    elif isinstance(backend, AwsBackend):
        # A new version, then AWSCURRENT moved onto it, as `aws secretsmanager` would.
        sm = backend.sm
        new = sm.put_secret_value(SecretId=path, SecretString=value, VersionStages=["outside"])
        stages = sm.describe_secret(SecretId=path)["VersionIdsToStages"]
        holder = next(v for v, labels in stages.items() if "AWSCURRENT" in labels)
        sm.update_secret_version_stage(
            SecretId=path,
            VersionStage="AWSCURRENT",
            MoveToVersionId=new["VersionId"],
            RemoveFromVersionId=holder,
        )
    elif isinstance(backend, VaultBackend):
        rel = backend.rel(path)
        data = dict(backend.read(rel) or {})
        assert data.get("current"), f"no client value at {rel}"
        written = int((backend.metadata(rel) or {})["current_version"])
        backend.kv.create_or_update_secret(  # the mount requires check-and-set
            rel, secret={**data, "current": value}, cas=written, mount_point="secret"
        )
    else:
        raise AssertionError(f"tamper: unknown store kind {backend.kind}")
    assert backend.client_value(path) == value, f"{backend.kind}: the value did not change"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def unreachable_store(backend: Backend, table: str = "broken") -> str:
    """A ``[stores.TABLE]`` of a real remote type pointed at a closed loopback port.

    Another type than the backend's own where there is one (OpenBao's tests get an
    AWS store; local and AWS get an OpenBao one), with what that type needs to get
    as far as the network: fake AWS credentials, or a token for OpenBao.
    """
    url = f"http://127.0.0.1:{closed_port()}"
    if isinstance(backend, VaultBackend):
        backend.cli.env.update(FAKE_ENV)
        return (
            f'[stores.{table}]\ntype = "aws-secretsmanager"\nregion = "{REGION}"\n'
            f'endpoint_url = "{url}"\nmax_attempts = 1\n'
        )
    backend.cli.env["VAULT_TOKEN"] = "s.unreachable-test-token"
    return f'[stores.{table}]\ntype = "vault"\nurl = "{url}"\n'


# -- output -------------------------------------------------------------------------------


def text(run: CliRun) -> str:
    return run.out + run.err


def lines_with(run: CliRun, *words: str) -> list[str]:
    """Output lines (stdout and stderr) containing every word (case-insensitive)."""
    return [
        line for line in text(run).splitlines() if all(w.lower() in line.lower() for w in words)
    ]


def owned_by(line: str, name: str) -> bool:
    """A line that is about credential ``name``: it starts with the name (after any mark)."""
    return re.match(rf"[^\w/]*{re.escape(name)}\b", line) is not None


def one_json(run: CliRun) -> Any:
    """stdout as exactly one JSON document (json.loads fails on anything after it)."""
    try:
        return json.loads(run.out)
    except json.JSONDecodeError as exc:
        raise AssertionError(
            f"{run.args}: stdout is not one JSON document ({exc}):\n{run.out}\n{run.err}"
        ) from None


def result_of(doc: Any, name: str) -> dict[str, Any]:
    found = [r for r in doc.get("results", []) if r.get("credential") == name]
    assert len(found) == 1, f"expected one result for {name}: {doc}"
    result: dict[str, Any] = found[0]
    return result


def ok(run: CliRun, code: int = 0) -> CliRun:
    assert run.code == code, f"{run.args} exited {run.code}, not {code}:\n{run.out}{run.err}"
    return run


# -- 4. cron hears about drift ----------------------------------------------------------


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_run_exits_3_and_names_a_drifted_credential(cli: Cli, backend: Backend) -> None:
    write_config(backend)
    ok(cli("rotate", NAME))
    assert states(backend) == {1: "current"}
    tamper(backend, NAME)

    run = ok(cli("run"), 3)
    assert lines_with(run, NAME, "drift"), run.out + run.err

    as_json = ok(cli("run", "-o", "json"), 3)
    assert result_of(one_json(as_json), NAME)["exit_code"] == 3
    # Drift is reported, never repaired or rotated over by cron.
    assert len(versions(backend)) == 1


# -- 5. one credential's failure never hides the others ----------------------------------


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_an_unreachable_store_fails_only_its_credential(cli: Cli, backend: Backend) -> None:
    write_config(backend, {GOOD: "", BAD: 'store = "broken"'}, extra=unreachable_store(backend))

    run = ok(cli("run"), 1)
    assert states(backend, GOOD) == {1: "current"}, "the reachable credential was not rotated"
    # The credential's own result line (not a store error that happens to hold its path),
    # naming the step that failed: the store it could not reach.
    failed = [line for line in text(run).splitlines() if owned_by(line, BAD)]
    assert failed, f"no result line for {BAD}:\n{run.out}{run.err}"
    assert any("cannot reach" in line for line in failed), failed
    assert [line for line in text(run).splitlines() if line.startswith("summary:")], run.out

    as_json = ok(cli("run", "-o", "json"), 1)
    doc = one_json(as_json)
    assert set(doc) >= {"results", "summary", "exit_code"}, doc
    assert doc["exit_code"] == 1 and isinstance(doc["summary"], dict)
    assert {r["credential"] for r in doc["results"]} == {GOOD, BAD}
    for r in doc["results"]:
        assert {"credential", "outcome", "exit_code", "message"} <= set(r), r
    bad = result_of(doc, BAD)
    assert bad["outcome"] == "failed" and bad["exit_code"] == 1, bad
    assert bad["message"], bad
    assert result_of(doc, GOOD)["exit_code"] == 0

    rotate = ok(cli("rotate", GOOD, BAD), 1)
    assert [line for line in text(rotate).splitlines() if owned_by(line, BAD)], rotate.err
    after = states(backend, GOOD)
    assert len(after) == 2 and after[2] == "current", f"{GOOD} was not rotated: {after}"


# -- 6. one command, one intent --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_rotate_finishes_the_rotation_in_flight_and_starts_no_other(
    cli: Cli, backend: Backend
) -> None:
    write_config(backend, propagation="2s")
    ok(cli("rotate", NAME))
    ok(cli("rotate", NAME, "--no-wait"))
    assert states(backend) == {1: "current", 2: "pending"}
    time.sleep(2.5)

    ok(cli("rotate", NAME))
    found = states(backend)
    assert sorted(found) == [1, 2], f"a second rotation was started: {found}"
    assert found[2] == "current"


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_overrides_on_an_in_flight_rotation_apply_or_are_refused(
    cli: Cli, backend: Backend
) -> None:
    write_config(backend, propagation="1h")
    ok(cli("rotate", NAME))
    ok(cli("rotate", NAME))
    assert states(backend) == {1: "current", 2: "pending"}

    ok(cli("rotate", NAME, "--overlap", "30m"))
    doc = one_json(ok(cli("status", NAME, "-o", "json")))
    rotation = doc["credentials"][0]["rotation"]
    assert rotation["overlap"] == 1800.0, rotation
    assert states(backend) == {1: "current", 2: "pending"}

    refused = ok(cli("rotate", NAME, "--overlap", "30d"), 2)
    assert "max_overlap" in text(refused)
    doc = one_json(ok(cli("status", NAME, "-o", "json")))
    assert doc["credentials"][0]["rotation"]["overlap"] == 1800.0

    ok(cli("rotate", NAME, "--propagation", "0s"))
    assert states(backend) == {1: "previous", 2: "current"}, "--propagation 0s was not applied"

    late = ok(cli("rotate", NAME, "--propagation", "5s"), 2)
    assert "already promoted" in text(late)
    assert sorted(states(backend)) == [1, 2]


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_a_resumed_first_rotation_makes_one_key(cli: Cli, backend: Backend) -> None:
    write_config(backend)
    crash_at(cli, backend, "after-publish", "rotate", NAME)

    ok(cli("rotate", NAME))
    assert states(backend) == {1: "current"}


# -- 7. the record tells the truth ----------------------------------------------------------


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_an_emergency_shows_what_it_superseded_and_what_it_revoked(
    cli: Cli, backend: Backend
) -> None:
    events = cli.root / "events.jsonl"
    write_config(backend, {NAME: 'notify = ["log"]'}, extra=log_notifier(events), propagation="1h")
    ok(cli("rotate", NAME))
    started = one_json(ok(cli("rotate", NAME, "-o", "json")))
    superseded_id = result_of(started, NAME)["rotation_id"]
    assert states(backend) == {1: "current", 2: "pending"}
    old_ids = {key_id(backend, 1), key_id(backend, 2)}

    doc = one_json(ok(cli("emergency", NAME, "-r", "leak", "--yes", "-o", "json")))
    revoked = doc["results"][0].get("revoked_after_seconds")
    assert isinstance(revoked, int | float) and not isinstance(revoked, bool), doc["results"][0]
    assert revoked >= 0
    assert states(backend) == {1: "retired", 2: "retired", 3: "current"}

    history = one_json(ok(cli("history", NAME, "-o", "json")))
    phases = {r["id"]: r["phase"] for r in history["rotations"]}
    assert phases.get(superseded_id) == "superseded", history["rotations"]
    status = one_json(ok(cli("status", NAME, "-o", "json")))
    assert status["credentials"][0]["in_flight"] is False

    sent = [json.loads(line) for line in events.read_text().splitlines()]
    emergency = [e for e in sent if e["event"] == "emergency"]
    assert len(emergency) == 1, sent
    data = emergency[0]["data"]
    assert data.get("new_key_id") == key_id(backend, 3), data
    assert isinstance(data.get("old_key_ids"), list), data
    assert key_id(backend, 1) in data["old_key_ids"] and set(data["old_key_ids"]) <= old_ids


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_on_retire_gets_the_retired_version_number(cli: Cli, backend: Backend) -> None:
    seen = cli.root / "retired.txt"
    hook = script(cli, "on-retire.sh", f'echo "${{ROTATECTL_VERSION-unset}}" >> "{seen}"')
    write_config(backend, {NAME: f'hooks = {{ on_retire = ["{hook}"] }}'})
    ok(cli("rotate", NAME))
    ok(cli("rotate", NAME))
    assert states(backend) == {1: "retired", 2: "current"}
    assert seen.read_text().split() == ["1"]


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_a_missing_on_failure_binary_is_reported_as_cannot_run(cli: Cli, backend: Backend) -> None:
    write_config(backend)
    ok(cli("rotate", NAME))
    # Both hooks name binaries that do not exist: the deploy fails, so on_failure runs.
    deploy = cli.root / "no-such-dir" / "deploy"
    page = cli.root / "no-such-dir" / "page-oncall"
    hooks = f'hooks = {{ on_promote = ["{deploy}"], on_failure = ["{page}"], timeout = "10s" }}'
    write_config(backend, {NAME: hooks})

    failed = cli("rotate", NAME)
    # Today a hook that cannot start is summarised as "timed out".
    assert "timed out" not in text(failed), failed.out + failed.err
    assert lines_with(failed, "on_failure", "cannot run"), failed.out + failed.err
    assert failed.code == 1
    assert states(backend)[1] == "current"


@pytest.mark.slow
@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_a_closed_window_says_when_it_opens_and_never_holds_a_first_key(
    cli: Cli, backend: Backend
) -> None:
    # Closed today and tomorrow (UTC), whenever the test runs.
    day = DAYS[(datetime.now(UTC) + timedelta(days=2)).weekday()]
    fresh = "fresh/two"
    write_config(
        backend,
        {NAME: "", fresh: ""},
        defaults_toml=f'window = {{ days = ["{day}"], timezone = "UTC" }}',
        max_age="1s",
    )
    ok(cli("rotate", NAME))  # a manual rotation is never held by a window
    time.sleep(1.5)  # v1 is now older than max_age: due

    status = ok(cli("status", NAME))
    opens = lines_with(status, NAME, "window opens")
    assert opens, status.out + status.err
    # "with the time": a clock time or how long until then, either way a number follows.
    assert re.search(r"window opens\D*\d", opens[0]), f"no time in {opens[0]!r}"

    ok(cli("run"))
    assert states(backend, fresh) == {1: "current"}, "a credential with no key waited"
    assert states(backend) == {1: "current"}, "a due credential rotated in a closed window"
