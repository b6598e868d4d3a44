"""``examples/issuers/README.md`` as written: each of its config tables, in a config
beside copies of the examples (their relative paths taken from the config's
directory), passes ``rotatectl issuer-test`` against a real ``admin_api.py`` (the
README's port replaced by the test server's) and leaves no key behind."""

from __future__ import annotations

import re
import shutil
import tomllib

import pytest

from ..conftest import Cli
from .conftest import EXAMPLES, AdminApi

README = (EXAMPLES / "README.md").read_text()
TABLES = re.findall(r"```toml\n(.*?)```", README, re.S)


def test_the_readme_has_a_table_per_example() -> None:
    issuers = [tomllib.loads(t)["credentials"] for t in TABLES]
    kinds = [(c["issuer"]["type"], c["issuer"].get("command")) for d in issuers for c in d.values()]
    assert kinds == [
        ("command", ["./admin_api_issuer.py"]),
        ("http", None),
        ("command", ["./file_issuer.sh"]),
    ]


@pytest.mark.parametrize("table", TABLES, ids=["command", "http", "file"])
def test_each_readme_table_passes_issuer_test(
    cli: Cli, admin_api: AdminApi, table: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for script in ("admin_api_issuer.py", "file_issuer.sh"):
        shutil.copy2(EXAMPLES / script, cli.cwd / script)
    keys = tmp_path_factory.mktemp("keys")  # outside cli.root: key files hold keys
    cli.env.update({**admin_api.env, "KEYS_DIR": str(keys)})
    port = admin_api.url.rsplit(":", 1)[1]
    (cli.cwd / "rotatectl.toml").write_text(table.replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
    [name] = tomllib.loads(table)["credentials"]
    run = cli("issuer-test", name)
    assert run.code == 0, run.out + run.err
    assert ", 0 failed" in run.out, run.out
    assert admin_api.keys(f"issuer-test/{name}") == []
    assert list(keys.iterdir()) == []
