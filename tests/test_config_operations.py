"""Config for hooks, the pre-promotion test and the failed-auth watch."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from rotatectl.config import load_config
from rotatectl.errors import ConfigError


def load(tmp_path: Path, text: str):
    path = tmp_path / "rotatectl.toml"
    path.write_text(text)
    return load_config(path, env={}, cwd=tmp_path)


def test_hooks_test_and_watch_are_parsed(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
[credentials."a"]
rollback_on_rejections = 10
rejection_window = "10m"

[credentials."a".hooks]
on_promote = "systemctl reload 'my api'"
on_retire = ["/bin/true"]
if_failed = "continue"
timeout = "5s"

[credentials."a".test]
urls = ["http://10.0.0.1/health", "https://b/health"]
passes = 2
value = "Key {key}"
header = "X-Api-Key"
deadline = "30s"
""",
    )
    cred = cfg.credentials["a"]
    assert cred.policy.rollback_on_rejections == 10
    assert cred.policy.rejection_window == timedelta(minutes=10)
    assert cred.hooks is not None
    assert cred.hooks.on_promote == ("systemctl", "reload", "my api")
    assert cred.hooks.on_retire == ("/bin/true",)
    assert cred.hooks.abort_on_failure is False
    assert cred.hooks.timeout == timedelta(seconds=5)
    assert cred.pretest is not None
    assert cred.pretest.urls == ("http://10.0.0.1/health", "https://b/health")
    assert (cred.pretest.passes, cred.pretest.header, cred.pretest.value) == (
        2,
        "X-Api-Key",
        "Key {key}",
    )
    assert cred.pretest.deadline == timedelta(seconds=30)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('hooks = { on_promote = "" }', "hooks] on_promote: empty command"),
        ("hooks = { on_promote = 3 }", "on_promote: expected a string or an array"),
        ('hooks = { on_deploy = "x" }', "hooks] on_deploy: unknown key"),
        ('hooks = { if_failed = "ignore" }', "if_failed: expected abort or continue"),
        ('test = { url = "ftp://x" }', "test] url: expected an http(s) URL"),
        ("test = { passes = 2 }", "test] url: give exactly one of url or urls"),
        ('test = { url = "http://x", value = "Bearer" }', "value: must contain {key}"),
        ('test = { url = "http://x", deadline = "soon" }', "deadline: bad duration"),
        ("rollback_on_rejections = -1", "rollback_on_rejections: must be at least 0"),
        ("rollback_on_rejections = true", "rollback_on_rejections: expected an integer"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path: Path, body: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f'[credentials."a"]\n{body}\n')
    message = str(info.value)
    assert needle in message and "rotatectl.toml" in message
    assert "\n" not in message
