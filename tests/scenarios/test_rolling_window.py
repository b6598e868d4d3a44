"""``keep_previous = 3`` through the CLI on the local store, moto_server and OpenBao
(issue 18 item 1): after five rotations the verifier view holds exactly the current
key and the three newest previous keys; an ordinary reader of AWS sees them by
label; an emergency retires the compromised key only, and says so."""

from __future__ import annotations

import json
import subprocess

import pytest

from rotatectl import keyformat
from tests.conftest import Cli
from tests.reliability.conftest import AwsBackend

from .conftest import NAME, STORES, Backend
from .test_operator_flows import ok, states, versions, write_config


def accepted_ids(backend: Backend) -> set[str]:
    return {k.key_id for k in backend.store().accepted_keys(NAME, NAME)}


def rotate_times(cli: Cli, n: int) -> None:
    for _ in range(n):
        ok(cli("-q", "rotate", NAME, "--wait"))


@pytest.mark.slow
@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_five_rotations_keep_the_current_and_three_newest_previous_keys(
    cli: Cli, backend: Backend
) -> None:
    write_config(backend, defaults_toml="keep_previous = 3")
    rotate_times(cli, 6)  # the first key, then five rotations
    assert states(backend) == {
        1: "retired",
        2: "retired",
        3: "previous",
        4: "previous",
        5: "previous",
        6: "current",
    }
    by_number = {v.number: v for v in versions(backend)}
    assert accepted_ids(backend) == {by_number[n].key_id for n in (3, 4, 5, 6)}
    # status lists the window; no drift, nothing needs attention.
    doc = json.loads(ok(cli("-o", "json", "status", NAME)).out)
    listed = {v["number"]: v["state"] for v in doc["credentials"][0]["versions"]}
    assert {n: s for n, s in listed.items() if s != "retired"} == {
        3: "previous",
        4: "previous",
        5: "previous",
        6: "current",
    }
    assert ok(cli("status", "-q")).out == ""
    if isinstance(backend, AwsBackend):
        # AWSCURRENT and AWSPREVIOUS on the newest two, a rotatectl-v<N> label on
        # each: an ordinary reader (boto3, the AWS CLI) gets every key of the window.
        holders = {
            label: vid for vid, labels in backend.key_versions(NAME).items() for label in labels
        }
        assert holders["AWSCURRENT"] == holders["rotatectl-v6"]
        assert holders["AWSPREVIOUS"] == holders["rotatectl-v5"]
        env = {**cli.env, "AWS_ENDPOINT_URL": backend.server.url}
        for stage, n in [("AWSCURRENT", 6), ("AWSPREVIOUS", 5)] + [
            (f"rotatectl-v{n}", n) for n in (3, 4, 5, 6)
        ]:
            query = ["--version-stage", stage, "--query", "SecretString", "--output", "text"]
            read = subprocess.run(
                ["aws", "secretsmanager", "get-secret-value", "--secret-id", NAME, *query],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            assert read.returncode == 0, read.stderr
            assert keyformat.fingerprint_of(read.stdout.strip()) == by_number[n].fingerprint


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_an_emergency_retires_only_the_compromised_key_and_says_so(
    cli: Cli, backend: Backend
) -> None:
    write_config(backend, defaults_toml="keep_previous = 3")
    rotate_times(cli, 3)  # v1, v2 previous; v3 current
    run = ok(cli("emergency", NAME, "--yes", "--reason", "leak"))
    assert f"{NAME}: emergency rotation: replacing v3 " in run.out
    assert "only the compromised key is retired: v2, v1 stay accepted in the window " in run.out
    assert states(backend) == {1: "previous", 2: "previous", 3: "retired", 4: "current"}


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_rollback_goes_back_to_any_key_of_the_window(cli: Cli, backend: Backend) -> None:
    write_config(backend, defaults_toml="keep_previous = 3")
    rotate_times(cli, 4)  # v1..v3 previous, v4 current
    run = ok(cli("rollback", NAME, "--to", "2", "--reason", "bad deploy"))
    assert f"{NAME}: rolling back to v2 (" in run.out
    assert states(backend)[2] == "current"
    refused = cli("rollback", NAME, "--to", "9")
    assert refused.code == 2
    assert refused.err == f"rotatectl: error: {NAME}: no version v9 (it has v1, v2, v3, v4)\n"
