"""Which Secrets Manager calls rotatectl needs are denied (the store's AccessCheck):
:class:`AccessMixin`, inherited by :class:`~rotatectl.stores.aws.store.SecretsManagerStore`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...aws_common import AwsExpected
from ...errors import RotatectlError
from .layout import CURRENT, ROLE_KEY, STAGED, secret_tags


class AccessMixin:
    """The AccessCheck method of SecretsManagerStore."""

    if TYPE_CHECKING:  # what it uses of the store: SecretsManagerStore (store.py)

        def list_paths(self) -> list[str]: ...

        def secret_name(self, path: str) -> str: ...

        def _sm(
            self,
            method: str,
            name: str,
            expect: frozenset[str] | set[str] = frozenset(),
            **params: Any,
        ) -> dict[str, Any]: ...

    def check_access(self, paths: Sequence[str] = ()) -> list[str]:
        """Which Secrets Manager calls rotatectl needs are denied, one line each.

        Probes each action with a harmless call whose answer tells "allowed"
        (e.g. ResourceNotFound for a name that does not exist) from "denied",
        so it needs no permission beyond the ones it checks. The probes name
        secrets under ``paths`` (the configured credentials': a policy scoped to
        their names is checked as it applies to them), else under a path the
        store holds. CreateSecret can only be probed against an existing secret
        (it then fails harmlessly with ResourceExists); with none yet it is not
        checked.
        """
        problems: list[str] = []
        try:
            held = self.list_paths()  # ListSecrets: status and run need it too
        except RotatectlError as exc:
            return [str(exc)]
        wanted = list(paths) or held
        base = wanted[0] if wanted else "rotatectl-access-check"
        probe = self.secret_name(base) + "/.rotatectl-access-check"
        exists_here = [p for p in wanted if p in set(held)]
        existing = self.secret_name(exists_here[0]) if exists_here else None
        token = str(uuid.uuid4())
        tags = secret_tags("rotatectl-access-check", ROLE_KEY)
        calls: list[tuple[str, dict[str, Any]]] = [
            ("describe_secret", {"SecretId": probe}),
            ("get_secret_value", {"SecretId": probe, "VersionStage": CURRENT}),
            ("batch_get_secret_value", {"SecretIdList": [probe]}),
            (
                "update_secret_version_stage",
                {"SecretId": probe, "VersionStage": STAGED, "MoveToVersionId": token},
            ),
            ("tag_resource", {"SecretId": probe, "Tags": tags}),
        ]
        try:
            self._sm("describe_secret", probe, expect={"ResourceNotFoundException"}, SecretId=probe)
            exists = True
        except AwsExpected:
            exists = False
        except RotatectlError as exc:
            problems.append(str(exc))
            exists = True  # unknown: do not risk a write probe
        if not exists:
            calls.append(
                (
                    "put_secret_value",
                    {"SecretId": probe, "ClientRequestToken": token, "SecretString": "-"},
                )
            )
        if existing is not None:
            calls.append(("create_secret", {"Name": existing, "SecretString": "-", "Tags": tags}))
        harmless = {
            "ResourceNotFoundException",
            "ResourceExistsException",
            "InvalidParameterException",
            "InvalidRequestException",
        }
        for method, params in calls:
            if method == "describe_secret":
                continue  # done above
            try:
                self._sm(
                    method,
                    existing if method == "create_secret" and existing else probe,
                    expect=harmless,
                    **params,
                )
            except AwsExpected:
                continue
            except RotatectlError as exc:
                problems.append(str(exc))
        return problems
