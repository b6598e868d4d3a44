from __future__ import annotations

import hashlib
import re
import zlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rotatectl import keyformat
from rotatectl.keyformat import KeyFormatError, ParsedKey

PREFIXES = st.from_regex(r"[a-z][a-z0-9_]{0,29}", fullmatch=True)
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def reference_checksum(head: str) -> str:
    """An independent implementation of the documented checksum encoding."""
    n = zlib.crc32(head.encode())
    out = ""
    for _ in range(6):
        n, r = divmod(n, 62)
        out = BASE62[r] + out
    assert n == 0
    return out


# A pinned example, so that any change to the encoding is deliberate.
EXAMPLE_HEAD = "rk_live_" + "AbCd1234" + "x" * 43
EXAMPLE = EXAMPLE_HEAD + reference_checksum(EXAMPLE_HEAD)


def test_pinned_example_parses() -> None:
    parsed = keyformat.parse(EXAMPLE)
    assert parsed.prefix == "rk_live"
    assert parsed.key_id == "AbCd1234"
    assert parsed.secret == "x" * 43
    assert parsed.checksum == reference_checksum(EXAMPLE_HEAD)
    assert keyformat.fingerprint(EXAMPLE) == hashlib.sha256(b"x" * 43).hexdigest()


def test_default_prefix_and_shape() -> None:
    key = keyformat.generate()
    assert re.fullmatch(r"rk_[0-9A-Za-z]{57}", key)
    assert keyformat.validate(key)


@given(PREFIXES)
def test_generate_parse_roundtrip(prefix: str) -> None:
    key = keyformat.generate(prefix)
    parsed = keyformat.parse(key)
    assert parsed.prefix == prefix
    assert key == f"{prefix}_{parsed.key_id}{parsed.secret}{parsed.checksum}"
    assert len(parsed.key_id) == 8
    assert len(parsed.secret) == 43
    assert parsed.checksum == reference_checksum(key[:-6])
    assert keyformat.validate(key)


@given(PREFIXES, st.data())
def test_any_single_char_substitution_is_rejected(prefix: str, data: st.DataObject) -> None:
    key = keyformat.generate(prefix)
    i = data.draw(st.integers(0, len(key) - 1), label="index")
    char = data.draw(st.characters(), label="replacement")
    assume(char != key[i])
    typo = key[:i] + char + key[i + 1 :]
    with pytest.raises(KeyFormatError) as info:
        keyformat.parse(typo)
    assert info.value.reason in ("malformed", "bad-checksum")
    assert not keyformat.validate(typo)


@given(PREFIXES, st.data())
def test_body_substitution_with_base62_is_a_bad_checksum(prefix: str, data: st.DataObject) -> None:
    key = keyformat.generate(prefix)
    i = data.draw(st.integers(len(key) - 57, len(key) - 1), label="index")
    char = data.draw(st.sampled_from(BASE62), label="replacement")
    assume(char != key[i])
    with pytest.raises(KeyFormatError) as info:
        keyformat.parse(key[:i] + char + key[i + 1 :])
    assert info.value.reason == "bad-checksum"


@given(st.text(max_size=120))
def test_random_strings_only_raise_key_format_error(text: str) -> None:
    try:
        parsed = keyformat.parse(text)
    except KeyFormatError as exc:
        assert exc.reason in ("malformed", "bad-checksum")
        assert isinstance(exc, ValueError)
    else:  # astronomically unlikely, but then it must really be valid
        assert text.endswith(parsed.checksum)


@given(st.text(min_size=8, max_size=120))
def test_error_messages_never_contain_the_input(text: str) -> None:
    with pytest.raises(KeyFormatError) as info:
        keyformat.parse(text)
    # Messages are fixed text; an input that happens to be a word of them proves nothing.
    fixed = (
        "not a generated key: expected 59-88 chars | not a generated key: bad or missing prefix | "
        "not a generated key: expected 57 base62 chars after '_' | "
        "not a valid key: checksum mismatch (typo?) | KeyFormatError malformed bad-checksum"
    )
    assume(text not in fixed)
    assert text not in str(info.value)
    assert text not in repr(info.value)


