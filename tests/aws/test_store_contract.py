"""SecretsManagerStore passes the core store contract and every feature contract, in
process (moto's mock_aws) and over HTTP (moto_server)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.core import enable_iam_authentication

from rotatectl.stores.aws import SecretsManagerStore
from rotatectl.testing.feature_contracts import (
    AccessCheckContract,
    AtomicRecordContract,
    BatchedReadsContract,
    DriftContract,
    HistoryContract,
    RollingWindowContract,
    StateContract,
)
from rotatectl.testing.store_contract import StoreContract

from .conftest import REGION, AuthServer, MotoServer, make_store

ALLOW_ALL = [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
NO_PUT = [
    {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
    {"Effect": "Deny", "Action": "secretsmanager:PutSecretValue", "Resource": "*"},
]


def tamper_aws(sm: Any, store: SecretsManagerStore, path: str, value: str) -> None:
    """What someone with the AWS console or CLI does: put a new version and make it
    AWSCURRENT (AWS moves AWSPREVIOUS to the version that had AWSCURRENT).

    Two calls, not ``put_secret_value(VersionStages=["AWSCURRENT"])``: moto 5 gives
    AWSPREVIOUS to the first version it created and leaves AWSCURRENT on the one
    rotatectl moved it to, so the label would sit on two versions, which AWS never does.
    """
    name = store.secret_name(path)
    new = sm.put_secret_value(SecretId=name, SecretString=value, VersionStages=["outsider"])
    stages = sm.describe_secret(SecretId=name)["VersionIdsToStages"]
    [current] = [v for v, labels in stages.items() if "AWSCURRENT" in labels]
    sm.update_secret_version_stage(
        SecretId=name,
        VersionStage="AWSCURRENT",
        MoveToVersionId=new["VersionId"],
        RemoveFromVersionId=current,
    )


def iam_user(iam: Any, statements: list[dict[str, Any]]) -> tuple[str, str]:
    """A new IAM user with an inline policy; its access key (id, secret)."""
    name = f"contract-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    iam.put_user_policy(
        UserName=name,
        PolicyName="rotatectl-contract",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


class InProcess:
    @pytest.fixture
    def store(self, mocked: None, tmp_path: Path) -> Iterator[SecretsManagerStore]:
        s = make_store(tmp_path)
        yield s
        s.close()

    def tamper(self, store: SecretsManagerStore, path: str, value: str) -> None:
        tamper_aws(boto3.client("secretsmanager", region_name=REGION), store, path, value)


class OverHttp:
    @pytest.fixture
    def store(self, moto: MotoServer, tmp_path: Path) -> Iterator[SecretsManagerStore]:
        self.moto = moto
        s = make_store(tmp_path, moto.url)
        yield s
        s.close()

    def tamper(self, store: SecretsManagerStore, path: str, value: str) -> None:
        tamper_aws(self.moto.client("secretsmanager"), store, path, value)


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
    def store(self, mocked: None, tmp_path: Path) -> Iterator[SecretsManagerStore]:
        self.tmp_path = tmp_path
        self.admin = iam_user(boto3.client("iam", region_name=REGION), ALLOW_ALL)
        with enable_iam_authentication():
            s = make_store(tmp_path)
            s.conn.session.set_credentials(*self.admin)
            yield s
            s.close()

    def denied(self, store: SecretsManagerStore) -> tuple[SecretsManagerStore, str]:
        iam = boto3.client(
            "iam",
            region_name=REGION,
            aws_access_key_id=self.admin[0],
            aws_secret_access_key=self.admin[1],
        )
        weak = make_store(self.tmp_path)
        weak.conn.session.set_credentials(*iam_user(iam, NO_PUT))
        return weak, "secretsmanager:PutSecretValue"


class TestOverHttpAccessCheck(AccessCheckContract):
    """moto_server with IAM enforced (its own server); each test under its own prefix."""

    @pytest.fixture
    def store(self, moto_auth: AuthServer, tmp_path: Path) -> Iterator[SecretsManagerStore]:
        self.auth, self.tmp_path = moto_auth, tmp_path
        self.prefix = f"t{uuid.uuid4().hex[:10]}/"
        s = make_store(tmp_path, moto_auth.url, prefix=self.prefix)
        s.conn.session.set_credentials(
            moto_auth.admin["AccessKeyId"], moto_auth.admin["SecretAccessKey"]
        )
        yield s
        s.close()

    def denied(self, store: SecretsManagerStore) -> tuple[SecretsManagerStore, str]:
        weak = make_store(self.tmp_path, self.auth.url, prefix=self.prefix)
        weak.conn.session.set_credentials(*iam_user(self.auth.client("iam"), NO_PUT))
        return weak, "secretsmanager:PutSecretValue"


class TestInProcessAtomicRecord(InProcess, AtomicRecordContract):
    pass


class TestOverHttpAtomicRecord(OverHttp, AtomicRecordContract):
    pass
