"""The real CLI against moto_server with the aws-ssm store: what a client reading the
parameter the ordinary way gets, drift made with boto3, a bad environment, and
rotations under live traffic without a failed request."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rotatectl import keyformat
from rotatectl.sdk.keyring import KeyRing
from rotatectl.stores.ssm import ParameterStore

from ..conftest import Cli
from .conftest import REGION, AuthServer, MotoServer, _free_port, aws_env, context

NAME = "partners/acme"
PARAMETER = "/rotatectl/partners/acme"


def configure(cli: Cli, url: str, store: str = "", defaults: str = "") -> None:
    cli.env.update(aws_env())
    (cli.cwd / "rotatectl.toml").write_text(
        f"""
[defaults]
store = "ssm"
{defaults}

[stores.ssm]
type = "aws-ssm"
region = "{REGION}"
endpoint_url = "{url}"
prefix = "/rotatectl"
{store}

[credentials."{NAME}"]
issuer = {{ type = "generated", prefix = "rk_live" }}
"""
    )


def make_store(tmp: Path, url: str) -> ParameterStore:
    settings = {"region": REGION, "endpoint_url": url, "prefix": "/rotatectl"}
    return ParameterStore.from_config(settings, context(tmp, "stores.ssm"))


def client_reads(ssm: Any, selector: str = PARAMETER) -> str:
    """`aws ssm get-parameter --name NAME --with-decryption`, through boto3."""
    return str(ssm.get_parameter(Name=selector, WithDecryption=True)["Parameter"]["Value"])


def aws_cli_reads(url: str, selector: str = PARAMETER) -> str | None:
    """The real AWS CLI, when installed (None otherwise)."""
    aws = shutil.which("aws")
    if aws is None:
        return None
    proc = subprocess.run(
        [
            *(aws, "ssm", "get-parameter", "--name", selector, "--with-decryption"),
            *("--endpoint-url", url, "--region", REGION),
            *("--query", "Parameter.Value", "--output", "text"),
        ],
        env=aws_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return proc.stdout.strip()


def every_value(ssm: Any) -> set[str]:
    """Every value the parameter's history and the pending companions hold."""
    values = {
        str(p["Value"])
        for p in ssm.get_parameter_history(Name=PARAMETER, WithDecryption=True)["Parameters"]
    }
    pages = ssm.get_paginator("get_parameters_by_path").paginate(
        Path=PARAMETER + "/.rotatectl-pending", WithDecryption=True
    )
    return values | {str(p["Value"]) for page in pages for p in page["Parameters"]}


def assert_no_value_leaked(cli: Cli, ssm: Any) -> None:
    """Invariant 7 for SSM-held values (the harness' canary reads only local stores)."""
    values = every_value(ssm)
    assert values
    for run in cli.runs:
        if not run.reveals:
            for value in values:
                assert value not in run.out + run.err, f"a key value leaked into {run.args}"


