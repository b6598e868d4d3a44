"""Notifier that mails each event over SMTP, with STARTTLS.

Subject: ``[rotatectl] WARNING partners/acme: still-used``. The body is a
short plain-text summary; the event itself is attached as ``event.json``
(``Event.to_dict()``), for filters and scripts.

TLS: with ``starttls = true`` (the default) the server must offer STARTTLS
and its certificate must verify (against ``ca_file`` when given, else the
system store), or nothing is sent. With ``starttls = false`` STARTTLS is
still used when offered, plain SMTP otherwise, but credentials are never
sent in the clear. Credentials come from the environment variables
``username_env`` and ``password_env`` (both or neither), read when a mail is
sent.

Connection errors, timeouts and 4xx replies are retried ``retries`` times
with backoff; 5xx replies (a refused login, sender or recipient) are not.
A final failure raises NotifierError naming the notifier, the server and
the SMTP status, never the password or the message.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Self

from ..errors import NotifierError
from ..model import Event, iso
from ..registry import AdapterContext, check_settings
from .base import NotifierBase, failure, scrub, unset
from .webhook import Permanent, Transient, deliver, delivery_settings, env_name, serialise


def subject(event: Event) -> str:
    return f"[rotatectl] {event.severity.upper()} {event.credential}: {event.kind}"


def compose(event: Event, sender: str, to: Sequence[str]) -> EmailMessage:
    """The mail for ``event``: a text summary plus the event as event.json."""
    mail = EmailMessage()
    mail["Subject"] = subject(event)
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain="rotatectl")
    mail["X-Rotatectl-Event"] = event.kind
    lines = [event.message or event.kind, ""]
    for label, value in (
        ("Credential", event.credential),
        ("Event", event.kind),
        ("Severity", event.severity),
        ("At", iso(event.at)),
        ("Rotation", event.rotation_id),
        ("Version", event.version_id),
        ("Key id", event.key_id),
    ):
        if value:
            lines.append(f"{label + ':':12} {value}")
    for key, value in sorted(event.data.items()):
        shown = ", ".join(map(str, value)) if isinstance(value, list | tuple) else value
        lines.append(f"{str(key) + ':':12} {shown}")
    mail.set_content("\n".join(lines) + "\n")
    mail.add_attachment(
        serialise(event), maintype="application", subtype="json", filename="event.json"
    )
    return mail


class EmailNotifier(NotifierBase):
    """Mails events over SMTP; see the module docstring."""

    def __init__(
        self,
        host: str,
        *,
        sender: str,
        to: Sequence[str],
        port: int = 587,
        starttls: bool = True,
        ca_file: Path | None = None,
        username_env: str | None = None,
        password_env: str | None = None,
        env: Mapping[str, str] | None = None,
        name: str = "email",
        timeout: float = 10.0,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.host, self.port = host, port
        self.sender, self.to = sender, tuple(to)
        self.starttls = starttls
        self.ca_file = ca_file
        self.username_env, self.password_env = username_env, password_env
        self.env = env if env is not None else {}
        self.name = name
        self.timeout = timeout
        self.attempts = retries + 1
        self.sleep = sleep

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: ``host``, ``from``, ``to`` (required), ``port`` (default 587),
        ``starttls`` (default true), ``ca_file``, ``username_env``, ``password_env``,
        ``timeout`` (default 10s), ``retries`` (default 3). ConfigError names the key."""
        check_settings(
            settings,
            ctx,
            {
                "host": str,
                "port": int,
                "from": str,
                "to": list,
                "starttls": bool,
                "ca_file": str,
                "username_env": str,
                "password_env": str,
                "timeout": str,
                "retries": int,
            },
        )
        host = settings.get("host")
        if not host:
            raise ctx.error("host", "required: the SMTP server")
        port = settings.get("port", 587)
        if not 0 < port < 65536:
            raise ctx.error("port", "expected a port number (1-65535)")
        sender = settings.get("from")
        if not sender or not _is_address(sender):
            raise ctx.error("from", "required: the sender address, e.g. rotatectl@example.com")
        to = settings.get("to")
        if not to or not all(isinstance(a, str) and _is_address(a) for a in to):
            raise ctx.error("to", "required: a list of recipient addresses")
        username_env = env_name(settings, ctx, "username_env")
        password_env = env_name(settings, ctx, "password_env")
        if (username_env is None) != (password_env is None):
            key = "password_env" if password_env is None else "username_env"
            raise ctx.error(key, "username_env and password_env go together")
        ca_file = None
        if "ca_file" in settings:
            ca_file = Path(settings["ca_file"]).expanduser()
            ca_file = ca_file if ca_file.is_absolute() else ctx.base_dir / ca_file
        delivery = delivery_settings({"timeout": "10s", **settings}, ctx)
        return cls(
            host,
            sender=sender,
            to=to,
            port=port,
            starttls=settings.get("starttls", True),
            ca_file=ca_file,
            username_env=username_env,
            password_env=password_env,
            env=ctx.env,
            name=ctx.table,
            **delivery,
        )

    def check_access(self) -> list[str]:
        """Problems ``rotatectl check`` should report, found without sending mail:
        unset credential variables (named), an SMTP server that cannot be reached
        within the timeout, no STARTTLS where it is required, an untrusted
        certificate, and, with both credentials set, a refused login (the check
        logs in, then quits before MAIL FROM). Never the password."""
        problems = unset(
            [("username_env", self.username_env), ("password_env", self.password_env)],
            self.env,
        )
        login = self._login()
        try:
            with self._session(login):
                pass
        except Unreachable as exc:
            problems.append(f"cannot reach SMTP server {self.host}:{self.port}: {exc.reason}")
        except Permanent as exc:  # Transient too
            problems.append(f"SMTP server {self.host}:{self.port}: {exc.status}")
        return scrub(problems, login or ())

    def _login(self) -> tuple[str, str] | None:
        """(user, password) when both variables are set, else None."""
        if not (self.username_env and self.password_env):
            return None
        user, password = self.env.get(self.username_env), self.env.get(self.password_env)
        return (user, password) if user and password else None

    def notify(self, event: Event) -> None:
        """Send the mail. Raises NotifierError once retries are exhausted."""
        where = f"email notifier {self.name}"
        login = self._login()
        if self.username_env and self.password_env and login is None:
            user_set = self.env.get(self.username_env)
            missing = self.password_env if user_set else self.username_env
            raise NotifierError(f"{where}: environment variable {missing} is not set")
        try:
            mail = compose(event, self.sender, self.to)
        except (TypeError, ValueError) as exc:  # e.g. a header that would not be one line
            raise NotifierError(f"{where}: cannot compose the {event.kind} event: {exc}") from exc
        try:
            deliver(lambda: self._send(mail, login), attempts=self.attempts, sleep=self.sleep)
        except Permanent as exc:
            raise NotifierError(
                f"{where}: {event.kind} event not delivered via {self.host}:{self.port}:"
                f" {exc.describe()}"
            ) from exc

    def _send(self, mail: EmailMessage, login: tuple[str, str] | None) -> None:
        """One attempt. Raises Transient or Permanent with a status safe to show."""
        with self._session(login) as smtp:
            smtp.send_message(mail)

    @contextlib.contextmanager
    def _session(self, login: tuple[str, str] | None) -> Iterator[smtplib.SMTP]:
        """Connect, EHLO, STARTTLS (required with ``starttls``, else when offered)
        and log in with ``login``; quit when done. Every failure, in the session or
        in the ``with`` body, is raised as Unreachable, Transient or Permanent."""
        try:
            try:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            except smtplib.SMTPResponseException:
                raise  # the server answered: mapped below
            except OSError as exc:  # DNS, refused, timeout, closed before the greeting
                raise Unreachable(failure(exc, self.timeout)) from exc
            with smtp:
                smtp.ehlo()
                secure = False
                if smtp.has_extn("starttls"):
                    context = ssl.create_default_context(
                        cafile=str(self.ca_file) if self.ca_file else None
                    )
                    smtp.starttls(context=context)
                    smtp.ehlo()
                    secure = True
                elif self.starttls:
                    raise Permanent("the server does not offer STARTTLS (starttls = true)")
                if login is not None:
                    if not secure:
                        raise Permanent("will not send credentials without TLS")
                    smtp.login(*login)
                yield smtp
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            status = f"recipients refused (SMTP {', '.join(map(str, codes))})"
            if all(400 <= c < 500 for c in codes):
                raise Transient(status) from exc
            raise Permanent(status) from exc
        except smtplib.SMTPResponseException as exc:
            status = f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}"
            if 400 <= exc.smtp_code < 500:
                raise Transient(status) from exc
            raise Permanent(status) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise Permanent(f"the server does not support it: {exc}") from exc
        except ssl.SSLCertVerificationError as exc:
            raise Permanent(f"TLS certificate not trusted: {exc.verify_message}") from exc
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:  # timeouts too
            raise Transient(f"no answer: {type(exc).__name__}: {exc}") from exc


class Unreachable(Transient):
    """The SMTP server could not be connected to (``reason``: why, safe to show)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"no answer: {reason}")
        self.reason = reason


def _is_address(text: str) -> bool:
    _, address = parseaddr(text)
    return "@" in address and "\n" not in text and "\r" not in text


def _text(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return " ".join(text.split())[:200]
