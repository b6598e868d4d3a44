"""The real CLI in subprocesses, real time, the local store."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rotatectl.model import VersionState

from .conftest import Cli

NAME = "partners/acme"


def status_json(cli: Cli, *names: str) -> dict:
    run = cli("status", *names, "--output", "json")
    assert run.code == 0, run.err
    return json.loads(run.out)


def states(cli: Cli, name: str = NAME) -> list[tuple[int, str]]:
    store = cli.store()
    try:
        return [(v.number, v.state.value) for v in store.versions(name)]
    finally:
        store.close()


def wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)


def test_version_and_help(cli: Cli) -> None:
    run = cli("--version")
    assert run.code == 0 and run.out.startswith("rotatectl ")
    run = cli("--help")
    assert run.code == 0 and "rotate" in run.out and "status" in run.out


@pytest.mark.slow
def test_rotation_with_wait_completes_and_retires_the_old_key(cli: Cli) -> None:
    assert cli("rotate", NAME).code == 0
    old_key = status_json(cli)["credentials"][0]["current_key_id"]

    run = cli("rotate", NAME, "--propagation", "1s", "--overlap", "2s", "--wait")
    assert run.code == 0, run.err
    assert "published v2" in run.out and "promoted v2" in run.out and "retired v1" in run.out
    assert "v2" in run.out and "retired" in run.out  # the closing status table

    data = status_json(cli)["credentials"][0]
    assert data["current_version"] == 2 and data["in_flight"] is False
    assert [(v["number"], v["state"]) for v in data["versions"]] == [(1, "retired"), (2, "current")]
    assert data["rotation"]["phase"] == "completed"
    # The retired key is no longer among the keys verifiers accept.
    store = cli.store()
    accepted = store.accepted_keys(NAME, NAME)
    store.close()
    assert [k.key_id for k in accepted] == [data["current_key_id"]]
    assert old_key not in [k.key_id for k in accepted]


@pytest.mark.slow
def test_no_wait_then_run_finishes_the_same_rotation(cli: Cli) -> None:
    cli("rotate", NAME)
    run = cli("rotate", NAME, "--propagation", "1s", "--overlap", "1s", "--no-wait", "-o", "json")
    assert run.code == 0
    rotation_id = json.loads(run.out)["results"][0]["rotation_id"]
    assert states(cli) == [(1, "current"), (2, "pending")]
    deadline = time.monotonic() + 20
    while states(cli) != [(1, "retired"), (2, "current")]:
        assert time.monotonic() < deadline, states(cli)
        run = cli("run")
        assert run.code == 0, run.err
        time.sleep(0.3)
    data = status_json(cli)["credentials"][0]
    assert data["rotation"]["id"] == rotation_id and data["rotation"]["phase"] == "completed"


def write_usage(log: Path, key_id: str, client: str = "10.0.0.7") -> None:
    record = {
        "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "credential": NAME,
        "key_id": key_id,
        "result": "ok",
        "client": client,
    }
    with log.open("a") as fh:
        fh.write(json.dumps(record) + "\n")


def gate_config(cli: Cli, log: Path, **policy: str) -> None:
    lines = [f'{k} = "{v}"' for k, v in policy.items()]
    (cli.cwd / "rotatectl.toml").write_text(
        f"""
