"""Private directories, and the words for a filesystem error, for every module that
opens files of its own: the config, the audit log and the local store.

Each of those translates an OSError into its own error class where the file is
opened, with the path and what to do; these helpers keep the wording the same.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def reason(exc: OSError) -> str:
    """The system's words for ``exc`` (``Permission denied``), without the path."""
    return exc.strerror or type(exc).__name__


def denied(exc: OSError) -> bool:
    """Whether ``exc`` is a refusal for lack of permission (EACCES, EPERM), which a
    change of mode, owner or user fixes."""
    return exc.errno in (errno.EACCES, errno.EPERM)


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and every missing parent, each exactly 0700 whatever the
    umask (a parent left group- or world-writable would let others swap what is below
    it). Existing directories are left as they are.

    Raises OSError whose ``filename`` is the directory that could not be created, or
    NotADirectoryError when a file stands in the way.
    """
    missing: list[Path] = []
    here = directory
    while not here.is_dir():
        missing.append(here)
        if here.parent == here:
            break
        here = here.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if path.is_dir():  # another process made it meanwhile
                continue
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from None
        os.chmod(path, 0o700)  # the umask can only have taken bits away
