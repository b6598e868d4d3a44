"""A really full disk: a small tmpfs of the test's own, filled to the last byte.

The tmpfs needs root (as here and in CI); a mount that fails fails the test, it
never skips it. The ``tmpfs`` fixture is made available to the whole suite by
``tests/conftest.py``; request it before ``cli`` so that the harness' leak
check reads the tmpfs before it is unmounted.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

PAGE = 4096


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs of its own, unmounted after the test."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (these tests need root): {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(directory: Path) -> None:
    """Write a filler file until the file system has not one free byte left."""
    with (directory / "filler").open("wb", buffering=0) as fh:
        for size in (PAGE, 1):
            while True:
                try:
                    fh.write(b"x" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    with pytest.raises(OSError, match="No space left"):
        (directory / "probe").write_bytes(b"x" * PAGE)
