"""The issuer contract for the three plug-in examples (issue 20): the ``command`` issuer
running ``admin_api_issuer.py`` and ``file_issuer.sh``, and the ``http`` issuer
against ``admin_api.py``'s own ``/rotatectl/{operation}`` endpoint. Each also answers
``test`` (does the service accept the key?) and repeats a create after a crash by
listing the first key with its version id."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotatectl.issuers.command import CommandIssuer, CommandTransport
from rotatectl.issuers.http import HttpIssuer, HttpTransport
from rotatectl.issuers.protocol import ProtocolIssuer
from rotatectl.ports import KeyIssuer
from rotatectl.testing.issuer_contract import IssuerContract, Mint

from .conftest import ADMIN_API_ISSUER, FILE_ISSUER, AdminApi


class PluginChecks(IssuerContract):
    """What rotatectl relies on beyond the contract, for a protocol plug-in."""

    def test_test_accepts_an_enabled_key_only(
        self, issuer: ProtocolIssuer, credential: str, mint: Mint
    ) -> None:
        def accepted(ref: str, value: str) -> bool:
            answer = issuer.test(credential, ref, value)
            assert answer is not None, "the examples all implement test"
            ok, detail = answer
            assert detail and value not in detail
            return ok

        _, key = mint()
        _, other = mint()
        assert accepted(key.issuer_ref, key.value)
        assert not accepted(key.issuer_ref, key.value + "x")
        assert not accepted(key.issuer_ref, other.value)  # another key's value
        issuer.disable(credential, key.issuer_ref)
        assert not accepted(key.issuer_ref, key.value)
        issuer.enable(credential, key.issuer_ref)
        assert accepted(key.issuer_ref, key.value)

    def test_a_repeated_create_lists_the_first_key_with_its_version(
        self, issuer: KeyIssuer, credential: str
    ) -> None:
        first = issuer.create(credential, "v-repeated", ("read",))
        again = issuer.create(credential, "v-repeated", ("read",))
        try:
            assert again.issuer_ref != first.issuer_ref
            listed = issuer.list_keys(credential)
            assert listed is not None
            tags = {k.issuer_ref: k.tag for k in listed}
            assert tags == {first.issuer_ref: "v-repeated", again.issuer_ref: "v-repeated"}
        finally:
            issuer.delete(credential, first.issuer_ref)
            issuer.delete(credential, again.issuer_ref)

    def test_list_holds_only_the_credentials_keys(
        self, issuer: KeyIssuer, credential: str, mint: Mint
    ) -> None:
        _, key = mint()
        other = issuer.list_keys(credential + "-other")
        assert other is not None and key.issuer_ref not in {k.issuer_ref for k in other}


class TestAdminApiCommandIssuer(PluginChecks):
    @pytest.fixture
    def issuer(self, api_env: AdminApi) -> KeyIssuer:
        return CommandIssuer(CommandTransport([str(ADMIN_API_ISSUER)]))

    def test_keys_are_tagged_in_the_admin_apis_metadata(
        self, issuer: KeyIssuer, credential: str, mint: Mint, api_env: AdminApi
    ) -> None:
        version, key = mint()
        [listed] = api_env.keys(credential)
        assert listed["id"] == key.issuer_ref == key.key_id
        assert listed["metadata"] == {"credential": credential, "version_id": version}
        assert "secret" not in listed and "sha256" not in listed


class TestFileCommandIssuer(PluginChecks):
    @pytest.fixture
    def issuer(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KeyIssuer:
        monkeypatch.setenv("KEYS_DIR", str(tmp_path / "keys"))
        return CommandIssuer(CommandTransport([str(FILE_ISSUER)]))

    def test_a_key_file_is_private(self, tmp_path: Path, mint: Mint) -> None:
        _, key = mint()
        path = tmp_path / "keys" / f"{key.issuer_ref}.key"
        assert path.read_text() == key.value
        assert path.stat().st_mode & 0o777 == 0o600


class TestAdminApiHttpIssuer(PluginChecks):
    @pytest.fixture
    def issuer(self, admin_api: AdminApi) -> KeyIssuer:
        return HttpIssuer(HttpTransport(admin_api.rotatectl_url, lambda: admin_api.hmac_secret))
