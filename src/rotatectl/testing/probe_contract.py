"""The contract every UsageProbe passes (keyring-style: subclass it in a test file).

Usage::

    class TestMyProbe(ProbeContract):
        @pytest.fixture
        def probe(self, tmp_path) -> UsageProbe:
            self.source = ...            # fresh and empty; fixtures may stash state on self
            return MyProbe(...)

        def record_use(self, key_id, at, client=None, *, rejected=False) -> None:
            ...                          # make the source show one use of key_id at `at`

        def unreadable(self) -> UsageProbe:
            return MyProbe(...)          # same kind, but its source cannot be read at all

Time is the contract's: tests move it with :meth:`ProbeContract.advance` and
only ever record a use at ``self.now()``, so a live source (a real server
that stamps uses as they happen) overrides :meth:`now` with the real clock,
:meth:`advance` with a sleep and :meth:`settle` with "wait until the source
shows what was recorded". A static source (a file, a fake) keeps the defaults:
a clock that starts at :data:`T0` and moves only when told.

Class attributes describe what the source can tell, so one suite fits all:
``resolution`` (how far outside the window a use may still be counted: the
source's rounding), ``tick`` (seconds between events that must be told
apart; a live source keeps it short), ``complete_history`` (False when the source may answer
UNKNOWN for an unused key because its history does not reach back to the
window start), ``exact_counts``, ``names_clients``, ``reports_rejections``.

The class is deliberately not named ``Test*`` so pytest collects it only
through subclasses.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ..errors import ProbeError
from ..model import KeyUsage, UsageStatus
from ..ports import UsageProbe

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CREDENTIAL = "partners/acme"
# Planted in the source where a key value could sit (see plant_secret); never in a report.
CANARY = "rk_live_CANARYzz9pluralZalphaSECRETvalue0000"


class ProbeContract:
    """Behaviour the usage gate relies on from any probe (not collected by itself)."""

    resolution: timedelta = timedelta(0)
    tick: float = 1.0
    complete_history: bool = True
    exact_counts: bool = True
    names_clients: bool = True
    reports_rejections: bool = True

    # -- what a subclass provides ----------------------------------------------

    @pytest.fixture
    def probe(self) -> UsageProbe:
        raise NotImplementedError("subclasses provide the `probe` fixture")

    def record_use(
        self, key_id: str, at: datetime, client: str | None = None, *, rejected: bool = False
    ) -> None:
        """Make the source show one use of ``key_id`` at ``at`` (always ``self.now()``),
        by ``client`` when given, rejected by the verifier when ``rejected``."""
        raise NotImplementedError("subclasses implement record_use")

    def unreadable(self) -> UsageProbe:
        """A probe of the same kind whose source cannot be read at all."""
        raise NotImplementedError("subclasses implement unreadable")

    def plant_secret(self, value: str) -> None:
        """Put ``value`` into the source where a careless probe could echo it
        (e.g. a log line carrying the raw key). Optional: the default plants nothing."""

    _clock: datetime = T0  # pytest makes a fresh instance per test: the clock restarts

    def now(self) -> datetime:
        """The source's current time."""
        return self._clock

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass."""
        self._clock = self._clock + timedelta(seconds=seconds)

    def settle(self) -> None:
        """Wait until every recorded use is visible to the probe."""

    # -- helpers ------------------------------------------------------------------

    def use(self, key_id: str, client: str | None = None, *, rejected: bool = False) -> datetime:
        at = self.now()
        self.record_use(key_id, at, client, rejected=rejected)
        return at

    def unseen(self) -> tuple[UsageStatus, ...]:
        """The statuses an unused key may get."""
        if self.complete_history:
            return (UsageStatus.NOT_SEEN,)
        return (UsageStatus.NOT_SEEN, UsageStatus.UNKNOWN)

    def gap(self) -> float:
        """Seconds that put a use safely outside a window edge."""
        return self.resolution.total_seconds() + self.tick

    def ask(
        self, probe: UsageProbe, key_ids: list[str], since: datetime, now: datetime
    ) -> dict[str, KeyUsage]:
        answer = probe.usage(CREDENTIAL, key_ids, since, now)
        assert set(answer) == set(key_ids), "every requested key id gets an answer, no more"
        for key_id, usage in answer.items():
            assert isinstance(usage, KeyUsage), key_id
            assert isinstance(usage.status, UsageStatus), key_id
            if usage.status is UsageStatus.SEEN:
                assert usage.last_seen is not None, f"{key_id}: SEEN without last_seen"
                assert usage.last_seen.tzinfo is not None, f"{key_id}: naive last_seen"
                assert since <= usage.last_seen <= now, f"{key_id}: last_seen outside window"
                assert usage.count >= 1, f"{key_id}: SEEN with count {usage.count}"
            else:
                assert usage.last_seen is None, f"{key_id}: {usage.status} with last_seen"
                assert usage.count == 0, f"{key_id}: {usage.status} with a count"
                assert usage.clients == (), f"{key_id}: {usage.status} with clients"
            assert 0 <= usage.rejected <= usage.count, f"{key_id}: rejected > count"
            assert list(usage.clients) == sorted(set(usage.clients)), f"{key_id}: clients"
        return answer

    # -- the contract ---------------------------------------------------------------

    def test_is_a_usage_probe(self, probe: UsageProbe) -> None:
        assert isinstance(probe, UsageProbe)

    def test_no_key_ids_no_answers(self, probe: UsageProbe) -> None:
        self.settle()
        assert probe.usage(CREDENTIAL, [], self.now() - timedelta(minutes=5), self.now()) == {}

    def test_unused_keys_are_not_seen(self, probe: UsageProbe) -> None:
        start = self.now()
        self.use("k-used")
        self.settle()
        answer = self.ask(probe, ["k-never", "k-other"], start - timedelta(minutes=5), self.now())
        assert all(u.status in self.unseen() for u in answer.values()), answer

    def test_a_use_in_the_window_is_seen(self, probe: UsageProbe) -> None:
        start = self.now()
        self.advance(self.tick)
        self.use("k1")
        self.advance(self.tick)
        last = self.use("k1")
        self.use("k2")
        self.advance(self.tick)
        self.settle()
        now = self.now()
        answer = self.ask(probe, ["k1", "k2", "k3"], start - timedelta(minutes=5), now)
        k1 = answer["k1"]
        assert k1.status is UsageStatus.SEEN
        assert k1.last_seen is not None and k1.last_seen >= last - self.resolution
        if self.exact_counts:
            assert k1.count == 2
            assert answer["k2"].count == 1
        assert answer["k2"].status is UsageStatus.SEEN
        assert answer["k3"].status in self.unseen()

    def test_a_use_before_the_window_is_not_seen(self, probe: UsageProbe) -> None:
        self.use("k1")
        self.advance(self.gap())
        since = self.now()
        self.advance(self.tick)
        self.settle()
        answer = self.ask(probe, ["k1"], since, self.now())
        assert answer["k1"].status in self.unseen()

    def test_a_use_after_now_is_not_seen(self, probe: UsageProbe) -> None:
        self.advance(self.tick)
        now = self.now()
        self.advance(self.gap())
        self.use("k1")
        self.settle()
        answer = self.ask(probe, ["k1"], now - timedelta(minutes=5), now)
        assert answer["k1"].status in self.unseen()

    def test_clients_are_named(self, probe: UsageProbe) -> None:
        if not self.names_clients:
            pytest.skip("this source does not name clients")
        start = self.now()
        self.use("k1", "10.0.0.7")
        self.use("k1", "svc-billing")
        self.use("k1", "10.0.0.7")
        self.use("k2")
        self.advance(self.tick)
        self.settle()
        answer = self.ask(probe, ["k1", "k2"], start - timedelta(minutes=5), self.now())
        assert answer["k1"].clients == ("10.0.0.7", "svc-billing")
        assert answer["k2"].clients == ()

    def test_rejected_attempts_are_usage_and_counted(self, probe: UsageProbe) -> None:
        if not self.reports_rejections:
            pytest.skip("this source does not report rejected attempts")
        start = self.now()
        self.use("k-new", rejected=True)
        self.use("k-new")
        self.use("k-new", rejected=True)
        self.use("k-ok")
        self.advance(self.tick)
        self.settle()
        answer = self.ask(probe, ["k-new", "k-ok"], start - timedelta(minutes=5), self.now())
        assert answer["k-new"].status is UsageStatus.SEEN
        if self.exact_counts:
            assert (answer["k-new"].count, answer["k-new"].rejected) == (3, 2)
        else:
            assert answer["k-new"].rejected >= 1
        assert answer["k-ok"].rejected == 0

    def test_later_uses_show_up_in_a_later_answer(self, probe: UsageProbe) -> None:
        start = self.now()
        self.use("k1")
        self.advance(self.tick)
        self.settle()
        first = self.ask(probe, ["k1", "k2"], start - timedelta(minutes=5), self.now())
        again = self.ask(probe, ["k1", "k2"], start - timedelta(minutes=5), self.now())
        assert again == first, "asking twice about the same window gives the same answer"
        self.advance(self.tick)
        self.use("k2")
        self.use("k1")
        self.advance(self.tick)
        self.settle()
        later = self.ask(probe, ["k1", "k2"], start - timedelta(minutes=5), self.now())
        assert later["k2"].status is UsageStatus.SEEN
        if self.exact_counts:
            assert later["k1"].count == 2

    def test_no_key_value_in_the_report(self, probe: UsageProbe) -> None:
        start = self.now()
        self.plant_secret(CANARY)
        self.use("k1", "10.0.0.7")
        self.advance(self.tick)
        self.settle()
        answer = self.ask(probe, ["k1", "k2"], start - timedelta(minutes=5), self.now())
        assert CANARY not in repr(answer)
        assert CANARY[8:20] not in repr(answer)  # not even a fragment of it

    def test_an_unreadable_source_raises_probe_error(self, probe: UsageProbe) -> None:
        broken = self.unreadable()
        with pytest.raises(ProbeError) as info:
            broken.usage(CREDENTIAL, ["k1"], self.now() - timedelta(minutes=5), self.now())
        assert CANARY not in str(info.value)
