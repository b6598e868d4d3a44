from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rotatectl import keyformat
from rotatectl.errors import ConfigError
from rotatectl.issuers.generated import GeneratedIssuer
from rotatectl.ports import KeyIssuer
from rotatectl.registry import AdapterContext, build
from rotatectl.testing.issuer_contract import IssuerContract


class TestGeneratedIssuer(IssuerContract):
    @pytest.fixture
    def issuer(self) -> KeyIssuer:
        return GeneratedIssuer(prefix="rk_test")


def ctx(tmp_path: Path) -> AdapterContext:
    return AdapterContext(
        table="credentials.x.issuer",
        base_dir=tmp_path,
        state_dir=tmp_path,
        config_file=tmp_path / "rotatectl.toml",
    )


def test_is_a_key_issuer() -> None:
    assert isinstance(GeneratedIssuer(), KeyIssuer)


def test_create_uses_prefix_and_key_id_as_ref() -> None:
    key = GeneratedIssuer(prefix="rk_live").create("partners/acme", "v1", ["read"])
    parsed = keyformat.parse(key.value)
    assert parsed.prefix == "rk_live"
    assert key.key_id == parsed.key_id == key.issuer_ref
    assert key.fingerprint == keyformat.fingerprint(key.value)


def test_list_keys_is_none_and_revocation_is_a_no_op() -> None:
    issuer = GeneratedIssuer()
    assert issuer.list_keys("c") is None
    issuer.disable("c", "whatever")
    issuer.enable("c", "whatever")
    issuer.delete("c", "whatever")


def test_from_config_default_prefix(tmp_path: Path) -> None:
    issuer = GeneratedIssuer.from_config({}, ctx(tmp_path))
    assert issuer.prefix == "rk"
    assert keyformat.parse(issuer.create("c", "v1", []).value).prefix == "rk"


def test_from_config_through_registry(tmp_path: Path) -> None:
    issuer = build("issuer", {"type": "generated", "prefix": "rk_live"}, ctx(tmp_path))
    assert isinstance(issuer, GeneratedIssuer)
    assert issuer.prefix == "rk_live"


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"prefix": "RK"}, "prefix"),
        ({"prefix": "9rk"}, "prefix"),
        ({"prefix": ""}, "prefix"),
        ({"prefix": "a" * 31}, "prefix"),
        ({"prefix": "rk-live"}, "prefix"),
        ({"prefix": 5}, "prefix"),
        ({"prfix": "rk"}, "prfix"),
    ],
)
def test_from_config_rejects(tmp_path: Path, settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        GeneratedIssuer.from_config(settings, ctx(tmp_path))
    message = str(info.value)
    assert "[credentials.x.issuer]" in message
    assert f" {key}:" in message
    assert "rotatectl.toml" in message


def test_constructor_rejects_bad_prefix() -> None:
    with pytest.raises(ValueError):
        GeneratedIssuer(prefix="Bad")
