"""examples/aws/: each mode's policy is enough for a whole rotation, and nothing in it is unused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rotatectl.config import load_config
from rotatectl.engine import Outcome, Runner, Target
from rotatectl.issuers.aws_iam import IamIssuer
from rotatectl.model import Policy
from rotatectl.probes.aws_iam import IamLastUsedProbe
from rotatectl.testing.fakes import FakeClock

from .conftest import AuthServer, context, make_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "aws"


def policy_actions(name: str) -> set[str]:
    doc = json.loads((EXAMPLES / name).read_text())
    return {a for s in doc["Statement"] for a in s["Action"]}


def as_tested(name: str) -> list[dict[str, Any]]:
    """The policy's statements for moto, which authorizes every request against
    resource "*" and does not evaluate conditions: same actions, no scoping."""
    doc = json.loads((EXAMPLES / name).read_text())
    return [
        {"Effect": s["Effect"], "Action": s["Action"], "Resource": "*"} for s in doc["Statement"]
    ]


def record_calls(conn: Any, seen: set[str]) -> None:
    def note(model: Any, **_: Any) -> None:
        prefix = model.service_model.signing_name
        seen.add(f"{prefix}:{model.name}")

    conn.session.register("before-call", note)


def test_the_example_config_loads() -> None:
    config = load_config(EXAMPLES / "rotatectl.toml", env={"HOME": "/nonexistent"})
    iam = config.credentials["aws/svc-payments"]
    assert iam.issuer.type == "aws-iam" and iam.usage.type == "aws-iam"
    assert iam.policy.usage_quiet >= IamLastUsedProbe.recommended_usage_quiet
    assert config.stores["aws"].type == "aws-secretsmanager"


@pytest.mark.slow
def test_the_iam_keys_policy_covers_a_whole_rotation(moto_auth: AuthServer, tmp_path: Path) -> None:
    user = "svc-policy-test"
    moto_auth.client("iam").create_user(UserName=user)
    keys = moto_auth.user("rotatectl-iam-keys", as_tested("policy-iam-keys.json"))
    seen: set[str] = set()
    store = make_store(tmp_path, moto_auth.url)
    issuer = IamIssuer.from_config(
        {"user": user, "endpoint_url": moto_auth.url}, context(tmp_path, "issuer")
    )
    probe = IamLastUsedProbe.from_config({"endpoint_url": moto_auth.url}, context(tmp_path, "p"))
    for adapter in (store, issuer, probe):
        adapter.conn.session.set_credentials(keys["AccessKeyId"], keys["SecretAccessKey"])
        record_calls(adapter.conn, seen)
    policy = Policy(
        propagation=timedelta(seconds=30),
        overlap=timedelta(hours=1),
        usage_quiet=IamLastUsedProbe.recommended_usage_quiet,
        retain=timedelta(days=1),
    )
    target = Target("aws/svc", "aws/svc", store, issuer, probe, policy, store_name="aws")
    clock = FakeClock(datetime.now(UTC))
    runner = Runner(clock, holder="policy@test:1")
    assert runner.rotate(target).outcome is Outcome.DONE
    assert runner.rotate(target).outcome is Outcome.WAITING
    for _ in range(10):
        result = runner.advance(target)
        assert result.outcome in (Outcome.WAITING, Outcome.IDLE, Outcome.DONE), result.message
        if [v.state.value for v in store.versions("aws/svc")] == ["destroyed", "current"]:
            break
        clock.advance(
            max(result.until - clock.now(), timedelta(0)) if result.until else policy.retain
        )
    assert [v.state.value for v in store.versions("aws/svc")] == ["destroyed", "current"]
    assert store.versions_many(["aws/svc"])["aws/svc"] == store.versions("aws/svc")
    assert store.check_access() == []
    assert issuer.check_access() == []
    assert probe.check_access() == []
    granted = policy_actions("policy-iam-keys.json")
    assert seen - {"sts:GetCallerIdentity"} <= granted  # that one needs no permission
    assert granted - seen == set(), "the policy grants actions rotatectl never calls"
    store.close()


def test_the_store_only_policy_is_the_store_part_of_the_iam_keys_policy() -> None:
    store_only = policy_actions("policy-store-only.json")
    assert all(a.startswith("secretsmanager:") for a in store_only)
    assert store_only == {
        a for a in policy_actions("policy-iam-keys.json") if a.startswith("secretsmanager:")
    }
