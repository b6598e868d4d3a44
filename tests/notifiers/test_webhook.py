"""The webhook notifier against a real local HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rotatectl.errors import ConfigError, NotifierError
from rotatectl.model import Event
from rotatectl.notifiers.webhook import WebhookNotifier, serialise
from rotatectl.ports import AccessCheck, Notifier
from rotatectl.registry import AdapterContext, build
from rotatectl.testing.notifier_contract import NotifierWithSecretContract

from ..conftest import Cli
from .conftest import Receiver, Reply, free_port

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SECRET = "whsec-zz9plural-DO-NOT-LEAK"
ENV = {"HOOK_SECRET": SECRET}
PATH_TOKEN = "/hooks/T0KEN-IN-PATH-zz9"


def event(kind: str, **kwargs: Any) -> Event:
    fields: dict[str, Any] = {"credential": "partners/acme", "at": T0, "rotation_id": "r1"}
    return Event(kind=kind, **{**fields, **kwargs})


def ctx(base: Path = Path("."), env: dict[str, str] | None = None) -> AdapterContext:
    return AdapterContext(
        table="notifiers.ops", base_dir=base, state_dir=base, env=ENV if env is None else env
    )


def notifier(receiver: Receiver, **kwargs: Any) -> WebhookNotifier:
    options: dict[str, Any] = {"secret_env": "HOOK_SECRET", "env": ENV, "name": "notifiers.ops"}
    return WebhookNotifier(receiver.url + PATH_TOKEN, **{**options, **kwargs})


def valid_signature(body: bytes, header: str | None, secret: str = SECRET) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return header is not None and hmac.compare_digest(expected, header)


SEQUENCE = [
    event("started", message="scheduled rotation"),
    event("published", version_id="v2", key_id="k2NEW"),
    event("promoted", version_id="v2", key_id="k2NEW"),
    event(
        "still-used",
        severity="warning",
        version_id="v1",
        key_id="k1OLD",
        message="old key still used by 10.0.0.7",
        data={"clients": ["10.0.0.7"], "last_seen": "2026-11-27T11:59:00Z", "count": 3},
    ),
    event("retired", version_id="v1", key_id="k1OLD"),
    event("completed"),
]


def test_signed_events_arrive_in_order(receiver: Receiver) -> None:
    hook = notifier(receiver)
    assert isinstance(hook, Notifier)
    for e in SEQUENCE:
        hook.notify(e)
    assert [r.path for r in receiver.received] == [PATH_TOKEN] * len(SEQUENCE)
    for sent, got in zip(SEQUENCE, receiver.received, strict=True):
        assert got.body == serialise(sent)
        assert json.loads(got.body) == sent.to_dict()  # the payload is the event, nothing more
        assert valid_signature(got.body, got.headers["X-Rotatectl-Signature"])
        assert got.headers["X-Rotatectl-Event"] == sent.kind
        assert got.headers["Content-Type"] == "application/json"
    deliveries = {r.headers["X-Rotatectl-Delivery"] for r in receiver.received}
    assert len(deliveries) == len(SEQUENCE)


def test_a_tampered_body_fails_the_signature(receiver: Receiver) -> None:
    notifier(receiver).notify(SEQUENCE[0])
    got = receiver.received[0]
    assert not valid_signature(
        got.body.replace(b"started", b"stopped"), got.headers["X-Rotatectl-Signature"]
    )
    assert not valid_signature(got.body, got.headers["X-Rotatectl-Signature"], "another secret")


def test_without_secret_env_events_are_unsigned(receiver: Receiver) -> None:
    WebhookNotifier(receiver.url).notify(SEQUENCE[0])
    assert receiver.received[0].headers["X-Rotatectl-Signature"] is None


def test_5xx_and_429_are_retried_with_backoff(receiver: Receiver) -> None:
    receiver.replies += [Reply(503), Reply(429, headers={"Retry-After": "3"}), Reply(200)]
    sleeps: list[float] = []
    notifier(receiver, sleep=sleeps.append).notify(SEQUENCE[0])
    assert len(receiver.received) == 3
    assert len(sleeps) == 2
    assert 0 < sleeps[0] <= 1.0  # first backoff ~0.5s plus jitter
    assert 3.0 <= sleeps[1] <= 8.0  # Retry-After honoured, within the cap
    # One delivery: same id, same signed body on every attempt.
    assert len({r.headers["X-Rotatectl-Delivery"] for r in receiver.received}) == 1
    assert len({r.body for r in receiver.received}) == 1
    assert all(
        valid_signature(r.body, r.headers["X-Rotatectl-Signature"]) for r in receiver.received
    )


def test_gives_up_after_the_retries_naming_notifier_and_status(receiver: Receiver) -> None:
    receiver.replies += [Reply(503, body=b"down for maintenance")] * 4
    sleeps: list[float] = []
    with pytest.raises(NotifierError) as info:
        notifier(receiver, sleep=sleeps.append).notify(SEQUENCE[3])
    message = str(info.value)
    assert message == (
        f"webhook notifier notifiers.ops: still-used event not delivered to {receiver.url}:"
        " HTTP 503 (after 4 attempts)"
    )
    assert len(receiver.received) == 4 and len(sleeps) == 3
    assert all(s <= 8.0 for s in sleeps)
    for text in (SECRET, PATH_TOKEN, "10.0.0.7", "clients"):
        assert text not in message


@pytest.mark.parametrize("status", [400, 401, 404, 410, 302])
def test_other_statuses_are_not_retried(receiver: Receiver, status: int) -> None:
    receiver.replies.append(Reply(status, headers={"Location": "http://elsewhere.invalid/"}))
    with pytest.raises(NotifierError, match=f"HTTP {status} \\(after 1 attempt\\)"):
        notifier(receiver, sleep=lambda s: None).notify(SEQUENCE[0])
    assert len(receiver.received) == 1  # and a redirect is not followed


def test_an_unreachable_receiver_is_retried_then_reported() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    hook = WebhookNotifier(f"http://127.0.0.1:{port}/x", retries=2, sleep=sleeps.append)
    with pytest.raises(NotifierError, match="no answer") as info:
        hook.notify(SEQUENCE[0])
    assert "after 3 attempts" in str(info.value) and len(sleeps) == 2


def test_a_slow_receiver_times_out(receiver: Receiver) -> None:
    receiver.replies.append(Reply(200, delay=1.0))
    with pytest.raises(NotifierError, match="no answer"):
        notifier(receiver, timeout=0.2, retries=0).notify(SEQUENCE[0])


def test_a_missing_secret_sends_nothing_and_shows_in_check(receiver: Receiver) -> None:
    hook = WebhookNotifier.from_config(
        {"url": receiver.url, "secret_env": "HOOK_SECRET"}, ctx(env={})
    )
    assert isinstance(hook, AccessCheck)
    assert hook.check_access() == ["environment variable HOOK_SECRET (secret_env) is not set"]
    with pytest.raises(NotifierError, match="HOOK_SECRET"):
        hook.notify(SEQUENCE[0])
    assert receiver.received == []


def test_unserialisable_data_is_a_notifier_error(receiver: Receiver) -> None:
    loop: dict[str, object] = {}
    loop["self"] = loop
    with pytest.raises(NotifierError, match="cannot serialise"):
        notifier(receiver).notify(event("failed", data=loop))
    assert receiver.received == []


def test_from_config(tmp_path: Path) -> None:
    hook = build(
        "notifier",
        {
            "type": "webhook",
            "url": "https://hooks.example.com/r",
            "secret_env": "HOOK_SECRET",
            "timeout": "2s",
            "retries": 1,
        },
        ctx(tmp_path),
    )
    assert isinstance(hook, WebhookNotifier)
    assert (hook.timeout, hook.attempts, hook.name) == (2.0, 2, "notifiers.ops")


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({}, "url"),
        ({"url": ""}, "url"),
        ({"url": "hooks.example.com/r"}, "url"),
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "https://h/r", "secret_env": "not a name"}, "secret_env"),
        ({"url": "https://h/r", "secret": "inline"}, "secret"),
        ({"url": "https://h/r", "retries": -1}, "retries"),
        ({"url": "https://h/r", "retries": True}, "retries"),
        ({"url": "https://h/r", "timeout": "0s"}, "timeout"),
    ],
)
def test_from_config_rejects(tmp_path: Path, settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        WebhookNotifier.from_config(settings, ctx(tmp_path))
    assert f"[notifiers.ops] {key}:" in str(info.value)


@pytest.mark.slow
def test_a_full_rotation_signs_every_event_in_order(cli: Cli, receiver: Receiver) -> None:
    """The real CLI rotates with a webhook and a log notifier: the receiver gets
    every event the log got, in the same order, each validly signed."""
    (cli.cwd / "rotatectl.toml").write_text(
        f"""
