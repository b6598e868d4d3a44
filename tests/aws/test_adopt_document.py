"""A secret rotatectl did not create, holding a JSON document (issue 18 item 3): the
next ``rotate`` must never replace the document with a bare key, at once or at all.
On Secrets Manager (tagged as the old error message advised, and untagged) and on
Parameter Store, through the CLI against moto_server: drift (exit 3) until it is
adopted; ``check --adopt`` refuses while the config declares a bare key, and with
``field`` declared takes the secret over as it is (value, format and labels kept),
after which a rotation has its normal phases and changes the key field only."""

from __future__ import annotations

import json
import re

import pytest

from ..conftest import Cli
from .conftest import MotoServer
from .test_cli_aws import NAME, configure, label_value
from .test_cli_ssm import PARAMETER, client_reads
from .test_cli_ssm import configure as configure_ssm

DOCUMENT = json.dumps({"username": "svc", "api_key": "sk_live_1234567890", "region": "eu-west-1"})


def _existing_document_secret(moto: MotoServer) -> str:
    sm = moto.client("secretsmanager")
    made = sm.create_secret(Name=NAME, SecretString=DOCUMENT)
    sm.tag_resource(
        SecretId=NAME,
        Tags=[
            {"Key": "rotatectl:path", "Value": NAME},
            {"Key": "rotatectl:role", "Value": "key"},
        ],
    )
    return str(made["VersionId"])


def test_rotate_never_replaces_a_document_it_did_not_write(cli: Cli, moto: MotoServer) -> None:
    configure(cli, moto.url)
    sm = moto.client("secretsmanager")
    original = _existing_document_secret(moto)
    said = (
        "the key secret holds a value rotatectl did not write (AWSCURRENT, and no record "
        "of it): rotatectl does not replace it; declare its format and take it over as it "
        "is (`check --adopt`), or use another path"
    )
    status = cli("-o", "json", "status")
    assert status.code == 3
    assert json.loads(status.out)["credentials"][0]["drift"][0].startswith(said)
    run = cli("rotate", NAME)
    assert run.code == 3, (run.code, run.out, run.err)
    assert "drift" in run.err and said in run.err
    assert cli("run").code == 3
    adopt = cli("check", NAME, "--adopt")
    assert adopt.code == 2
    assert (
        f"{NAME}: clients read a JSON document, but the config declares a bare key; declare "
        'format = "json" and the field that holds the key, then adopt'
    ) in adopt.err
    # Nothing was written: the document is current, its only version, with its label.
    assert label_value(sm, "AWSCURRENT") == DOCUMENT
    listed = sm.list_secret_version_ids(SecretId=NAME, IncludeDeprecated=True)["Versions"]
    assert [(v["VersionId"], v.get("VersionStages")) for v in listed] == [
        (original, ["AWSCURRENT"])
    ]
    for done in cli.runs:
        assert "sk_live_1234567890" not in done.out + done.err


def test_ssm_rotate_never_replaces_a_parameter_it_did_not_write(cli: Cli, moto: MotoServer) -> None:
    configure_ssm(cli, moto.url)
    ssm = moto.client("ssm")
    ssm.put_parameter(Name=PARAMETER, Value=DOCUMENT, Type="SecureString")
    run = cli("rotate", NAME)
    assert run.code == 3, (run.code, run.out, run.err)
    assert (
        f"parameter {PARAMETER} holds a value rotatectl did not write (and no record of it): "
        "rotatectl does not replace it; declare its format and take it over as it is "
        "(`check --adopt`), or use another path"
    ) in run.err
    assert cli("check", NAME, "--adopt").code == 2
    assert client_reads(ssm) == DOCUMENT
    history = ssm.get_parameter_history(Name=PARAMETER, WithDecryption=True)["Parameters"]
    assert [str(p["Value"]) for p in history] == [DOCUMENT]
    for done in cli.runs:
        assert "sk_live_1234567890" not in done.out + done.err