[credentials."{NAME}"]
usage = {{ type = "access-log", path = "{log}" }}
{chr(10).join(lines)}
"""
    )


@pytest.mark.slow
def test_access_log_gate_holds_until_the_old_key_goes_quiet(cli: Cli) -> None:
    log = cli.root / "usage.jsonl"
    log.touch()
    gate_config(cli, log, overlap="1s", usage_quiet="3s", max_overlap="1h")
    cli("rotate", NAME)
    old_key = status_json(cli)["credentials"][0]["current_key_id"]
    assert cli("rotate", NAME, "--propagation", "0s").code == 0
    assert states(cli) == [(1, "previous"), (2, "current")]

    # The old key keeps appearing in the log (a client in the background, so a
    # slow `run` on a busy machine cannot make it look quiet): the gate holds.
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            write_usage(log, old_key, client="legacy-batch")
            stop.wait(0.2)

    worker = threading.Thread(target=client, daemon=True)
    worker.start()
    try:
        time.sleep(1.2)  # past the overlap
        for _ in range(3):
            run = cli("run", "-o", "json")
            assert run.code == 0, run.err
            assert states(cli)[0] == (1, "previous")
    finally:
        stop.set()
        worker.join()
    result = json.loads(run.out)["results"][0]
    assert result["outcome"] == "waiting"
    assert result["old_key_usage"]["clients"] == ["legacy-batch"]
    assert "legacy-batch" in result["message"]

    # Quiet for usage_quiet: retired.
    time.sleep(3.2)
    run = cli("run")
    assert run.code == 0, run.err
    assert states(cli) == [(1, "retired"), (2, "current")]


@pytest.mark.slow
def test_still_used_past_max_overlap_with_fail_exits_3(cli: Cli) -> None:
    log = cli.root / "usage.jsonl"
    log.touch()
    gate_config(cli, log, overlap="1s", max_overlap="1s", usage_quiet="1m", on_still_used="fail")
    cli("rotate", NAME)
    old_key = status_json(cli)["credentials"][0]["current_key_id"]
    cli("rotate", NAME, "--propagation", "0s")
    write_usage(log, old_key)
    time.sleep(1.1)
    run = cli("run")
    assert run.code == 3
    assert "max_overlap" in run.err and "on_still_used=fail" in run.err
    assert states(cli)[0] == (1, "previous")
    # rotate --wait stops at the same point with the same code.
    run = cli("rotate", NAME, "--wait")
    assert run.code == 3


@pytest.mark.slow
@pytest.mark.parametrize(
    "boundary", ["after-issue", "after-publish", "after-promote", "after-retire"]
)
def test_kill_9_at_a_boundary_is_resumed_by_run(cli: Cli, boundary: str) -> None:
    cli("rotate", NAME)
    marker = cli.root / "paused"
    proc = cli.popen(
        "rotate",
        NAME,
        "--propagation",
        "0s",
        "--overlap",
        "0s",
        env={"ROTATECTL_TEST_PAUSE_AT": boundary, "ROTATECTL_TEST_PAUSE_FILE": str(marker)},
    )
    try:
        wait_for(marker)
    finally:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        cli.record(("rotate", "killed"), proc.returncode, out, err)
    assert proc.returncode == -signal.SIGKILL
    # Invariant 1 holds even right after the kill.
    assert [s for _, s in states(cli)].count("current") == 1

    run = cli("run")
    assert run.code == 0, run.err
    assert "took over the lock" in run.err
    run = cli("run")
    assert states(cli) == [(1, "retired"), (2, "current")]
    store = cli.store()
    try:
        rotation, _ = store.load_rotation(NAME)
        assert rotation is not None and rotation.phase.value == "completed"
        assert [v.state for v in store.versions(NAME)].count(VersionState.CURRENT) == 1
    finally:
        store.close()


@pytest.mark.slow
def test_two_concurrent_rotates_one_wins_the_other_exits_4(cli: Cli) -> None:
    cli("rotate", NAME)
    marker = cli.root / "paused"
    holder = cli.popen(
        "rotate",
        NAME,
        env={"ROTATECTL_TEST_PAUSE_AT": "after-start", "ROTATECTL_TEST_PAUSE_FILE": str(marker)},
    )
    try:
        wait_for(marker)
        run = cli("rotate", NAME)
        assert run.code == 4
        assert f"{NAME}: locked - held by " in run.err and f":{holder.pid} since " in run.err
        assert len(run.err.strip().splitlines()) == 1
        # run skips the locked credential without failing.
        assert cli("run").code == 0
    finally:
        holder.send_signal(signal.SIGKILL)
        out, err = holder.communicate(timeout=10)
        cli.record(("rotate", "holder"), holder.returncode, out, err)
    assert states(cli) == [(1, "current")]


def one_line_error(run, code: int) -> None:
    assert run.code == code, (run.code, run.out, run.err)
    assert "Traceback" not in run.err
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rotatectl: error: "), run.err


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ("[defaults\npropagation = 1", "invalid TOML"),
        ('[stores.x]\ntype = "nope"', "unknown store type 'nope'"),
        ('[defaults]\noverlap = "2x"', "bad duration '2x'"),
        ('[stores.local]\ntype = "local"\npath = "/nonexistent/dir/state.db"', "does not exist"),
        ("[defaults]\nbogus = 1", "bogus"),
    ],
    ids=["malformed-toml", "unknown-type", "bad-duration", "missing-store-dir", "unknown-key"],
)
def test_bad_config_is_one_line_exit_2_and_writes_nothing(
    cli: Cli, config: str, needle: str
) -> None:
    (cli.cwd / "rotatectl.toml").write_text(config)
    run = cli("rotate", NAME)
    one_line_error(run, 2)
    assert needle in run.err
    assert "rotatectl.toml" in run.err
    assert not cli.state_dir.exists()
    assert not list(cli.root.rglob("*.db"))


def test_bad_duration_option_and_unknown_credential(cli: Cli) -> None:
    one_line_error(cli("rotate", NAME, "--overlap", "soon"), 2)
    one_line_error(cli("get", "nobody"), 2)
    one_line_error(cli("status", "nobody"), 2)
    (cli.cwd / "rotatectl.toml").write_text(f'[credentials."{NAME}"]\n')
    run = cli("rotate", "partners/acne")
    one_line_error(run, 2)
    assert NAME in run.err  # the suggestion
    one_line_error(cli("rotate", "../etc"), 2)
    one_line_error(cli("status", "--output", "yaml"), 2)
    one_line_error(cli("frobnicate"), 2)


def test_get_and_exec_reveal_the_current_key_only_on_purpose(cli: Cli) -> None:
    cli("rotate", NAME)
    run = cli("get", NAME)
    value = run.out.strip()
    assert run.code == 0 and value.startswith("rk_")
    script = "import os,sys; print(len(os.environ['API_KEY'])); print(sys.argv[1:])"
    run = cli("exec", NAME, "--env", "API_KEY", "--", "python3", "-c", script, "arg")
    assert run.code == 0, run.err
    assert run.out.splitlines() == [str(len(value)), "['arg']"]
    one_line_error(cli("exec", NAME, "--", "no-such-program-xyz"), 127)


def test_status_table_run_dry_run_check_and_plugins(cli: Cli) -> None:
    assert cli("rotate", NAME).code == 0
    run = cli("status")
    assert run.code == 0 and NAME in run.out and "current" in run.out and "due in" in run.out
    run = cli("rotate", NAME, "--dry-run")
    assert run.code == 0 and "would issue v2" in run.out
    assert states(cli) == [(1, "current")]
    run = cli("run", "--dry-run")
    assert run.code == 0 and "would wait" in run.out
    run = cli("check", "-o", "json")
    assert run.code == 0 and json.loads(run.out)["ok"] is True
    run = cli("plugins", "-o", "json")
    types = {p["type"] for p in json.loads(run.out)["store"]}
    assert "local" in types


def test_the_test_only_memory_store_is_no_plugin(cli: Cli) -> None:
    """It keeps keys in the process: `rotate` on it said "done" and the key vanished."""
    run = cli("plugins", "-o", "json")
    assert run.code == 0, run.err
    assert {p["type"] for p in json.loads(run.out)["store"]} >= {
        "local",
        "aws-secretsmanager",
        "vault",
    }
    assert "memory" not in run.out
    assert "memory" not in cli("plugins").out
    (cli.cwd / "rotatectl.toml").write_text(
        '[stores.m]\ntype = "memory"\n[defaults]\nstore = "m"\n'
    )
    for args in (("check",), ("rotate", NAME)):
        run = cli(*args)
        one_line_error(run, 2)
        assert "[stores.m] type: unknown store type 'memory' (installed: " in run.err
        assert "local" in run.err and "memory" not in run.err.partition("installed: ")[2]


def test_check_reports_a_broken_adapter_setting(cli: Cli) -> None:
    (cli.cwd / "rotatectl.toml").write_text(
        f'[credentials."{NAME}"]\nissuer = {{ type = "generated", prefix = "BAD PREFIX" }}\n'
    )
    run = cli("check")
    assert run.code == 2
    assert "prefix" in run.err


def test_store_file_is_private(cli: Cli) -> None:
    cli("rotate", NAME)
    db = cli.state_dir / "state.db"
    assert db.exists() and (os.stat(db).st_mode & 0o777) == 0o600


@pytest.mark.slow
def test_examples_local_demo_runs(cli: Cli) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    bindir = str(Path(sys.executable).parent)
    env = {**cli.env, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    proc = subprocess.run(
        ["bash", str(root / "examples/local/demo.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    cli.record(("examples/local/demo.sh",), proc.returncode, proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr
    assert "old key still in use" in proc.stdout and "legacy-batch" in proc.stdout
    assert "retired v1" in proc.stdout
    events = proc.stdout.split("events written by the log notifier:")[1].split()
    assert events == [
        *("started", "published", "promoted", "completed"),
        *("started", "published", "promoted", "laggards", "retired", "completed"),
    ]


def test_example_config_is_valid(cli: Cli) -> None:
    root = Path(__file__).resolve().parent.parent
    config = cli.root / "example.toml"  # a copy: the store file is created next to the config
    config.write_text((root / "examples/local/rotatectl.toml").read_text())
    run = cli("--config", str(config), "check", "-o", "json")
    assert run.code == 0, run.err
    assert {c["item"] for c in json.loads(run.out)["checks"]} >= {
        "store local",
        "credential partners/acme",
        "credential internal/batch",
        "notifier events",
    }


# -- issue 17: an operator's mistakes get the exit code a shell user expects -------------


def test_get_of_a_version_that_does_not_exist_is_bad_usage(cli: Cli) -> None:
    assert cli("rotate", NAME).code == 0
    run = cli("get", NAME, "-V", "9")
    one_line_error(run, 2)
    assert "no version v9" in run.err and "v1" in run.err, run.err  # names what there is


def test_exec_of_a_missing_command_exits_127_as_shells_do(cli: Cli) -> None:
    assert cli("rotate", NAME).code == 0
    run = cli("exec", NAME, "--", "no-such-program-xyz")
    one_line_error(run, 127)
    assert "command not found: no-such-program-xyz" in run.err


def test_bare_rotatectl_shows_help_and_says_what_is_missing(cli: Cli) -> None:
    run = cli()
    assert run.code == 2
    assert "Usage:" in run.out + run.err
    errors = [line for line in run.err.splitlines() if line.startswith("rotatectl: error:")]
    assert errors, run.err
    for line in errors:
        message = line.removeprefix("rotatectl: error:").strip()
        assert message and not message.startswith("("), f"an empty error line: {line!r}"


# -- issue 17: where state lives ----------------------------------------------------------


def test_check_names_the_config_it_found_or_where_it_looked_and_the_state(cli: Cli) -> None:
    run = cli("check")
    assert run.code == 0, run.err
    looked = f"config: none found (looked at {cli.cwd / 'rotatectl.toml'}, "
    assert looked in run.out, run.out
    assert f"state: {cli.state_dir}" in run.out
    assert f"audit: {cli.state_dir / 'audit.jsonl'}" in run.out
    doc = json.loads(cli("check", "-o", "json").out)
    assert doc["state_dir"] == str(cli.state_dir)
    assert doc["audit_log"] == str(cli.state_dir / "audit.jsonl")
    (cli.cwd / "rotatectl.toml").write_text(f'[credentials."{NAME}"]\n')
    assert f"config: {cli.cwd / 'rotatectl.toml'}" in cli("check").out


def test_a_new_ad_hoc_credential_is_announced_once(cli: Cli) -> None:
    first = cli("rotate", "typo/acme")
    assert first.code == 0, first.err
    notes = [line for line in first.err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1, first.err
    assert "typo/acme: a new ad-hoc credential (no config file: none found" in notes[0]
    assert str(cli.state_dir) in notes[0] and "'local'" in notes[0]
    again = cli("rotate", "typo/acme")
    assert again.code == 0 and "note:" not in again.err, again.err  # it exists now
    assert "note:" not in cli("rotate", "other/one", "-q").err  # quiet: problems only


# -- issue 17: an interrupt says where the rotation stands and how to resume it -----------


@pytest.mark.slow
def test_ctrl_c_during_rotate_wait_says_where_it_stands_and_how_to_resume(cli: Cli) -> None:
    import signal

    assert cli("rotate", NAME).code == 0
    proc = cli.popen("rotate", NAME, "--propagation", "0s", "--overlap", "60s", "--wait")
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # the follow display, line by line to a pipe
            seen.append(line)
            if "waiting (overlap)" in line:
                break
        else:
            raise AssertionError("".join(seen))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, out, err)
    lines = [line for line in err.splitlines() if line.startswith("rotatectl: error: ")]
    assert len(lines) == 1, err
    assert "interrupted" in lines[0] and NAME in lines[0] and "overlap" in lines[0], lines[0]
    assert f"rotatectl rotate {NAME} --wait" in lines[0] and "rotatectl run" in lines[0]
    # Nothing was lost: the rotation goes on where it was.
    assert states(cli) == [(1, "previous"), (2, "current")]
    assert "lock" not in cli("status").err


# -- issue 17: -q on status, before or after the command -----------------------------------


@pytest.mark.parametrize(
    "argv",
    [("status", "-q"), ("-q", "status"), ("status", "--quiet", "-o", "json")],
    ids=["after", "before", "json"],
)
def test_quiet_status_shows_only_what_needs_attention(cli: Cli, argv: tuple[str, ...]) -> None:
    import sqlite3

    assert cli("rotate", "fine/one", "drifted/two").code == 0
    quiet = cli(*argv)
    assert quiet.code == 0, quiet.err
    if "json" in argv:
        assert json.loads(quiet.out)["credentials"] == []
    else:
        assert quiet.out == "", quiet.out  # nothing needs attention: nothing printed
    with sqlite3.connect(cli.state_dir / "state.db") as conn:  # behind rotatectl's back
        conn.execute(
            "UPDATE versions SET value = 'hunter2-outside-qx' WHERE path = 'drifted/two' "
            "AND state = 'current'"
        )
    quiet = cli(*argv)
    assert quiet.code == 3, quiet.err
    text = quiet.out
    if "json" in argv:
        assert [c["name"] for c in json.loads(text)["credentials"]] == ["drifted/two"]
    else:
        assert "drifted/two" in text and "fine/one" not in text, text
    assert "fine/one" in cli("status").out  # without -q: everything


# -- issue 17: a dangling symlink as the state file --------------------------------------


def test_a_dangling_symlink_as_the_state_file_is_refused_not_followed(cli: Cli) -> None:
    """SQLite would create the link's target 0644, holding key values."""
    import stat

    cli.state_dir.mkdir(parents=True)
    target = cli.root / "elsewhere.db"
    (cli.state_dir / "state.db").symlink_to(target)
    run = cli("rotate", NAME)
    assert run.code == 2, (run.code, run.out, run.err)
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and "dangling link" in lines[0] and str(target) in lines[0], run.err
    assert not target.exists(), "a key file was created through the link"
    # A link to a private file that exists is followed: the file stays 0600.
    target.touch(mode=0o600)
    target.chmod(0o600)
    assert cli("rotate", NAME).code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert states(cli) == [(1, "current")]


# -- issue 17: messages that say what they mean ------------------------------------------


def test_audit_verify_and_run_help_say_what_they_mean(cli: Cli) -> None:
    assert cli("rotate", NAME).code == 0
    verify = cli("audit", "verify")
    assert verify.code == 0, verify.err
    assert "chain intact (not keyed: set $ROTATECTL_AUDIT_KEY to key it)" in verify.out
    assert "hash-chained chain" not in verify.out
    env = {"ROTATECTL_AUDIT_KEY": "k" * 32, "ROTATECTL_STATE_DIR": str(cli.root / "keyed")}
    assert cli("rotate", NAME, env=env).code == 0
    keyed = cli("audit", "verify", env=env)
    assert keyed.code == 0 and "chain intact (HMAC-keyed)" in keyed.out, keyed.out + keyed.err
    helptext = " ".join(cli("run", "--help").out.replace("│", " ").split())
    assert "(e.g. 5m; default: no sleep)" in helptext, helptext
