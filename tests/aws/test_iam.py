"""IAM access-key issuer and last-used probe against moto, with the real runner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from rotatectl.engine import Outcome, Runner, Target
from rotatectl.errors import ConfigError, IssuerError, PermissionDeniedError, ProbeError
from rotatectl.issuers.aws_iam import TAG_MINTING, IamIssuer
from rotatectl.model import Policy, UsageStatus, VersionState
from rotatectl.probes.aws_iam import IamLastUsedProbe
from rotatectl.stores.aws import SecretsManagerStore
from rotatectl.testing.fakes import FakeClock
from rotatectl.testing.issuer_contract import IssuerContract

from .conftest import REGION, AuthServer, context, make_store

USER = "svc-payments"
NAME = "aws/svc-payments"
TTL = timedelta(minutes=2)


def make_issuer(tmp: Path, user: str = USER, **settings: Any) -> IamIssuer:
    return IamIssuer.from_config({"user": user, **settings}, context(tmp, "credentials.x.issuer"))


def make_probe(tmp: Path, **settings: Any) -> IamLastUsedProbe:
    return IamLastUsedProbe.from_config(settings, context(tmp, "credentials.x.usage"))


@pytest.fixture
def iam(mocked: None) -> Any:
    client = boto3.client("iam", region_name=REGION)
    client.create_user(UserName=USER)
    return client


def keys(iam: Any, user: str = USER) -> dict[str, str]:
    """AccessKeyId -> Status."""
    listed = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    return {k["AccessKeyId"]: k["Status"] for k in listed}


def use_key(value: str) -> None:
    """Sign a request with the key: moto records it as the key's last use."""
    creds = json.loads(value)
    boto3.client(
        "sts",
        region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
    ).get_caller_identity()


class TestIssuerContract(IssuerContract):
    @pytest.fixture
    def issuer(self, iam: Any, tmp_path: Path) -> IamIssuer:
        return make_issuer(tmp_path)


# -- the issuer --------------------------------------------------------------


def test_create_publishes_an_access_key_document(iam: Any, tmp_path: Path) -> None:
    issuer = make_issuer(tmp_path)
    key = issuer.create(NAME, "version-1", ("ignored",))
    doc = json.loads(key.value)
    assert set(doc) == {"AccessKeyId", "SecretAccessKey"}
    assert key.key_id == key.issuer_ref == doc["AccessKeyId"]
    assert keys(iam) == {key.key_id: "Active"}
    tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=USER)["Tags"]}
    assert tags == {f"rotatectl:key:{key.key_id}": "version-1"}  # the intent is gone
    assert issuer.test(key.value).endswith(f"user/{USER}")


def test_disable_enable_delete(iam: Any, tmp_path: Path) -> None:
    issuer = make_issuer(tmp_path)
    key = issuer.create(NAME, "version-1", ())
    issuer.disable(NAME, key.issuer_ref)
    assert keys(iam) == {key.key_id: "Inactive"}
    [listed] = issuer.list_keys(NAME)
    assert (listed.tag, listed.active) == ("version-1", False)
    issuer.enable(NAME, key.issuer_ref)
    assert keys(iam) == {key.key_id: "Active"}
    issuer.disable(NAME, key.issuer_ref)
    issuer.delete(NAME, key.issuer_ref)
    assert keys(iam) == {}
    assert iam.list_user_tags(UserName=USER)["Tags"] == []
    with pytest.raises(IssuerError, match="no longer exists"):
        issuer.enable(NAME, key.issuer_ref)


def test_an_inactive_retired_leftover_makes_room(iam: Any, tmp_path: Path) -> None:
    issuer = make_issuer(tmp_path)
    old = issuer.create(NAME, "v1", ())
    current = issuer.create(NAME, "v2", ())
    issuer.disable(NAME, old.issuer_ref)  # retired, waiting out `retain`
    new = issuer.create(NAME, "v3", ())
    assert keys(iam) == {current.key_id: "Active", new.key_id: "Active"}


def test_tags_of_keys_deleted_by_hand_are_dropped(iam: Any, tmp_path: Path) -> None:
    issuer = make_issuer(tmp_path)
    gone = issuer.create(NAME, "v1", ())
    iam.delete_access_key(UserName=USER, AccessKeyId=gone.key_id)
    new = issuer.create(NAME, "v2", ())
    tags = {t["Key"] for t in iam.list_user_tags(UserName=USER)["Tags"]}
    assert tags == {f"rotatectl:key:{new.key_id}"}