# A document as another tool wrote it: odd spacing, a nested value, non-ASCII text.
THEIRS = (
    '{ "username":"svc",\n  "api_key" : "sk_live_1234567890abcdef",'
    ' "pool": {"max": 10, "ratio": 1.50}, "region": "eu-west-1", "note": "ключ" }'
)
OLD_KEY = "sk_live_1234567890abcdef"
JSON_LINES = 'field = "api_key"\npropagation = "1s"\noverlap = "0s"\nretain = "1h"\n'


def _rotated_normally(run_out: str) -> str:
    """The new key id, after checking the rotation went through its phases."""
    published = re.search(rf"^{NAME}: published v2 \((\w{{8}})\) as pending$", run_out, re.M)
    assert published, run_out
    assert re.search(rf"^{NAME}: promoted v2 \({published[1]}\)", run_out, re.M), run_out
    assert re.search(rf"^{NAME}: retired v1 \(", run_out, re.M), run_out
    return published[1]


def _only_the_key_changed(before: str, after: str) -> str:
    """``after`` is ``before`` with the api_key's text replaced: returns the new key."""
    new_key = json.loads(after)["api_key"]
    assert after == before.replace(f'"{OLD_KEY}"', f'"{new_key}"')
    return str(new_key)


@pytest.mark.parametrize("tagged", [False, True])
def test_a_document_is_adopted_as_it_is_then_rotated_normally(
    cli: Cli, moto: MotoServer, tagged: bool
) -> None:
    configure(cli, moto.url, credential=JSON_LINES)
    sm = moto.client("secretsmanager")
    original = sm.create_secret(Name=NAME, SecretString=THEIRS)["VersionId"]
    if tagged:
        sm.tag_resource(SecretId=NAME, Tags=[{"Key": "rotatectl:path", "Value": NAME}])
    assert cli("rotate", NAME).code == 3  # not before it is adopted

    adopt = cli("check", NAME, "--adopt")
    assert adopt.code == 0, adopt.out + adopt.err
    # Value, format and labels as they were: no new AWS version, AWSCURRENT unmoved.
    listed = sm.list_secret_version_ids(SecretId=NAME, IncludeDeprecated=True)["Versions"]
    assert [v["VersionId"] for v in listed] == [original]
    assert "AWSCURRENT" in listed[0]["VersionStages"]
    assert label_value(sm, "AWSCURRENT") == THEIRS
    status = json.loads(cli("-o", "json", "status", NAME).out)["credentials"][0]
    assert [(v["number"], v["state"]) for v in status["versions"]] == [(1, "current")]
    assert status["drift"] == []
    assert cli("status", "-q").out == ""

    run = cli("rotate", NAME, "--wait")
    assert run.code == 0, run.out + run.err
    _rotated_normally(run.out)
    new_key = _only_the_key_changed(THEIRS, label_value(sm, "AWSCURRENT") or "")
    # Their version is rotatectl's v1 now, retired (overlap 0s) but kept (retain 1h).
    kept = sm.get_secret_value(SecretId=NAME, VersionId=original)["SecretString"]
    assert kept == THEIRS
    assert cli("get", NAME, "--field", "api_key").out == new_key + "\n"
    # The canary: no field's value (of ours or theirs) in any output but get's.
    canaries = {new_key, *(v for v in json.loads(THEIRS).values() if isinstance(v, str))}
    for done in cli.runs:
        if done.args[:1] != ("get",):
            assert not [c for c in canaries if len(c) >= 8 and c in done.out + done.err]


def test_ssm_a_document_is_adopted_as_it_is_then_rotated_normally(
    cli: Cli, moto: MotoServer
) -> None:
    configure_ssm(cli, moto.url)
    with (cli.cwd / "rotatectl.toml").open("a") as config:
        config.write(JSON_LINES)
    ssm = moto.client("ssm")
    ssm.put_parameter(Name=PARAMETER, Value=THEIRS, Type="SecureString")
    adopt = cli("check", NAME, "--adopt")
    assert adopt.code == 0, adopt.out + adopt.err
    history = ssm.get_parameter_history(Name=PARAMETER, WithDecryption=True)["Parameters"]
    assert [str(p["Value"]) for p in history] == [THEIRS]
    run = cli("rotate", NAME, "--wait")
    assert run.code == 0, run.out + run.err
    _rotated_normally(run.out)
    _only_the_key_changed(THEIRS, client_reads(ssm))
