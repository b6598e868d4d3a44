"""Flows every database issuer's CLI tests share (tests/postgres, tests/mariadb,
tests/redis_acl): each server's tests pass their own login check and fields."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from .conftest import Cli


def secret(cli: Cli, name: str) -> dict[str, Any]:
    """The credential's current JSON secret, as `rotatectl get` prints it."""
    run = cli("get", name)
    assert run.code == 0, run.err
    doc: dict[str, Any] = json.loads(run.out)
    return doc


def rotations_alternate_and_retire_each_old_password(
    cli: Cli,
    name: str,
    users: Sequence[str],
    expected: dict[str, Any],
    works: Callable[[str, str], bool],
    rotations: int = 5,
) -> None:
    """The first key and ``rotations`` more through `rotate --wait`: each secret has
    exactly the fields of ``expected`` (their values as given) plus the username and
    password; the users alternate; the server (``works(user, password)``) accepts the
    last password and refuses every earlier one; v(n-1) retired, vn current; no
    password in any output but get's."""
    documents = []
    for _ in range(rotations + 1):
        run = cli("rotate", name, "--wait")
        assert run.code == 0, run.out + run.err
        documents.append(secret(cli, name))
    for number, doc in enumerate(documents, start=1):
        # The shape of AWS's database rotation templates: consumers keep working.
        assert set(doc) == {*expected, "username", "password"}
        assert {k: doc[k] for k in expected} == expected
        assert doc["username"] == users[(number - 1) % 2]
    assert works(str(documents[-1]["username"]), str(documents[-1]["password"]))
    for old in documents[:-1]:
        assert not works(str(old["username"]), str(old["password"]))
    status = json.loads(cli("-o", "json", "status", name).out)["credentials"][0]
    assert [v["state"] for v in status["versions"]][-2:] == ["retired", "current"]
    for done in cli.runs:
        if done.args[:1] != ("get",):
            for doc in documents:
                assert str(doc["password"]) not in done.out + done.err
