"""API Gateway API keys issuer (``aws-apigateway``, issue 20 item 6) against moto in
process and moto_server: the issuer contract, usage plans and tags, an interrupted
create retried, one-line errors, a whole rotation through the real CLI ending with
the old key disabled per the AWS CLI's ``get-api-key``, and a kill at every boundary.

moto checks no API Gateway IAM policy the way AWS does (AWS authorizes
``apigateway:<HTTP verb>`` on resource paths; moto would look for
``apigateway:<Operation>``), so the least-privilege policy
``examples/aws/policy-apigateway-keys.json`` is checked for its shape only.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from rotatectl import keyformat
from rotatectl.errors import ConfigError, IssuerError, PermissionDeniedError
from rotatectl.issuers.aws_apigateway import (
    TAG_CREDENTIAL,
    TAG_VERSION,
    VALUE_PATTERN,
    ApiGatewayIssuer,
)
from rotatectl.model import Version, VersionState
from rotatectl.testing.issuer_contract import IssuerContract

from .. import dbflows
from ..conftest import Cli
from .conftest import REGION, AuthServer, MotoServer, aws_env, context

NAME = "partners/acme"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "aws"


def make_issuer(
    tmp: Path, plans: list[str], endpoint_url: str | None = None, **settings: Any
) -> ApiGatewayIssuer:
    config: dict[str, Any] = {"usage_plans": plans, "region": REGION, **settings}
    if endpoint_url:
        config["endpoint_url"] = endpoint_url
    return ApiGatewayIssuer.from_config(config, context(tmp, "credentials.x.issuer"))


@pytest.fixture
def apigw(mocked: None) -> Any:
    return boto3.client("apigateway", region_name=REGION)


@pytest.fixture
def plans(apigw: Any) -> list[str]:
    return [apigw.create_usage_plan(name=f"plan-{n}")["id"] for n in (1, 2)]


def plan_keys(apigw: Any, plan: str) -> set[str]:
    return {k["id"] for k in apigw.get_usage_plan_keys(usagePlanId=plan)["items"]}


def all_keys(apigw: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = apigw.get_api_keys(includeValues=True, limit=500)["items"]
    return items


class TestIssuerContract(IssuerContract):
    @pytest.fixture
    def issuer(self, plans: list[str], tmp_path: Path) -> ApiGatewayIssuer:
        return make_issuer(tmp_path, plans)


class TestIssuerContractOverHttp(IssuerContract):
    """The same contract against moto_server, through ``endpoint_url``."""

    @pytest.fixture
    def issuer(self, moto: MotoServer, tmp_path: Path) -> ApiGatewayIssuer:
        plan = moto.client("apigateway").create_usage_plan(name="contract")["id"]
        return make_issuer(tmp_path, [plan], moto.url)


# -- the issuer --------------------------------------------------------------


def test_a_key_is_a_generated_key_attached_to_every_plan_and_tagged(
    apigw: Any, plans: list[str], tmp_path: Path
) -> None:
    issuer = make_issuer(tmp_path, plans)
    key = issuer.create(NAME, "3f2a9c1e-0000-4000-8000-000000000001", ("ignored",))
    assert key.value.startswith("ak_") and VALUE_PATTERN.fullmatch(key.value)
    assert key.key_id == keyformat.parse(key.value).key_id
    assert key.fingerprint == keyformat.fingerprint(key.value)
    for plan in plans:
        assert plan_keys(apigw, plan) == {key.issuer_ref}
    got = apigw.get_api_key(apiKey=key.issuer_ref, includeValue=True)
    assert got["value"] == key.value and got["enabled"] is True
    assert got["name"] == "rotatectl-partners-acme-3f2a9c1e"
    assert got["tags"] == {
        TAG_CREDENTIAL: NAME,
        TAG_VERSION: "3f2a9c1e-0000-4000-8000-000000000001",
    }
    assert key.value not in repr(issuer) and "usage_plans" in repr(issuer)


def test_keys_of_the_whole_prefix_range_fit_api_gateway() -> None:
    for prefix in ("a", "ak", "a" * 30, "ak_live"):
        assert VALUE_PATTERN.fullmatch(keyformat.generate(prefix))


def test_several_keys_stay_active_and_lists_hold_only_this_credential(
    apigw: Any, plans: list[str], tmp_path: Path
) -> None:
    issuer = make_issuer(tmp_path, plans, name_prefix="team-a", prefix="ak_live")
    old = issuer.create(NAME, "v-old", ())
    new = issuer.create(NAME, "v-new", ())
    # Same name stem ("team-a-partners-acme-"): told apart by the tag.
    other = issuer.create("partners-acme", "v-other", ())
    listed = {k.issuer_ref: (k.tag, k.active) for k in issuer.list_keys(NAME)}
    assert listed == {old.issuer_ref: ("v-old", True), new.issuer_ref: ("v-new", True)}
    assert {k.issuer_ref for k in issuer.list_keys("partners-acme")} == {other.issuer_ref}
    assert plan_keys(apigw, plans[0]) == {old.issuer_ref, new.issuer_ref, other.issuer_ref}
    issuer.disable(NAME, old.issuer_ref)
    assert apigw.get_api_key(apiKey=old.issuer_ref)["enabled"] is False
    assert apigw.get_api_key(apiKey=new.issuer_ref)["enabled"] is True
    # A key of another credential is never touched, whatever ref is passed.
    with pytest.raises(IssuerError, match="tagged rotatectl:credential=partners-acme"):
        issuer.disable(NAME, other.issuer_ref)
    with pytest.raises(IssuerError, match="not this credential"):
        issuer.delete(NAME, other.issuer_ref)
    assert apigw.get_api_key(apiKey=other.issuer_ref)["enabled"] is True


def test_create_retried_with_the_same_version_returns_the_same_key(
    apigw: Any, plans: list[str], tmp_path: Path
) -> None:
    first = make_issuer(tmp_path, plans).create(NAME, "v-1", ())
    # As if the first run died after CreateApiKey: detached, and disabled by hand.
    for plan in plans:
        apigw.delete_usage_plan_key(usagePlanId=plan, keyId=first.issuer_ref)
    apigw.update_api_key(
        apiKey=first.issuer_ref,
        patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}],
    )
    again = make_issuer(tmp_path, plans).create(NAME, "v-1", ())  # a new process
    assert (again.issuer_ref, again.value, again.key_id, again.fingerprint) == (
        first.issuer_ref,
        first.value,
        first.key_id,
        first.fingerprint,
    )
    assert [k["id"] for k in all_keys(apigw)] == [first.issuer_ref]  # no second key
    assert apigw.get_api_key(apiKey=first.issuer_ref)["enabled"] is True
    for plan in plans:
        assert plan_keys(apigw, plan) == {first.issuer_ref}


def test_enable_of_a_deleted_key_fails_and_delete_is_idempotent(
    apigw: Any, plans: list[str], tmp_path: Path
) -> None:
    issuer = make_issuer(tmp_path, plans)
    key = issuer.create(NAME, "v-1", ())
    issuer.disable(NAME, key.issuer_ref)
    issuer.delete(NAME, key.issuer_ref)
    issuer.delete(NAME, key.issuer_ref)
    issuer.disable(NAME, key.issuer_ref)  # a missing key: nothing to do
    assert all_keys(apigw) == []
    with pytest.raises(IssuerError, match=f"{NAME}: API Gateway key .* no longer exists"):
        issuer.enable(NAME, key.issuer_ref)


# -- errors ------------------------------------------------------------------


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_an_unknown_usage_plan_fails_before_any_key_exists(
    apigw: Any, plans: list[str], tmp_path: Path
) -> None:
    issuer = make_issuer(tmp_path, [plans[0], "nosuchplan"])
    with pytest.raises(IssuerError) as exc:
        issuer.create(NAME, "v-1", ())
    line = one_line(exc)
    assert line.startswith(f"{NAME}: API Gateway usage plan nosuchplan: GetUsagePlan failed")
    assert "(NotFoundException)" in line and "usage_plans" in line
    assert all_keys(apigw) == []
    assert any("nosuchplan" in p for p in issuer.check_access())
    assert make_issuer(tmp_path, plans).check_access() == []


def test_an_unreachable_endpoint_is_one_retryable_line(tmp_path: Path) -> None:
    issuer = make_issuer(
        tmp_path, ["abc123"], "http://127.0.0.1:9", max_attempts=1, connect_timeout="1s"
    )
    with pytest.raises(IssuerError) as exc:
        issuer.list_keys(NAME)
    line = one_line(exc)
    assert line.startswith(f"{NAME}: API Gateway keys: GetApiKeys: cannot reach AWS apigateway")
    assert exc.value.retryable


@pytest.mark.parametrize(
    ("settings", "key", "message"),
    [
        ({}, "usage_plans", "required"),
        ({"usage_plans": []}, "usage_plans", "required"),
        ({"usage_plans": ["a b"]}, "usage_plans", "not a usage plan id"),
        ({"usage_plans": "abc123"}, "usage_plans", "expected list"),
        ({"usage_plans": ["abc123"], "name_prefix": "-x"}, "name_prefix", "1-64 characters"),
        ({"usage_plans": ["abc123"], "prefix": "AK"}, "prefix", "invalid key prefix"),
        ({"usage_plans": ["abc123"], "user": "x"}, "user", "unknown key"),
    ],
)
def test_settings_are_checked(
    tmp_path: Path, settings: dict[str, Any], key: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=f"issuer\\] {key}: .*{message}"):
        ApiGatewayIssuer.from_config(
            {"region": REGION, **settings}, context(tmp_path, "credentials.x.issuer")
        )


@pytest.mark.slow
def test_a_refused_call_names_the_credential_and_the_call(
    moto_auth: AuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With its IAM checks on, moto_server refuses API Gateway's GET requests whoever
    signs them (SignatureDoesNotMatch: it cannot check their signature), so an
    AccessDenied cannot be produced; what the operator gets for a refused call is the
    same line shape: credential, the call and AWS's code (the plan check comes first:
    nothing is minted)."""
    plan = moto_auth.client("apigateway").create_usage_plan(name="denied")["id"]
    keys = moto_auth.user(
        f"no-apigw-{time.monotonic_ns()}",
        [{"Effect": "Allow", "Action": "iam:GetUser", "Resource": "*"}],
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["SecretAccessKey"])
    issuer = make_issuer(tmp_path, [plan], moto_auth.url)
    with pytest.raises(PermissionDeniedError) as exc:
        issuer.create(NAME, "v-1", ())
    line = one_line(exc)
    assert line.startswith(f"{NAME}: API Gateway usage plan {plan}: "), line
    assert "GetUsagePlan" in line
    assert "(AccessDenied" in line or "(SignatureDoesNotMatch)" in line, line


