"""API calls the CLI makes against moto_server (issue 10), counted with a botocore hook.

A full rotation with zero waits costs at most 13 calls (was 56, then 18): one read of the record
a step, or none while the store itself holds the lease and wrote it last; one
PutSecretValue a record write (its ClientRequestToken, derived from the
record's sequence number, is the compare-and-set). ``status`` reads records 20
a call and the labels 100 a call.
"""

from __future__ import annotations

import json
from typing import Any

from ..conftest import Cli
from .conftest import MotoServer, aws_env
from .test_cli_aws import REGION

NAMES = [f"fleet/c{i:02d}" for i in range(25)]
# status and a no-op run over NAMES: the records 20 a call, the labels 100 a page.
BATCHED = {"BatchGetSecretValue": 2, "ListSecrets": 1}


def _fleet(cli: Cli, moto: MotoServer) -> None:
    cli.env.update(aws_env())
    (cli.cwd / "rotatectl.toml").write_text(
        f'[defaults]\nstore = "aws"\n\n[stores.aws]\ntype = "aws-secretsmanager"\n'
        f'region = "{REGION}"\nendpoint_url = "{moto.url}"\n\n'
        + "".join(f'[credentials."{name}"]\n' for name in NAMES)
    )
    assert cli("rotate", *NAMES).code == 0


# The benchmark's figures (``benchmarks/run.py --only calls``) as bounds: they must not
# grow. Each kind of call a full rotation with zero waits may make, at most:
ROTATION_BOUNDS = {
    # 6 record writes (lease; the start; publish, promote and retire each with its
    # rotation record, issue 21; release) and the new key's value.
    "PutSecretValue": 7,
    # The record before taking the lease (the drift check needs no value: AWS
    # versions are immutable, so where AWSCURRENT is proves it).
    "GetSecretValue": 1,
    # The key secret's labels: drift check (publish uses that answer) and promote;
    # the retire starts from the labels the promotion left (issue 21).
    "DescribeSecret": 2,
    # Promote (AWSCURRENT, compare-and-swap), its AWSPREVIOUS/AWSPENDING labels, and
    # the retired key's labels.
    "UpdateSecretVersionStage": 3,
}


def within(calls: dict[str, int], bounds: dict[str, int], total: int) -> None:
    """No kind of call beyond ``bounds``, none more often, at most ``total`` in all."""
    assert set(calls) <= set(bounds), f"unexpected calls: {set(calls) - set(bounds)}"
    over = {k: (n, bounds[k]) for k, n in calls.items() if n > bounds[k]}
    assert not over, f"more calls than the bound (made, bound): {over}"
    assert sum(calls.values()) <= total, calls


def test_a_full_rotation_is_at_most_13_calls(cli: Cli, moto: MotoServer) -> None:
    _fleet(cli, moto)
    run, calls = cli.counted(
        "rotate", NAMES[0], "--propagation", "0s", "--overlap", "0s", count="aws"
    )
    assert run.code == 0, run.err
    within(calls, ROTATION_BOUNDS, 13)
    assert calls["PutSecretValue"] >= 5, "a step's intent or result went unrecorded"


def test_status_reads_in_batches_and_still_finds_drift(cli: Cli, moto: MotoServer) -> None:
    _fleet(cli, moto)
    run, calls = cli.counted("status", "-o", "json", count="aws")
    assert run.code == 0, run.err
    # 25 records, 20 a call; the labels of every key secret, 100 a call.
    within(calls, BATCHED, 3)

    sm: Any = moto.client("secretsmanager")
    sm.put_secret_value(SecretId=NAMES[3], SecretString="put-by-hand")  # AWSCURRENT moves
    run, calls = cli.counted("status", "-o", "json", count="aws")
    assert run.code == 3, run.err
    drift = {c["name"]: c["drift"] for c in json.loads(run.out)["credentials"]}
    assert [name for name, lines in drift.items() if lines] == [NAMES[3]]
    assert "AWSCURRENT is on a version rotatectl did not write" in drift[NAMES[3]][0]
    within(calls, BATCHED, 3)


def test_a_no_op_run_is_one_batch_read_per_20_credentials(cli: Cli, moto: MotoServer) -> None:
    _fleet(cli, moto)
    run, calls = cli.counted("run", count="aws")
    assert run.code == 0, run.err
    # One batch read a 20 credentials, and the drift check (cron must hear of drift):
    # the labels of 100 secrets a ListSecrets page; no value is read.
    within(calls, BATCHED, 3)


# The aws-ssm store (issue 16 item 5), measured with this counter; bounds, so they
# never grow. A record write is a create-only PutParameter, a listing that checks it
# won, and a DeleteParameters of the records below it.
SSM_ROTATION_BOUNDS = {
    "GetParametersByPath": 17,
    "PutParameter": 12,  # 10 record writes, the pending value, the promotion
    "DeleteParameters": 11,
    "GetParameters": 3,
    "GetParameter": 3,
    "LabelParameterVersion": 3,
    "UnlabelParameterVersion": 1,
}
# status of 25 credentials: the record listing (moto pages DescribeParameters by 10,
# AWS by 50) and GetParameters, 10 names a call.
SSM_STATUS_BOUNDS = {"DescribeParameters": 6, "GetParameters": 12}


def test_an_ssm_rotation_and_status_stay_within_their_bounds(cli: Cli, moto: MotoServer) -> None:
    cli.env.update(aws_env())
    (cli.cwd / "rotatectl.toml").write_text(
        f'[defaults]\nstore = "ssm"\nunknown_usage = "quiet"\n\n[stores.ssm]\ntype = "aws-ssm"\n'
        f'region = "{REGION}"\nendpoint_url = "{moto.url}"\nprefix = "/calls"\n\n'
        + "".join(f'[credentials."{name}"]\n' for name in NAMES)
    )
    assert cli("rotate", *NAMES).code == 0
    run, calls = cli.counted(
        "rotate", NAMES[0], "--propagation", "0s", "--overlap", "0s", count="aws"
    )
    assert run.code == 0, run.err
    within(calls, SSM_ROTATION_BOUNDS, 50)
    run, calls = cli.counted("status", count="aws")
    assert run.code == 0, run.err
    within(calls, SSM_STATUS_BOUNDS, 18)
