"""A KV secret rotatectl did not write, holding a document, at a credential's client
path (issue 18 item 3): ``rotate`` must never overwrite it; ``check --adopt`` refuses
while the config declares a bare key, and with ``field`` declared takes it over as it
is (no field written, every field kept), after which a rotation has its normal phases
and changes the key field only. Through the CLI, on OpenBao, read back with ``bao``."""

from __future__ import annotations

import json

from ..conftest import Cli
from .conftest import Vault, write_config
from .test_drift import CREDENTIAL, NAME, bao, kv_path, kv_version

FIELDS = {"username": "svc", "api_key": "sk_live_1234567890", "region": "eu-west-1"}
THEIRS = {**FIELDS, "pool": {"max": 10, "ratio": 1.5}, "note": "ключ"}


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


def test_a_document_is_adopted_as_it_is_then_rotated_normally(cli: Cli, vault: Vault) -> None:
    cli.env.update(vault.server.cli_env())
    write_config(cli, vault, CREDENTIAL)
    bao(vault, "kv", "put", kv_path(vault), "-", stdin=json.dumps(THEIRS))
    refused = cli("check", NAME, "--adopt")
    assert refused.code == 2
    assert "clients read a JSON document, but the config declares a bare key" in refused.err

    json_lines = 'field = "api_key"\npropagation = "1s"\noverlap = "0s"\n'
    write_config(cli, vault, CREDENTIAL + json_lines)
    written = kv_version(vault)
    adopt = cli("check", NAME, "--adopt")
    assert adopt.code == 0, adopt.out + adopt.err
    assert (
        "taken over as v1 (x" in adopt.out
        and "), current, as it is (the value and its format, json (field api_key), unchanged)"
        in adopt.out
    ), adopt.out
    # Nothing written to the client path: the same KV version, every field as it was.
    assert kv_version(vault) == written
    read = bao(vault, "kv", "get", "-format=json", kv_path(vault))
    assert json.loads(read.stdout)["data"]["data"] == THEIRS
    status = json.loads(cli("-o", "json", "status", NAME).out)["credentials"][0]
    assert [(v["number"], v["state"]) for v in status["versions"]] == [(1, "current")]
    assert status["drift"] == []

    run = cli("rotate", NAME, "--wait")
    assert run.code == 0, run.out + run.err
    assert f"{NAME}: published v2 (" in run.out and f"{NAME}: promoted v2 (" in run.out
    after = json.loads(bao(vault, "kv", "get", "-format=json", kv_path(vault)).stdout)
    new_key = after["data"]["data"]["api_key"]
    assert new_key.startswith("rk_test_")
    assert after["data"]["data"] == {**THEIRS, "api_key": new_key}
    client = bao(vault, "kv", "get", "-field=api_key", kv_path(vault))
    assert client.stdout.strip() == new_key
    # The canary: no field's value (of ours or theirs) in any output.
    canaries = {new_key, *(v for v in THEIRS.values() if isinstance(v, str) and len(v) >= 8)}
    for done in cli.runs:
        assert not [c for c in canaries if c in done.out + done.err]
