"""The default probe: usage is not measured, so the overlap alone decides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Self

from ..model import KeyUsage, UsageStatus
from ..registry import AdapterContext, check_settings


class NoProbe:
    """Answers NOT_MEASURED for every key id."""

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Takes no settings."""
        check_settings(settings, ctx, {})
        return cls()

    def usage(
        self, credential: str, key_ids: Sequence[str], since: datetime, now: datetime
    ) -> dict[str, KeyUsage]:
        return {key_id: KeyUsage(status=UsageStatus.NOT_MEASURED) for key_id in key_ids}