def test_an_inactive_untracked_key_makes_room(iam: Any, tmp_path: Path) -> None:
    manual = iam.create_access_key(UserName=USER)["AccessKey"]["AccessKeyId"]
    iam.update_access_key(UserName=USER, AccessKeyId=manual, Status="Inactive")
    issuer = make_issuer(tmp_path)
    current = issuer.create(NAME, "v1", ())
    new = issuer.create(NAME, "v2", ())
    assert set(keys(iam)) == {current.key_id, new.key_id}


def test_an_active_unknown_second_key_is_an_error_not_a_delete(iam: Any, tmp_path: Path) -> None:
    manual = iam.create_access_key(UserName=USER)["AccessKey"]["AccessKeyId"]
    issuer = make_issuer(tmp_path)
    current = issuer.create(NAME, "v1", ())
    with pytest.raises(IssuerError) as info:
        issuer.create(NAME, "v2", ())
    assert manual in str(info.value) and "not managed by rotatectl" in str(info.value)
    assert keys(iam) == {manual: "Active", current.key_id: "Active"}


def test_an_inactive_key_rotatectl_never_retired_is_not_deleted(iam: Any, tmp_path: Path) -> None:
    issuer = make_issuer(tmp_path)
    current = issuer.create(NAME, "v1", ())
    previous = issuer.create(NAME, "v2", ())
    # Someone disabled a key by hand (in an incident): it may be the current one.
    iam.update_access_key(UserName=USER, AccessKeyId=current.key_id, Status="Inactive")
    with pytest.raises(IssuerError, match="never retired by rotatectl"):
        issuer.create(NAME, "v3", ())
    assert set(keys(iam)) == {current.key_id, previous.key_id}


def test_two_active_managed_keys_block_a_third(iam: Any, tmp_path: Path) -> None:
    issuer = make_issuer(tmp_path)
    issuer.create(NAME, "v1", ())
    issuer.create(NAME, "v2", ())
    with pytest.raises(IssuerError, match="retire the previous key"):
        issuer.create(NAME, "v3", ())


class Crash(BaseException):
    """Stands for SIGKILL: nothing in rotatectl catches a BaseException."""


def test_a_key_minted_before_a_crash_is_recognised_by_the_intent(
    iam: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuer = make_issuer(tmp_path)
    current = issuer.create(NAME, "v1", ())
    real_tag = issuer._tag

    def crash_on_key_tag(tags: dict[str, str]) -> None:
        if any(k.startswith("rotatectl:key:") for k in tags):
            raise Crash
        real_tag(tags)

    monkeypatch.setattr(issuer, "_tag", crash_on_key_tag)
    with pytest.raises(Crash):
        issuer.create(NAME, "v2", ())  # CreateAccessKey done, its tag never written
    monkeypatch.undo()
    [orphan] = [k for k in keys(iam) if k != current.key_id]
    tags = {k.issuer_ref: k.tag for k in issuer.list_keys(NAME)}
    assert tags == {current.key_id: "v1", orphan: "v2"}  # what the orphan sweep matches on
    issuer.delete(NAME, orphan)  # the sweep
    new = issuer.create(NAME, "v2", ())
    assert set(keys(iam)) == {current.key_id, new.key_id}
    names = {t["Key"] for t in iam.list_user_tags(UserName=USER)["Tags"]}
    assert TAG_MINTING not in names


def test_user_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="user"):
        IamIssuer.from_config({}, context(tmp_path, "credentials.x.issuer"))
    with pytest.raises(ConfigError, match="verify_timeout"):
        make_issuer(tmp_path, verify_timeout="soon")


def test_check_access_with_every_permission(iam: Any, tmp_path: Path) -> None:
    assert make_issuer(tmp_path).check_access() == []
    assert make_probe(tmp_path).check_access() == []
    assert make_issuer(tmp_path, user="nobody").check_access() == [
        "IAM user nobody: does not exist (NoSuchEntity); check `user`"
    ]


