"""ParameterStore (aws-ssm) passes the store contract and every feature contract, in
process (moto's mock_aws) and over HTTP (moto_server); its own layout: what a client
reading the parameter the ordinary way gets, the labels, the record's compare-and-set."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.core import enable_iam_authentication

from rotatectl import keyformat
from rotatectl.errors import ConflictError, LockedError, StoreError, UsageError
from rotatectl.model import VersionState
from rotatectl.stores.ssm import ParameterStore, _Record
from rotatectl.testing.feature_contracts import (
    AccessCheckContract,
    AtomicRecordContract,
    BatchedReadsContract,
    DriftContract,
    HistoryContract,
    RollingWindowContract,
    Rotations,
    StateContract,
)
from rotatectl.testing.store_contract import (
    PATH,
    T0,
    T1,
    T2,
    TTL,
    StoreContract,
    make_rotation,
    make_version,
    value_for,
)

from .conftest import REGION, AuthServer, MotoServer, context
from .test_store_contract import ALLOW_ALL, iam_user

NO_PUT = [
    {"Effect": "Allow", "Action": ["ssm:*", "kms:*"], "Resource": "*"},
    {"Effect": "Deny", "Action": "ssm:PutParameter", "Resource": "*"},
]


def make_ssm(tmp: Path, endpoint_url: str | None = None, **settings: Any) -> ParameterStore:
    config: dict[str, Any] = {"region": REGION, **settings}
    if endpoint_url:
        config["endpoint_url"] = endpoint_url
    return ParameterStore.from_config(config, context(tmp, "stores.ssm"))


def tamper_ssm(ssm: Any, store: ParameterStore, path: str, value: str) -> None:
    """What someone with the console or `aws ssm put-parameter --overwrite` does."""
    name = store.parameter_name(path)
    ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)


class InProcess:
    @pytest.fixture
    def store(self, mocked: None, tmp_path: Path) -> Iterator[ParameterStore]:
        s = make_ssm(tmp_path)
        yield s
        s.close()

    def tamper(self, store: ParameterStore, path: str, value: str) -> None:
        tamper_ssm(boto3.client("ssm", region_name=REGION), store, path, value)


class OverHttp:
    @pytest.fixture
    def store(self, moto: MotoServer, tmp_path: Path) -> Iterator[ParameterStore]:
        self.moto = moto
        s = make_ssm(tmp_path, moto.url, prefix="/rotatectl")
        yield s
        s.close()

    def tamper(self, store: ParameterStore, path: str, value: str) -> None:
        tamper_ssm(self.moto.client("ssm"), store, path, value)


class TestInProcess(InProcess, StoreContract):
    pass


class TestOverHttp(OverHttp, StoreContract):
    pass


class TestInProcessState(InProcess, StateContract):
    pass


class TestOverHttpState(OverHttp, StateContract):
    pass


class TestInProcessBatchedReads(InProcess, BatchedReadsContract):
    pass


class TestOverHttpBatchedReads(OverHttp, BatchedReadsContract):
    pass


class TestInProcessDrift(InProcess, DriftContract):
    pass


class TestOverHttpDrift(OverHttp, DriftContract):
    pass


class TestInProcessHistory(InProcess, HistoryContract):
    pass


class TestInProcessRollingWindow(InProcess, RollingWindowContract):
    pass


class TestOverHttpHistory(OverHttp, HistoryContract):
    pass


class TestOverHttpRollingWindow(OverHttp, RollingWindowContract):
    pass


class TestInProcessAccessCheck(AccessCheckContract):
    """moto in process with IAM enforced: the store runs as an admin user."""

    @pytest.fixture
    def store(self, mocked: None, tmp_path: Path) -> Iterator[ParameterStore]:
        self.tmp_path = tmp_path
        self.admin = iam_user(boto3.client("iam", region_name=REGION), ALLOW_ALL)
        with enable_iam_authentication():
            s = make_ssm(tmp_path)
            s.conn.session.set_credentials(*self.admin)
            yield s
            s.close()

    def denied(self, store: ParameterStore) -> tuple[ParameterStore, str]:
        iam = boto3.client(
            "iam",
            region_name=REGION,
            aws_access_key_id=self.admin[0],
            aws_secret_access_key=self.admin[1],
        )
        weak = make_ssm(self.tmp_path)
        weak.conn.session.set_credentials(*iam_user(iam, NO_PUT))
        return weak, "ssm:PutParameter"


class TestOverHttpAccessCheck(AccessCheckContract):
    """moto_server with IAM enforced (its own server); each test under its own prefix."""

    @pytest.fixture
    def store(self, moto_auth: AuthServer, tmp_path: Path) -> Iterator[ParameterStore]:
        self.auth, self.tmp_path = moto_auth, tmp_path
        self.prefix = f"/t{uuid.uuid4().hex[:10]}"
        s = make_ssm(tmp_path, moto_auth.url, prefix=self.prefix)
        s.conn.session.set_credentials(
            moto_auth.admin["AccessKeyId"], moto_auth.admin["SecretAccessKey"]
        )
        yield s
        s.close()

    def denied(self, store: ParameterStore) -> tuple[ParameterStore, str]:
        weak = make_ssm(self.tmp_path, self.auth.url, prefix=self.prefix)
        weak.conn.session.set_credentials(*iam_user(self.auth.client("iam"), NO_PUT))
        return weak, "ssm:PutParameter"


# -- the layout -------------------------------------------------------------------------


@pytest.fixture
def ssm(mocked: None) -> Any:
    return boto3.client("ssm", region_name=REGION)


@pytest.fixture
def store(mocked: None, tmp_path: Path) -> Iterator[ParameterStore]:
    s = make_ssm(tmp_path, prefix="/team")
    yield s
    s.close()


def publish(store: ParameterStore, number: int) -> None:
    """Version ``number`` with the fingerprint of its value (the drift check compares)."""
    value = value_for(number)
    store.publish(PATH, make_version(number, fingerprint=keyformat.fingerprint_of(value)), value)


def read(ssm: Any, selector: str) -> str | None:
    try:
        return str(ssm.get_parameter(Name=selector, WithDecryption=True)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        return None
    except ssm.exceptions.ParameterVersionNotFound:
        return None


def test_clients_read_the_current_key_and_labels_follow(ssm: Any, store: ParameterStore) -> None:
    name = "/team/partners/acme"
    publish(store, 1)
    assert read(ssm, name) is None  # a pending key is not what clients read
    store.promote(PATH, "v1", None, T1)
    assert read(ssm, name) == read(ssm, f"{name}:current") == value_for(1)
    publish(store, 2)
    assert read(ssm, name) == value_for(1)  # still pending: not the latest version
    store.promote(PATH, "v2", "v1", T2)
    assert read(ssm, name) == read(ssm, f"{name}:current") == value_for(2)
    assert read(ssm, f"{name}:previous") == value_for(1)
    store.set_state(PATH, "v1", VersionState.RETIRED, VersionState.PREVIOUS, T2)
    assert read(ssm, f"{name}:previous") is None  # a retired key is not handed out
    # Pending values left their companions once promoted.
    listed = ssm.get_parameters_by_path(Path=name + "/.rotatectl-pending")["Parameters"]
    assert listed == []
    assert store.drift(PATH) == []


def test_a_resumed_promotion_writes_no_second_version(ssm: Any, store: ParameterStore) -> None:
    publish(store, 1)
    store.promote(PATH, "v1", None, T1)
    publish(store, 2)
    store.promote(PATH, "v2", "v1", T2)
    store.promote(PATH, "v2", "v1", T2)
    history = ssm.get_parameter_history(Name="/team/partners/acme")["Parameters"]
    assert [p["Version"] for p in history] == [1, 2]


def test_an_outside_version_is_never_overwritten(ssm: Any, store: ParameterStore) -> None:
    publish(store, 1)
    store.promote(PATH, "v1", None, T1)
    publish(store, 2)
    theirs = keyformat.generate("rk_live")
    tamper_ssm(ssm, store, PATH, theirs)
    with pytest.raises(ConflictError, match="put outside rotatectl"):
        store.promote(PATH, "v2", "v1", T2)
    assert read(ssm, "/team/partners/acme") == theirs
    assert any("put outside rotatectl" in line for line in store.drift(PATH))


def test_a_moved_label_is_drift_and_restored(ssm: Any, store: ParameterStore) -> None:
    publish(store, 1)
    store.promote(PATH, "v1", None, T1)
    publish(store, 2)
    store.promote(PATH, "v2", "v1", T2)
    ssm.label_parameter_version(Name="/team/partners/acme", ParameterVersion=1, Labels=["current"])
    problems = store.drift(PATH)
    assert problems == [
        "label current is on v1 (kid1, previous), not on v2 (kid2, current): it was moved "
        "outside rotatectl"
    ]
    store.restore(PATH, T2)
    assert store.drift(PATH) == []
    assert read(ssm, "/team/partners/acme:current") == value_for(2)


def test_the_record_is_one_create_only_parameter_per_write(
    ssm: Any, store: ParameterStore, tmp_path: Path
) -> None:
    store.acquire_lock(PATH, "host-a", TTL, T0)
    other = make_ssm(tmp_path, prefix="/team")  # read the same record, then race it
    other._read(PATH)
    lease = store.acquire_lock("partners/other", "host-a", TTL, T0)
    store.release_lock(lease)
    store.save_rotation(PATH, make_rotation(), 0)
    with pytest.raises(UsageError):
        other.parameter_name("partners/acme/.rotatectl")
    # `other` remembers an older record: its write loses the race and is re-decided.
    with pytest.raises(LockedError):
        other.acquire_lock(PATH, "host-b", TTL, T1)
    names = [
        p["Name"]
        for p in ssm.get_parameters_by_path(Path="/team/partners/acme/.rotatectl")["Parameters"]
    ]
    assert len(names) <= 2, names  # the ones below the parent are cleaned up


def test_a_stale_writer_re_creating_a_deleted_number_loses(
    ssm: Any, store: ParameterStore, tmp_path: Path
) -> None:
    """A writer that read record n long ago creates n+1 after a clean-up deleted it:
    the create succeeds, but the listing after it shows higher numbers, so it lost."""
    store.save_rotation(PATH, make_rotation(), 0)  # seq 1
    stale = make_ssm(tmp_path, prefix="/team")
    base = stale._read(PATH)
    for _ in range(4):
        lease = store.acquire_lock(PATH, "host-a", TTL, T0)
        store.release_lock(lease)  # seq 2..9: 2 and below deleted
    assert ssm.get_parameters(Names=["/team/partners/acme/.rotatectl/0000000002"])[
        "InvalidParameters"
    ]
    with pytest.raises(Exception) as info:
        stale._commit(PATH, base, base)
    assert type(info.value).__name__ == "CasLost"
    assert store.load_rotation(PATH)[1] == 1
    # Its junk was deleted, nothing else was.
    left = ssm.get_parameters_by_path(Path="/team/partners/acme/.rotatectl")["Parameters"]
    assert sorted(int(p["Name"].rpartition("/")[2]) for p in left) == [8, 9]


def test_the_record_stays_in_the_standard_tier(store: ParameterStore) -> None:
    engine = Rotations(store)
    for _ in range(12):
        engine.complete(PATH)
    record = store._read(PATH)
    assert len(record.history) == 10
    body = record.encode()
    assert len(body) <= 4096, len(body)
    assert _Record.decode(PATH, body, "test").versions == record.versions


def test_names_ssm_refuses(store: ParameterStore, tmp_path: Path) -> None:
    for path in ("partners/a+b", "a/" * 12 + "b"):
        with pytest.raises(StoreError):
            store.parameter_name(path)
    with pytest.raises(StoreError):
        make_ssm(tmp_path).parameter_name("ssm/x")
    assert make_ssm(tmp_path).parameter_name("zeta") == "/zeta"
    assert make_ssm(tmp_path, prefix="team/x/").parameter_name("p") == "/team/x/p"


def test_large_values_need_the_advanced_tier(ssm: Any, store: ParameterStore) -> None:
    publish(store, 1)
    store.promote(PATH, "v1", None, T1)
    store.publish(PATH, make_version(2), "k" * 8000)
    with pytest.raises(StoreError, match="8 KB"):
        store.publish(PATH, make_version(3), "k" * 9000)
    store.promote(PATH, "v2", "v1", T2 + timedelta(seconds=1))
    assert read(ssm, "/team/partners/acme") == "k" * 8000


class TestInProcessAtomicRecord(InProcess, AtomicRecordContract):
    pass


class TestOverHttpAtomicRecord(OverHttp, AtomicRecordContract):
    pass
