"""The in-memory FakeProbe passes the probe contract too: engine tests can trust it."""

from __future__ import annotations

from datetime import datetime

import pytest

from rotatectl.ports import UsageProbe
from rotatectl.testing.fakes import FakeProbe
from rotatectl.testing.probe_contract import CREDENTIAL, ProbeContract


class TestFakeProbeContract(ProbeContract):
    @pytest.fixture
    def probe(self) -> UsageProbe:
        self.fake = FakeProbe()
        return self.fake

    def record_use(
        self, key_id: str, at: datetime, client: str | None = None, *, rejected: bool = False
    ) -> None:
        self.fake.see(key_id, at, client, CREDENTIAL, result="rejected" if rejected else "ok")

    def unreadable(self) -> UsageProbe:
        broken = FakeProbe()
        broken.fail = True
        return broken
