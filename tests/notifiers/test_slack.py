"""The Slack notifier: the Block Kit message it builds, checked against Slack's
documented shape, and its delivery to a real local HTTP server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rotatectl.errors import ConfigError, NotifierError
from rotatectl.model import Event
from rotatectl.notifiers.slack import SlackNotifier, message
from rotatectl.ports import AccessCheck, Notifier
from rotatectl.registry import AdapterContext, build
from rotatectl.testing.notifier_contract import NotifierWithSecretContract

from .conftest import Receiver, Reply, free_port

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
HOOK_PATH = "/services/T000/B000/XXXXsecretXXXX"

# -- a small checker for the Block Kit subset a message may use ----------------------------
# Limits from Slack's reference (docs.slack.dev/reference/block-kit): at most 50 blocks
# per message; header: plain_text up to 150 characters; section: text up to 3000
# and/or up to 10 fields of up to 2000; context: 1-10 elements; block_id up to 255.


def check_text(obj: Any, where: str, *, limit: int = 3000, kinds: tuple[str, ...] = ()) -> None:
    assert isinstance(obj, dict), f"{where}: a text object is an object"
    kind = obj.get("type")
    assert kind in (kinds or ("plain_text", "mrkdwn")), f"{where}: text type {kind!r}"
    allowed = {"type", "text", "emoji"} if kind == "plain_text" else {"type", "text", "verbatim"}
    assert set(obj) <= allowed, f"{where}: unexpected keys {set(obj) - allowed}"
    text = obj.get("text")
    assert isinstance(text, str) and 1 <= len(text) <= limit, f"{where}: text length"
    for flag in ("emoji", "verbatim"):
        assert not isinstance(obj.get(flag), str), f"{where}: {flag} is a boolean"
    if kind == "mrkdwn":  # & < > must be escaped (Slack's formatting rules)
        assert "<" not in text and ">" not in text, f"{where}: unescaped < or >"
        stripped = text.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "")
        assert "&" not in stripped, f"{where}: unescaped &"


def check_message(msg: dict[str, Any]) -> None:
    """Assert ``msg`` is a well-formed incoming-webhook message with Block Kit blocks."""
    assert set(msg) <= {"text", "blocks", "mrkdwn", "unfurl_links", "unfurl_media", "thread_ts"}
    assert isinstance(msg.get("text"), str) and msg["text"]
    blocks = msg.get("blocks")
    assert isinstance(blocks, list) and 1 <= len(blocks) <= 50
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        assert isinstance(block, dict)
        if "block_id" in block:
            assert isinstance(block["block_id"], str) and len(block["block_id"]) <= 255
        kind = block.get("type")
        if kind == "header":
            assert set(block) <= {"type", "text", "block_id"}
            check_text(block["text"], where, limit=150, kinds=("plain_text",))
        elif kind == "section":
            assert set(block) <= {"type", "text", "fields", "block_id", "accessory"}
            assert "text" in block or "fields" in block, f"{where}: text or fields required"
            if "text" in block:
                check_text(block["text"], where)
            if "fields" in block:
                fields = block["fields"]
                assert isinstance(fields, list) and 1 <= len(fields) <= 10, f"{where}: fields"
                for j, item in enumerate(fields):
                    check_text(item, f"{where}.fields[{j}]", limit=2000)
        elif kind == "context":
            assert set(block) <= {"type", "elements", "block_id"}
            elements = block["elements"]
            assert isinstance(elements, list) and 1 <= len(elements) <= 10
            for j, item in enumerate(elements):
                check_text(item, f"{where}.elements[{j}]")
        elif kind == "divider":
            assert set(block) <= {"type", "block_id"}
        else:
            raise AssertionError(f"{where}: unsupported block type {kind!r}")
    json.dumps(msg)  # serialisable as is


# -- the message ----------------------------------------------------------------------------


def event(kind: str = "still-used", **kwargs: Any) -> Event:
    return Event(kind=kind, credential="partners/acme", at=T0, **kwargs)


EVENTS = [
    event("started", rotation_id="r1"),
    event("promoted", version_id="v2", key_id="k2NEW", rotation_id="r1"),
    event(
        "still-used",
        severity="warning",
        version_id="v1",
        key_id="k1OLD",
        message="old key still used by 10.0.0.7 & <svc-billing>",
        data={"clients": ["10.0.0.7", "<svc-billing>"], "last_seen": "2026-11-27T11:59:00Z"},
    ),
    event("failed", severity="critical", message="x" * 5000, data={"error": "y" * 5000}),
    event("emergency", severity="critical", data={f"k{i:02d}": i for i in range(25)}),
    event("something-new", severity="odd"),
    event("rolled-back", message="new key rejected 12 times since promotion", rotation_id="r9"),
]


@pytest.mark.parametrize("sent", EVENTS, ids=[e.kind for e in EVENTS])
def test_messages_have_the_block_kit_shape(sent: Event) -> None:
    msg = message(sent)
    check_message(msg)
    text = json.dumps(msg)
    assert sent.credential in text and sent.kind in text
    if sent.key_id:
        assert sent.key_id in text  # the public key id; a key value is never in an Event


def test_the_schema_check_catches_mistakes() -> None:
    good = message(EVENTS[2])
    for broken in (
        {**good, "blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}]},
        {**good, "blocks": [{"type": "section"}]},
        {**good, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "a < b"}}]},
        {**good, "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]},
        {**good, "blocks": [{"type": "section", "fields": [good["blocks"][1]["fields"][0]] * 11}]},
        {**good, "blocks": [{"type": "image_carousel"}]},
        {**good, "text": ""},
    ):
        with pytest.raises(AssertionError):
            check_message(broken)


def test_severity_emoji_and_escaping() -> None:
    msg = message(EVENTS[2])
    header = msg["blocks"][0]["text"]["text"]
    assert header == ":warning: Old key still in use: partners/acme"
    assert msg["text"].startswith(":warning: [WARNING] Old key still in use: partners/acme - ")
    assert "&amp; &lt;svc-billing&gt;" in msg["blocks"][1]["text"]["text"]
    data = msg["blocks"][2]["fields"]
    assert {"type": "mrkdwn", "text": "*clients*\n10.0.0.7, &lt;svc-billing&gt;"} in data
    assert message(EVENTS[3])["blocks"][0]["text"]["text"].startswith(":rotating_light: ")
    assert message(EVENTS[0])["blocks"][0]["text"]["text"].startswith(":information_source: ")
    many = message(EVENTS[4])["blocks"][2]["fields"]
    assert len(many) == 10 and many[-1]["text"] == "*More*\n16 more fields"


# -- delivery ----------------------------------------------------------------------------------


def test_posts_the_message(receiver: Receiver) -> None:
    SlackNotifier(receiver.url + HOOK_PATH).notify(EVENTS[2])
    (got,) = receiver.received
    assert got.path == HOOK_PATH
    assert got.headers["Content-Type"].startswith("application/json")
    assert json.loads(got.body) == message(EVENTS[2])


def test_url_from_the_environment(receiver: Receiver) -> None:
    ctx = AdapterContext(
        table="notifiers.chat",
        base_dir=Path("."),
        state_dir=Path("."),
        env={"SLACK_URL": receiver.url + HOOK_PATH},
    )
    slack = build("notifier", {"type": "slack", "url_env": "SLACK_URL"}, ctx)
    assert isinstance(slack, SlackNotifier) and isinstance(slack, AccessCheck)
    assert slack.check_access() == []
    slack.notify(EVENTS[0])
    assert receiver.received[0].path == HOOK_PATH


def test_a_missing_url_variable_is_reported() -> None:
    ctx = AdapterContext(table="notifiers.chat", base_dir=Path("."), state_dir=Path("."), env={})
    slack = SlackNotifier.from_config({"url_env": "SLACK_URL"}, ctx)
    (problem,) = slack.check_access()
    assert "SLACK_URL (url_env) is not set" in problem
    with pytest.raises(NotifierError, match="SLACK_URL"):
        slack.notify(EVENTS[0])


def test_rate_limit_is_retried_and_errors_hide_the_url(receiver: Receiver) -> None:
    receiver.replies += [Reply(429, headers={"Retry-After": "1"}), Reply(200)]
    sleeps: list[float] = []
    SlackNotifier(receiver.url + HOOK_PATH, sleep=sleeps.append).notify(EVENTS[0])
    assert len(receiver.received) == 2 and sleeps and sleeps[0] >= 1.0
    receiver.replies.append(Reply(400, body=b"invalid_payload"))
    with pytest.raises(NotifierError) as info:
        SlackNotifier(receiver.url + HOOK_PATH, name="notifiers.chat").notify(EVENTS[0])
    assert str(info.value) == (
        f"slack notifier notifiers.chat: started event not delivered to {receiver.url}:"
        " HTTP 400 (after 1 attempt)"
    )
    assert "XXXXsecretXXXX" not in str(info.value)


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({}, "url"),
        ({"url": "https://hooks.slack.com/x", "url_env": "SLACK_URL"}, "url"),
        ({"url": "hooks.slack.com/x"}, "url"),
        ({"url_env": "slack url"}, "url_env"),
        ({"url_env": "SLACK_URL", "channel": "#ops"}, "channel"),
        ({"url_env": "SLACK_URL", "retries": 99}, "retries"),
    ],
)
def test_from_config_rejects(settings: dict[str, Any], key: str) -> None:
    ctx = AdapterContext(table="notifiers.chat", base_dir=Path("."), state_dir=Path("."), env={})
    with pytest.raises(ConfigError) as info:
        SlackNotifier.from_config(settings, ctx)
    assert f"[notifiers.chat] {key}:" in str(info.value)


# -- the contract and the access check ------------------------------------------------------


class TestSlackContract(NotifierWithSecretContract):
    @pytest.fixture
    def notifier(self, receiver: Receiver) -> Notifier:
        self.receiver = receiver
        return SlackNotifier(receiver.url + HOOK_PATH, name="notifiers.chat")

    def received(self) -> list[str]:
        return [r.body.decode() for r in self.receiver.received]

    def unreachable(self) -> Notifier:
        url = f"http://127.0.0.1:{free_port()}{HOOK_PATH}"
        return SlackNotifier(url, name="notifiers.chat", retries=0)

    def secrets(self) -> list[str]:
        return [HOOK_PATH, "XXXXsecretXXXX"]

    def missing_variable(self) -> tuple[Notifier, str]:
        return SlackNotifier(url_env="SLACK_URL", env={}, name="notifiers.chat"), "SLACK_URL"


def test_check_access_shows_only_the_host_of_a_url_from_the_environment() -> None:
    port = free_port()
    env = {"SLACK_URL": f"http://127.0.0.1:{port}{HOOK_PATH}"}
    slack = SlackNotifier(url_env="SLACK_URL", env=env)
    assert slack.check_access() == [f"cannot reach http://127.0.0.1:{port}: connection refused"]
    bad = SlackNotifier(url_env="SLACK_URL", env={"SLACK_URL": "hooks.slack.com/x"})
    assert bad.check_access() == [
        "environment variable SLACK_URL (url_env) does not hold an http(s) URL"
    ]