def test_denied_iam_calls_and_a_key_iam_keeps_rejecting(
    moto_auth: AuthServer, tmp_path: Path
) -> None:
    user = "iam-read-only"
    moto_auth.client("iam").create_user(UserName=user)
    creds = moto_auth.user(
        "rotator-read-only",
        [
            {
                "Effect": "Allow",
                "Action": ["iam:ListAccessKeys", "iam:ListUserTags", "iam:GetAccessKeyLastUsed"],
                "Resource": "*",
            }
        ],
    )
    issuer = make_issuer(tmp_path, user=user, endpoint_url=moto_auth.url)
    issuer.conn.session.set_credentials(creds["AccessKeyId"], creds["SecretAccessKey"])
    problems = issuer.check_access()
    assert [p.split(": ")[1].split()[0] for p in problems] == [
        "iam:UpdateAccessKey",
        "iam:DeleteAccessKey",
        "iam:UntagUser",
        "iam:TagUser",
    ]
    with pytest.raises(PermissionDeniedError, match="iam:TagUser denied"):
        issuer.create(NAME, "v1", ())
    probe = make_probe(tmp_path, endpoint_url=moto_auth.url)
    assert "AWS rejected the credentials (InvalidClientTokenId)" in probe.check_access()[0]
    nothing = moto_auth.user(
        "probe-nothing", [{"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}]
    )
    probe = make_probe(tmp_path, endpoint_url=moto_auth.url)  # clients keep their credentials
    probe.conn.session.set_credentials(nothing["AccessKeyId"], nothing["SecretAccessKey"])
    assert probe.check_access() == [
        "usage probe: iam:GetAccessKeyLastUsed denied by AWS (AccessDenied); allow it for the "
        "principal rotatectl runs as (policies in examples/aws/)"
    ]
    with pytest.raises(ProbeError, match="GetAccessKeyLastUsed denied"):
        probe.usage(NAME, ["AKIAIOSFODNN7EXAMPLE"], datetime.now(UTC), datetime.now(UTC))

    # A key AWS does not (yet) accept: test() retries with backoff, then gives up.
    slept: list[float] = []
    clock = iter(range(0, 1000, 1))
    patient = IamIssuer(issuer.conn, user, sleep=slept.append, monotonic=lambda: float(next(clock)))
    ghost = json.dumps({"AccessKeyId": "AKIAGHOSTGHOSTGHOST1", "SecretAccessKey": "x"})
    with pytest.raises(IssuerError, match="still rejected") as info:
        patient.test(ghost, timeout=timedelta(seconds=10))
    assert info.value.retryable
    assert slept[:3] == [0.5, 1.0, 2.0]


# -- the probe ------------------------------------------------------------------


def test_probe_reports_iam_last_used(iam: Any, tmp_path: Path) -> None:
    issuer, probe = make_issuer(tmp_path, verify_timeout="0s"), make_probe(tmp_path)
    used = issuer.create(NAME, "v1", ())
    idle = issuer.create(NAME, "v2", ())
    now = datetime.now(UTC)
    use_key(used.value)
    answers = probe.usage(NAME, [used.key_id, idle.key_id, "AKIADELETEDKEY000000"], now, now)
    seen = answers[used.key_id]
    assert seen.status is UsageStatus.SEEN and seen.last_seen is not None
    assert abs(seen.last_seen - now) < timedelta(minutes=1) and "sts" in seen.detail
    assert answers[idle.key_id].status is UsageStatus.NOT_SEEN
    assert "never used" in answers[idle.key_id].detail
    assert answers["AKIADELETEDKEY000000"].status is UsageStatus.NOT_SEEN
    later = now + timedelta(hours=1)
    assert probe.usage(NAME, [used.key_id], later, later)[used.key_id].status is (
        UsageStatus.NOT_SEEN
    )
    assert IamLastUsedProbe.recommended_usage_quiet >= IamLastUsedProbe.reporting_delay


def test_probe_errors_are_probe_errors(tmp_path: Path) -> None:
    probe = make_probe(tmp_path, endpoint_url="http://127.0.0.1:9", max_attempts=1)
    with pytest.raises(ProbeError, match="cannot reach"):
        probe.usage(NAME, ["AKIAIOSFODNN7EXAMPLE"], datetime.now(UTC), datetime.now(UTC))


# -- with the runner -----------------------------------------------------------------


class World:
    """The real runner over moto: Secrets Manager store, IAM issuer, IAM probe."""

    def __init__(self, tmp: Path, policy: Policy) -> None:
        self.clock = FakeClock(datetime.now(UTC))  # moto stamps usage with real time
        self.store: SecretsManagerStore = make_store(tmp)
        self.issuer = make_issuer(tmp)
        self.probe = make_probe(tmp)
        self.iam = boto3.client("iam", region_name=REGION)
        self.sm = boto3.client("secretsmanager", region_name=REGION)
        self.policy = policy
        self.max_keys = 0

    def target(self) -> Target:
        return Target(
            name=NAME,
            path=NAME,
            store=self.store,
            issuer=self.issuer,
            probe=self.probe,
            policy=self.policy,
            store_name="aws",
        )

    def runner(self, boundary: Any = None) -> Runner:
        def watch(name: str) -> None:
            self.max_keys = max(self.max_keys, len(keys(self.iam)))
            if boundary is not None:
                boundary(name)

        return Runner(self.clock, holder="tester@host:1", lock_ttl=TTL, boundary=watch)

    def states(self) -> list[tuple[int, str]]:
        return [(v.number, v.state.value) for v in self.store.versions(NAME)]

    def value(self, label: str) -> dict[str, str]:
        out = self.sm.get_secret_value(SecretId=NAME, VersionStage=label)
        doc: dict[str, str] = json.loads(out["SecretString"])
        return doc


POLICY = Policy(
    propagation=timedelta(seconds=30),
    overlap=timedelta(hours=1),
    usage_quiet=IamLastUsedProbe.recommended_usage_quiet,
    max_overlap=timedelta(days=2),
    retain=timedelta(days=7),
)


@pytest.fixture
def world(iam: Any, tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path, POLICY)
    yield w
    w.store.close()


def test_rotation_waits_for_the_old_key_to_go_quiet_then_disables_and_deletes_it(
    world: World,
) -> None:
    w = world
    assert w.runner().rotate(w.target()).outcome is Outcome.DONE
    old = w.value("AWSCURRENT")
    use_key(json.dumps(old))  # a client still signs with the old key

    result = w.runner().rotate(w.target())
    assert result.outcome is Outcome.WAITING and w.states() == [(1, "current"), (2, "pending")]
    w.clock.advance(POLICY.propagation)
    result = w.runner().advance(w.target())
    assert w.states() == [(1, "previous"), (2, "current")]
    new = w.value("AWSCURRENT")
    assert w.value("AWSPREVIOUS") == old and new["AccessKeyId"] != old["AccessKeyId"]

    # Overlap over, but IAM saw the old key within usage_quiet: held back.
    w.clock.advance(POLICY.overlap)
    result = w.runner().advance(w.target())
    assert result.outcome is Outcome.WAITING
    assert result.usage is not None and result.usage.status is UsageStatus.SEEN
    assert result.until is not None and result.until > w.clock.now()
    assert keys(w.iam)[old["AccessKeyId"]] == "Active"

    w.clock.advance(result.until - w.clock.now())
    result = w.runner().advance(w.target())
    assert w.states() == [(1, "retired"), (2, "current")]
    assert keys(w.iam) == {old["AccessKeyId"]: "Inactive", new["AccessKeyId"]: "Active"}
    accepted = [k.key_id for k in w.store.accepted_keys(NAME, NAME)]
    assert accepted == [new["AccessKeyId"]]

    w.clock.advance(POLICY.retain + timedelta(minutes=1))
    w.runner().advance(w.target())
    assert w.states() == [(1, "destroyed"), (2, "current")]
    assert keys(w.iam) == {new["AccessKeyId"]: "Active"}
    assert w.max_keys <= 2


@pytest.mark.parametrize("boundary", ["after-issue", "after-publish"])
def test_a_crash_after_minting_is_resumed_without_a_third_key(world: World, boundary: str) -> None:
    w = world
    w.runner().rotate(w.target())
    first = w.value("AWSCURRENT")["AccessKeyId"]

    def crash(name: str) -> None:
        if name == boundary:
            raise Crash

    with pytest.raises(Crash):
        w.runner(crash).rotate(w.target())
    assert len(keys(w.iam)) == 2  # the current key and the one minted before the crash

    w.clock.advance(TTL + timedelta(seconds=1))  # the dead run's lease expires
    result = w.runner().advance(w.target())
    assert result.outcome is Outcome.WAITING, result.message
    [v1, v2] = w.store.versions(NAME)
    # After the issue, the resume publishes the key now and waits out the propagation.
    # After the publish, the record was saved with it (one write, issue 21): the
    # propagation counted from then, and the resume promoted it.
    expected = VersionState.PENDING if boundary == "after-issue" else VersionState.CURRENT
    assert (v1.issuer_ref, v2.state) == (first, expected)
    assert set(keys(w.iam)) == {first, v2.issuer_ref}  # the orphan (if any) was revoked
    assert w.max_keys <= 2
    # The recorded key is the one in the store, and it works.
    value = w.store.read_value(NAME, v2.version_id)
    assert json.loads(value)["AccessKeyId"] == v2.issuer_ref
    assert w.issuer.test(value).endswith(f"user/{USER}")
    # One AWS version per rotation, whatever was resumed.
    versions = w.sm.list_secret_version_ids(SecretId=NAME, IncludeDeprecated=True)["Versions"]
    assert len(versions) == 2