# -- the least-privilege policy ------------------------------------------------


def test_the_policy_names_only_the_calls_the_issuer_makes() -> None:
    doc = json.loads((EXAMPLES / "policy-apigateway-keys.json").read_text())
    assert doc["Version"] == "2012-10-17"
    granted: dict[str, set[str]] = {}
    for statement in doc["Statement"]:
        assert statement["Effect"] == "Allow" and "Condition" not in statement
        for resource in statement["Resource"]:
            granted.setdefault(resource, set()).update(statement["Action"])
    base = "arn:aws:apigateway:us-east-1::"
    plan = "PLAN_ID"
    assert granted == {
        f"{base}/apikeys": {"apigateway:GET", "apigateway:POST"},  # GetApiKeys, CreateApiKey
        # GetApiKey, UpdateApiKey, DeleteApiKey
        f"{base}/apikeys/*": {"apigateway:GET", "apigateway:PATCH", "apigateway:DELETE"},
        f"{base}/usageplans/{plan}": {"apigateway:GET"},  # GetUsagePlan
        f"{base}/usageplans/{plan}/keys": {"apigateway:POST"},  # CreateUsagePlanKey
        f"{base}/tags/*": {"apigateway:POST"},  # the tags CreateApiKey sets
    }


# -- through the CLI, against moto_server ----------------------------------------