@given(PREFIXES, st.data())
def test_errors_for_near_miss_keys_leak_no_part_of_the_key(
    prefix: str, data: st.DataObject
) -> None:
    key = keyformat.generate(prefix)
    parsed = keyformat.parse(key)
    i = data.draw(st.integers(0, len(key) - 1))
    char = data.draw(st.sampled_from(BASE62 + "_-. "))
    assume(char != key[i])
    typo = key[:i] + char + key[i + 1 :]
    with pytest.raises(KeyFormatError) as info:
        keyformat.parse(typo)
    shown = f"{info.value} {info.value!r} {info.value.args}"
    for part in (typo, key, parsed.secret, parsed.key_id):
        assert part not in shown


@pytest.mark.parametrize(
    "text",
    [
        "",
        "rk",
        "rk_",
        "Rk_" + "A" * 57,  # uppercase prefix
        "1k_" + "A" * 57,  # prefix must start with a letter
        "_" + "A" * 57,  # empty prefix
        "rk-" + "A" * 57,  # no separator
        "rk_" + "A" * 56,  # short body
        "rk_" + "A" * 58,  # long body
        "rk_" + "A" * 56 + "!",  # non-base62
        "rk_" + "A" * 56 + "\u0661",  # non-ASCII digit
        "a" * 31 + "_" + "A" * 57,  # prefix too long
        EXAMPLE + "\n",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(KeyFormatError) as info:
        keyformat.parse(text)
    assert info.value.reason == "malformed"


def test_longest_prefix_is_accepted() -> None:
    key = keyformat.generate("a" * 30)
    assert keyformat.parse(key).prefix == "a" * 30


@pytest.mark.parametrize("prefix", ["", "Rk", "9k", "rk-live", "a" * 31, "rk live"])
def test_generate_rejects_bad_prefix(prefix: str) -> None:
    with pytest.raises(ValueError):
        keyformat.generate(prefix)


def test_entropy() -> None:
    assert 62**43 > 2**256
    keys = [keyformat.parse(keyformat.generate()) for _ in range(2000)]
    secrets_seen = {k.secret for k in keys}
    assert len(secrets_seen) == len(keys)
    assert len({k.key_id for k in keys}) == len(keys)
    chars = set("".join(secrets_seen))
    assert chars == set(BASE62)  # the whole alphabet is used (2000*43 draws)
    assert all(len(s) == 43 and set(s) <= set(BASE62) for s in secrets_seen)


def test_parsed_key_repr_redacts_secret() -> None:
    parsed = keyformat.parse(EXAMPLE)
    assert parsed.secret not in repr(parsed)
    assert parsed.secret not in str(parsed)
    assert "AbCd1234" in repr(parsed)
    assert isinstance(parsed, ParsedKey)


def test_hashes() -> None:
    secret = keyformat.parse(EXAMPLE).secret
    assert keyformat.secret_hash(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert keyformat.fingerprint(EXAMPLE) == keyformat.secret_hash(secret)
    slow = keyformat.value_fingerprint(EXAMPLE)
    assert slow.startswith("scrypt1:") and slow == keyformat.value_fingerprint(EXAMPLE)
    assert hashlib.sha256(EXAMPLE.encode()).hexdigest() not in slow
    assert slow != keyformat.fingerprint(EXAMPLE)
    assert keyformat.fingerprint_matches(slow, EXAMPLE)
    assert not keyformat.fingerprint_matches(slow, EXAMPLE + "x")
    assert keyformat.fingerprint_of(EXAMPLE) == keyformat.fingerprint(EXAMPLE)
    assert keyformat.fingerprint_of("hunter2") == keyformat.value_fingerprint("hunter2")
    assert keyformat.fingerprint_matches(keyformat.fingerprint(EXAMPLE), EXAMPLE)
    with pytest.raises(KeyFormatError):
        keyformat.fingerprint("AKIAIOSFODNN7EXAMPLE")


def test_checksum_does_not_hash_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("parse/validate must not hash with SHA-256")

    monkeypatch.setattr("hashlib.sha256", forbidden)
    assert keyformat.validate(EXAMPLE)
    keyformat.parse(EXAMPLE)
