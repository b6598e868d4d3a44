"""IAM last-used probe (``type = "aws-iam"``): ``GetAccessKeyLastUsed`` per key id.

IAM reports usage late and coarsely: the IAM User Guide ("Refine permissions
in AWS using last accessed information") says recent activity *usually*
appears within **4 hours**, and ``GetAccessKeyLastUsed`` returns only the
latest use (no count, no client). A key therefore looks quiet for up to ~4
hours after its last real use. This probe cannot see into that window, so a
credential gated by it needs ``usage_quiet`` of at least the reporting delay
plus the quiet time wanted: :attr:`IamLastUsedProbe.recommended_usage_quiet`
is 6 hours (4 h delay + 2 h margin, since "usually" is no guarantee).
examples/aws/rotatectl.toml sets it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from ..aws_common import SETTINGS, AwsConnection, AwsExpected
from ..errors import RotatectlError
from ..model import KeyUsage, UsageStatus, iso
from ..registry import AdapterContext, check_settings

# Documented example id from the AWS docs: never a real key, safe for a probe.
_PROBE_KEY_ID = "AKIAIOSFODNN7EXAMPLE"


class IamLastUsedProbe:
    """Answers from IAM's access-key last-used data.

    SEEN with ``last_seen`` when IAM recorded a use at or after ``since``;
    NOT_SEEN when it recorded none since then, the key was never used, or the
    key no longer exists. Raises ProbeError (the runner then treats usage as
    unknown and keeps the gate closed) when IAM cannot be read, including a
    denied ``iam:GetAccessKeyLastUsed``.
    """

    reporting_delay = timedelta(hours=4)  # IAM User Guide: "usually ... within 4 hours"
    recommended_usage_quiet = timedelta(hours=6)

    def __init__(self, conn: AwsConnection) -> None:
        self.conn = conn

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: the shared AWS keys (``region``, ``profile``, ``endpoint_url``, ...)."""
        check_settings(settings, ctx, SETTINGS)
        return cls(
            AwsConnection.from_settings(settings, ctx, kind="probe", default_region="us-east-1")
        )

    def usage(
        self, credential: str, key_ids: Sequence[str], since: datetime, now: datetime
    ) -> dict[str, KeyUsage]:
        return {key_id: self._one(credential, key_id, since, now) for key_id in key_ids}

    def _one(self, credential: str, key_id: str, since: datetime, now: datetime) -> KeyUsage:
        try:
            out = self.conn.call(
                "iam",
                "get_access_key_last_used",
                where=f"{credential}: access key {key_id}",
                expect={"NoSuchEntity"},
                AccessKeyId=key_id,
            )
        except AwsExpected:
            return KeyUsage(UsageStatus.NOT_SEEN, detail="the key no longer exists")
        info = out.get("AccessKeyLastUsed", {})
        last: datetime | None = info.get("LastUsedDate")
        if last is None:
            return KeyUsage(UsageStatus.NOT_SEEN, detail="never used (per IAM)")
        last = last.astimezone(UTC) if last.tzinfo else last.replace(tzinfo=UTC)
        where = f"{info.get('ServiceName', '?')} in {info.get('Region', '?')}"
        if last < since:
            return KeyUsage(
                UsageStatus.NOT_SEEN,
                detail=f"last used {iso(last)} ({where}), before the window; "
                "IAM reports up to ~4h late",
            )
        return KeyUsage(
            UsageStatus.SEEN,
            last_seen=min(last, now),
            count=1,
            detail=f"last used with {where} (IAM reports up to ~4h late)",
        )

    def check_access(self) -> list[str]:
        """[] when ``iam:GetAccessKeyLastUsed`` is allowed, else the denial (one line)."""
        try:
            self.conn.call(
                "iam",
                "get_access_key_last_used",
                where="usage probe",
                expect={"NoSuchEntity"},
                AccessKeyId=_PROBE_KEY_ID,
            )
        except AwsExpected:
            pass
        except RotatectlError as exc:
            return [str(exc)]
        return []
