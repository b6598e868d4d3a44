"""The contract every Notifier passes (keyring-style: subclass it in a test file).

Usage::

    class TestMyNotifier(NotifierContract):
        @pytest.fixture
        def notifier(self, server) -> Notifier:
            self.server = server           # a real endpoint; fixtures may stash state on self
            return MyNotifier(server.url, secret_env="MY_SECRET", env={"MY_SECRET": SECRET})

        def received(self) -> list[str]:
            return [m.text for m in self.server.messages]   # every delivery, oldest first

        def unreachable(self) -> Notifier:
            return MyNotifier(CLOSED_PORT_URL, ...)         # same secrets, nowhere to go

        def secrets(self) -> list[str]:
            return [SECRET, "/the/url/token"]               # never in an error or problem

        def missing_variable(self) -> tuple[Notifier, str] | None:
            return MyNotifier(..., env={}), "MY_SECRET"     # optional

What ``rotatectl check`` and the engine rely on: a notifier delivers an event
(and nothing it knows as a secret goes with it); a failure to deliver raises
:class:`~rotatectl.errors.NotifierError` and nothing else; ``check_access``
(:class:`~rotatectl.ports.AccessCheck`) finds what would make a delivery fail —
an unreachable endpoint, an unset variable — without sending anything, and
its problem lines never hold a secret.

:meth:`NotifierContract.unreachable` should fail fast: a closed loopback port
or a missing directory, with no retry sleeps. The class is deliberately not
named ``Test*`` so pytest collects it only through subclasses.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ..errors import NotifierError
from ..model import Event
from ..ports import AccessCheck, Notifier

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
EVENT = Event(
    kind="still-used",
    credential="partners/acme",
    at=T0,
    severity="warning",
    rotation_id="r1",
    version_id="v1",
    key_id="k1OLD",
    message="old key still used by 10.0.0.7",
    data={"clients": ["10.0.0.7"], "count": 3},
)


class NotifierContract:
    """Behaviour ``check``, the engine and the CLI rely on from any notifier
    (not collected by itself)."""

    # -- what a subclass provides ----------------------------------------------

    @pytest.fixture
    def notifier(self) -> Notifier:
        raise NotImplementedError("subclasses provide the `notifier` fixture")

    def received(self) -> list[str]:
        """Every delivery the ``notifier`` fixture's endpoint got so far, as text
        (a body, a mail, a line), oldest first."""
        raise NotImplementedError("subclasses implement received")

    def unreachable(self) -> Notifier:
        """A notifier of the same kind, holding the same secrets, whose endpoint
        cannot be reached (fails fast: no retry sleeps)."""
        raise NotImplementedError("subclasses implement unreachable")

    def secrets(self) -> list[str]:
        """What the notifiers know that no error, problem line or delivery may show
        (a token, a URL's secret path, an HMAC secret, a password)."""
        return []

    def missing_variable(self) -> tuple[Notifier, str] | None:
        """A notifier whose required environment variable is unset, and that
        variable's name; None when the kind reads no variable."""
        return None

    # -- helpers ------------------------------------------------------------------

    def assert_no_secret(self, text: str, what: str) -> None:
        for secret in self.secrets():
            assert secret not in text, f"a secret leaked into {what}: {text!r}"

    def assert_problem_lines(self, problems: object) -> list[str]:
        assert isinstance(problems, list), f"check_access returned {problems!r}"
        for line in problems:
            assert isinstance(line, str) and line.strip(), f"empty problem line in {problems!r}"
            assert "\n" not in line, f"a problem is one line: {line!r}"
            self.assert_no_secret(line, "a problem line")
        return problems

    # -- the contract ---------------------------------------------------------------

    def test_is_a_notifier_with_an_access_check(self, notifier: Notifier) -> None:
        assert isinstance(notifier, Notifier)
        assert isinstance(notifier, AccessCheck), "rotatectl check asks every notifier"

    def test_delivers_the_event_without_a_secret(self, notifier: Notifier) -> None:
        before = len(self.received())
        notifier.notify(EVENT)
        deliveries = self.received()[before:]
        assert len(deliveries) == 1, f"one event, one delivery: got {len(deliveries)}"
        (delivery,) = deliveries
        assert EVENT.credential in delivery and EVENT.kind in delivery
        self.assert_no_secret(delivery, "the delivery")

    def test_check_access_is_empty_when_reachable(self, notifier: Notifier) -> None:
        assert isinstance(notifier, AccessCheck)
        before = self.received()
        assert self.assert_problem_lines(notifier.check_access()) == []
        assert self.received() == before, "check_access sent something"

    def test_check_access_reports_an_unreachable_endpoint(self, notifier: Notifier) -> None:
        broken = self.unreachable()
        assert isinstance(broken, AccessCheck)
        before = self.received()
        problems = self.assert_problem_lines(broken.check_access())
        assert problems, "an unreachable endpoint is a problem"
        assert self.received() == before

    def test_an_unreachable_endpoint_raises_notifier_error(self, notifier: Notifier) -> None:
        before = self.received()
        with pytest.raises(NotifierError) as info:  # anything else fails the test
            self.unreachable().notify(EVENT)
        assert str(info.value).strip()
        self.assert_no_secret(str(info.value), "the error")
        assert self.received() == before


class NotifierWithSecretContract(NotifierContract):
    """The contract of a notifier that reads a secret from the environment (a token,
    a password, an HMAC key): ``missing_variable`` must give one."""

    def test_a_missing_variable_is_named_and_nothing_is_sent(self, notifier: Notifier) -> None:
        missing = self.missing_variable()
        assert missing is not None, "a notifier with secrets names its variable"
        broken, variable = missing
        assert isinstance(broken, AccessCheck)
        before = self.received()
        problems = self.assert_problem_lines(broken.check_access())
        assert any(variable in line for line in problems), problems
        with pytest.raises(NotifierError, match=variable) as info:
            broken.notify(EVENT)
        self.assert_no_secret(str(info.value), "the error")
        assert self.received() == before, "sent although a variable is unset"
