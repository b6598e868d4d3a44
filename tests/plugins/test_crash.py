"""The ``command`` issuer running ``admin_api_issuer.py``, and the ``http`` issuer
against the admin API's endpoint, killed at every boundary of a rotation (issue 20):
the real CLI is SIGKILLed where it pauses, then ``run`` resumes. After every resume
each key the admin API holds enabled for the credential is a version the store
accepts, each accepted version's key is taken by ``/whoami``, and the API holds no
key the store does not record (an orphan of the kill was deleted)."""

from __future__ import annotations

import time

import pytest

from rotatectl.engine import BOUNDARIES
from rotatectl.model import VersionState

from .. import dbflows
from ..conftest import Cli
from .conftest import ADMIN_API_ISSUER, AdminApi
from .test_cli import configure


@pytest.mark.long  # ~20-30 s each: 12 kills, each resumed
@pytest.mark.parametrize("kind", ["command", "http"])
def test_kill_at_every_boundary_then_resume(
    cli: Cli, name: str, admin_api: AdminApi, kind: str
) -> None:
    cli.env.update(admin_api.env)
    issuer = (
        f'{{ type = "command", command = ["{ADMIN_API_ISSUER}"] }}'
        if kind == "command"
        else f'{{ type = "http", url = "{admin_api.rotatectl_url}", '
        'secret_env = "ADMIN_API_HMAC_SECRET" }'
    )
    configure(cli, name, issuer, retain="1s")
    assert cli("rotate", name, "--wait").code == 0
    for boundary in BOUNDARIES:
        if boundary.startswith("after-destroy"):
            # A key retired longer than retain (1 s) ago, for `run` to destroy.
            assert cli("rotate", name, "--wait").code == 0
            time.sleep(1.2)
            dbflows.kill_at(cli, boundary, "run")
        else:
            dbflows.kill_at(cli, boundary, "rotate", name, "--wait")
        resumed = cli("run")
        assert resumed.code == 0, resumed.out + resumed.err
        when = f"resumed after a kill at {boundary}"
        if boundary == "after-issue":  # the key minted before the kill is revoked
            assert "revoked orphan key" in resumed.out, f"{when}: {resumed.out}"
        # Read from the store directly: a CLI call per check would double the time.
        store = cli.store()
        try:
            versions = store.versions(name)
            accepted = {
                v.issuer_ref: store.read_value(name, v.version_id)
                for v in versions
                if v.state.accepted
            }
        finally:
            store.close()
        enabled = admin_api.enabled(name)
        assert enabled <= set(accepted), f"{when}: {enabled - set(accepted)} work, unaccepted"
        for ref, key in accepted.items():
            assert admin_api.whoami(key) == 200, f"{when}: accepted {ref} is refused"
        recorded = {v.issuer_ref for v in versions if v.state is not VersionState.DESTROYED}
        held = {k["id"] for k in admin_api.keys(name)}
        assert held <= recorded, f"{when}: orphans at the admin API: {held - recorded}"
    states = [v.state for v in versions]
    assert states[-1] is VersionState.CURRENT and VersionState.DESTROYED in states
