"""One redaction layer for everything rotatectl prints or logs.

Every key value this process handles is registered here the moment it
appears (minted, read for a hook or a test); every console, log and error
path passes its text through :func:`scrub`. Only ``get`` and ``exec`` write
a value, on purpose, around this layer.
"""

from __future__ import annotations

import logging
import threading
from typing import IO, Any

MASK = "<redacted>"
_MIN_LENGTH = 8  # shorter strings would mask ordinary words; keys are far longer
_values: set[str] = set()
_lock = threading.Lock()


_public: set[str] = set()


def register(value: str) -> None:
    """Remember ``value`` as secret for the rest of this process (unless it was
    declared :func:`public`)."""
    if len(value) >= _MIN_LENGTH:
        with _lock:
            if value not in _public:
                _values.add(value)


def public(value: str) -> None:
    """Declare ``value`` not secret: it is written in the config file (a JSON secret's
    static field, such as a host), and masking it would hide what an operator needs
    (the client address of a laggard). Registering it later does nothing."""
    with _lock:
        _public.add(value)
        _values.discard(value)


def scrub(text: str) -> str:
    """``text`` with every registered value replaced by a mask."""
    if not _values:
        return text
    with _lock:
        values = sorted(_values, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


class ScrubbingWriter:
    """A text stream wrapper that scrubs what is written through it."""

    def __init__(self, inner: IO[str]) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(scrub(text))
        return len(text)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ScrubbingFilter(logging.Filter):
    """A logging filter that scrubs the formatted message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_logging_filter() -> None:
    """Scrub every log record that reaches the root logger's handlers."""
    handlers: list[logging.Handler] = list(logging.getLogger().handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(f, ScrubbingFilter) for f in handler.filters):
            handler.addFilter(ScrubbingFilter())