def configure(cli: Cli, moto: MotoServer, plans: list[str], retain: str = "1h") -> None:
    cli.env.update(aws_env())
    (cli.cwd / "rotatectl.toml").write_text(
        f"""
[defaults]
propagation = "0s"
overlap = "0s"
retain = "{retain}"

[credentials."{NAME}".issuer]
type = "aws-apigateway"
usage_plans = {json.dumps(plans)}
region = "{REGION}"
endpoint_url = "{moto.url}"
"""
    )


def versions(cli: Cli) -> list[Version]:
    store = cli.store()
    try:
        return store.versions(NAME)
    finally:
        store.close()


def aws_get_api_key(cli: Cli, moto: MotoServer, ref: str) -> dict[str, Any]:
    """``aws apigateway get-api-key --include-value``, with the real AWS CLI."""
    run = subprocess.run(
        [
            *("aws", "apigateway", "get-api-key", "--api-key", ref, "--include-value"),
            *("--endpoint-url", moto.url, "--region", REGION, "--output", "json"),
        ],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    cli.extra_texts.append(run.stderr)  # its stdout holds the value, on purpose
    doc: dict[str, Any] = json.loads(run.stdout)
    return doc


def assert_no_value_leaked(cli: Cli, apigw: Any) -> None:
    """No value any API key holds in any output but `get`'s (the harness checks the
    local store's values; these are the gateway's, deleted keys' included)."""
    values = {k["value"] for k in all_keys(apigw)}
    assert values
    for run in cli.runs:
        if run.reveals:
            continue
        for value in values:
            assert value not in run.out + run.err, f"a key value leaked into {run.args}"


@pytest.mark.slow
def test_a_rotation_through_the_cli_disables_the_old_key_at_the_gateway(
    cli: Cli, moto: MotoServer
) -> None:
    apigw = moto.client("apigateway")
    plans = [apigw.create_usage_plan(name=f"cli-{n}")["id"] for n in (1, 2)]
    configure(cli, moto, plans)
    for _ in range(2):
        run = cli("rotate", NAME, "--wait")
        assert run.code == 0, run.out + run.err
    v1, v2 = versions(cli)
    assert (v1.state, v2.state) == (VersionState.RETIRED, VersionState.CURRENT)
    assert v1.issuer_ref and v2.issuer_ref
    old, new = aws_get_api_key(cli, moto, v1.issuer_ref), aws_get_api_key(cli, moto, v2.issuer_ref)
    assert old["enabled"] is False and new["enabled"] is True
    current = cli("get", NAME)
    assert current.code == 0 and new["value"] == current.out.strip()
    assert old["value"] != new["value"]
    assert keyformat.parse(new["value"]).key_id == v2.key_id
    for plan in plans:
        assert plan_keys(apigw, plan) >= {v1.issuer_ref, v2.issuer_ref}

    run = cli("rollback", NAME)
    assert run.code == 0, run.out + run.err
    assert aws_get_api_key(cli, moto, v1.issuer_ref)["enabled"] is True
    assert versions(cli)[0].state is VersionState.CURRENT

    run = cli("emergency", NAME, "--reason", "pasted in a ticket", "--yes")
    assert run.code == 0, run.out + run.err
    *_, v3 = versions(cli)
    assert versions(cli)[0].state is VersionState.RETIRED
    assert aws_get_api_key(cli, moto, v1.issuer_ref)["enabled"] is False
    assert v3.issuer_ref and aws_get_api_key(cli, moto, v3.issuer_ref)["enabled"] is True
    assert_no_value_leaked(cli, apigw)


@pytest.mark.slow
def test_check_names_a_missing_usage_plan(cli: Cli, moto: MotoServer) -> None:
    configure(cli, moto, ["nosuchplan"])
    run = cli("check")
    assert run.code != 0 and "Traceback" not in run.err
    assert "usage plan nosuchplan" in run.out + run.err


@pytest.mark.slow
@pytest.mark.long
def test_kill_at_every_boundary_then_resume(cli: Cli, moto: MotoServer, tmp_path: Path) -> None:
    """After every resume: each key the gateway has enabled is an accepted version's,
    the current key is enabled, and there are no more keys than versions."""
    from rotatectl.engine import BOUNDARIES

    apigw = moto.client("apigateway")
    plans = [apigw.create_usage_plan(name="crash")["id"]]
    configure(cli, moto, plans, retain="1s")
    issuer = make_issuer(tmp_path, plans, moto.url)
    assert cli("rotate", NAME, "--wait").code == 0
    for boundary in BOUNDARIES:
        unrecorded: set[str] = set()
        if boundary.startswith("after-destroy"):
            # A key retired longer than retain (1 s) ago, for `run` to destroy.
            assert cli("rotate", NAME, "--wait").code == 0
            time.sleep(1.2)
            dbflows.kill_at(cli, boundary, "run")
        else:
            dbflows.kill_at(cli, boundary, "rotate", NAME, "--wait")
        if boundary == "after-issue":  # minted, not yet published: an orphan to sweep
            unrecorded = {k.issuer_ref for k in issuer.list_keys(NAME)} - {
                v.issuer_ref for v in versions(cli)
            }
            assert len(unrecorded) == 1, unrecorded
        resumed = cli("run")
        assert resumed.code == 0, resumed.out + resumed.err
        when = f"resumed after a kill at {boundary}"
        known = versions(cli)
        accepted = {v.issuer_ref for v in known if v.state.accepted}
        kept = [v for v in known if v.state is not VersionState.DESTROYED]
        listed = issuer.list_keys(NAME)
        enabled = {k.issuer_ref for k in listed if k.active}
        assert enabled <= accepted, f"{when}: enabled keys no version accepts"
        (current,) = [v for v in known if v.state is VersionState.CURRENT]
        assert current.issuer_ref in enabled, f"{when}: the current key is disabled"
        assert len(listed) <= len(kept), f"{when}: {len(listed)} keys for {len(kept)} versions"
        assert not unrecorded & {k.issuer_ref for k in listed}, f"{when}: the orphan is left"
    states = [v.state for v in versions(cli)]
    assert states[-1] is VersionState.CURRENT and VersionState.DESTROYED in states
