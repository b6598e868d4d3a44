"""Bad input of every kind: no crash, no traceback, a clear one-line error."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotatectl.durations import parse_duration
from rotatectl.errors import CorruptRecordError
from rotatectl.model import Rotation, Version

from .conftest import Cli
from .test_cli import one_line_error

NAME = "partners/acme"


@given(st.text(max_size=40))
def test_any_duration_text_parses_or_is_a_value_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        assert "\n" not in str(exc)
    else:
        assert value >= timedelta(0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.one_of(
        json_values,
        st.dictionaries(st.sampled_from(list(Version.__dataclass_fields__)), json_values),
    )
)
def test_garbage_version_records_are_corrupt_record_errors(data: object) -> None:
    try:
        Version.from_dict(data)  # type: ignore[arg-type]
    except CorruptRecordError as exc:
        assert "\n" not in str(exc)


@given(
    st.one_of(
        json_values,
        st.dictionaries(st.sampled_from(list(Rotation.__dataclass_fields__)), json_values),
    )
)
def test_garbage_rotation_records_are_corrupt_record_errors(data: object) -> None:
    try:
        Rotation.from_dict(data)  # type: ignore[arg-type]
    except CorruptRecordError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize(
    "statement",
    [
        'UPDATE versions SET meta = \'{"number": "x"}\'',
        "UPDATE versions SET meta = 'not json at all'",
        "UPDATE rotations SET record = '[1, 2]'",
        "UPDATE versions SET state = 'bogus', meta = json_set(meta, '$.state', 'bogus')",
    ],
    ids=["wrong-field-type", "not-json", "not-an-object", "unknown-state"],
)
def test_store_contents_not_written_by_rotatectl(cli: Cli, statement: str) -> None:
    cli("rotate", NAME)
    with sqlite3.connect(cli.state_dir / "state.db") as conn:
        conn.execute(statement)
    for args in (("status",), ("rotate", NAME), ("run",)):
        run = cli(*args)
        assert run.code == 1, (args, run.out, run.err)
        assert "Traceback" not in run.err and "internal error" not in run.err
        assert "not what rotatectl wrote" in run.err


@pytest.mark.parametrize(
    "key",
    ["", "rk_", "rk_" + "A" * 57, "not a key", "rk_" + "é" * 57, "x" * 5000],
)
def test_the_verifier_side_key_parser_rejects_junk(key: str) -> None:
    from rotatectl import keyformat

    assert keyformat.validate(key) is False


def test_cli_rejects_bad_arguments_in_one_line(cli: Cli) -> None:
    for args in (
        ("rotate", NAME, "--propagation", "-1s"),
        ("run", "--jobs", "0"),
        ("status", "a//b"),
        ("emergency", NAME, "--reason"),
        ("audit", "show", "--since", "yesterday-ish"),
    ):
        one_line_error(cli(*args), 2)
    assert json.loads(cli("status", "-o", "json").out)["credentials"] == []
