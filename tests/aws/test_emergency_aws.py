"""Emergency rollover on AWS: Secrets Manager store, IAM access keys, over moto_server."""

from __future__ import annotations

import json

import pytest

from ..conftest import Cli
from .conftest import REGION, MotoServer, aws_env
from .test_cli_aws import NAME, all_values, label_value


@pytest.mark.slow
def test_emergency_makes_the_old_iam_key_inactive_at_once(cli: Cli, moto: MotoServer) -> None:
    cli.env.update(aws_env())
    iam = moto.client("iam")
    iam.create_user(UserName="svc-acme")
    (cli.cwd / "rotatectl.toml").write_text(
        f"""
[defaults]
store = "aws"

[stores.aws]
type = "aws-secretsmanager"
region = "{REGION}"
endpoint_url = "{moto.url}"

[credentials."{NAME}"]
issuer = {{ type = "aws-iam", user = "svc-acme", region = "{REGION}", endpoint_url = "{moto.url}" }}
"""
    )
    assert cli("rotate", NAME).code == 0, cli.runs[-1].err
    sm = moto.client("secretsmanager")
    leaked = json.loads(label_value(sm, "AWSCURRENT") or "{}")["AccessKeyId"]

    run = cli("emergency", NAME, "--reason", "key in a public repo", "--yes")
    assert run.code == 0, run.out + run.err
    assert "old key revoked" in run.out
    current = json.loads(label_value(sm, "AWSCURRENT") or "{}")["AccessKeyId"]
    assert current != leaked
    statuses = {
        k["AccessKeyId"]: k["Status"]
        for k in iam.list_access_keys(UserName="svc-acme")["AccessKeyMetadata"]
    }
    assert statuses == {leaked: "Inactive", current: "Active"}
    run = cli("rollback", NAME)
    assert run.code == 2 and "compromised" in run.err
    secrets = {json.loads(v)["SecretAccessKey"] for v in all_values(sm)}
    for r in cli.runs:
        for secret in secrets:
            assert secret not in r.out + r.err, f"a secret access key leaked into {r.args}"
