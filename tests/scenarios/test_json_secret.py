"""A JSON secret through the CLI on the local store, moto_server and OpenBao (issue 18
items 2 and 4): ``field = "api_key"`` rotates one field of the document; the others
stay byte-identical; fingerprints and the verifier view cover the key only; an
ordinary reader (the AWS caching client, ``bao kv get -field=api_key``, ``rotatectl get
--field``) reads a valid key throughout; no field's value reaches any output."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from rotatectl import keyformat, secretformat
from tests.conftest import Cli
from tests.reliability.conftest import AwsBackend, VaultBackend, assert_no_value_leaked

from .conftest import NAME, STORES, Backend
from .test_operator_flows import ok, versions, write_config

JSON_TABLE = 'field = "api_key"\nstatic = { username = "svc", region = "eu-west-1" }'
# A client caches for at most 1 s; old keys stay accepted for 2 s after a promotion.
TIMING = {"propagation": "1s", "overlap": "2s"}


def reader(backend: Backend, cli: Cli) -> Callable[[], str]:
    """How an ordinary consumer of this store reads the current api_key."""
    if isinstance(backend, AwsBackend):
        from aws_secretsmanager_caching import SecretCache, SecretCacheConfig

        cache = SecretCache(
            config=SecretCacheConfig(secret_refresh_interval=1),
            client=backend.server.client("secretsmanager"),
        )
        return lambda: str(json.loads(cache.get_secret_string(NAME))["api_key"])
    if isinstance(backend, VaultBackend):
        where = f"secret/{backend.vault.prefix}/{NAME}"

        def bao_read() -> str:
            read = backend.vault.server.bao("kv", "get", "-field=api_key", where)
            assert read.returncode == 0, read.stderr
            return read.stdout.strip()

        return bao_read

    def get_field() -> str:
        return ok(cli("get", NAME, "--field", "api_key")).out.strip()

    return get_field


def raw_fields(document: str) -> dict[str, str]:
    """Each field of ``document`` and the exact text of its value."""
    return {name: document[s:e] for name, (s, e) in secretformat.spans(document).items()}


@pytest.mark.slow
@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_five_rotations_change_only_the_key_field_and_readers_always_get_a_valid_key(
    cli: Cli, backend: Backend
) -> None:
    write_config(backend, {NAME: JSON_TABLE}, **TIMING)
    ok(cli("rotate", NAME, "--wait"))  # the first document
    read = reader(backend, cli)
    seen: list[tuple[datetime, str]] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def poll() -> None:
        while not stop.is_set():
            started = datetime.now(UTC)
            try:
                seen.append((started, read()))
            except BaseException as exc:
                failures.append(exc)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    documents = [backend.store().read_value(NAME)]
    try:
        for _ in range(5):
            ok(cli("rotate", NAME, "--wait"))
            documents.append(backend.store().read_value(NAME))
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not failures, failures

    # Every version's document: the key changed, every other field byte for byte kept.
    by_number = {v.number: v for v in versions(backend)}
    assert sorted(by_number) == [1, 2, 3, 4, 5, 6]
    first = raw_fields(documents[0])
    assert set(first) == {"username", "region", "api_key"}
    keys = []
    for number, document in enumerate(documents, start=1):
        fields = raw_fields(document)
        assert {k: v for k, v in fields.items() if k != "api_key"} == {
            "username": '"svc"',
            "region": '"eu-west-1"',
        }
        key = json.loads(fields["api_key"])
        keys.append(key)
        version = by_number[number]
        assert version.field == "api_key"
        # Fingerprint and key id are the key's, not the document's.
        assert version.fingerprint == keyformat.fingerprint(key)
        assert version.key_id == keyformat.parse(key).key_id
    assert len(set(keys)) == 6
    # What an ordinary reader of the store gets is the document, nothing added.
    if isinstance(backend, VaultBackend):
        assert backend.vault.read(NAME) == json.loads(documents[-1])
    if isinstance(backend, AwsBackend):
        # The stage named: moto's stage-less read does not follow AWSCURRENT once the
        # label was moved (AWS's does; the caching client names the stage too).
        out = backend.sm.get_secret_value(SecretId=NAME, VersionStage="AWSCURRENT")
        assert out["SecretString"] == documents[-1]
    # The verifier view holds the key's hash: the current key verifies, the document not.
    view = backend.store().accepted_keys(NAME, NAME)
    assert {k.fingerprint for k in view} == {by_number[6].fingerprint}

    # Each read got a key that was accepted when the read began.
    assert len(seen) >= 10, f"only {len(seen)} reads in five rotations"
    fingerprints = {v.fingerprint: v for v in by_number.values()}
    for started, key in seen:
        version = fingerprints.get(keyformat.fingerprint(key))
        assert version is not None, "a reader got a key rotatectl never made"
        assert version.retired is None or version.retired > started, (
            f"a reader got v{version.number} at {started}, retired at {version.retired}"
        )
    assert len({key for _, key in seen}) >= 3  # the readers followed the rotations

    # The canary: no key or document in any output or file (get --field reveals, by
    # design); the static region (in the config file, so not a secret) in no output.
    assert_no_value_leaked(cli, set(keys) | set(documents))
    assert not [r.args for r in cli.runs if not r.reveals and "eu-west-1" in r.out + r.err]


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_get_and_exec_give_one_field_each(cli: Cli, backend: Backend) -> None:
    write_config(backend, {NAME: JSON_TABLE})
    ok(cli("rotate", NAME, "--wait"))
    document = backend.store().read_value(NAME)
    doc = json.loads(document)
    assert json.loads(ok(cli("get", NAME)).out) == doc
    assert ok(cli("get", NAME, "--field", "api_key")).out == doc["api_key"] + "\n"
    assert ok(cli("get", NAME, "-f", "region")).out == "eu-west-1\n"
    missing = cli("get", NAME, "--field", "password")
    assert missing.code == 2
    assert missing.err == (
        f"rotatectl: error: {NAME}: its document has no field 'password' "
        "(it has api_key, region, username)\n"
    )
    shown = ok(
        cli(
            "exec",
            NAME,
            "--env",
            "api_key=API_KEY",
            "-e",
            "username=DB_USER",
            "--",
            "sh",
            "-c",
            'printf "%s|%s|%s" "$API_KEY" "$DB_USER" "${ROTATECTL_KEY:-unset}"',
        )
    )
    assert shown.out == f"{doc['api_key']}|svc|unset"
    whole = ok(cli("exec", NAME, "--", "sh", "-c", 'printf "%s" "$ROTATECTL_KEY"'))
    assert json.loads(whole.out) == doc
    twice = cli("exec", NAME, "-e", "api_key=X", "-e", "region=X", "--", "true")
    assert twice.code == 2
    assert twice.err == "rotatectl: error: --env: X is set twice\n"


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_a_change_of_format_is_refused_before_anything_is_written(
    cli: Cli, backend: Backend
) -> None:
    write_config(backend)  # a bare key first
    ok(cli("rotate", NAME, "--wait"))
    before = backend.store().read_value(NAME)
    write_config(backend, {NAME: JSON_TABLE})
    for args in (["rotate", NAME, "--wait"], ["emergency", NAME, "--yes", "--reason", "leak"]):
        refused = cli(*args)
        assert refused.code == 2, refused.out + refused.err
        assert (
            f"{NAME}: v1 is a bare key but the config declares a JSON document with the key "
            "in field 'api_key'; a rotation would change the shape every client reads"
        ) in refused.err
    assert [v.number for v in versions(backend)] == [1]
    assert backend.store().read_value(NAME) == before
    bare_field = cli("get", NAME, "--field", "api_key")
    assert bare_field.code == 2
    assert "its value is not a JSON document" in bare_field.err


def test_get_field_needs_a_document_on_an_ad_hoc_credential(cli: Cli) -> None:
    ok(cli("rotate", "adhoc/key", "--overlap", "0s"))
    refused = cli("get", "adhoc/key", "--field", "api_key")
    assert refused.code == 2
    assert refused.err == (
        "rotatectl: error: adhoc/key: its value is not a JSON document; it has no fields\n"
    )


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_check_names_a_format_the_store_does_not_have(cli: Cli, backend: Backend) -> None:
    write_config(backend, {NAME: JSON_TABLE})
    ok(cli("rotate", NAME, "--wait"))
    assert f"ok credential {NAME} - store {backend.table}, path {NAME}, json (field api_key)" in (
        ok(cli("check")).out
    )
    write_config(backend)  # the config now says: a bare key
    run = cli("check")
    assert run.code == 2, run.out + run.err
    assert (
        f"error credential {NAME} - {NAME}: v1 is a JSON document with the key in field "
        "'api_key' but the config declares a bare key; a rotation would change the shape "
        "every client reads"
    ) in run.out + run.err
