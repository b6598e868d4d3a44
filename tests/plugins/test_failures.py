"""A failing plug-in through the real CLI (issue 20): each failure is one line naming
the plug-in and the operation and saying what went wrong, never the plug-in's other
output; an ``http`` issuer without TLS to another host is refused at config time."""

from __future__ import annotations

import secrets

from ..conftest import Cli
from .conftest import AdminApi
from .test_cli import configure

NAME = "svc/failing"

# Answers `list` (called before `create`), then does what the test needs.
PLUGIN = """#!/bin/sh
cat >/dev/null
if [ "$ROTATECTL_OPERATION" = list ]; then echo '{{"keys": []}}'; exit 0; fi
{body}
"""


def with_plugin(cli: Cli, body: str, **settings: str) -> None:
    script = cli.cwd / "plugin.sh"
    script.write_text(PLUGIN.format(body=body))
    script.chmod(0o755)
    extra = "".join(f', {key} = "{value}"' for key, value in settings.items())
    configure(cli, NAME, f'{{ type = "command", command = ["./plugin.sh"]{extra} }}')


def failure_line(cli: Cli, *, code: int = 1) -> str:
    """The rotation's one line of failure (and no traceback)."""
    run = cli("rotate", NAME)
    text = run.out + run.err
    assert run.code == code, text
    assert "Traceback" not in text
    failed = [line for line in text.splitlines() if NAME + ":" in line and "failed" in line]
    assert len(failed) == 1, text
    return failed[0]


def test_a_plugin_that_exits_1_is_its_last_stderr_line(cli: Cli) -> None:
    with_plugin(
        cli,
        'echo "debug: calling the API" >&2\necho "quota exceeded for svc/failing" >&2\nexit 1',
    )
    line = failure_line(cli)
    assert "command plugin.sh: create: exit 1: quota exceeded for svc/failing" in line
    assert "debug" not in line


def test_a_reply_that_is_not_json_is_a_malformed_reply(cli: Cli) -> None:
    with_plugin(cli, "echo 'Traceback (most recent call last): oops'")
    line = failure_line(cli)
    assert "command plugin.sh: create: malformed reply: not a JSON object" in line
    assert "oops" not in line


def test_a_plugin_past_its_timeout_is_killed(cli: Cli) -> None:
    # Retried (a timeout may pass), each try killed after 1s.
    with_plugin(cli, "sleep 30", timeout="1s")
    line = failure_line(cli)
    assert "command plugin.sh: create: timed out after 1s" in line


def test_a_wrong_hmac_secret_is_http_401(cli: Cli, admin_api: AdminApi) -> None:
    cli.env["WRONG_SECRET"] = secrets.token_urlsafe(16)
    configure(
        cli,
        NAME,
        f'{{ type = "http", url = "{admin_api.rotatectl_url}", secret_env = "WRONG_SECRET" }}',
    )
    line = failure_line(cli)
    assert "127.0.0.1" in line and ": list: HTTP 401" in line
    assert "/rotatectl" not in line  # the URL's path is not shown


def test_http_to_another_host_is_refused_at_config_time(cli: Cli) -> None:
    cli.env["HMAC_SECRET"] = "s"
    configure(
        cli,
        NAME,
        '{ type = "http", url = "http://admin.internal/rotatectl/{operation}", '
        'secret_env = "HMAC_SECRET" }',
    )
    run = cli("rotate", NAME)
    assert run.code == 2, run.out + run.err
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rotatectl: error: "), run.err
    assert "http://admin.internal" in lines[0] and "https://" in lines[0]
