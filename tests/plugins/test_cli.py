"""The three plug-in examples through the real CLI on the local store (issue 20): three
rotations, a rollback and an emergency, and after each only the current key works at
the service (``/whoami``, or for the file issuer an active key file) while every
earlier one is refused; no key in any output but ``get``'s."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..conftest import Cli
from .conftest import ADMIN_API_ISSUER, FILE_ISSUER, AdminApi


@dataclass
class Plugin:
    """One example as the CLI is configured with it, and how to ask its service."""

    issuer: str  # the credential's `issuer = {...}` table
    accepts: Callable[[str], bool]  # does the service take this key?
    active_refs: Callable[[], set[str]]  # the references of the keys that work now
    logs: Callable[[], str]  # what the plug-in's side wrote (checked for keys)
    held: Callable[[str], set[str]]  # the references of every key of a credential


def configure(cli: Cli, name: str, issuer: str, **defaults: str) -> None:
    settings = {"propagation": "0s", "overlap": "0s", **defaults}
    lines = "".join(f'{key} = "{value}"\n' for key, value in settings.items())
    (cli.cwd / "rotatectl.toml").write_text(
        f'[defaults]\n{lines}\n[credentials."{name}"]\nissuer = {issuer}\n'
    )


def admin_api_plugin(admin_api: AdminApi, cli: Cli, name: str, issuer: str) -> Plugin:
    cli.env.update(admin_api.env)
    return Plugin(
        issuer,
        lambda key: admin_api.whoami(key) == 200,
        lambda: admin_api.enabled(name),
        admin_api.log.read_text,
        lambda credential: {k["id"] for k in admin_api.keys(credential)},
    )


def file_plugin(keys: Path, cli: Cli, name: str) -> Plugin:
    # Outside cli.root: the harness looks for key values in every file there.
    cli.env["KEYS_DIR"] = str(keys)

    def meta(ref: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((keys / f"{ref}.meta").read_text())
        return data

    def accepts(key: str) -> bool:
        return any(
            f.read_text() == key and meta(f.stem)["active"] is True for f in keys.glob("*.key")
        )

    def held(credential: str) -> set[str]:
        return {f.stem for f in keys.glob("*.meta") if meta(f.stem)["credential"] == credential}

    def active_refs() -> set[str]:
        return {ref for ref in held(name) if meta(ref)["active"]}

    table = f'{{ type = "command", command = ["{FILE_ISSUER}"] }}'
    return Plugin(table, accepts, active_refs, str, held)


@pytest.fixture(params=["admin-api-command", "file-command", "admin-api-http"])
def plugin(
    request: pytest.FixtureRequest,
    cli: Cli,
    name: str,
    admin_api: AdminApi,
    tmp_path_factory: pytest.TempPathFactory,
) -> Plugin:
    if request.param == "file-command":
        found = file_plugin(tmp_path_factory.mktemp("keys"), cli, name)
    elif request.param == "admin-api-command":
        table = f'{{ type = "command", command = ["{ADMIN_API_ISSUER}"] }}'
        found = admin_api_plugin(admin_api, cli, name, table)
    else:
        table = (
            f'{{ type = "http", url = "{admin_api.rotatectl_url}", '
            'secret_env = "ADMIN_API_HMAC_SECRET" }'
        )
        found = admin_api_plugin(admin_api, cli, name, table)
    configure(cli, name, found.issuer)
    return found


def current(cli: Cli, name: str) -> str:
    run = cli("get", name)
    assert run.code == 0, run.err
    return run.out.strip()


def status(cli: Cli, name: str) -> dict[str, Any]:
    run = cli("-o", "json", "status", name)
    assert run.code == 0, run.err
    data: dict[str, Any] = json.loads(run.out)["credentials"][0]
    return data


def only_the_current_key_works(cli: Cli, name: str, plugin: Plugin, seen: list[str]) -> str:
    """The current key works, every other key seen is refused, and the keys that work
    at the service are exactly the versions the store accepts."""
    key = current(cli, name)
    if key not in seen:
        seen.append(key)
    assert plugin.accepts(key), "the current key is refused"
    for number, old in enumerate(seen, start=1):
        if old != key:
            assert not plugin.accepts(old), f"key #{number} seen still works"
    store = cli.store()  # read directly: a `status` per check would slow the test
    try:
        accepted = {v.issuer_ref for v in store.versions(name) if v.state.accepted}
    finally:
        store.close()
    assert plugin.active_refs() == accepted
    return key


def test_rotations_rollback_and_emergency(cli: Cli, name: str, plugin: Plugin) -> None:
    seen: list[str] = []
    for _ in range(3):
        run = cli("rotate", name, "--wait")
        assert run.code == 0, run.out + run.err
        only_the_current_key_works(cli, name, plugin, seen)
    assert len(seen) == 3
    states = [v["state"] for v in status(cli, name)["versions"]]
    assert states == ["retired", "retired", "current"]

    run = cli("rollback", name, "--reason", "clients broke")
    assert run.code == 0, run.out + run.err
    assert only_the_current_key_works(cli, name, plugin, seen) == seen[1]  # v2 again

    run = cli("emergency", name, "--reason", "pasted in chat", "--yes")
    assert run.code == 0, run.out + run.err
    assert "old key revoked" in run.out
    assert only_the_current_key_works(cli, name, plugin, seen) == seen[3]
    assert not plugin.accepts(seen[1])  # the compromised key

    # The canary: no key in any output but get's, nor in the service's log.
    texts = [(r.args, r.out + r.err) for r in cli.runs if not r.reveals]
    texts.append((("plug-in log",), plugin.logs()))
    for key in seen:
        for args, text in texts:
            assert key not in text, f"a key leaked into {args}"
