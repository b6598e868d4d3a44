"""The JSON secret format (rotatectl.secretformat): property tests that any JSON object,
however it is written, round-trips with only the rotated fields changed, byte for byte;
table tests of what is refused; and the canary (no field's value survives scrubbing,
no error names a value)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rotatectl import keyformat, redact, secretformat
from rotatectl.model import Version, VersionState
from rotatectl.secretformat import DocumentError, SecretFormat

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
documents = st.dictionaries(st.text(max_size=10), values, max_size=6)
# How another tool may have written the document: compact, indented, sorted, escaped.
styles = st.fixed_dictionaries(
    {
        "indent": st.sampled_from([None, 0, 2, "\t"]),
        "separators": st.sampled_from([None, (",", ":"), (" , ", " : ")]),
        "ensure_ascii": st.booleans(),
        "sort_keys": st.booleans(),
    }
)


def raw(text: str) -> dict[str, str]:
    return {name: text[s:e] for name, (s, e) in secretformat.spans(text).items()}


@settings(max_examples=300, deadline=None)
@given(documents, styles, st.text(min_size=1, max_size=10), st.text(min_size=1, max_size=60))
def test_any_document_round_trips_with_only_the_key_field_changed(
    doc: dict[str, Any], style: dict[str, Any], field: str, key: str
) -> None:
    text = json.dumps(doc, **style)
    result = secretformat.splice(text, {field: key})
    assert json.loads(result) == {**doc, field: key}
    before, after = raw(text), raw(result)
    assert {k: v for k, v in after.items() if k != field} == {
        k: v for k, v in before.items() if k != field
    }
    assert secretformat.key_of(result, field) == key
    if field in before:
        start, end = secretformat.spans(text)[field]
        assert result == text[:start] + json.dumps(key, ensure_ascii=False) + text[end:]
    else:
        assert result.startswith(text[: text.rindex("}")])


@settings(max_examples=200, deadline=None)
@given(documents, styles, st.dictionaries(st.text(max_size=6), values, max_size=3))
def test_static_fields_are_set_and_a_field_already_equal_is_left_byte_for_byte(
    doc: dict[str, Any], style: dict[str, Any], static: dict[str, Any]
) -> None:
    static = {k: v for k, v in static.items() if k != "api_key"}
    fmt = SecretFormat(field="api_key", static=static)
    text = json.dumps({**doc, **static}, **style)
    key = keyformat.generate()
    result = fmt.compose(text, key)
    assert json.loads(result) == {**doc, **static, "api_key": key}
    before, after = raw(text), raw(result)
    for name in before:
        if name != "api_key":
            assert after[name] == before[name]


def test_several_rotations_keep_every_other_byte() -> None:
    fmt = SecretFormat(field="api_key")
    text = '{ "username":"svc",\n  "api_key" : "old", "n": 1.50, "u": "\\u00e9" }'
    keys = [keyformat.generate() for _ in range(5)]
    for key in keys:
        new = fmt.compose(text, key)
        assert new == text.replace(f'"{secretformat.key_of(text, "api_key")}"', json.dumps(key), 1)
        text = new
    assert secretformat.key_of(text, "api_key") == keys[-1]
    assert raw(text)["n"] == "1.50" and raw(text)["u"] == '"\\u00e9"'


def test_a_first_document_holds_the_static_fields_and_the_issuers_extra_values() -> None:
    fmt = SecretFormat(field="password", static={"host": "db", "port": 5432})
    made = fmt.compose(None, "s3cret-value", {"username": "app_v2"})
    assert json.loads(made) == {
        "host": "db",
        "port": 5432,
        "username": "app_v2",
        "password": "s3cret-value",
    }
    with pytest.raises(ValueError, match='declare format = "json"'):
        SecretFormat().compose(None, "k", {"username": "app_v2"})
    assert SecretFormat().compose("ignored", "bare-key") == "bare-key"


CANARY = "CANARY-zz9-plural-z-alpha"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f'["{CANARY}"]', "not a JSON object"),
        (f'"{CANARY}"', "not a JSON object"),
        (CANARY, "not a JSON object"),
        (f'{{"a": "{CANARY}", "a": 1}}', "names field 'a' twice"),
        (f'{{"a": "{CANARY}"}} trailing', "text follows it"),
        (f'{{"a": "{CANARY}",}}', "a field name was expected"),
        (f'{{"a" "{CANARY}"}}', "':' was expected"),
        (f'{{"a": {CANARY}}}', "not valid JSON at field 'a'"),
        (f'{{"a": "{CANARY}" "b": 1}}', "',' or '}' was expected"),
        (f'{{"a": "{CANARY}"', "',' or '}' was expected"),
        ('{"a\\x": 1}', "a field name is broken"),
        ("", "not a JSON object"),
    ],
)
def test_a_malformed_document_is_refused_without_naming_its_value(text: str, problem: str) -> None:
    with pytest.raises(DocumentError, match=problem) as raised:
        secretformat.spans(text)
    assert CANARY not in str(raised.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f'{{"user": "{CANARY}"}}', "has no field 'api_key'"),
        (f'{{"api_key": 12, "user": "{CANARY}"}}', "field 'api_key' is not a string"),
        (f'{{"api_key": {{"k": "{CANARY}"}}}}', "field 'api_key' is not a string"),
    ],
)
def test_a_document_without_the_key_is_refused_without_naming_a_value(
    text: str, problem: str
) -> None:
    with pytest.raises(DocumentError, match=problem) as raised:
        secretformat.key_of(text, "api_key")
    assert CANARY not in str(raised.value)


def test_matches_goes_by_the_key_in_the_field() -> None:
    key, other = keyformat.generate(), keyformat.generate()
    version = Version(
        version_id="v1",
        number=1,
        key_id=keyformat.parse(key).key_id,
        fingerprint=keyformat.fingerprint(key),
        state=VersionState.CURRENT,
        created=datetime(2026, 1, 1, tzinfo=UTC),
        field="api_key",
    )
    assert secretformat.matches(version, json.dumps({"api_key": key, "x": 1}))
    assert not secretformat.matches(version, json.dumps({"api_key": other}))
    assert not secretformat.matches(version, key)  # the bare key is not the document
    assert not secretformat.matches(version, "{broken")
    bare = dataclasses.replace(version, field="")
    assert secretformat.matches(bare, key)
    assert not secretformat.matches(bare, json.dumps({"api_key": key}))


@pytest.fixture
def registered() -> Iterator[None]:
    """Forget what the test registers: random strings must not mask other tests' output
    in this process."""
    kept = set(redact._values)
    yield
    redact.forget_all_but(kept)


# The fixture runs once around all examples: what they register is forgotten after.
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(documents, styles)
def test_the_canary_no_string_of_a_registered_document_survives_scrubbing(
    registered: None, doc: dict[str, Any], style: dict[str, Any]
) -> None:
    text = json.dumps(doc, **style)
    secretformat.register(text)
    strings: list[str] = []
    stack: list[Any] = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    secret = [s for s in strings if len(s) >= 8 and s not in redact.MASK]
    output = redact.scrub(" | ".join(["before", *secret, text, "after"]))
    for value in secret:
        assert value not in output.replace(redact.MASK, "\0")
