"""The words for a filesystem error, for every module that opens files of its own:
the config, the audit log and the local store.

Each of those translates an OSError into its own error class where the file is
opened, with the path and what to do; these helpers keep the wording the same.
"""

from __future__ import annotations

import errno


def reason(exc: OSError) -> str:
    """The system's words for ``exc`` (``Permission denied``), without the path."""
    return exc.strerror or type(exc).__name__


def denied(exc: OSError) -> bool:
    """Whether ``exc`` is a refusal for lack of permission (EACCES, EPERM), which a
    change of mode, owner or user fixes."""
    return exc.errno in (errno.EACCES, errno.EPERM)
