"""The generated key format: ``<prefix>_<key id><secret><checksum>``.

A generated key looks like ``rk_live_3xR9fQ2aTq...`` and is built from:

``prefix``
    ``[a-z][a-z0-9_]{0,29}`` (1-30 characters; may itself contain ``_``, e.g.
    ``rk_live``). Readable, so that secret scanners can find leaked keys.
    Default ``rk``.
``_``
    One separator. Because the body below never contains ``_``, a key is
    split at its *last* underscore.
``key id``
    8 base62 characters, random. Public: verifiers and logs use it to find a
    key without seeing the secret.
``secret``
    43 base62 characters, each drawn with :func:`secrets.choice`;
    62**43 > 2**256, so at least 256 bits of randomness.
``checksum``
    CRC-32 (:func:`zlib.crc32`, unsigned) of the UTF-8 bytes of everything
    before it (``<prefix>_<key id><secret>``), written in base62, most
    significant digit first, left-padded with ``0`` to 6 characters
    (62**6 > 2**32). It catches typos and truncation without a lookup; it is
    not a security measure.

The base62 alphabet is ``0-9A-Za-z`` in that order (``0`` = 0, ``A`` = 10,
``a`` = 36). The body after the separator is therefore exactly 57 characters
(8 + 43 + 6) and a whole key is 59-88 characters long.

Verifiers store only :func:`secret_hash` of the secret part (SHA-256, hex),
keyed by the key id; :func:`fingerprint` of a key is that same hash. Values
that are not in this format are fingerprinted whole with
:func:`value_fingerprint`.

Errors raised here never contain the key or any part of it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass
from typing import Literal

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DEFAULT_PREFIX = "rk"
PREFIX_PATTERN = r"[a-z][a-z0-9_]{0,29}"
KEY_ID_LENGTH = 8
SECRET_LENGTH = 43
CHECKSUM_LENGTH = 6
BODY_LENGTH = KEY_ID_LENGTH + SECRET_LENGTH + CHECKSUM_LENGTH
MAX_PREFIX_LENGTH = 30
MIN_KEY_LENGTH = 1 + 1 + BODY_LENGTH
MAX_KEY_LENGTH = MAX_PREFIX_LENGTH + 1 + BODY_LENGTH

_PREFIX_RE = re.compile(PREFIX_PATTERN)
_BODY_RE = re.compile(f"[0-9A-Za-z]{{{BODY_LENGTH}}}")

Reason = Literal["malformed", "bad-checksum"]


class KeyFormatError(ValueError):
    """A string is not a valid generated key.

    ``reason`` is ``"malformed"`` (wrong shape) or ``"bad-checksum"`` (right
    shape, checksum mismatch: a typo or a forgery). The message never contains
    the input.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass(frozen=True, repr=False)
class ParsedKey:
    """The parts of a generated key. ``secret`` is secret: the repr hides it."""

    prefix: str
    key_id: str
    secret: str
    checksum: str

    def __repr__(self) -> str:
        return f"ParsedKey(prefix={self.prefix!r}, key_id={self.key_id!r}, secret=<redacted>)"


def is_valid_prefix(prefix: str) -> bool:
    """True if ``prefix`` matches ``[a-z][a-z0-9_]{0,29}``."""
    return isinstance(prefix, str) and _PREFIX_RE.fullmatch(prefix) is not None


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def _checksum(text: str) -> str:
    n = zlib.crc32(text.encode("utf-8"))
    digits = []
    while n:
        n, rem = divmod(n, 62)
        digits.append(ALPHABET[rem])
    return "".join(reversed(digits)).rjust(CHECKSUM_LENGTH, "0")


def generate(prefix: str = DEFAULT_PREFIX) -> str:
    """A new random key with ``prefix``. ValueError if the prefix is invalid."""
    if not is_valid_prefix(prefix):
        raise ValueError(f"invalid key prefix {prefix!r}: must match {PREFIX_PATTERN}")
    head = f"{prefix}_{_random_base62(KEY_ID_LENGTH)}{_random_base62(SECRET_LENGTH)}"
    return head + _checksum(head)


