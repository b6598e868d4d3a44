"""The redaction layer, the get --reveal rule, and that the canary check can fail."""

from __future__ import annotations

import io
import logging
import os
import pty
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# -- scrub finds what the plain search found, with a cost that follows the text ----

_secrets = st.text(alphabet='abcdefghij_-:"{} 0123', min_size=8, max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_secrets, min_size=1, max_size=12),
    st.lists(st.integers(0, 11), max_size=6),
    st.text(alphabet="abcdefghij_ 01", max_size=30),
)
def test_scrub_masks_exactly_what_a_search_of_every_value_masks(
    values: list[str], picks: list[int], filler: str
) -> None:
    """The indexed scrub against the plain one it replaced: every value in turn,
    longest first, on texts made of registered values, their parts and filler."""
    kept = set(redact._values)
    try:
        # More values than a plain search per value is used for: the indexed path.
        for n in range(redact._FEW + 1):
            redact.register(f"padding-{n:03d}-ZZZZ")
        for value in values:
            redact.register(value)
        parts = [values[i % len(values)] for i in picks]
        # Values at the very start and end too: the text's first and last windows.
        text = values[-1] + filler.join([*parts, values[0][: len(values[0]) // 2]]) + values[0]
        expected = text
        for value in sorted(set(redact._values), key=lambda v: (-len(v), v)):
            if value in expected:
                expected = expected.replace(value, redact.MASK)
        assert redact.scrub(text) == expected
    finally:
        redact.forget_all_but(kept)


def test_keys_sharing_a_prefix_are_filed_apart() -> None:
    kept = set(redact._values)
    try:
        keys = [f"rk_live_{n:04d}" + "x" * 40 for n in range(200)]
        for key in keys:
            redact.register(key)
        # Each key is filed under the windows of its random part (here its number):
        # most windows belong to one key, none to the 200 that share the prefix.
        owners = [len(v) for v in redact._anchors.values() if {k for k, _ in v} & set(keys)]
        assert max(owners) <= 10 and sorted(owners)[len(owners) // 2] == 1
        assert redact.scrub(f"a {keys[7]} b") == f"a {redact.MASK} b"
    finally:
        redact.forget_all_but(kept)


@pytest.mark.parametrize("length", [8, 13, 14, 15, 16, 22, 23, 40])
def test_a_value_is_found_at_every_offset_and_at_the_very_end(length: int) -> None:
    """The indexed path looks at the text's windows at every 8th position only: a
    value must be found wherever it starts, including flush with the text's end."""
    kept = set(redact._values)
    try:
        for n in range(redact._FEW + 1):
            redact.register(f"padding-{n:03d}-ZZZZ")
        value = "".join("abcdefghijklmnopqrstuvwxyz0123456789"[(7 * i) % 36] for i in range(length))
        redact.register(value)
        for shift in range(2 * redact._STRIDE + 1):
            for tail in ("", ".", " end"):
                text = "." * shift + value + tail
                assert redact.scrub(text) == "." * shift + redact.MASK + tail, (shift, tail)
    finally:
        redact.forget_all_but(kept)
