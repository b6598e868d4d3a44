"""Drift of the AWS Secrets Manager store through the CLI, against moto_server.

Changes made with boto3 behind rotatectl's back (a new AWSCURRENT version, a
label moved) are reported by ``status``/``check``, block ``rotate`` (exit 3),
and are resolved by ``check NAME --adopt`` or ``--restore`` (audited).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rotatectl import keyformat

from ..conftest import Cli
from .conftest import MotoServer, make_store
from .test_cli_aws import NAME, configure, label_value


def _audit_actions(cli: Cli) -> list[str]:
    return [r["action"] for r in json.loads(cli("audit", "-o", "json").out)["records"]]


def _assert_blocked(cli: Cli, what: str, *, idle: bool = True) -> None:
    """``idle``: no rotation in flight, so ``rotate`` would start one (drift refuses it)."""
    run = cli("status", "-o", "json")
    assert run.code == 3, (run.out, run.err)
    drift = json.loads(run.out)["credentials"][0]["drift"]
    assert any(what in line for line in drift), drift
    if idle:
        run = cli("rotate", NAME)
        assert run.code == 3 and "drift" in run.err, run.err
    run = cli("check")
    assert run.code == 3 and "DRIFT" in run.err, run.err


def _aws_id_of(sm: Any, label: str) -> str:
    listed = sm.list_secret_version_ids(SecretId=NAME)["Versions"]
    return next(str(v["VersionId"]) for v in listed if label in v.get("VersionStages", []))


def _no_value_in(cli: Cli, *values: str) -> None:
    for run in cli.runs:
        for value in values:
            assert value not in run.out + run.err, f"a key value leaked into {run.args}"


def test_a_version_put_outside_is_detected_and_adopted(
    cli: Cli, moto: MotoServer, tmp_path: Path
) -> None:
    configure(cli, moto.url, credential='overlap = "0s"\nunknown_usage = "quiet"')
    sm = moto.client("secretsmanager")
    assert cli("rotate", NAME).code == 0
    assert cli("status").code == 0
    ours = label_value(sm, "AWSCURRENT")
    outsider = keyformat.generate("rk_live")
    sm.put_secret_value(SecretId=NAME, SecretString=outsider, VersionStages=["AWSCURRENT"])

    _assert_blocked(cli, "AWSCURRENT is on a version rotatectl did not write")
    run = cli("check", NAME, "--adopt")
    assert run.code == 0, run.err
    assert cli("status").code == 0
    assert label_value(sm, "AWSCURRENT") == outsider
    store = make_store(tmp_path, moto.url)
    versions = store.versions(NAME)
    assert [(v.number, str(v.state)) for v in versions] == [(1, "previous"), (2, "current")]
    assert versions[1].key_id == keyformat.parse(outsider).key_id
    assert store.read_value(NAME) == outsider
    assert "drift-adopted" in _audit_actions(cli)
    # The replaced key went through the overlap (0 s here) and the gate: `rotate`
    # finishes the adoption's rotation, then a normal rotation works on it.
    assert cli("rotate", NAME).code == 0
    assert [str(v.state) for v in store.versions(NAME)] == ["retired", "current"]
    assert label_value(sm, "AWSPREVIOUS") is None
    run = cli("rotate", NAME, "--propagation", "0s")
    assert run.code == 0, run.err
    assert label_value(sm, "AWSCURRENT") not in (outsider, ours)
    assert cli("status").code == 0
    assert ours is not None
    _no_value_in(cli, outsider, ours)


def test_a_non_key_value_put_outside_gets_a_derived_key_id(
    cli: Cli, moto: MotoServer, tmp_path: Path
) -> None:
    configure(cli, moto.url)
    sm = moto.client("secretsmanager")
    assert cli("rotate", NAME).code == 0
    sm.put_secret_value(
        SecretId=NAME, SecretString="a-hand-made-password-1234567", VersionStages=["AWSPENDING"]
    )
    assert cli("status").code == 3  # a pending label rotatectl did not put
    sm.update_secret_version_stage(
        SecretId=NAME,
        VersionStage="AWSCURRENT",
        MoveToVersionId=_aws_id_of(sm, "AWSPENDING"),
        RemoveFromVersionId=_aws_id_of(sm, "AWSCURRENT"),
    )
    assert cli("status").code == 3
    assert cli("check", NAME, "--adopt").code == 0
    current = make_store(tmp_path, moto.url).versions(NAME)[-1]
    assert current.key_id.startswith("x") and len(current.key_id) == 8
    assert cli("status").code == 0


def test_a_version_put_outside_is_restored(cli: Cli, moto: MotoServer) -> None:
    configure(cli, moto.url)
    sm = moto.client("secretsmanager")
    assert cli("rotate", NAME).code == 0
    ours = label_value(sm, "AWSCURRENT")
    outsider = keyformat.generate("rk_live")
    sm.put_secret_value(SecretId=NAME, SecretString=outsider, VersionStages=["AWSCURRENT"])
    _assert_blocked(cli, "AWSCURRENT")

    run = cli("check", NAME, "--restore")
    assert run.code == 0, run.err
    assert label_value(sm, "AWSCURRENT") == ours
    assert label_value(sm, "AWSPREVIOUS") is None
    assert cli("status").code == 0
    assert "drift-restored" in _audit_actions(cli)
    assert cli("rotate", NAME, "--propagation", "0s").code == 0


def test_awscurrent_moved_back_to_the_previous_version(cli: Cli, moto: MotoServer) -> None:
    configure(cli, moto.url)
    sm = moto.client("secretsmanager")
    assert cli("rotate", NAME).code == 0
    run = cli("rotate", NAME, "--propagation", "0s", "--no-wait")  # now in its overlap
    assert run.code == 0, run.err
    new, old = label_value(sm, "AWSCURRENT"), label_value(sm, "AWSPREVIOUS")
    assert new and old and new != old
    assert cli("status").code == 0
    sm.update_secret_version_stage(
        SecretId=NAME,
        VersionStage="AWSCURRENT",
        MoveToVersionId=_aws_id_of(sm, "AWSPREVIOUS"),
        RemoveFromVersionId=_aws_id_of(sm, "AWSCURRENT"),
    )
    assert label_value(sm, "AWSCURRENT") == old
    _assert_blocked(cli, "AWSCURRENT is on v1 (", idle=False)
    drift = json.loads(cli("status", "-o", "json").out)["credentials"][0]["drift"]
    # Where each label is, and where rotatectl's record has it, never one state for both.
    assert any(
        re.fullmatch(
            r"AWSCURRENT is on v1 \(\S+, previous in rotatectl's record\), where rotatectl's "
            r"record has v2 \(\S+\) current: the label was moved outside rotatectl",
            line,
        )
        for line in drift
    ), drift

    run = cli("check", NAME, "--restore")
    assert run.code == 0, run.err
    assert label_value(sm, "AWSCURRENT") == new
    assert label_value(sm, "AWSPREVIOUS") == old
    assert cli("status").code == 0
    assert "drift-restored" in _audit_actions(cli)
    # Adopting instead while that rotation is in its overlap is refused, not guessed.
    sm.update_secret_version_stage(
        SecretId=NAME,
        VersionStage="AWSCURRENT",
        MoveToVersionId=_aws_id_of(sm, "AWSPREVIOUS"),
        RemoveFromVersionId=_aws_id_of(sm, "AWSCURRENT"),
    )
    run = cli("check", NAME, "--adopt")
    assert run.code != 0 and "in flight" in run.err, run.err
    assert cli("check", NAME, "--restore").code == 0
    assert label_value(sm, "AWSCURRENT") == new
    _no_value_in(cli, new, old)
