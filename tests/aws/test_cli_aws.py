"""The real CLI in subprocesses against moto_server over HTTP (endpoint_url)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from rotatectl.model import VersionState

from ..conftest import Cli
from .conftest import REGION, AuthServer, MotoServer, _free_port, aws_env, make_store

NAME = "partners/acme"


def configure(cli: Cli, url: str, store: str = "", credential: str = "") -> None:
    cli.env.update(aws_env())
    (cli.cwd / "rotatectl.toml").write_text(
        f"""
[defaults]
store = "aws"

[stores.aws]
type = "aws-secretsmanager"
region = "{REGION}"
endpoint_url = "{url}"
{store}

[credentials."{NAME}"]
issuer = {{ type = "generated", prefix = "rk_live" }}
{credential}
"""
    )


def label_value(sm: Any, label: str, name: str = NAME) -> str | None:
    try:
        return str(sm.get_secret_value(SecretId=name, VersionStage=label)["SecretString"])
    except sm.exceptions.ResourceNotFoundException:
        return None


def all_values(sm: Any) -> set[str]:
    """Every value any secret version holds (labelled or not)."""
    values = set()
    for page in sm.get_paginator("list_secrets").paginate():
        for secret in page["SecretList"]:
            listed = sm.list_secret_version_ids(SecretId=secret["ARN"], IncludeDeprecated=True)
            for version in listed["Versions"]:
                out = sm.get_secret_value(SecretId=secret["ARN"], VersionId=version["VersionId"])
                if secret["Name"] == NAME:
                    values.add(out["SecretString"])
    return values


def assert_no_value_leaked(cli: Cli, sm: Any) -> None:
    """Invariant 7 for the AWS store (the harness' own canary reads only local stores)."""
    values = all_values(sm)
    assert values
    for run in cli.runs:
        if run.reveals:
            continue
        for value in values:
            assert value not in run.out + run.err, f"a key value leaked into {run.args}"


def wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def paused(cli: Cli, boundary: str, *args: str) -> Any:
    marker = cli.root / f"paused-{boundary}"
    proc = cli.popen(
        "rotate",
        NAME,
        *args,
        env={"ROTATECTL_TEST_PAUSE_AT": boundary, "ROTATECTL_TEST_PAUSE_FILE": str(marker)},
    )
    try:
        wait_for(marker)
    except AssertionError:
        proc.kill()
        raise
    return proc


def kill(cli: Cli, proc: Any, what: str) -> None:
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=10)
    cli.record(("rotate", what), proc.returncode, out, err)


