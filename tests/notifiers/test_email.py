"""The email notifier against a real SMTP server (aiosmtpd) with STARTTLS and AUTH."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from rotatectl.errors import ConfigError, NotifierError
from rotatectl.model import Event
from rotatectl.notifiers.email import EmailNotifier
from rotatectl.ports import AccessCheck, Notifier
from rotatectl.registry import AdapterContext, build
from rotatectl.testing.notifier_contract import NotifierWithSecretContract

from .conftest import PASSWORD, USER, Mailbox, free_port

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
ENV = {"SMTP_USER": USER, "SMTP_PASSWORD": PASSWORD}
EVENT = Event(
    kind="still-used",
    credential="partners/acme",
    at=T0,
    severity="warning",
    rotation_id="r1",
    version_id="v1",
    key_id="k1OLD",
    message="old key still used by 10.0.0.7",
    data={"clients": ["10.0.0.7", "billing"]},
)


def notifier(
    mailbox: Mailbox, certificate: tuple[Path, Path] | None, **kwargs: Any
) -> EmailNotifier:
    options: dict[str, Any] = {
        "sender": "rotatectl@example.com",
        "to": ["ops@example.com", "security@example.com"],
        "port": mailbox.port,
        "ca_file": certificate[0] if certificate else None,
        "username_env": "SMTP_USER",
        "password_env": "SMTP_PASSWORD",
        "env": ENV,
        "name": "notifiers.mail",
        "timeout": 5,
        "sleep": lambda s: None,
    }
    return EmailNotifier(mailbox.host, **{**options, **kwargs})


def test_mail_over_starttls_with_auth(tls_server: Mailbox, certificate: tuple[Path, Path]) -> None:
    mail = notifier(tls_server, certificate)
    assert isinstance(mail, Notifier)
    mail.notify(EVENT)
    (envelope, received) = tls_server.messages[0]
    assert tls_server.logins == [(USER.encode(), PASSWORD.encode())]
    assert envelope.mail_from == "rotatectl@example.com"
    assert envelope.rcpt_tos == ["ops@example.com", "security@example.com"]
    assert received["Subject"] == "[rotatectl] WARNING partners/acme: still-used"
    assert received["X-Rotatectl-Event"] == "still-used"
    body = received.get_body(("plain",))
    assert body is not None
    text = body.get_content().replace("\r\n", "\n")
    assert text.startswith("old key still used by 10.0.0.7\n\nCredential:  partners/acme\n")
    assert "clients:     10.0.0.7, billing\n" in text
    (attachment,) = list(received.iter_attachments())
    assert attachment.get_filename() == "event.json"
    assert json.loads(attachment.get_content()) == EVENT.to_dict()  # the payload is the event
    assert PASSWORD not in envelope.content.decode()  # type: ignore[union-attr]


def test_starttls_required_but_not_offered_sends_nothing(plain_server: Mailbox) -> None:
    with pytest.raises(NotifierError, match="does not offer STARTTLS") as info:
        notifier(plain_server, None).notify(EVENT)
    assert "after 1 attempt" in str(info.value)
    assert plain_server.messages == [] and plain_server.logins == []


def test_plain_smtp_when_allowed_but_never_credentials(plain_server: Mailbox) -> None:
    relay = notifier(plain_server, None, starttls=False, username_env=None, password_env=None)
    relay.notify(EVENT)
    assert len(plain_server.messages) == 1
    with pytest.raises(NotifierError, match="will not send credentials without TLS"):
        notifier(plain_server, None, starttls=False).notify(EVENT)
    assert plain_server.logins == []


def test_an_untrusted_certificate_is_refused(tls_server: Mailbox) -> None:
    with pytest.raises(NotifierError, match="certificate not trusted"):
        notifier(tls_server, None).notify(EVENT)
    assert tls_server.messages == [] and tls_server.logins == []


def test_a_wrong_password_is_not_retried_nor_shown(
    tls_server: Mailbox, certificate: tuple[Path, Path]
) -> None:
    wrong = {"SMTP_USER": USER, "SMTP_PASSWORD": "wrong-zz9-secret"}
    with pytest.raises(NotifierError) as info:
        notifier(tls_server, certificate, env=wrong).notify(EVENT)
    message = str(info.value)
    where = f"127.0.0.1:{tls_server.port}"
    assert message.startswith(
        f"email notifier notifiers.mail: still-used event not delivered via {where}: SMTP 535"
    )
    assert "after 1 attempt" in message
    assert "wrong-zz9-secret" not in message and PASSWORD not in message
    assert tls_server.messages == []


def test_a_temporary_refusal_is_retried(
    tls_server: Mailbox, certificate: tuple[Path, Path]
) -> None:
    tls_server.refuse.append("451 4.3.0 try again later")
    sleeps: list[float] = []
    notifier(tls_server, certificate, sleep=sleeps.append).notify(EVENT)
    assert len(tls_server.messages) == 1 and len(sleeps) == 1
    tls_server.refuse += ["554 5.7.1 rejected"]
    with pytest.raises(NotifierError, match=r"SMTP 554.*after 1 attempt"):
        notifier(tls_server, certificate).notify(EVENT)


def test_an_unreachable_server_is_retried_then_reported() -> None:
    sleeps: list[float] = []
    nowhere = Mailbox(port=free_port())
    with pytest.raises(NotifierError, match=r"no answer.*after 3 attempts"):
        notifier(nowhere, None, retries=2, sleep=sleeps.append).notify(EVENT)
    assert len(sleeps) == 2


def test_missing_credentials_in_the_environment(
    tls_server: Mailbox, certificate: tuple[Path, Path]
) -> None:
    ctx = AdapterContext(table="notifiers.mail", base_dir=Path("."), state_dir=Path("."), env={})
    mail = EmailNotifier.from_config(
        {
            "host": "127.0.0.1",
            "port": tls_server.port,
            "from": "rotatectl@example.com",
            "to": ["ops@example.com"],
            "ca_file": str(certificate[0]),
            "username_env": "SMTP_USER",
            "password_env": "SMTP_PASSWORD",
        },
        ctx,
    )
    assert isinstance(mail, AccessCheck)
    assert mail.check_access() == [
        "environment variable SMTP_USER (username_env) is not set",
        "environment variable SMTP_PASSWORD (password_env) is not set",
    ]
    with pytest.raises(NotifierError, match="SMTP_USER is not set"):
        mail.notify(EVENT)
    assert tls_server.messages == [] and tls_server.logins == []


def test_from_config(tmp_path: Path) -> None:
    ctx = AdapterContext(table="notifiers.mail", base_dir=tmp_path, state_dir=tmp_path, env=ENV)
    mail = build(
        "notifier",
        {
            "type": "email",
            "host": "smtp.example.com",
            "from": "Rotatectl <rotatectl@example.com>",
            "to": ["ops@example.com"],
            "ca_file": "ca.pem",
            "username_env": "SMTP_USER",
            "password_env": "SMTP_PASSWORD",
        },
        ctx,
    )
    assert isinstance(mail, EmailNotifier)
    assert (mail.port, mail.starttls, mail.timeout, mail.attempts) == (587, True, 10.0, 4)
    assert mail.ca_file == tmp_path / "ca.pem"


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"from": "a@b.c", "to": ["d@e.f"]}, "host"),
        ({"host": "h", "to": ["d@e.f"]}, "from"),
        ({"host": "h", "from": "nobody", "to": ["d@e.f"]}, "from"),
        ({"host": "h", "from": "a@b.c"}, "to"),
        ({"host": "h", "from": "a@b.c", "to": []}, "to"),
        ({"host": "h", "from": "a@b.c", "to": "d@e.f"}, "to"),
        ({"host": "h", "from": "a@b.c", "to": ["d@e.f", 3]}, "to"),
        ({"host": "h", "from": "a@b.c", "to": ["d@e.f"], "port": 0}, "port"),
        ({"host": "h", "from": "a@b.c", "to": ["d@e.f"], "starttls": "yes"}, "starttls"),
        ({"host": "h", "from": "a@b.c", "to": ["d@e.f"], "username_env": "U"}, "password_env"),
        ({"host": "h", "from": "a@b.c", "to": ["d@e.f"], "password_env": "P"}, "username_env"),
        ({"host": "h", "from": "a@b.c", "to": ["d@e.f"], "password": "x"}, "password"),
    ],
)
def test_from_config_rejects(settings: dict[str, Any], key: str) -> None:
    ctx = AdapterContext(table="notifiers.mail", base_dir=Path("."), state_dir=Path("."))
    with pytest.raises(ConfigError) as info:
        EmailNotifier.from_config(settings, ctx)
    assert f"[notifiers.mail] {key}:" in str(info.value)


# -- the contract and the access check ------------------------------------------------------


class TestEmailContract(NotifierWithSecretContract):
    @pytest.fixture
    def notifier(self, tls_server: Mailbox, certificate: tuple[Path, Path]) -> Notifier:
        self.mailbox, self.certificate = tls_server, certificate
        return notifier(tls_server, certificate)

    def received(self) -> list[str]:
        return [mail.as_string() for _, mail in self.mailbox.messages]

    def unreachable(self) -> Notifier:
        return notifier(Mailbox(port=free_port()), self.certificate, retries=0)

    def secrets(self) -> list[str]:
        return [PASSWORD]

    def missing_variable(self) -> tuple[Notifier, str]:
        mail = notifier(self.mailbox, self.certificate, env={"SMTP_USER": USER})
        return mail, "SMTP_PASSWORD"


def test_check_access_logs_in_and_sends_nothing(
    tls_server: Mailbox, certificate: tuple[Path, Path]
) -> None:
    assert notifier(tls_server, certificate).check_access() == []
    assert tls_server.logins == [(USER.encode(), PASSWORD.encode())]
    assert tls_server.messages == []


def test_check_access_reports_a_refused_login_without_the_password(
    tls_server: Mailbox, certificate: tuple[Path, Path]
) -> None:
    wrong = {"SMTP_USER": USER, "SMTP_PASSWORD": "wrong-zz9-secret"}
    (problem,) = notifier(tls_server, certificate, env=wrong).check_access()
    assert problem.startswith(f"SMTP server 127.0.0.1:{tls_server.port}: SMTP 535")
    assert "wrong-zz9-secret" not in problem and PASSWORD not in problem
    assert tls_server.messages == []


def test_check_access_reports_tls_problems(
    tls_server: Mailbox, plain_server: Mailbox, certificate: tuple[Path, Path]
) -> None:
    (untrusted,) = notifier(tls_server, None).check_access()
    assert untrusted.startswith(
        f"SMTP server 127.0.0.1:{tls_server.port}: TLS certificate not trusted"
    )
    (no_starttls,) = notifier(plain_server, None).check_access()
    assert no_starttls.endswith("does not offer STARTTLS (starttls = true)")
    (cleartext,) = notifier(plain_server, None, starttls=False).check_access()
    assert cleartext.endswith("will not send credentials without TLS")
    relay = notifier(plain_server, None, starttls=False, username_env=None, password_env=None)
    assert relay.check_access() == []
    assert tls_server.logins == plain_server.logins == []
    assert tls_server.messages == plain_server.messages == []


def test_check_access_names_an_unreachable_server_and_an_unknown_host() -> None:
    port = free_port()
    (refused,) = notifier(Mailbox(port=port), None).check_access()
    assert refused == f"cannot reach SMTP server 127.0.0.1:{port}: connection refused"
    (unknown,) = notifier(Mailbox(host="smtp.invalid", port=587), None).check_access()
    assert unknown.startswith("cannot reach SMTP server smtp.invalid:587: host not found")
