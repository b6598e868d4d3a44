"""The redaction layer, the get --reveal rule, and that the canary check can fail."""

from __future__ import annotations

import io
import logging
import os
import pty
import subprocess

import pytest

from rotatectl import redact
from rotatectl.cli.render import console

from .conftest import Cli


def test_registered_values_are_scrubbed_from_console_json_and_logs(capsys) -> None:
    secret = "rk_canary_" + "Q" * 57
    redact.register(secret)
    console().print(f"leak {secret} here")
    out = capsys.readouterr().out
    assert secret not in out and redact.MASK in out
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("rotatectl.test.redact")
    logger.addHandler(handler)
    handler.addFilter(redact.ScrubbingFilter())
    logger.warning("token=%s", secret)
    assert secret not in stream.getvalue() and redact.MASK in stream.getvalue()
    assert redact.scrub("short") == "short"


def test_get_refuses_a_terminal_without_reveal(cli: Cli) -> None:
    cli("rotate", "a")
    for extra, expect_key in (([], False), (["--reveal"], True)):
        leader, follower = pty.openpty()
        proc = subprocess.run(
            cli.argv("get", "a", *extra),
            cwd=cli.cwd,
            env=cli.env,
            stdout=follower,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
        os.close(follower)
        try:
            shown = os.read(leader, 4096).decode()
        except OSError:  # EIO: the terminal received nothing
            shown = ""
        os.close(leader)
        cli.record(
            ("get", "tty", *extra), proc.returncode, shown if not expect_key else "", proc.stderr
        )
        if expect_key:
            assert proc.returncode == 0 and shown.strip().startswith("rk_")
        else:
            assert proc.returncode == 2
            assert "refusing to print a key to a terminal" in proc.stderr
            assert "rk_" not in shown


def test_the_canary_check_catches_a_leak(cli: Cli) -> None:
    cli("rotate", "a")
    value = cli("get", "a").out.strip()
    leak = cli.record(("status", "fake"), 0, f"oops {value}", "")
    with pytest.raises(AssertionError, match="leaked"):
        cli.assert_no_secret_leaked()
    cli.runs.remove(leak)
    (cli.root / "notes.log").write_text(value)
    with pytest.raises(AssertionError, match="leaked"):
        cli.assert_no_secret_leaked()
    (cli.root / "notes.log").unlink()
