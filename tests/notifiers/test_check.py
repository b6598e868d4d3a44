"""`rotatectl check` checks every notifier, through the real CLI, against the real
local servers: a missing credential variable or an unreachable endpoint is an
error line naming the notifier (exit 1); reachable notifiers are "ok", and the
check reaches them without sending an event."""

from __future__ import annotations

import socket
from pathlib import Path

from ..conftest import Cli
from .conftest import PASSWORD, USER, Mailbox, Receiver

HOOK_SECRET = "whsec-check-zz9plural-DO-NOT-LEAK"
PATH_TOKEN = "/hooks/T0KEN-check-zz9"


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def write_config(cli: Cli, *, hook_url: str, mailbox: Mailbox, ca_file: Path) -> None:
    (cli.cwd / "rotatectl.toml").write_text(
        f"""
[notifiers.hook]
type = "webhook"
url = "{hook_url}"
secret_env = "HOOK_SECRET"
timeout = "2s"

[notifiers.mail]
type = "email"
host = "{mailbox.host}"
port = {mailbox.port}
from = "rotatectl@example.com"
to = ["ops@example.com"]
ca_file = "{ca_file}"
username_env = "SMTP_USER"
password_env = "SMTP_PASSWORD"
timeout = "2s"
"""
    )


def lines(text: str, item: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if f" {item}" in line]


def assert_no_secret(text: str) -> None:
    for secret in (HOOK_SECRET, PATH_TOKEN, "T0KEN", PASSWORD):
        assert secret not in text


def test_unset_email_credentials_fail_the_check(
    cli: Cli, receiver: Receiver, tls_server: Mailbox, certificate: tuple[Path, Path]
) -> None:
    write_config(
        cli, hook_url=receiver.url + PATH_TOKEN, mailbox=tls_server, ca_file=certificate[0]
    )
    run = cli("check", env={"HOOK_SECRET": HOOK_SECRET, "SMTP_USER": USER})
    assert run.code == 1, run.out + run.err
    (mail,) = lines(run.err, "notifier mail")
    assert mail.startswith("error notifier mail")
    assert "SMTP_PASSWORD" in mail
    assert "SMTP_USER" not in mail  # set: not a problem
    (hook,) = lines(run.err, "notifier hook")
    assert hook.startswith("ok notifier hook")
    assert tls_server.messages == [] and receiver.received == []
    assert_no_secret(run.out + run.err)


def test_a_webhook_at_a_closed_port_fails_the_check(
    cli: Cli, tls_server: Mailbox, certificate: tuple[Path, Path]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}{PATH_TOKEN}?token=T0KEN"
    write_config(cli, hook_url=url, mailbox=tls_server, ca_file=certificate[0])
    env = {"HOOK_SECRET": HOOK_SECRET, "SMTP_USER": USER, "SMTP_PASSWORD": PASSWORD}
    run = cli("check", "--output", "json", env=env)
    assert run.code == 1, run.out + run.err
    assert '"item": "notifier hook"' in run.out
    run = cli("check", env=env)
    assert run.code == 1, run.out + run.err
    (hook,) = lines(run.err, "notifier hook")
    assert hook.startswith("error notifier hook")
    assert "127.0.0.1" in hook and "refused" in hook
    (mail,) = lines(run.err, "notifier mail")
    assert mail.startswith("ok notifier mail")
    assert_no_secret(run.out + run.err)


def test_reachable_notifiers_are_ok_and_get_no_event(
    cli: Cli, receiver: Receiver, tls_server: Mailbox, certificate: tuple[Path, Path]
) -> None:
    write_config(
        cli, hook_url=receiver.url + PATH_TOKEN, mailbox=tls_server, ca_file=certificate[0]
    )
    env = {"HOOK_SECRET": HOOK_SECRET, "SMTP_USER": USER, "SMTP_PASSWORD": PASSWORD}
    run = cli("check", env=env)
    assert run.code == 0, run.out + run.err
    (hook,) = lines(run.out, "notifier hook")
    (mail,) = lines(run.out, "notifier mail")
    assert hook.startswith("ok notifier hook") and mail.startswith("ok notifier mail")
    # The check reached both, and logged in, without sending anything.
    assert receiver.wait_connections(1) >= 1 and receiver.received == []
    assert tls_server.logins == [(USER.encode(), PASSWORD.encode())]
    assert tls_server.messages == []
    assert_no_secret(run.out + run.err)


def test_a_wrong_smtp_password_fails_the_check(
    cli: Cli, receiver: Receiver, tls_server: Mailbox, certificate: tuple[Path, Path]
) -> None:
    write_config(
        cli, hook_url=receiver.url + PATH_TOKEN, mailbox=tls_server, ca_file=certificate[0]
    )
    wrong = "wrong-zz9-check-secret"
    env = {"HOOK_SECRET": HOOK_SECRET, "SMTP_USER": USER, "SMTP_PASSWORD": wrong}
    run = cli("check", env=env)
    assert run.code == 1, run.out + run.err
    (mail,) = lines(run.err, "notifier mail")
    assert mail.startswith("error notifier mail") and "535" in mail
    assert wrong not in run.out + run.err
    assert tls_server.messages == []
