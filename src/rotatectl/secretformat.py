"""What a credential's secret looks like: a bare value, or a JSON document holding the
key in one named field beside fields rotatectl does not rotate.

A document is edited as text, never re-serialised: a new version's document is the
current version's with the rotated fields' values replaced (or appended when absent),
so every other byte is kept and a field such as ``username`` or ``region`` stays
byte-identical across every version. A version records the field its key is in
(:attr:`rotatectl.model.Version.field`); its fingerprint and key id cover that field
only, so a verifier hashes the key a client presents, not the document.

Errors raised here (:class:`DocumentError`) never contain any part of the value.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Version

FORMATS = ("bare", "json")
_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class DocumentError(ValueError):
    """A value is not a JSON document of the expected shape. The message names the
    problem and the field, never the value."""


@dataclass(frozen=True)
class SecretFormat:
    """A credential's secret format: ``field`` is the JSON field that holds the key
    ("" for a bare value); ``static`` are fields every version's document sets to the
    configured value (host, port); every other field is carried over unchanged."""

    field: str = ""
    static: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def document(self) -> bool:
        """True for a JSON document, False for a bare value."""
        return bool(self.field)

    @property
    def name(self) -> str:
        """``json`` or ``bare``, as the config says it."""
        return "json" if self.field else "bare"

    def describe(self) -> str:
        """How status and errors name the format: ``json (field api_key)`` or ``bare``."""
        return f"json (field {self.field})" if self.field else "bare"

    def compose(self, base: str | None, key: str, extra: Mapping[str, str] = {}) -> str:
        """The document of a new version: ``base`` (the current version's document;
        None: there is none yet) with ``key`` in :attr:`field`, the issuer's ``extra``
        fields (a username) and the static fields set, every other byte kept.
        A bare format returns ``key``. DocumentError when ``base`` is not a JSON object
        or names a field twice; ValueError when a bare format is given ``extra``."""
        if not self.document:
            if extra:
                raise ValueError(
                    f"the issuer produced fields ({', '.join(sorted(extra))}) that a bare "
                    'value cannot hold: declare format = "json"'
                )
            return key
        updates: dict[str, Any] = {**self.static, **extra, self.field: key}
        return splice(base if base is not None else "{}", updates)


BARE = SecretFormat()


def members(text: str) -> Iterator[tuple[str, int, int]]:
    """Each top-level member of the JSON object ``text``: its name and the span of its
    value's text. DocumentError when ``text`` is not one JSON object."""
    at = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
    if not text.startswith("{", at):
        raise DocumentError("the value is not a JSON object")
    at = _SPACE.match(text, at + 1).end()  # type: ignore[union-attr]
    if text.startswith("}", at):
        _end(text, at + 1)
        return
    while True:
        if not text.startswith('"', at):
            raise DocumentError("the value is not valid JSON: a field name was expected")
        try:
            name, at = json.decoder.scanstring(text, at + 1)  # type: ignore[attr-defined]
        except ValueError:
            raise DocumentError("the value is not valid JSON: a field name is broken") from None
        at = _SPACE.match(text, at).end()  # type: ignore[union-attr]
        if not text.startswith(":", at):
            raise DocumentError("the value is not valid JSON: ':' was expected")
        start = _SPACE.match(text, at + 1).end()  # type: ignore[union-attr]
        try:
            _, end = _DECODER.raw_decode(text, start)
        except ValueError:
            raise DocumentError(f"the value is not valid JSON at field {name!r}") from None
        yield name, start, end
        at = _SPACE.match(text, end).end()  # type: ignore[union-attr]
        if text.startswith(",", at):
            at = _SPACE.match(text, at + 1).end()  # type: ignore[union-attr]
            continue
        if text.startswith("}", at):
            _end(text, at + 1)
            return
        raise DocumentError("the value is not valid JSON: ',' or '}' was expected")


def _end(text: str, at: int) -> None:
    if text[at:].strip(" \t\n\r"):
        raise DocumentError("the value is not one JSON object: text follows it")


def spans(text: str) -> dict[str, tuple[int, int]]:
    """Each top-level field of the JSON object ``text`` and the span of its value's
    text. DocumentError when it is not a JSON object or names a field twice."""
    found: dict[str, tuple[int, int]] = {}
    for name, start, end in members(text):
        if name in found:
            raise DocumentError(f"the document names field {name!r} twice")
        found[name] = (start, end)
    return found


def splice(text: str, updates: Mapping[str, Any]) -> str:
    """``text`` (a JSON object) with each field of ``updates`` set to its value: the
    value's text replaced where the field is and holds another value, appended before
    the closing brace where it is absent; every other byte unchanged. DocumentError
    as :func:`spans`."""
    found = spans(text)
    edits: list[tuple[int, int, str]] = []
    appended: list[str] = []
    for name, value in updates.items():
        encoded = json.dumps(value, ensure_ascii=False)
        if name in found:
            start, end = found[name]
            held = json.loads(text[start:end])
            if held != value or type(held) is not type(value):  # 1 == True == 1.0
                edits.append((start, end, encoded))
        else:
            appended.append(f"{json.dumps(name, ensure_ascii=False)}: {encoded}")
    if appended:
        close = text.rindex("}")
        joined = ", ".join(appended)
        edits.append((close, close, f", {joined}" if found else joined))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def fields(value: str) -> dict[str, Any]:
    """The top-level fields of the JSON object ``value``, decoded. DocumentError as
    :func:`spans`."""
    return {name: json.loads(value[s:e]) for name, (s, e) in spans(value).items()}


def key_of(value: str, field: str) -> str:
    """The key in ``value``: ``value`` itself for a bare format (``field`` ""), else the
    string in field ``field`` of the document. DocumentError when there is none."""
    if not field:
        return value
    found = fields(value)
    if field not in found:
        raise DocumentError(f"the document has no field {field!r}")
    key = found[field]
    if not isinstance(key, str):
        raise DocumentError(f"the document's field {field!r} is not a string")
    return key


def field_text(value: str, name: str) -> str:
    """Field ``name`` of the document ``value`` as a consumer wants it in a variable: a
    string as it is, anything else as its JSON text. DocumentError when absent."""
    found = fields(value)
    if name not in found:
        raise DocumentError(f"the document has no field {name!r}")
    item = found[name]
    return item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)


def matches(version: Version, value: str) -> bool:
    """Whether ``value`` (a version's whole stored value) holds the key ``version`` was
    fingerprinted from. A document that cannot be read does not match."""
    from .keyformat import fingerprint_matches  # hashlib: not on status's start-up path

    try:
        key = key_of(value, version.field)
    except DocumentError:
        return False
    return fingerprint_matches(version.fingerprint, key)


def register(value: str) -> None:
    """Register ``value`` and, when it is a JSON document, every string inside it with
    :mod:`rotatectl.redact`, so that no field of a secret reaches any output."""
    from . import redact

    redact.register(value)
    try:
        decoded: Any = json.loads(value)
    except ValueError:
        return
    stack = [decoded]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            redact.register(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
