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
_ANCHOR = _MIN_LENGTH  # values are indexed under 8-character windows of theirs
# A value at least _LONG long is filed under _STRIDE consecutive windows of its own:
# wherever it appears in a text, one of them starts at a multiple of _STRIDE there,
# so scrub() looks only at the text's windows at those positions (1 in 8).
_STRIDE = 8
_LONG = _ANCHOR + _STRIDE - 1
_values: set[str] = set()
# window -> (value, the window's offset in it). scrub() looks up the text's own
# windows here, so its cost grows with the text, not with how many values are
# registered (a 10,000-credential run registers 10,000 keys and prints a line each).
_anchors: dict[str, set[tuple[str, int]]] = {}
# Shorter values (8 to 14 characters), each under one window: every window of the
# text is looked up for them (there are rarely any).
_short: dict[str, set[str]] = {}
_lock = threading.Lock()
_FEW = 32  # up to this many values, one C-speed search each beats indexing the text


_public: set[str] = set()


def register(value: str) -> None:
    """Remember ``value`` as secret for the rest of this process (unless it was
    declared :func:`public`)."""
    if len(value) >= _MIN_LENGTH:
        with _lock:
            if value not in _public and value not in _values:
                _values.add(value)
                _index(value)


def _index(value: str) -> None:
    """File ``value`` under the windows shared by the fewest values so far: keys that
    share a prefix (``rk_live_``) are told apart by their random part."""
    if len(value) < _LONG:
        fewest = min(
            (value[i : i + _ANCHOR] for i in range(len(value) - _ANCHOR + 1)),
            key=lambda window: len(_short.get(window, ())),
        )
        _short.setdefault(fewest, set()).add(value)
        return

    # The last block first: a key's random part is at its end, and a block no other
    # value shares is as good as any. Else the block of _STRIDE windows filed for the
    # fewest values in all (a running sum: linear in the value).
    last = len(value) - _LONG
    if not any(value[i : i + _ANCHOR] in _anchors for i in _block(last)):
        _file(value, last)
        return
    windows = range(len(value) - _ANCHOR + 1)
    counts = [len(_anchors.get(value[i : i + _ANCHOR], ())) for i in windows]
    total = best = sum(counts[:_STRIDE])
    start = 0
    for i in range(1, len(counts) - _STRIDE + 1):
        total += counts[i + _STRIDE - 1] - counts[i - 1]
        if total < best:
            best, start = total, i
    _file(value, start)


def _file(value: str, start: int) -> None:
    for i in _block(start):
        _anchors.setdefault(value[i : i + _ANCHOR], set()).add((value, i))


def _block(start: int) -> range:
    return range(start, start + _STRIDE)


def _unindex(value: str) -> None:
    for window, entries in list(_anchors.items()):
        entries.difference_update({e for e in entries if e[0] == value})
        if not entries:
            del _anchors[window]
    for window, values in list(_short.items()):
        values.discard(value)
        if not values:
            del _short[window]


def public(value: str) -> None:
    """Declare ``value`` not secret: it is written in the config file (a JSON secret's
    static field, such as a host), and masking it would hide what an operator needs
    (the client address of a laggard). Registering it later does nothing."""
    with _lock:
        _public.add(value)
        if value in _values:
            _values.discard(value)
            _unindex(value)


def forget_all_but(kept: set[str]) -> None:
    """Forget every registered value not in ``kept`` (tests: random strings registered
    by one test must not mask another's output)."""
    with _lock:
        for value in _values - kept:
            _values.discard(value)
            _unindex(value)


def scrub(text: str) -> str:
    """``text`` with every registered value replaced by a mask (the longest first,
    then in sorted order, where two overlap). Linear in the text: only the values
    filed under one of the text's own 8-character windows are looked for, and for
    values of 15 characters or more only the windows at every 8th position."""
    if not _values or len(text) < _MIN_LENGTH:
        return text
    with _lock:
        # Up to _FEW values, one C-speed search each is cheaper than indexing the text.
        found = {v for v in _values if v in text} if len(_values) <= _FEW else _found(text)
    for value in sorted(found, key=lambda v: (-len(v), v)):
        if value in text:
            text = text.replace(value, MASK)
    return text


def _found(text: str) -> set[str]:
    """The registered values ``text`` holds (the caller holds the lock)."""
    found: set[str] = set()
    last = len(text) - _ANCHOR
    # The windows at every _STRIDE-th position that some value is filed under, in one
    # set operation (a loop over the positions costs several times as much); then
    # each such window's occurrences, found by C-speed searches: a text that holds
    # no registered value has none to look at.
    sampled = {text[at : at + _ANCHOR] for at in range(0, last + 1, _STRIDE)}
    for window in sampled & _anchors.keys():
        at = text.find(window)
        while at != -1:
            for value, offset in _anchors[window]:
                if at >= offset and text.startswith(value, at - offset):
                    found.add(value)
            at = text.find(window, at + 1)
    if _short:
        windows = {text[i : i + _ANCHOR] for i in range(last + 1)}
        found.update(v for w in windows & _short.keys() for v in _short[w] if v in text)
    return found


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
