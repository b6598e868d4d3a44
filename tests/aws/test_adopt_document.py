"""A secret rotatectl did not create, holding a JSON document (issue 18 item 3): the
next ``rotate`` must never replace the document with a bare key, at once or at all.
On Secrets Manager (tagged as the old error message advised) and on Parameter
Store, through the CLI against moto_server: drift (exit 3) until another path is
used; ``check --adopt`` refuses (taking over a secret comes with secret formats)."""

from __future__ import annotations

import json

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
        "of it): rotatectl does not replace it; use another path for this credential"
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
        f"{NAME}: the store holds a value rotatectl did not write and has no version of it; "
        "taking over an existing secret is not supported yet: use another path"
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
        "rotatectl does not replace it; use another path for this credential"
    ) in run.err
    assert cli("check", NAME, "--adopt").code == 2
    assert client_reads(ssm) == DOCUMENT
    history = ssm.get_parameter_history(Name=PARAMETER, WithDecryption=True)["Parameters"]
    assert [str(p["Value"]) for p in history] == [DOCUMENT]
    for done in cli.runs:
        assert "sk_live_1234567890" not in done.out + done.err
