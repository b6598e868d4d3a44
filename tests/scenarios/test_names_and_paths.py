"""Names and paths (issue 16, item 3): one rule for every store, at config load and
on the command line.

- a path segment starting with ``.rotatectl`` is the stores' own (the AWS record
  secret ``<path>/.rotatectl``, Vault's ``P/.rotatectl/...``): no credential
  name or ``path`` may use one, and every store refuses one itself;
- two credentials on the same store and path would be one secret with two
  issuers: the config does not load.

Nested paths (``svc/a`` and ``svc/a/b``) share nothing in any store, so they stay
allowed; the last test shows it on every store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from rotatectl.errors import UsageError
from rotatectl.model import Version, VersionState
from tests.conftest import Cli, CliRun

from .conftest import PREFIX, STORES, Backend

PARENT = "svc/a"
RESERVED = "svc/a/.rotatectl"  # on AWS, the record secret of PARENT
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def one_line(run: CliRun, code: int, *words: str) -> str:
    """The run's only stderr line, checked to exit ``code`` and name ``words``."""
    assert run.code == code, (run.code, run.out, run.err)
    assert "Traceback" not in run.err
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rotatectl: error: "), run.err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def write_config(
    cli: Cli,
    credentials: Mapping[str, str],
    *,
    store_toml: str = "",
    store: str = "local",
) -> None:
    """rotatectl.toml: ``credentials`` (name -> extra TOML lines of its table)."""
    lines = [
        "[defaults]",
        f'store = "{store}"',
        'propagation = "0s"',
        'overlap = "0s"',
        "",
        store_toml,
        "",
    ]
    for name, table in credentials.items():
        lines += [
            f'[credentials."{name}"]',
            f'issuer = {{ type = "generated", prefix = "{PREFIX}" }}',
            table,
            "",
        ]
    (cli.cwd / "rotatectl.toml").write_text("\n".join(lines) + "\n")


def on_backend(backend: Backend, credentials: Mapping[str, str]) -> None:
    write_config(backend.cli, credentials, store_toml=backend.store_toml(None), store=backend.table)


def local_paths(cli: Cli) -> list[str]:
    """The paths in the default local store; none when nothing created it."""
    if not (cli.state_dir / "state.db").exists():
        return []
    store = cli.store()
    try:
        return store.list_paths()
    finally:
        store.close()


def version_states(backend: Backend, path: str) -> dict[int, str]:
    return {v.number: v.state.value for v in backend.store().versions(path)}


# -- the reserved segment, on the command line -------------------------------------


@pytest.mark.parametrize(
    "name",
    [RESERVED, ".rotatectl", "svc/.rotatectl/index", "svc/a/.rotatectl-access-check"],
)
def test_an_adhoc_name_with_a_reserved_segment_is_refused(cli: Cli, name: str) -> None:
    """No config at all: the name goes straight to the default (local) store."""
    for args in (("rotate", name), ("status", name), ("emergency", name, "--reason", "x")):
        one_line(cli(*args), 2, repr(name), ".rotatectl")
    assert local_paths(cli) == []


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_a_reserved_name_never_reaches_the_store(cli: Cli, backend: Backend) -> None:
    """On AWS, ``svc/a/.rotatectl`` is the record secret of ``svc/a``: rotating it as a
    credential of its own broke ``svc/a`` for good (or left a stray secret)."""
    backend.configure(names=())  # the backend's store, ad hoc names
    assert cli("rotate", PARENT).code == 0
    one_line(cli("rotate", RESERVED), 2, repr(RESERVED), ".rotatectl")
    run = cli("run")
    assert run.code == 0, run.out + run.err
    assert cli("rotate", PARENT).code == 0
    assert version_states(backend, PARENT) == {1: "retired", 2: "current"}
    assert backend.store().list_paths() == [PARENT]


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_every_store_refuses_a_reserved_segment_itself(backend: Backend) -> None:
    """The adapter applies the same rule, with the same message, whoever calls it."""
    store = backend.store()
    version = Version(
        version_id="v1",
        number=1,
        key_id="kid1",
        fingerprint="sha256:" + "0" * 64,
        state=VersionState.PENDING,
        created=T0,
    )
    for path in (RESERVED, "svc/.rotatectl/x", "svc/a/.rotatectl-access-check"):
        for call in (
            lambda p=path: store.versions(p),
            lambda p=path: store.publish(p, version, "rk_test_value"),
        ):
            with pytest.raises(UsageError, match=r"invalid credential path .*'\.rotatectl'"):
                call()
    assert store.list_paths() == []


