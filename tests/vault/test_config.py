"""Settings of the vault store: resolution from the table and the environment, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rotatectl.errors import ConfigError
from rotatectl.registry import AdapterContext
from rotatectl.stores.vault import VaultStore

URL = "http://127.0.0.1:8200"


def ctx(tmp_path: Path, **env: str) -> AdapterContext:
    return AdapterContext(
        table="stores.vault",
        base_dir=tmp_path,
        state_dir=tmp_path,
        config_file=tmp_path / "rotatectl.toml",
        env={"HOME": str(tmp_path), **env},
    )


def build(tmp_path: Path, settings: dict[str, Any], **env: str) -> VaultStore:
    env.setdefault("VAULT_TOKEN", "s.test-token")
    return VaultStore.from_config(settings, ctx(tmp_path, **env))


def test_defaults_and_environment(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    store = build(
        tmp_path,
        {},
        VAULT_ADDR=URL,
        BAO_ADDR="http://ignored:1",
        BAO_NAMESPACE="team-a",
        VAULT_CACERT="ca.pem",
    )
    c = store.connection
    assert (c.url, c.namespace, c.verify) == (URL, "team-a", str(tmp_path / "ca.pem"))
    assert (store.mount, store.prefix) == ("secret", "")
    assert c.auth.method == "token" and c.auth.token_source == "$VAULT_TOKEN"
    assert "s.test-token" not in repr(c) and "s.test-token" not in repr(store)
    store = build(
        tmp_path, {"url": "https://v:8200/", "namespace": "ns", "mount": "kv/", "prefix": "/a/b/"}
    )
    assert (store.url, store.connection.namespace, store.mount, store.prefix) == (
        "https://v:8200",
        "ns",
        "kv",
        "a/b",
    )


def test_client_certificate_and_ca_path(tmp_path: Path) -> None:
    for name in ("c.pem", "k.pem"):
        (tmp_path / name).write_text("x")
    (tmp_path / "cas").mkdir()
    store = build(
        tmp_path, {"url": URL, "client_cert": "c.pem", "client_key": "k.pem", "ca_path": "cas"}
    )
    assert store.connection.cert == (str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    assert store.connection.verify == str(tmp_path / "cas")


@pytest.mark.parametrize(
    ("settings", "env", "key", "message"),
    [
        ({}, {}, "url", "no server address"),
        ({"url": "vault:8200"}, {}, "url", "http:// or https://"),
        ({"url": URL, "colour": "red"}, {}, "colour", "unknown key"),
        ({"url": URL, "mount": "a//b"}, {}, "mount", "KV v2 mount"),
        ({"url": URL, "prefix": "a/.rotatectl"}, {}, "prefix", "invalid path prefix"),
        ({"url": URL, "timeout": 0}, {}, "timeout", "positive"),
        ({"url": URL, "ca_cert": "nope.pem"}, {}, "ca_cert", "does not exist"),
        ({"url": URL, "client_cert": "c.pem"}, {}, "client_cert", "together"),
        ({"url": URL, "auth": {"method": "ldap"}}, {}, "auth.method", "one of token"),
        ({"url": URL, "auth": {"method": "token", "role": "x"}}, {}, "auth.role", "not used"),
        ({"url": URL, "auth": {"method": "approle"}}, {}, "auth.role_id", "required"),
        (
            {"url": URL, "auth": {"method": "approle", "role_id": "r"}},
            {},
            "auth",
            "exactly one of secret_id_file, secret_id_env",
        ),
        (
            {"url": URL, "auth": {"method": "approle", "role_id": "r", "secret_id_env": "SID"}},
            {},
            "auth.secret_id_env",
            "$SID is not set",
        ),
        (
            {"url": URL, "auth": {"method": "approle", "role_id": "r", "secret_id_file": "f"}},
            {},
            "auth.secret_id_file",
            "does not exist",
        ),
        ({"url": URL, "auth": {"method": "kubernetes"}}, {}, "auth.role", "required"),
        (
            {"url": URL, "auth": {"method": "kubernetes", "role": "r", "jwt_path": "nope"}},
            {},
            "auth.jwt_path",
            "does not exist",
        ),
        ({"url": URL, "auth": {"method": "approle", "role_id": ""}}, {}, "auth.role_id", "empty"),
    ],
)
def test_invalid_settings_name_the_key(
    tmp_path: Path, settings: dict[str, Any], env: dict[str, str], key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build(tmp_path, settings, **env)
    text = str(info.value)
    assert f"[stores.vault] {key}:" in text and message in text
    assert "s.test-token" not in text


def test_no_token_anywhere_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[stores.vault\] auth: no token: set \$VAULT_TOKEN"):
        VaultStore.from_config({"url": URL}, ctx(tmp_path))


def test_bao_token_alias(tmp_path: Path) -> None:
    store = VaultStore.from_config({"url": URL}, ctx(tmp_path, BAO_TOKEN="s.bao"))
    assert store.connection.auth.token_source == "$BAO_TOKEN"
