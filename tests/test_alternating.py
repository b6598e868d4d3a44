"""The alternating-users decisions (rotatectl.alternating), as tables: which user takes
a new key, and what a sampling probe answers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rotatectl.alternating import parse_ref, pick, session_usage, well_formed_users
from rotatectl.model import UsageStatus

USERS = ("app", "app_b")
T0 = datetime(2026, 1, 1, tzinfo=UTC)

# (id, versions each user holds, which can log in, the version to mint, keep, chosen)
BOTH = {"app": {"v1"}, "app_b": {"v2"}}  # each user holds a key
ON = {"app": True, "app_b": True}  # both can log in
# fmt: off
PICKS = [
    ("fresh-pair", {}, {}, "v1", [], "app"),
    ("the-retired-one", BOTH, {"app": False, "app_b": True}, "v3", [], "app"),
    ("not-in-keep", {"app": {"v1"}}, {"app": True, "app_b": False}, "v2", ["app"], "app_b"),
    ("keep-wins-over-login", BOTH, ON, "v3", ["app_b"], "app"),
    ("a-retry-takes-its-user", BOTH, ON, "v2", ["app", "app_b"], "app_b"),
    ("emergency-reuses-the-pending", BOTH, ON, "v3", ["app"], "app_b"),
    ("both-must-keep-working", BOTH, ON, "v3", ["app", "app_b"], None),
]
# fmt: on


@pytest.mark.parametrize(
    ("holds", "usable", "version", "keep", "chosen"),
    [pytest.param(*case[1:], id=case[0]) for case in PICKS],
)
def test_pick(
    holds: dict[str, set[str]],
    usable: dict[str, bool],
    version: str,
    keep: list[str],
    chosen: str | None,
) -> None:
    assert pick(USERS, holds, usable, version, keep) == chosen


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        ("app@v-1", ("app", "v-1")),
        ("app@", ("", "")),
        ("app", ("", "")),
        ("Bad Name@v1", ("", "")),
        ("app@v1@x", ("app", "v1@x")),
    ],
)
def test_parse_ref(ref: str, parsed: tuple[str, str]) -> None:
    assert parse_ref(ref, lambda u: u.isidentifier()) == parsed


def test_session_usage() -> None:
    found = session_usage(
        ["k1", "k2", "k3"],
        {"k1": "app", "k2": "app_b"},
        {"app": ["10.0.0.2:5000", "10.0.0.1:4000", "10.0.0.2:5000"]},
        T0,
        who="role",
    )
    k1, k2, k3 = found["k1"], found["k2"], found["k3"]
    assert (k1.status, k1.last_seen, k1.count) == (UsageStatus.SEEN, T0, 3)
    assert k1.clients == ("10.0.0.1:4000", "10.0.0.2:5000")
    assert k1.detail == "3 session(s) of role app open now"
    assert (k2.status, k2.detail) == (UsageStatus.NOT_SEEN, "no session of role app_b open now")
    assert (k3.status, k3.detail) == (UsageStatus.NOT_SEEN, "no role holds this key any more")


@pytest.mark.parametrize(
    ("users", "count", "ok"),
    [
        (["app", "app_b"], 2, True),
        (["app", "app"], 2, False),
        (["app"], 2, False),
        (["app", "Bad Name"], 2, False),
        ("app", 2, False),
        (["app", 3], None, False),
        (["app"], None, True),
        (["app", "app"], None, True),  # a probe's list: duplicates are harmless
        ([], None, False),
    ],
)
def test_well_formed_users(users: object, count: int | None, ok: bool) -> None:
    assert well_formed_users(users, str.isidentifier, count) is ok
