"""A KV secret rotatectl did not write, holding a document, at a credential's client
path (issue 18 item 3): ``rotate`` must never overwrite it. Through the CLI, on OpenBao."""

from __future__ import annotations

import json

from ..conftest import Cli
from .conftest import Vault, write_config
from .test_drift import CREDENTIAL, NAME, bao, kv_path

FIELDS = {"username": "svc", "api_key": "sk_live_1234567890", "region": "eu-west-1"}


def test_rotate_never_overwrites_a_document_it_did_not_write(cli: Cli, vault: Vault) -> None:
    cli.env.update(vault.server.cli_env())
    write_config(cli, vault, CREDENTIAL)
    bao(vault, "kv", "put", kv_path(vault), *(f"{k}={v}" for k, v in FIELDS.items()))
    run = cli("rotate", NAME)
    read = bao(vault, "kv", "get", "-format=json", kv_path(vault))
    kept = json.loads(read.stdout)["data"]["data"]
    assert (run.code, kept) == (3, FIELDS), (run.code, run.out, run.err, kept)
    assert "drift" in run.err
    for done in cli.runs:
        assert "sk_live_1234567890" not in done.out + done.err
