"""Notifier that posts each event to a Slack incoming webhook.

The message has a ``text`` (what notifications and old clients show) and
Block Kit ``blocks``: a header with the severity emoji, a section with the
message and the event's fields, a section with the event's ``data`` (e.g.
the clients still using the old key), and a context line. Text is escaped
for Slack's mrkdwn and cut to Block Kit's limits (header 150 characters,
section text 3000, at most 10 fields of 2000).

The webhook URL is itself a secret (the token is in its path): give it in
``url_env`` (an environment variable) rather than ``url``. Errors show only
the host. Delivery is retried as for the webhook notifier; Slack answers
``429`` with ``Retry-After`` when rate limited.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Self

from ..errors import NotifierError
from ..model import Event, iso
from ..registry import AdapterContext, check_settings
from .base import NotifierBase, host_of, reach_url, scrub
from .webhook import Permanent, check_url, deliver, delivery_settings, env_name, post, url_secrets

EMOJI = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}
TITLES = {
    "started": "Rotation started",
    "published": "New key published",
    "promoted": "New key promoted",
    "still-used": "Old key still in use",
    "reminder": "Reminder: old key still in use",
    "retired": "Old key retired",
    "destroyed": "Old key destroyed",
    "completed": "Rotation completed",
    "failed": "Rotation failed",
    "emergency": "Emergency rotation",
    "rolled-back": "Rotation rolled back",
    "attention": "Needs attention",
    "person-needed": "A person is needed",
    "person-reminder": "Reminder: a person is needed",
    "person-overdue": "Overdue: a person is needed",
}
HEADER_MAX, TEXT_MAX, FIELD_MAX, FIELDS_MAX = 150, 3000, 2000, 10


def title(kind: str) -> str:
    return TITLES.get(kind) or kind.replace("-", " ").capitalize()


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn reserves."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field(name: str, value: str) -> dict[str, str]:
    label = f"*{escape(name)}*\n"
    return {"type": "mrkdwn", "text": label + _cut(escape(value), FIELD_MAX - len(label))}


def _show(value: object) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def message(event: Event) -> dict[str, Any]:
    """The Slack message for ``event``: ``text`` plus Block Kit ``blocks``."""
    emoji = EMOJI.get(event.severity, ":bell:")
    heading = f"{title(event.kind)}: {event.credential}"
    text = f"{emoji} [{event.severity.upper()}] {heading}"
    if event.message:
        text += f" - {event.message}"
    facts = [("Credential", event.credential), ("Event", event.kind)]
    facts.append(("Severity", event.severity))
    if event.version_id:
        facts.append(("Version", event.version_id))
    if event.key_id:
        facts.append(("Key id", event.key_id))
    if event.rotation_id:
        facts.append(("Rotation", event.rotation_id))
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _cut(f"{emoji} {heading}", HEADER_MAX),
                "emoji": True,
            },
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": _cut(escape(event.message or title(event.kind)), TEXT_MAX),
            },
            "fields": [_field(k, v) for k, v in facts[:FIELDS_MAX]],
        },
    ]
    if event.data:
        items = sorted(event.data.items())
        fields = [_field(str(k), _show(v)) for k, v in items[:FIELDS_MAX]]
        if len(items) > FIELDS_MAX:
            fields[-1] = _field("More", f"{len(items) - FIELDS_MAX + 1} more fields")
        blocks.append({"type": "section", "fields": fields})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"rotatectl · {iso(event.at)}"}],
        }
    )
    return {"text": _cut(escape(text), TEXT_MAX), "blocks": blocks}


class SlackNotifier(NotifierBase):
    """Posts events to a Slack incoming webhook; see the module docstring."""

    def __init__(
        self,
        url: str | None = None,
        *,
        url_env: str | None = None,
        env: Mapping[str, str] | None = None,
        name: str = "slack",
        timeout: float = 5.0,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Exactly one of ``url`` and ``url_env`` (ValueError otherwise)."""
        if (url is None) == (url_env is None):
            raise ValueError("give exactly one of url and url_env")
        self.url, self.url_env = url, url_env
        self.env = env if env is not None else {}
        self.name = name
        self.timeout = timeout
        self.attempts = retries + 1
        self.sleep = sleep

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Settings: ``url`` or ``url_env`` (one of them), ``timeout`` (default 5s),
        ``retries`` (default 3). ConfigError names the offending key."""
        check_settings(settings, ctx, {"url": str, "url_env": str, "timeout": str, "retries": int})
        if ("url" in settings) == ("url_env" in settings):
            raise ctx.error(
                "url", "give exactly one of url and url_env (preferred: it is a secret)"
            )
        url = check_url(settings["url"], ctx, "url") if "url" in settings else None
        return cls(
            url,
            url_env=env_name(settings, ctx, "url_env"),
            env=ctx.env,
            name=ctx.table,
            **delivery_settings(settings, ctx),
        )

    def check_access(self) -> list[str]:
        """Problems ``rotatectl check`` should report, found without posting: a
        missing or bad ``url_env`` variable, a Slack host (or proxy) that cannot be
        reached within the timeout. Lines never show the URL's path (its token)."""
        try:
            url = self._resolve()
        except ValueError as exc:
            return [str(exc)]
        unreachable = reach_url(url, self.timeout)
        return scrub([unreachable] if unreachable else [], url_secrets(url))

    def _resolve(self) -> str:
        """The webhook URL; ValueError (safe to show) when ``url_env`` does not hold one."""
        if self.url is not None:
            return self.url
        assert self.url_env is not None
        url = self.env.get(self.url_env, "")
        if not url.startswith(("https://", "http://")):
            state = "is not set" if not url else "does not hold an http(s) URL"
            raise ValueError(f"environment variable {self.url_env} (url_env) {state}")
        return url

    def _url(self) -> str:
        try:
            return self._resolve()
        except ValueError as exc:
            raise NotifierError(f"slack notifier {self.name}: {exc}") from None

    def notify(self, event: Event) -> None:
        """Post the message. Raises NotifierError once retries are exhausted."""
        url = self._url()
        try:
            body = json.dumps(message(event), default=str).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            raise NotifierError(
                f"slack notifier {self.name}: cannot serialise the {event.kind} event: {exc}"
            ) from exc
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "rotatectl"}
        try:
            deliver(
                lambda: post(url, body, headers, self.timeout),
                attempts=self.attempts,
                sleep=self.sleep,
            )
        except Permanent as exc:
            raise NotifierError(
                f"slack notifier {self.name}: {event.kind} event not delivered to {host_of(url)}:"
                f" {exc.describe()}"
            ) from exc
