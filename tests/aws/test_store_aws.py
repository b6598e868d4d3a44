"""SecretsManagerStore beyond the contract: the AWS layout, crashes, races and errors."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from rotatectl.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
    StoreUnavailableError,
)
from rotatectl.model import Phase, VersionState
from rotatectl.stores.aws import (
    RECORD_SUFFIX,
    SecretsManagerStore,
    _CasLost,
    aws_version_id,
)
from rotatectl.stores.aws import store as aws_store
from rotatectl.testing.store_contract import (
    PATH,
    T0,
    T1,
    T2,
    T3,
    make_rotation,
    make_version,
    publish,
    states,
    value_for,
)

from .conftest import REGION, AuthServer, MotoServer, _free_port, context, make_store

V = VersionState


@pytest.fixture
def store(mocked: None, tmp_path: Path) -> Iterator[SecretsManagerStore]:
    s = make_store(tmp_path)
    yield s
    s.close()


@pytest.fixture
def sm(mocked: None) -> Any:
    return boto3.client("secretsmanager", region_name=REGION)


def label_value(sm: Any, label: str, name: str = PATH) -> str | None:
    """What a client that knows nothing of rotatectl reads with VersionStage=label."""
    try:
        return str(sm.get_secret_value(SecretId=name, VersionStage=label)["SecretString"])
    except sm.exceptions.ResourceNotFoundException:
        return None


def stages(sm: Any, name: str = PATH) -> dict[str, list[str]]:
    return dict(sm.describe_secret(SecretId=name).get("VersionIdsToStages", {}))


def aws_versions(sm: Any, name: str = PATH) -> list[str]:
    """Every version of the secret, labelled or not."""
    out = sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)
    return [v["VersionId"] for v in out["Versions"]]


def rotated(store: SecretsManagerStore) -> None:
    """v1 previous, v2 current."""
    publish(store, 1)
    store.promote(PATH, "v1", None, T1)
    publish(store, 2)
    store.promote(PATH, "v2", "v1", T2)


# -- layout -------------------------------------------------------------------


def test_labels_follow_the_states_for_clients_that_know_nothing_of_rotatectl(
    store: SecretsManagerStore, sm: Any
) -> None:
    rotated(store)
    assert label_value(sm, "AWSCURRENT") == value_for(2)
    assert label_value(sm, "AWSPREVIOUS") == value_for(1)
    assert label_value(sm, "AWSPENDING") is None
    publish(store, 3)
    assert label_value(sm, "AWSPENDING") == value_for(3)
    assert label_value(sm, "AWSCURRENT") == value_for(2)  # pending is not handed out

    store.set_state(PATH, "v1", V.RETIRED, V.PREVIOUS, T3)
    assert label_value(sm, "AWSPREVIOUS") is None  # retired: no longer "the previous key"
    assert [k.version_id for k in store.accepted_keys(PATH, "acme")] == ["v2", "v3"]
    store.set_state(PATH, "v1", V.DESTROYED, V.RETIRED, T3)
    with pytest.raises(NotFoundError):
        store.read_value(PATH, "v1")
    v1 = aws_version_id("v1")
    # Destroyed = unlabeled (deprecated for AWS to purge); nothing points at it.
    # (AWS leaves unlabeled versions out of VersionIdsToStages; moto lists them empty.)
    assert not stages(sm).get(v1)
    assert label_value(sm, "rotatectl-v1") is None
    # One AWS version per rotatectl version, whatever happened.
    assert sorted(aws_versions(sm)) == sorted(aws_version_id(f"v{n}") for n in (1, 2, 3))
    # Exactly one version per label.
    labels = [label for vs in stages(sm).values() for label in vs]
    assert len(labels) == len(set(labels))


def test_versions_are_secret_versions_with_the_value_exactly(
    store: SecretsManagerStore, sm: Any
) -> None:
    value = "ключ 🔑 \n\t'\"\\ exactly"
    store.publish(PATH, make_version(1), value)
    out = sm.get_secret_value(SecretId=PATH, VersionId=aws_version_id("v1"))
    assert out["SecretString"] == value
    # A uuid version id (what the runner uses) is the AWS VersionId itself.
    version = make_version(2, version_id="6f2b3c1e-8d4a-4e0b-9a55-0c1d2e3f4a5b")
    store.publish(PATH, version, "two")
    assert version.version_id in stages(sm)


def test_created_secrets_are_tagged(store: SecretsManagerStore, sm: Any) -> None:
    publish(store, 1)
    for name, role in ((PATH, "key"), (PATH + RECORD_SUFFIX, "record")):
        tags = {t["Key"]: t["Value"] for t in sm.describe_secret(SecretId=name)["Tags"]}
        assert tags == {
            "rotatectl:managed-by": "rotatectl",
            "rotatectl:path": PATH,
            "rotatectl:role": role,
        }
    # The record holds no value.
    record = sm.get_secret_value(SecretId=PATH + RECORD_SUFFIX, VersionStage="AWSCURRENT")
    assert value_for(1) not in record["SecretString"]


def test_publish_twice_adds_no_version(store: SecretsManagerStore, sm: Any) -> None:
    version = publish(store, 1)
    store.publish(PATH, version, value_for(1))
    store.promote(PATH, "v1", None, T1)
    store.publish(PATH, version, value_for(1))
    assert len(aws_versions(sm)) == 1


def test_a_publish_killed_between_value_and_record_is_resumed(
    store: SecretsManagerStore, sm: Any
) -> None:
    publish(store, 1)
    store.promote(PATH, "v1", None, T1)
    # The killed run wrote its value under v2's id, then died before the record.
    sm.put_secret_value(
        SecretId=PATH,
        ClientRequestToken=aws_version_id("v2"),
        SecretString="value of a key nobody recorded",
        VersionStages=["AWSPENDING", "rotatectl-v2"],
    )
    assert store.versions(PATH)[-1].version_id == "v1"
    # The resumed run minted another key for the same version id.
    publish(store, 2)
    assert store.read_value(PATH, "v2") == value_for(2)
    assert label_value(sm, "AWSPENDING") == value_for(2)
    assert label_value(sm, "rotatectl-v2") == value_for(2)
    store.promote(PATH, "v2", "v1", T2)
    assert label_value(sm, "AWSCURRENT") == value_for(2)
    # The orphaned value is unlabeled: AWS treats it as deprecated.
    assert not stages(sm).get(aws_version_id("v2"))
    # A retry of the resumed publish (same value) is still a no-op.
    store.publish(PATH, make_version(2), value_for(2))
    assert len(aws_versions(sm)) == 3


def test_a_value_written_but_unrecorded_with_the_same_value_is_adopted(
    store: SecretsManagerStore, sm: Any
) -> None:
    publish(store, 1)
    sm.put_secret_value(
        SecretId=PATH,
        ClientRequestToken=aws_version_id("v2"),
        SecretString=value_for(2),
        VersionStages=["rotatectl-v2"],
    )
    publish(store, 2)
    assert len(aws_versions(sm)) == 2
    assert label_value(sm, "AWSPENDING") == value_for(2)


@pytest.mark.parametrize("same", [True, False], ids=["same value", "other value"])
def test_an_unlabelled_unrecorded_value_is_found_by_the_put_itself(
    store: SecretsManagerStore, sm: Any, same: bool
) -> None:
    """A value under v2's id that no label lists (so DescribeSecret does not show
    it): the publish puts without looking first, and the put tells."""
    publish(store, 1)
    store.promote(PATH, "v1", None, T1)
    orphan = aws_version_id("v2")
    sm.put_secret_value(
        SecretId=PATH,
        ClientRequestToken=orphan,
        SecretString=value_for(2) if same else "a value nobody recorded",
        VersionStages=["scratch"],
    )
    sm.update_secret_version_stage(
        SecretId=PATH, VersionStage="scratch", RemoveFromVersionId=orphan
    )
    assert not stages(sm).get(orphan)  # moto lists it with no labels; AWS does not list it
    publish(store, 2)
    assert store.read_value(PATH, "v2") == value_for(2)
    assert label_value(sm, "AWSPENDING") == value_for(2)
    assert label_value(sm, "rotatectl-v2") == value_for(2)
    # The same value is adopted where it is (and labelled); another one is left
    # unlabelled and v2 goes under its second id.
    assert bool(stages(sm).get(orphan)) is same
    assert len(aws_versions(sm)) == (2 if same else 3)


def test_a_promotion_killed_after_the_label_move_is_resumed(
    store: SecretsManagerStore, sm: Any
) -> None:
    publish(store, 1)
    store.promote(PATH, "v1", None, T1)
    publish(store, 2)
    # The killed run moved AWSCURRENT, then died before the record said so.
    sm.update_secret_version_stage(
        SecretId=PATH,
        VersionStage="AWSCURRENT",
        MoveToVersionId=aws_version_id("v2"),
        RemoveFromVersionId=aws_version_id("v1"),
    )
    assert states(store) == {"v1": V.CURRENT, "v2": V.PENDING}
    store.promote(PATH, "v2", "v1", T2)
    assert states(store) == {"v1": V.PREVIOUS, "v2": V.CURRENT}
    assert label_value(sm, "AWSCURRENT") == value_for(2)
    assert label_value(sm, "AWSPREVIOUS") == value_for(1)
    assert label_value(sm, "AWSPENDING") is None


def test_an_out_of_band_awscurrent_move_is_a_conflict_never_overwritten(
    store: SecretsManagerStore, sm: Any
) -> None:
    publish(store, 1)
    store.promote(PATH, "v1", None, T1)
    publish(store, 2)
    manual = "11111111-2222-3333-4444-555555555555"
    sm.put_secret_value(
        SecretId=PATH, ClientRequestToken=manual, SecretString="hand", VersionStages=["ops"]
    )
    sm.update_secret_version_stage(
        SecretId=PATH,
        VersionStage="AWSCURRENT",
        MoveToVersionId=manual,
        RemoveFromVersionId=aws_version_id("v1"),
    )
    before = store.versions(PATH)
    with pytest.raises(ConflictError) as info:
        store.promote(PATH, "v2", "v1", T2)
    assert "AWSCURRENT" in str(info.value) and "outside rotatectl" in str(info.value)
    assert label_value(sm, "AWSCURRENT") == "hand"
    assert store.versions(PATH) == before


def test_the_label_limit_is_respected(store: SecretsManagerStore, sm: Any) -> None:
    publish(store, 1)
    store.promote(PATH, "v1", None, T1)
    for number in range(2, 18):
        publish(store, number)  # 17 accepted versions: 17 + 3 AWS labels = 20
    with pytest.raises(StoreError, match="staging labels"):
        publish(store, 18)
    assert len(store.versions(PATH)) == 17
    assert len(aws_versions(sm)) == 17  # the refused value was not written
    for number in range(2, 10):
        store.set_state(PATH, f"v{number}", V.RETIRED, V.PENDING, T2)
    for number in range(18, 26):
        publish(store, number)  # retired versions give up their labels first
    labels = [label for vs in stages(sm).values() for label in vs]
    assert len(labels) <= 20 and len(labels) == len(set(labels))
    assert label_value(sm, "AWSPENDING") == value_for(25)
    assert label_value(sm, "rotatectl-v25") == value_for(25)
    assert label_value(sm, "rotatectl-v2") is None  # the oldest retired lost its label
    assert store.read_value(PATH, "v2") == value_for(2)  # still readable until AWS purges it


def test_a_foreign_secret_at_the_path_is_refused(store: SecretsManagerStore, sm: Any) -> None:
    sm.create_secret(Name=PATH, SecretString="somebody else's")
    with pytest.raises(StoreError, match="not a rotatectl key secret"):
        publish(store, 1)
    assert label_value(sm, "AWSCURRENT") == "somebody else's"


def test_a_path_that_is_no_secret_name(store: SecretsManagerStore) -> None:
    with pytest.raises(StoreError, match="cannot be a Secrets Manager secret name"):
        store.versions("bad path!")


def test_prefix_names_the_secrets_and_scopes_list_paths(
    mocked: None, tmp_path: Path, sm: Any
) -> None:
    a = make_store(tmp_path, prefix="team-a/")
    b = make_store(tmp_path, prefix="team-b/")
    publish(a, 1, "svc")
    publish(b, 1, "other")
    assert a.list_paths() == ["svc"] and b.list_paths() == ["other"]
    assert label_value(sm, "AWSCURRENT", "team-a/svc") == value_for(1)


# -- record compare-and-set ------------------------------------------------------------


def test_a_record_write_loses_to_a_concurrent_one(mocked: None, tmp_path: Path) -> None:
    one, two = make_store(tmp_path), make_store(tmp_path)
    one.save_rotation(PATH, make_rotation(), 0)
    record, read_from = one._read(PATH)
    two.save_rotation(PATH, make_rotation().advance(Phase.PROPAGATE, T1), 1)
    with pytest.raises(_CasLost):
        one._commit(PATH, read_from, record)
    # ... and through the public API the loser re-reads and applies the rules.
    with pytest.raises(ConflictError):
        one.save_rotation(PATH, make_rotation(), 1)
    assert one.load_rotation(PATH)[1] == 2


class Workers:
    """Processes that contend for one record, phase by phase (see cas_worker.py)."""

    def __init__(self, moto: MotoServer, tmp_path: Path, names: list[str], phases: list[str]):
        self.go = tmp_path / "go"
        script = Path(__file__).with_name("cas_worker.py")
        self.procs = [
            subprocess.Popen(
                [sys.executable, str(script), moto.url, PATH, name, str(self.go), *phases],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=tmp_path,
            )
            for name in names
        ]

    def _line(self, proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"worker died: {err}")
        data: dict[str, Any] = json.loads(line)
        return data

    def run(self, mode: str) -> list[dict[str, Any]]:
        """Wait until every worker is ready, start them together, collect the results."""
        for proc in self.procs:
            assert self._line(proc) == {"ready": mode}
        Path(f"{self.go}-{mode}").touch()
        return [self._line(proc) for proc in self.procs]

    def close(self) -> None:
        for proc in self.procs:
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err


@pytest.mark.slow
def test_record_compare_and_set_across_processes(moto: MotoServer, tmp_path: Path) -> None:
    """Real concurrency over HTTP: no lost update, one lock holder, one promotion."""
    store = make_store(tmp_path, moto.url)
    first = make_rotation()
    store.save_rotation(PATH, first, 0)
    names = ["w2", "w3", "w4"]
    workers = Workers(moto, tmp_path, names, ["save:4", "lock", "promote"])

    results = workers.run("save")
    rotation, revision = store.load_rotation(PATH)
    assert rotation is not None
    assert sum(r["done"] for r in results) == 12
    assert revision == 1 + 12  # every successful save moved the revision exactly once
    details = [e.detail for e in rotation.history[len(first.history) :]]
    assert sorted(details) == sorted(f"{w}-{i}" for w in names for i in range(4))

    results = workers.run("lock")
    winners = [r for r in results if "token" in r]
    assert len(winners) == 1, results
    assert all(r["locked_by"] == winners[0]["worker"] for r in results if r is not winners[0])

    publish(store, 1)
    store.promote(PATH, "v1", None, T0)
    for number in (2, 3, 4):
        publish(store, number)
    results = workers.run("promote")
    workers.close()
    promoted = [f"v{r['worker'][1:]}" for r in results if r.get("promoted")]
    assert len(promoted) == 1, results
    # The losers lost the AWSCURRENT compare-and-swap (or, later, the record's rules).
    assert all(
        "AWSCURRENT" in r["conflict"] or "expected current version v1" in r["conflict"]
        for r in results
        if "conflict" in r
    )
    current = [v.version_id for v in store.versions(PATH) if v.state is V.CURRENT]
    assert current == promoted
    sm = moto.client("secretsmanager")
    assert label_value(sm, "AWSCURRENT") == value_for(int(promoted[0][1:]))
    store.close()


# -- batched reads -----------------------------------------------------------------


def count_calls(store: SecretsManagerStore) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    client = store.conn.client("secretsmanager")
    client.meta.events.register(
        "before-call.secretsmanager", lambda model, **_: counts.update([model.name])
    )
    return counts


def test_versions_many_batches_twenty_records_per_call(store: SecretsManagerStore) -> None:
    paths = [f"svc/{i:02d}" for i in range(25)]
    for path in paths[:-1]:
        store.save_rotation(path, make_rotation(), 0)  # the record, once, from creation
    for path in paths[:3]:
        publish(store, 1, path)  # a second record write for these
    counts = count_calls(store)
    many = store.versions_many(paths)
    assert counts["BatchGetSecretValue"] == 2
    # Every record version was made current by PutSecretValue itself, so moto's batch
    # read returns AWSCURRENT and nothing is read again one by one.
    assert counts["GetSecretValue"] == 0
    assert many == {p: store.versions(p) for p in paths}
    assert many["svc/24"] == []
    rotations = store.rotations_many(paths[:2])
    assert rotations == {p: store.load_rotation(p) for p in paths[:2]}


def test_list_paths_pages_through_list_secrets(
    store: SecretsManagerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aws_store, "LIST_PAGE_SIZE", 2)
    for path in ("c", "a", "b/x"):
        publish(store, 1, path)
    store.save_rotation("d", make_rotation(), 0)
    store.acquire_lock("e", "host", T3 - T2, T0)  # a lock alone is no credential
    counts = count_calls(store)
    assert store.list_paths() == ["a", "b/x", "c", "d"]
    assert counts["ListSecrets"] >= 4


# -- errors --------------------------------------------------------------------


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_unreachable_endpoint(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    store = make_store(tmp_path, url, max_attempts=1, connect_timeout="2s")
    with pytest.raises(StoreUnavailableError) as info:
        store.versions(PATH)
    text = one_line(info.value)
    assert url in text and "endpoint_url" in text and info.value.retryable


def test_wrong_region_and_profile_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown AWS region 'us-east-7' \(did you mean"):
        make_store(tmp_path, region="us-east-7")
    with pytest.raises(ConfigError, match="not an AWS region"):
        make_store(tmp_path, region="useast1")
    with pytest.raises(ConfigError, match="profile"):
        make_store(tmp_path, profile="no-such-profile")
    with pytest.raises(ConfigError, match="unknown key"):
        make_store(tmp_path, regoin="us-east-1")


def test_no_region_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ConfigError, match="no AWS region"):
        SecretsManagerStore.from_config({}, context(tmp_path))


def test_a_missing_key_secret_names_secret_and_region(store: SecretsManagerStore, sm: Any) -> None:
    rotated(store)
    sm.delete_secret(SecretId=PATH, ForceDeleteWithoutRecovery=True)
    with pytest.raises(NotFoundError) as info:
        store.read_value(PATH)
    text = one_line(info.value)
    assert f"secret {PATH}" in text and REGION in text and "wrong region" in text


def test_check_access_with_every_permission(store: SecretsManagerStore) -> None:
    assert store.check_access() == []
    publish(store, 1)
    assert store.check_access() == []  # also probes CreateSecret against the existing one


def test_denied_calls_name_the_missing_action(moto_auth: AuthServer, tmp_path: Path) -> None:
    keys = moto_auth.user(
        "store-no-put",
        [
            {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "secretsmanager:PutSecretValue", "Resource": "*"},
        ],
    )
    store = make_store(tmp_path, moto_auth.url)
    store.conn.session.set_credentials(keys["AccessKeyId"], keys["SecretAccessKey"])
    store.save_rotation("denied/one", make_rotation(), 0)  # CreateSecret: allowed
    with pytest.raises(PermissionDeniedError) as info:
        store.save_rotation("denied/one", make_rotation(), 1)  # PutSecretValue: denied
    text = one_line(info.value)
    assert "secretsmanager:PutSecretValue denied" in text
    assert "denied/one" in text
    # The shared auth server holds other tests' secrets too: the probe name may vary.
    [problem] = store.check_access()
    assert "secretsmanager:PutSecretValue denied by AWS (AccessDenied)" in problem
    assert "allow it for the principal rotatectl runs as (policies in examples/aws/)" in problem
    store.close()


def test_rejected_credentials(moto_auth: AuthServer, tmp_path: Path) -> None:
    store = make_store(tmp_path, moto_auth.url)
    store.conn.session.set_credentials("AKIAFAKEFAKEFAKEFAKE", "nope")
    with pytest.raises(PermissionDeniedError, match="rejected the credentials"):
        store.list_paths()


# -- one call a record write; what the store remembers ---------------------------------


def test_a_record_write_is_one_put_and_a_stale_copy_only_loses(
    mocked: None, tmp_path: Path
) -> None:
    one, two = make_store(tmp_path), make_store(tmp_path)
    one.save_rotation(PATH, make_rotation(), 0)
    counts = count_calls(one)
    second = make_rotation().advance(Phase.PROPAGATE, T1)
    assert one.save_rotation(PATH, second, 1) == 2
    # From its own last write: no read, and the token is the compare-and-set.
    assert counts == {"PutSecretValue": 1}
    two.save_rotation(PATH, second.advance(Phase.OVERLAP, T2), 2)  # behind one's back
    counts.clear()
    with pytest.raises(ConflictError, match="revision 3, not 2"):
        one.save_rotation(PATH, second.advance(Phase.OVERLAP, T3), 2)
    # The stale copy lost the put; the fresh read is what the rules refused.
    assert counts["PutSecretValue"] == 1 and counts["GetSecretValue"] == 1
    assert one.load_rotation(PATH)[1] == 3


def test_a_retried_record_write_adds_no_version(mocked: None, tmp_path: Path, sm: Any) -> None:
    store = make_store(tmp_path)
    store.save_rotation(PATH, make_rotation(), 0)
    record, read_from = store._read(PATH)
    name = store.record_name(PATH)
    before = len(aws_versions(sm, name))
    written = store._commit(PATH, read_from, record)
    assert store._commit(PATH, read_from, record) == written  # a botocore retry, say
    assert len(aws_versions(sm, name)) == before + 1
    assert store._read(PATH)[0].seq == written.seq == record.seq + 1


def test_a_stale_copy_never_skips_a_change(mocked: None, tmp_path: Path) -> None:
    one, two = make_store(tmp_path), make_store(tmp_path)
    publish(one, 1)
    one.promote(PATH, "v1", None, T0)
    publish(one, 2)
    one.set_state(PATH, "v2", V.RETIRED, V.PENDING, T1)  # one remembers v2 retired
    two.set_state(PATH, "v2", V.PENDING, V.RETIRED, T2)  # reinstated behind one's back
    # "Already retired", says one's copy: confirmed on a fresh read, and done.
    one.set_state(PATH, "v2", V.RETIRED, V.PENDING, T3)
    assert states(two)["v2"] is V.RETIRED


def test_a_stale_copy_never_refuses_on_its_own(mocked: None, tmp_path: Path) -> None:
    one, two = make_store(tmp_path), make_store(tmp_path)
    publish(one, 1)
    one.promote(PATH, "v1", None, T0)  # one remembers a record without v2
    publish(two, 2)
    one.promote(PATH, "v2", "v1", T1)  # "no version v2", says the copy; AWS has it
    assert states(two) == {"v1": V.PREVIOUS, "v2": V.CURRENT}


def test_state_is_free_while_the_store_holds_the_lease_it_wrote(store: SecretsManagerStore) -> None:
    publish(store, 1)
    lease = store.acquire_lock(PATH, "me", T3 - T2, T0)
    counts = count_calls(store)
    versions, rotation, revision = store.state(PATH)
    assert counts == {} and [v.version_id for v in versions] == ["v1"]
    assert rotation is None and revision == 0
    store.release_lock(lease)
    counts.clear()
    store.state(PATH)  # no lease held: ask AWS
    assert counts == {"GetSecretValue": 1}


def test_check_access_probes_under_the_paths_it_is_given(store: SecretsManagerStore) -> None:
    """A policy scoped to the configured credentials' names is checked as it applies to
    them: the probes name secrets under the given paths, not under another credential's."""
    store.publish("other/held", make_version(1), value_for(1))
    named: list[str] = []

    def note(params: dict[str, Any], **_: Any) -> None:
        body = json.loads(params.get("body") or b"{}")  # the request as sent
        name = body.get("SecretId") or body.get("Name")
        if isinstance(name, str):
            named.append(name)

    store.conn.client("secretsmanager").meta.events.register("before-call", note)
    assert store.check_access(["svc/new"]) == []
    assert named, "no probe named a secret"
    assert all(n.startswith(store.secret_name("svc/new")) for n in named), named
    named.clear()
    assert store.check_access() == []  # no paths: under a path the store holds
    assert named and all(n.startswith(store.secret_name("other/held")) for n in named), named