[defaults]
notify = ["hook", "log"]

[credentials."partners/acme"]

[notifiers.hook]
type = "webhook"
url = "{receiver.url}/rotations"
secret_env = "HOOK_SECRET"

[notifiers.log]
type = "log"
path = "events.jsonl"
"""
    )
    env = {"HOOK_SECRET": SECRET}
    assert cli("rotate", "partners/acme", env=env).code == 0
    run = cli(
        "rotate", "partners/acme", "--propagation", "0s", "--overlap", "1s", "--wait", env=env
    )
    assert run.code == 0, run.err
    logged = [json.loads(line) for line in (cli.cwd / "events.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in logged]
    assert kinds[0] == "started" and kinds[-1] == "completed"
    assert {"published", "promoted", "retired"} <= set(kinds)
    assert [json.loads(r.body) for r in receiver.received] == logged
    assert all(
        valid_signature(r.body, r.headers["X-Rotatectl-Signature"]) for r in receiver.received
    )
    assert all(r.path == "/rotations" for r in receiver.received)
    cli.extra_texts += [r.body.decode() for r in receiver.received]  # checked for key values


# -- the contract and the access check ------------------------------------------------------


class TestWebhookContract(NotifierWithSecretContract):
    @pytest.fixture
    def notifier(self, receiver: Receiver) -> Notifier:
        self.receiver = receiver
        return notifier(receiver)

    def received(self) -> list[str]:
        return [r.body.decode() for r in self.receiver.received]

    def unreachable(self) -> Notifier:
        url = f"http://127.0.0.1:{free_port()}{PATH_TOKEN}?token=T0KEN-query-zz9"
        return WebhookNotifier(url, secret_env="HOOK_SECRET", env=ENV, retries=0)

    def secrets(self) -> list[str]:
        return [SECRET, PATH_TOKEN, "T0KEN"]

    def missing_variable(self) -> tuple[Notifier, str]:
        hook = WebhookNotifier(self.receiver.url + PATH_TOKEN, secret_env="HOOK_SECRET", env={})
        return hook, "HOOK_SECRET"


def test_check_access_connects_but_posts_nothing(receiver: Receiver) -> None:
    time.sleep(0.2)  # connections of earlier tests are accepted late: let them land
    before = receiver.connections
    assert notifier(receiver).check_access() == []
    assert receiver.wait_connections(before + 1) == before + 1
    assert receiver.received == []


def test_check_access_names_a_closed_port_without_the_path(receiver: Receiver) -> None:
    port = free_port()
    hook = WebhookNotifier(f"http://user:pw-zz9@127.0.0.1:{port}{PATH_TOKEN}", env={})
    assert hook.check_access() == [f"cannot reach http://127.0.0.1:{port}: connection refused"]


def test_check_access_reports_an_unknown_host_and_an_unset_secret() -> None:
    hook = WebhookNotifier(
        f"https://hooks.invalid{PATH_TOKEN}", secret_env="HOOK_SECRET", env={}, timeout=2
    )
    unset, unknown = hook.check_access()
    assert unset == "environment variable HOOK_SECRET (secret_env) is not set"
    assert unknown.startswith("cannot reach https://hooks.invalid: host not found")
    assert "T0KEN" not in unknown


def test_check_access_goes_through_the_proxy_urllib_would_use(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = free_port()
    monkeypatch.setenv("http_proxy", f"http://proxyuser:proxy-pw-zz9@127.0.0.1:{closed}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    hook = WebhookNotifier(f"http://hooks.example.com{PATH_TOKEN}", env={})
    (problem,) = hook.check_access()
    assert problem == (
        f"cannot reach http://hooks.example.com through proxy http://127.0.0.1:{closed}:"
        " connection refused"
    )