# -- the reserved segment, in the config ---------------------------------------------


def test_a_declared_name_with_a_reserved_segment_is_a_config_error(cli: Cli) -> None:
    write_config(cli, {PARENT: "", RESERVED: ""})
    for args in (("check",), ("status",), ("run",), ("rotate", PARENT)):
        one_line(cli(*args), 2, f'credentials."{RESERVED}"', ".rotatectl")
    assert local_paths(cli) == []


@pytest.mark.parametrize("path", [RESERVED, "svc/a/.rotatectl/index", ".rotatectl"])
def test_a_path_with_a_reserved_segment_is_a_config_error(cli: Cli, path: str) -> None:
    write_config(cli, {PARENT: "", "svc/b": f'path = "{path}"'})
    one_line(cli("check"), 2, 'credentials."svc/b"', "path", repr(path), ".rotatectl")
    one_line(cli("rotate", "svc/b"), 2, 'credentials."svc/b"')
    assert local_paths(cli) == []


# -- two credentials on one store and path -------------------------------------------


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_two_credentials_on_one_store_and_path_do_not_load(cli: Cli, backend: Backend) -> None:
    """Before: ``check`` said ok, and rotating the second rotated the first's secret
    with the second's issuer."""
    on_backend(backend, {PARENT: ""})
    assert cli("rotate", PARENT).code == 0
    on_backend(backend, {PARENT: "", "svc/b": f'path = "{PARENT}"'})
    words = ('"svc/a"', '"svc/b"', f'store "{backend.table}"', f'path "{PARENT}"')
    for args in (("check",), ("rotate", "svc/b"), ("run",)):
        one_line(cli(*args), 2, *words)
    assert version_states(backend, PARENT) == {1: "current"}


def test_a_shared_destination_of_several_stores_collides(cli: Cli) -> None:
    stores = "".join(
        f'[stores.{n}]\ntype = "local"\npath = "{cli.root / n}.db"\n' for n in ("one", "two")
    )
    write_config(
        cli,
        {"svc/x": 'store = ["one", "two"]\npath = "shared"', "svc/y": 'store = "two"'},
        store_toml=stores,
    )
    assert cli("check").code == 0  # different paths
    write_config(
        cli,
        {
            "svc/x": 'store = ["one", "two"]\npath = "shared"',
            "svc/y": 'store = ["two"]\npath = "shared"',
        },
        store_toml=stores,
    )
    one_line(cli("check"), 2, '"svc/x"', '"svc/y"', 'store "two"', 'path "shared"')
    # Same path on different stores: two secrets, no collision.
    write_config(
        cli,
        {"svc/x": 'store = "one"\npath = "shared"', "svc/y": 'store = "two"\npath = "shared"'},
        store_toml=stores,
    )
    run = cli("check", "-o", "json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["ok"] is True


# -- nested paths are not a collision --------------------------------------------------


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_nested_paths_share_nothing_on_any_store(cli: Cli, backend: Backend) -> None:
    """``svc/a`` and ``svc/a/b``: the record of ``svc/a`` is ``svc/a/.rotatectl`` (AWS) or
    under it (Vault), never ``svc/a/b``; local keys rows by the whole path. So a
    parent path is no collision, and only the reserved segment is refused."""
    on_backend(backend, {PARENT: "", "svc/a/b": "", "svc": ""})
    for name in (PARENT, "svc/a/b", "svc", PARENT):
        run = cli("rotate", name)
        assert run.code == 0, run.out + run.err
    assert version_states(backend, PARENT) == {1: "retired", 2: "current"}
    assert version_states(backend, "svc/a/b") == {1: "current"}
    assert version_states(backend, "svc") == {1: "current"}
    assert sorted(backend.store().list_paths()) == ["svc", PARENT, "svc/a/b"]
    run = cli("run")
    assert run.code == 0, run.out + run.err