def one_line_error(run: Any, code: int) -> str:
    assert run.code == code, (run.code, run.out, run.err)
    assert "Traceback" not in run.err
    lines = [line for line in run.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, run.err
    return lines[0]


@pytest.mark.slow
def test_rotation_through_the_cli_and_resumes_keep_one_version_per_rotation(
    cli: Cli, moto: MotoServer, tmp_path: Path
) -> None:
    configure(cli, moto.url)
    sm = moto.client("secretsmanager")
    store = make_store(tmp_path, moto.url)
    assert cli("rotate", NAME).code == 0
    old = label_value(sm, "AWSCURRENT")
    assert old and old.startswith("rk_live_")

    run = cli("rotate", NAME, "--propagation", "1s", "--overlap", "1s", "--no-wait")
    assert run.code == 0, run.err
    new = label_value(sm, "AWSPENDING")
    assert new and new != old and label_value(sm, "AWSCURRENT") == old

    time.sleep(1.1)
    run = cli("run")
    assert run.code == 0 and "promoted v2" in run.out, run.err
    # The overlap: clients get the new key, the old one is still there as AWSPREVIOUS.
    assert label_value(sm, "AWSCURRENT") == new
    assert label_value(sm, "AWSPREVIOUS") == old
    assert len(store.accepted_keys(NAME, NAME)) == 2

    time.sleep(1.1)
    run = cli("run")
    assert run.code == 0 and "retired v1" in run.out, run.err
    assert [v.state for v in store.versions(NAME)] == [VersionState.RETIRED, VersionState.CURRENT]
    accepted = store.accepted_keys(NAME, NAME)
    assert [k.version_id for k in accepted] == [store.versions(NAME)[1].version_id]
    assert label_value(sm, "AWSPREVIOUS") is None  # no verifier, no naive client gets it

    # Two more rotations, each killed at a boundary and resumed by `run`.
    for boundary in ("after-issue", "after-publish"):
        proc = paused(cli, boundary, "--propagation", "0s", "--overlap", "0s")
        kill(cli, proc, boundary)
        for _ in range(3):
            run = cli("run")
            assert run.code == 0, run.err
            rotation, _ = store.load_rotation(NAME)
            if rotation is not None and rotation.phase.value == "completed":
                break
        assert rotation is not None and rotation.phase.value == "completed", run.out
    versions = sm.list_secret_version_ids(SecretId=NAME, IncludeDeprecated=True)["Versions"]
    assert len(versions) == 3 + 1  # rotations after the first key, plus the first key
    assert [v.state.value for v in store.versions(NAME)][-1] == "current"
    status = json.loads(cli("status", "-o", "json").out)["credentials"][0]
    assert status["current_version"] == 4 and status["store"] == "aws"
    assert_no_value_leaked(cli, sm)
    store.close()


@pytest.mark.slow
def test_two_concurrent_rotations_one_wins_the_other_exits_4(cli: Cli, moto: MotoServer) -> None:
    configure(cli, moto.url)
    assert cli("rotate", NAME).code == 0
    holder = paused(cli, "after-start")
    try:
        run = cli("rotate", NAME)
        line = one_line_error(run, 4)
        assert f"{NAME}: locked - held by " in line and f":{holder.pid} since " in line
    finally:
        kill(cli, holder, "holder")
    sm = moto.client("secretsmanager")
    assert len(sm.list_secret_version_ids(SecretId=NAME)["Versions"]) == 1
    assert_no_value_leaked(cli, sm)


@pytest.mark.slow
def test_a_promotion_racing_an_out_of_band_move_is_a_conflict(cli: Cli, moto: MotoServer) -> None:
    configure(cli, moto.url)
    sm = moto.client("secretsmanager")
    assert cli("rotate", NAME).code == 0
    assert cli("rotate", NAME, "--propagation", "1s", "--no-wait").code == 0
    current = next(
        vid
        for vid, labels in sm.describe_secret(SecretId=NAME)["VersionIdsToStages"].items()
        if "AWSCURRENT" in labels
    )
    # Someone moves AWSCURRENT by hand while the new key propagates.
    manual = "0badc0de-0000-4000-8000-000000000000"
    sm.put_secret_value(
        SecretId=NAME, ClientRequestToken=manual, SecretString="by hand", VersionStages=["ops"]
    )
    sm.update_secret_version_stage(
        SecretId=NAME,
        VersionStage="AWSCURRENT",
        MoveToVersionId=manual,
        RemoveFromVersionId=current,
    )
    time.sleep(1.1)
    run = cli("run")
    assert run.code in (1, 3), (run.code, run.out, run.err)
    assert "AWSCURRENT" in run.err and "outside rotatectl" in run.err
    assert "not overwriting" in run.err
    assert label_value(sm, "AWSCURRENT") == "by hand"  # never overwritten
    assert_no_value_leaked(cli, sm)


@pytest.mark.slow
def test_wrong_region_unreachable_endpoint_and_missing_secret(cli: Cli, moto: MotoServer) -> None:
    configure(cli, moto.url, store='region = "us-east-7"')
    (cli.cwd / "rotatectl.toml").write_text(
        (cli.cwd / "rotatectl.toml").read_text().replace(f'region = "{REGION}"\n', "", 1)
    )
    line = one_line_error(cli("status"), 2)
    assert "[stores.aws] region: unknown AWS region 'us-east-7' (did you mean us-east-" in line

    closed = f"http://127.0.0.1:{_free_port()}"
    configure(cli, closed, store="max_attempts = 1")
    line = one_line_error(cli("rotate", NAME), 1)
    assert f"cannot reach AWS secretsmanager at {closed}" in line and "endpoint_url" in line

    configure(cli, moto.url)
    assert cli("rotate", NAME).code == 0
    moto.client("secretsmanager").delete_secret(SecretId=NAME, ForceDeleteWithoutRecovery=True)
    line = one_line_error(cli("get", NAME), 1)
    assert f"secret {NAME} ({REGION})" in line and "does not exist in region" in line


@pytest.mark.slow
def test_denied_permissions_are_named(cli: Cli, moto_auth: AuthServer) -> None:
    keys = moto_auth.user(
        "cli-no-put",
        [
            {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "secretsmanager:PutSecretValue", "Resource": "*"},
        ],
    )
    configure(cli, moto_auth.url)
    cli.env["AWS_ACCESS_KEY_ID"] = keys["AccessKeyId"]
    cli.env["AWS_SECRET_ACCESS_KEY"] = keys["SecretAccessKey"]
    run = cli("rotate", NAME)
    assert run.code == 1, (run.out, run.err)
    assert "secretsmanager:PutSecretValue denied by AWS" in run.err
    assert "Traceback" not in run.err
    run = cli("check")
    assert run.code == 1
    assert "secretsmanager:PutSecretValue denied" in run.err


def test_the_sdk_endpoint_variables_reach_every_aws_adapter(cli: Cli, moto: MotoServer) -> None:
    """No `endpoint_url` in the config: the AWS SDK's own `AWS_ENDPOINT_URL` (and the
    per-service `AWS_ENDPOINT_URL_<SERVICE>`) point the stores at moto_server, as the
    README documents (issue 17)."""
    cli.env.update(aws_env())
    (cli.cwd / "rotatectl.toml").write_text(
        f'[defaults]\nstore = "aws"\n\n[stores.aws]\ntype = "aws-secretsmanager"\n'
        f'region = "{REGION}"\n\n[stores.ssm]\ntype = "aws-ssm"\nregion = "{REGION}"\n\n'
        f'[credentials."{NAME}"]\n\n[credentials."params/one"]\nstore = "ssm"\n'
    )
    cli.env["AWS_ENDPOINT_URL"] = moto.url
    run = cli("rotate", NAME, "params/one")
    assert run.code == 0, run.out + run.err
    sm = moto.client("secretsmanager")
    assert sm.get_secret_value(SecretId=NAME, VersionStage="AWSCURRENT")["SecretString"]
    assert moto.client("ssm").get_parameter(Name="/params/one", WithDecryption=True)["Parameter"]
    # A service's own variable wins over the general one.
    cli.env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{_free_port()}"
    cli.env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = moto.url
    cli.env["AWS_ENDPOINT_URL_SSM"] = moto.url
    assert cli("status").code == 0


def test_check_of_an_aws_only_config_leaves_the_unused_local_store_alone(
    cli: Cli, moto: MotoServer
) -> None:
    """The local store no credential uses is not reached (nor its file created); a
    declared one is, used or not."""
    configure(cli, moto.url)
    run = cli("check")
    assert run.code == 0, run.err
    assert "  ok store aws - 0 credentials" in run.out.splitlines()
    assert not any(line.startswith("  ok store local") for line in run.out.splitlines())
    assert not (cli.state_dir / "state.db").exists()
    config = cli.cwd / "rotatectl.toml"
    config.write_text(config.read_text() + '\n[stores.local]\ntype = "local"\n')
    declared = cli("check")
    assert declared.code == 0, declared.err
    assert any(line.startswith("  ok store local - ") for line in declared.out.splitlines())
