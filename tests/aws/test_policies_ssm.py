"""examples/aws-ssm/: the store policy is enough for a whole rotation and nothing in it
is unused; the example config loads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rotatectl.config import load_config
from rotatectl.engine import Outcome, Runner, Target
from rotatectl.issuers.generated import GeneratedIssuer
from rotatectl.model import Policy
from rotatectl.probes.none import NoProbe
from rotatectl.stores.ssm import ParameterStore
from rotatectl.testing.fakes import FakeClock

from .conftest import REGION, AuthServer, context

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "aws-ssm"
# Called by SSM for a SecureString with a customer key, never by rotatectl itself.
KMS_BY_SSM = {"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"}


def statements(name: str) -> list[dict[str, Any]]:
    return list(json.loads((EXAMPLES / name).read_text())["Statement"])


def test_the_example_config_loads() -> None:
    config = load_config(EXAMPLES / "rotatectl.toml", env={"HOME": "/nonexistent"})
    assert config.stores["ssm"].type == "aws-ssm"
    assert "payments/partners/acme" in config.credentials


def test_the_consumer_policy_reads_one_parameter_only() -> None:
    [read, decrypt] = statements("policy-consumer.json")
    assert read["Action"] == ["ssm:GetParameter"] and "*" not in read["Resource"]
    assert decrypt["Action"] == ["kms:Decrypt"]
    context_arn = decrypt["Condition"]["StringEquals"]["kms:EncryptionContext:PARAMETER_ARN"]
    assert context_arn == read["Resource"]


def test_the_store_policy_covers_a_whole_rotation(moto_auth: AuthServer, tmp_path: Path) -> None:
    # moto authorizes against resource "*" and skips conditions: same actions, no scoping.
    tested = [
        {"Effect": "Allow", "Action": s["Action"], "Resource": "*"}
        for s in statements("policy-store.json")
    ]
    keys = moto_auth.user("rotatectl-ssm-store", tested)
    key_id = moto_auth.client("kms").create_key()["KeyMetadata"]["KeyId"]
    store = ParameterStore.from_config(
        {
            "region": REGION,
            "endpoint_url": moto_auth.url,
            "prefix": "/rotatectl-policy",
            "kms_key_id": key_id,
        },
        context(tmp_path, "stores.ssm"),
    )
    store.conn.session.set_credentials(keys["AccessKeyId"], keys["SecretAccessKey"])
    seen: set[str] = set()

    def note(model: Any, **_: Any) -> None:
        seen.add(f"{model.service_model.signing_name}:{model.name}")

    store.conn.session.register("before-call", note)
    policy = Policy(
        propagation=timedelta(seconds=30), overlap=timedelta(hours=1), retain=timedelta(days=1)
    )
    issuer = GeneratedIssuer.from_config({}, context(tmp_path, "issuer"))
    target = Target("ssm/svc", "ssm/svc", store, issuer, NoProbe(), policy, store_name="ssm")
    clock = FakeClock(datetime.now(UTC))
    runner = Runner(clock, holder="policy@test:1")
    assert runner.rotate(target).outcome is Outcome.DONE
    assert runner.rotate(target).outcome is Outcome.WAITING
    for _ in range(10):
        result = runner.advance(target)
        assert result.outcome in (Outcome.WAITING, Outcome.IDLE, Outcome.DONE), result.message
        if [v.state.value for v in store.versions("ssm/svc")] == ["destroyed", "current"]:
            break
        clock.advance(
            max(result.until - clock.now(), timedelta(0)) if result.until else policy.retain
        )
    assert [v.state.value for v in store.versions("ssm/svc")] == ["destroyed", "current"]
    assert store.drift("ssm/svc") == []
    assert store.check_access(paths=["ssm/svc"]) == []
    granted = {a for s in tested for a in s["Action"]}
    assert seen <= granted
    assert granted - KMS_BY_SSM - seen == set(), "the policy grants actions rotatectl never calls"
    store.close()