def parse(key: str) -> ParsedKey:
    """Split and check a generated key. Raises :class:`KeyFormatError`."""
    # Fixed messages only: whatever was passed may be a real key with a typo.
    if not isinstance(key, str) or not MIN_KEY_LENGTH <= len(key) <= MAX_KEY_LENGTH:
        raise KeyFormatError(
            "malformed", f"not a generated key: expected {MIN_KEY_LENGTH}-{MAX_KEY_LENGTH} chars"
        )
    prefix, sep, body = key.rpartition("_")
    if not sep or _PREFIX_RE.fullmatch(prefix) is None:
        raise KeyFormatError("malformed", "not a generated key: bad or missing prefix")
    if _BODY_RE.fullmatch(body) is None:
        raise KeyFormatError(
            "malformed", f"not a generated key: expected {BODY_LENGTH} base62 chars after '_'"
        )
    key_id = body[:KEY_ID_LENGTH]
    secret = body[KEY_ID_LENGTH : KEY_ID_LENGTH + SECRET_LENGTH]
    checksum = body[KEY_ID_LENGTH + SECRET_LENGTH :]
    expected = _checksum(key[: len(key) - CHECKSUM_LENGTH])
    if not hmac.compare_digest(expected, checksum):
        raise KeyFormatError("bad-checksum", "not a valid key: checksum mismatch (typo?)")
    return ParsedKey(prefix=prefix, key_id=key_id, secret=secret, checksum=checksum)


def validate(key: str) -> bool:
    """True if ``key`` is a well-formed generated key with a correct checksum."""
    try:
        parse(key)
    except KeyFormatError:
        return False
    return True


def secret_hash(secret_part: str) -> str:
    """SHA-256 (hex) of a key's secret part: what verifiers store."""
    return hashlib.sha256(secret_part.encode("utf-8")).hexdigest()


def fingerprint(key: str) -> str:
    """The fingerprint of a generated key: :func:`secret_hash` of its secret.

    Raises :class:`KeyFormatError` if ``key`` is not a generated key.
    """
    return secret_hash(parse(key).secret)


# A slow, memory-hard hash: a value rotatectl did not generate may have little
# entropy (a password, a short token), and a plain SHA-256 of it could be
# brute-forced from a fingerprint shown in status or the audit log. The fixed
# salt keeps fingerprints comparable across hosts without a shared secret.
_SCRYPT_PREFIX = "scrypt1:"
_SCRYPT_SALT = b"rotatectl/fingerprint/v1"


def value_fingerprint(value: str) -> str:
    """Fingerprint of a whole value not in the generated format: ``scrypt1:<hex>``.

    scrypt (n=2**14, r=8, p=1) makes every guess cost tens of milliseconds
    and 16 MiB, so a fingerprint does not reveal a low-entropy value.
    """
    digest = hashlib.scrypt(
        value.encode("utf-8"), salt=_SCRYPT_SALT, n=2**14, r=8, p=1, dklen=32, maxmem=64 << 20
    )
    return _SCRYPT_PREFIX + digest.hex()


def fingerprint_of(value: str) -> str:
    """The fingerprint rotatectl records for ``value``, whatever its format."""
    try:
        return fingerprint(value)
    except KeyFormatError:
        return value_fingerprint(value)


def key_id_of(value: str, fingerprint: str) -> str:
    """The public key id of ``value``: its own when it is in the generated format, else
    a short, stable id derived from its ``fingerprint`` (never from the value)."""
    try:
        return parse(value).key_id
    except KeyFormatError:
        return "x" + hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()[:7]


def fingerprint_matches(recorded: str, value: str) -> bool:
    """Whether ``value`` is the value ``recorded`` was taken of (constant-time compare)."""
    if recorded.startswith(_SCRYPT_PREFIX):
        actual = value_fingerprint(value)
    else:
        try:
            actual = fingerprint(value)
        except KeyFormatError:
            # Fingerprints written before scrypt1: a plain SHA-256 of the value.
            actual = hashlib.sha256(value.encode("utf-8")).hexdigest()
    return hmac.compare_digest(recorded, actual)
