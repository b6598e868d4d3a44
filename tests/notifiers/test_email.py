"""The email notifier against a real SMTP server (aiosmtpd) with STARTTLS and AUTH."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rotatectl.errors import ConfigError, NotifierError
from rotatectl.model import Event
from rotatectl.notifiers.email import EmailNotifier
from rotatectl.ports import AccessCheck, Notifier
from rotatectl.registry import AdapterContext, build

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
USER, PASSWORD = "rotatectl", "smtp-pass-zz9plural-DO-NOT-LEAK"
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


@dataclass
class Mailbox:
    """What the test server received; ``refuse`` holds SMTP replies for the next DATA."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    refuse: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse:
            return self.refuse.pop(0)
        assert isinstance(envelope.content, bytes)
        mail = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        self.messages.append((envelope, mail))
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password))
        ok = (data.login, data.password) == (USER.encode(), PASSWORD.encode())
        # handled=False: aiosmtpd then answers 535 itself on failure.
        return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert.pem doubles as the CA file)."""
    root = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rotatectl test SMTP")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = root / "cert.pem", root / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve(mailbox: Mailbox, **smtp: Any) -> Iterator[Mailbox]:
    mailbox.port = free_port()
    controller = Controller(mailbox, hostname=mailbox.host, port=mailbox.port, **smtp)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[Mailbox]:
    """STARTTLS required, AUTH only over TLS."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    mailbox = Mailbox()
    yield from serve(
        mailbox,
        tls_context=context,
        require_starttls=True,
        authenticator=mailbox.authenticate,
        auth_require_tls=True,
    )


@pytest.fixture
def plain_server() -> Iterator[Mailbox]:
    """No TLS at all (a local relay)."""
    mailbox = Mailbox()
    yield from serve(mailbox, authenticator=mailbox.authenticate, auth_require_tls=False)


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


def test_missing_credentials_in_the_environment(tls_server: Mailbox) -> None:
    ctx = AdapterContext(table="notifiers.mail", base_dir=Path("."), state_dir=Path("."), env={})
    mail = EmailNotifier.from_config(
        {
            "host": "127.0.0.1",
            "port": tls_server.port,
            "from": "rotatectl@example.com",
            "to": ["ops@example.com"],
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
    assert tls_server.messages == []


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
    assert mail.check_access() == []


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