def one_line_error(run: Any, code: int) -> str:
    assert run.code == code, (run.code, run.out, run.err)
    assert "Traceback" not in run.err
    lines = [line for line in run.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, run.err
    return lines[0]


def test_rotate_status_check_drift_adopt_and_restore(
    cli: Cli, moto: MotoServer, tmp_path: Path
) -> None:
    configure(cli, moto.url)
    ssm = moto.client("ssm")
    assert cli("plugins").out.count("aws-ssm") == 1
    assert cli("rotate", NAME).code == 0
    first = client_reads(ssm)
    assert first.startswith("rk_live_")
    assert aws_cli_reads(moto.url) in (first, None)

    run = cli("rotate", NAME, "--propagation", "0s", "--overlap", "1h", "--no-wait")
    assert run.code == 0, run.err
    second = client_reads(ssm)
    assert second != first and client_reads(ssm, PARAMETER + ":current") == second
    assert client_reads(ssm, PARAMETER + ":previous") == first  # still accepted: overlap
    assert aws_cli_reads(moto.url, PARAMETER + ":previous") in (first, None)
    status = json.loads(cli("status", "-o", "json").out)["credentials"][0]
    assert status["current_version"] == 2 and status["store"] == "ssm"
    assert status["drift"] == []
    run = cli("check")
    assert run.code == 0, run.err

    # Drift: a new value put with boto3 (what `aws ssm put-parameter --overwrite` does).
    outsider = keyformat.generate("rk_live")
    ssm.put_parameter(Name=PARAMETER, Value=outsider, Type="SecureString", Overwrite=True)
    run = cli("status", "-o", "json")
    assert run.code == 3, (run.out, run.err)
    drift = json.loads(run.out)["credentials"][0]["drift"]
    assert any("put outside rotatectl" in line for line in drift), drift
    assert cli("check").code == 3
    run = cli("check", NAME, "--adopt")
    assert run.code != 0 and "in flight" in run.err, run.err  # its overlap is running

    # Let the rotation finish (its overlap cut short), then adopt.
    assert cli("rotate", NAME, "--overlap", "0s", "--no-wait").code in (0, 3)
    assert cli("run").code in (0, 3)
    store = make_store(tmp_path, moto.url)
    rotation, _ = store.load_rotation(NAME)
    if rotation is not None and not rotation.phase.terminal:
        pytest.fail(f"the rotation did not finish: {rotation.phase}")
    run = cli("check", NAME, "--adopt")
    assert run.code == 0, run.err
    assert client_reads(ssm) == outsider  # adopting changed nothing clients read
    assert cli("status").code == 0
    versions = store.versions(NAME)
    assert versions[-1].key_id == keyformat.parse(outsider).key_id
    assert str(versions[-1].state) == "current"

    # A label moved by hand: restore puts it back.
    held = client_reads(ssm)
    ssm.label_parameter_version(Name=PARAMETER, ParameterVersion=1, Labels=["current"])
    assert cli("status").code == 3
    run = cli("check", NAME, "--restore")
    assert run.code == 0, run.err
    assert client_reads(ssm, PARAMETER + ":current") == held == client_reads(ssm)
    assert cli("status").code == 0
    actions = [r["action"] for r in json.loads(cli("audit", "-o", "json").out)["records"]]
    assert "drift-adopted" in actions and "drift-restored" in actions
    assert_no_value_leaked(cli, ssm)
    store.close()


def test_unreachable_endpoint_missing_kms_key_and_denied_calls(
    cli: Cli, moto: MotoServer, moto_auth: AuthServer
) -> None:
    closed = f"http://127.0.0.1:{_free_port()}"
    configure(cli, closed, store="max_attempts = 1")
    line = one_line_error(cli("rotate", NAME), 1)
    assert f"cannot reach AWS ssm at {closed}" in line and "endpoint_url" in line

    # moto does not check an SSM KeyId: `check` asks KMS about the key.
    configure(cli, moto.url, store='kms_key_id = "alias/rotatectl-missing"')
    run = cli("check")
    assert run.code == 1, (run.out, run.err)
    assert "KMS key alias/rotatectl-missing" in run.err and "NotFound" in run.err
    assert "Traceback" not in run.err
    kms = moto.client("kms")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    configure(cli, moto.url, store=f'kms_key_id = "{key}"')
    assert cli("rotate", NAME).code == 0
    assert cli("check").code == 0
    assert moto.client("ssm").describe_parameters()["Parameters"][0]["KeyId"] == key

    keys = moto_auth.user(
        "ssm-no-put",
        [
            {"Effect": "Allow", "Action": "ssm:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "ssm:PutParameter", "Resource": "*"},
        ],
    )
    configure(cli, moto_auth.url)
    cli.env["AWS_ACCESS_KEY_ID"] = keys["AccessKeyId"]
    cli.env["AWS_SECRET_ACCESS_KEY"] = keys["SecretAccessKey"]
    line = one_line_error(cli("rotate", NAME), 1)
    assert "ssm:PutParameter denied by AWS" in line


@pytest.mark.slow
def test_rotations_under_live_clients_without_a_failed_request(
    cli: Cli, moto: MotoServer, tmp_path: Path
) -> None:
    """Clients read the parameter with get_parameter(WithDecryption=True) (re-reading
    every 0.2 s, as a caching client would) and present the key to a verifier (the SDK
    KeyRing over the store's accepted keys, refreshed every 0.25 s), while the CLI
    rotates five times with a 1 s propagation and a 2 s overlap."""
    configure(cli, moto.url, defaults='propagation = "1s"\noverlap = "2s"\nusage_quiet = "1s"')
    assert cli("rotate", NAME).code == 0
    store = make_store(tmp_path, moto.url)
    ring = KeyRing(store, {NAME: NAME}, refresh_interval=0.25, max_staleness=30)
    stop = threading.Event()
    counts = {"requests": 0, "failures": 0}
    seen: set[str] = set()
    lock = threading.Lock()

    def client() -> None:
        ssm = moto.client("ssm")
        key, read_at = client_reads(ssm), time.monotonic()
        while not stop.is_set():
            if time.monotonic() - read_at > 0.2:
                key, read_at = client_reads(ssm), time.monotonic()
            ok = bool(ring.verify(key))
            with lock:
                counts["requests"] += 1
                counts["failures"] += not ok
                seen.add(key)
            time.sleep(0.005)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(5):
            run = cli("rotate", NAME, "--wait", timeout=120)
            assert run.code == 0, (run.out, run.err)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        ring.close()
    versions = store.versions(NAME)
    assert [str(v.state) for v in versions][-1] == "current" and len(versions) == 6
    assert sum(str(v.state) == "retired" for v in versions) >= 4
    assert len(seen) >= 6, "the clients saw every key"
    assert counts["requests"] > 500 and counts["failures"] == 0, counts
    cli.extra_texts.append(json.dumps(counts))
    print(f"aws-ssm under live clients: 5 rotations, {counts}, {len(seen)} keys seen")
    assert_no_value_leaked(cli, moto.client("ssm"))
    store.close()


def test_a_rolling_window_is_readable_the_ordinary_way(cli: Cli, moto: MotoServer) -> None:
    """keep_previous = 3: after five rotations the current key and the three newest
    previous keys are accepted, labelled ``current``/``previous`` (newest two) and each
    readable by its SSM version with the AWS CLI; the older ones are retired."""
    configure(cli, moto.url, defaults='keep_previous = 3\npropagation = "0s"\noverlap = "0s"')
    for _ in range(6):
        assert cli("-q", "rotate", NAME, "--wait").code == 0
    store = make_store(cli.root, moto.url)
    by_number = {v.number: v for v in store.versions(NAME)}
    assert {n: v.state.value for n, v in by_number.items()} == {
        1: "retired",
        2: "retired",
        3: "previous",
        4: "previous",
        5: "previous",
        6: "current",
    }
    ssm = moto.client("ssm")
    history = ssm.get_parameter_history(Name=PARAMETER, WithDecryption=True)["Parameters"]
    ssm_version = {
        n: next(
            int(p["Version"])
            for p in history
            if keyformat.fingerprint_of(str(p["Value"])) == v.fingerprint
        )
        for n, v in by_number.items()
    }
    labels = {int(p["Version"]): set(p.get("Labels", [])) for p in history}
    assert "current" in labels[ssm_version[6]] and "previous" in labels[ssm_version[5]]
    for n in (3, 4, 5, 6):
        read = aws_cli_reads(moto.url, f"{PARAMETER}:{ssm_version[n]}")
        assert read is not None and keyformat.fingerprint_of(read) == by_number[n].fingerprint
    assert {k.key_id for k in store.accepted_keys(NAME, NAME)} == {
        by_number[n].key_id for n in (3, 4, 5, 6)
    }
    assert_no_value_leaked(cli, ssm)
