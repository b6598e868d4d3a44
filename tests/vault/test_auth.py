"""Authentication against the real server: token, AppRole, renewal; connection errors."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from rotatectl.errors import PermissionDeniedError, StoreUnavailableError
from rotatectl.registry import AdapterContext
from rotatectl.stores.vault import VaultStore
from rotatectl.testing.store_contract import PATH, T0, TTL, make_version, value_for
from rotatectl.vault_auth import AuthSettings, Connection

from .conftest import Vault, free_port
from .test_layout import policy_text


def ctx(tmp_path: Path, **env: str) -> AdapterContext:
    return AdapterContext(
        table="stores.vault",
        base_dir=tmp_path,
        state_dir=tmp_path,
        config_file=tmp_path / "rotatectl.toml",
        env={"HOME": str(tmp_path), **env},
    )


def approle(vault: Vault, **role: object) -> tuple[str, str]:
    """An AppRole with the operator policy; returns (role_id, secret_id)."""
    root = vault.server.client()
    if "approle/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method("approle")
    vault.policy(f"{vault.prefix}-op", policy_text("rotatectl-operator.hcl", vault))
    name = f"r-{vault.prefix}"
    root.auth.approle.create_or_update_approle(name, token_policies=[f"{vault.prefix}-op"], **role)
    role_id = root.auth.approle.read_role_id(name)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id(name)["data"]["secret_id"]
    return role_id, secret_id


def test_approle_login_end_to_end(vault: Vault, tmp_path: Path) -> None:
    role_id, secret_id = approle(vault)
    (tmp_path / "secret-id").write_text(secret_id + "\n")
    settings = {
        "url": vault.url,
        "prefix": vault.prefix,
        "auth": {"method": "approle", "role_id": role_id, "secret_id_file": "secret-id"},
    }
    store = VaultStore.from_config(settings, ctx(tmp_path))
    store.publish(PATH, make_version(1), value_for(1))
    store.promote(PATH, "v1", None, T0)
    assert vault.read(PATH)["current"] == value_for(1)
    client = store._client_obj
    accessor = client.auth.token.lookup_self()["data"]["accessor"]
    store.close()  # revokes the login token
    with pytest.raises(Exception, match=r"bad token|invalid"):
        vault.server.client().auth.token.lookup_accessor(accessor)


def test_approle_secret_id_from_the_environment(vault: Vault, tmp_path: Path) -> None:
    role_id, secret_id = approle(vault)
    settings = {
        "url": vault.url,
        "prefix": vault.prefix,
        "auth": {"method": "approle", "role_id": role_id, "secret_id_env": "MY_SECRET_ID"},
    }
    store = VaultStore.from_config(settings, ctx(tmp_path, MY_SECRET_ID=secret_id))
    assert store.versions(PATH) == []
    store.close()


def test_refused_approle_login_is_one_clear_line(vault: Vault, tmp_path: Path) -> None:
    role_id, _ = approle(vault)
    (tmp_path / "secret-id").write_text("not-the-secret-id")
    settings = {
        "url": vault.url,
        "auth": {"method": "approle", "role_id": role_id, "secret_id_file": "secret-id"},
    }
    store = VaultStore.from_config(settings, ctx(tmp_path))
    with pytest.raises(PermissionDeniedError) as info:
        store.versions(PATH)
    message = str(info.value)
    assert "approle login at auth/approle/login" in message and "\n" not in message
    assert "not-the-secret-id" not in message
    store.close()


def test_short_lived_token_is_renewed_before_a_wait(vault: Vault) -> None:
    token = vault.token_with(
        f"{vault.prefix}-op", ttl="2s", explicit_max_ttl="120s", renewable=True
    )
    vault.policy(f"{vault.prefix}-op", policy_text("rotatectl-operator.hcl", vault))
    store = vault.store(token=token)
    lease = store.acquire_lock(PATH, "host-a", TTL, T0)
    # The runner renews the lease before it sleeps: the token must outlive the lease.
    lease = store.renew_lock(lease, timedelta(seconds=20), T0)
    ttl = vault.server.client().auth.token.lookup(token)["data"]["ttl"]
    assert ttl >= 20
    time.sleep(2.5)  # longer than the token's original TTL
    store.release_lock(lease)


def test_approle_logs_in_again_when_the_token_cannot_be_renewed(
    vault: Vault, tmp_path: Path
) -> None:
    role_id, secret_id = approle(vault, token_ttl="2s", token_max_ttl="2s")
    settings = {
        "url": vault.url,
        "prefix": vault.prefix,
        "auth": {"method": "approle", "role_id": role_id, "secret_id_env": "SID"},
    }
    store = VaultStore.from_config(settings, ctx(tmp_path, SID=secret_id))
    store.versions(PATH)
    first = store._client_obj.token
    assert store.renew_if_needed(timedelta(seconds=30)) is True
    assert store._client_obj.token != first
    time.sleep(2.2)
    store.versions(PATH)  # the pre-call check logged in again
    store.close()


def test_token_from_the_environment_aliases_and_file(vault: Vault, tmp_path: Path) -> None:
    for env in (
        {"VAULT_ADDR": vault.url, "VAULT_TOKEN": vault.token},
        {"BAO_ADDR": vault.url, "BAO_TOKEN": vault.token},
    ):
        store = VaultStore.from_config({"prefix": vault.prefix}, ctx(tmp_path, **env))
        assert store.versions(PATH) == []
        store.close()
    (tmp_path / ".vault-token").write_text(vault.token + "\n")
    store = VaultStore.from_config({"url": vault.url}, ctx(tmp_path))
    assert store.connection.auth.token_source.endswith(".vault-token")
    store.list_paths()
    store.close()


def test_namespace_is_honoured(vault: Vault, tmp_path: Path) -> None:
    import hvac

    ns = f"ns-{vault.prefix}"
    vault.server.client().sys.create_namespace(ns)
    inside = hvac.Client(url=vault.url, token=vault.token, namespace=ns)
    inside.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    env = {"VAULT_ADDR": vault.url, "VAULT_TOKEN": vault.token, "VAULT_NAMESPACE": ns}
    store = VaultStore.from_config({"prefix": vault.prefix}, ctx(tmp_path, **env))
    store.publish(PATH, make_version(1), value_for(1))
    store.close()
    got = inside.secrets.kv.v2.list_secrets(f"{vault.prefix}/{PATH}", mount_point="secret")
    assert ".rotatectl/" in got["data"]["keys"]
    assert vault.store().versions(PATH) == []  # not in the root namespace


def test_missing_capability_names_path_and_capability(vault: Vault) -> None:
    hcl = policy_text("rotatectl-operator.hcl", vault).replace('["read", "update"]', '["read"]', 1)
    vault.policy(f"{vault.prefix}-noupdate", hcl)
    store = vault.store(token=vault.token_with(f"{vault.prefix}-noupdate"))
    with pytest.raises(PermissionDeniedError) as info:
        store.acquire_lock(PATH, "host-a", TTL, T0)
    assert str(info.value) == (
        f"vault lock {PATH}: permission denied: needs 'update' on "
        f"secret/data/{vault.prefix}/{PATH}/.rotatectl/lock"
    )


def test_unreachable_server_is_retried_then_one_clear_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    store = VaultStore(
        Connection(url, auth=AuthSettings(token="x")), retry_attempts=3, retry_max_delay=5
    )
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        store.versions(PATH)
    assert time.monotonic() - started < 5
    assert info.value.retryable
    assert str(info.value) == f"vault token lookup: cannot reach the server at {url}"


class FakeTokenReview:
    """The one Kubernetes API call OpenBao's kubernetes auth makes: TokenReview."""

    def __init__(self, jwt: str) -> None:
        import http.server
        import json
        import threading

        self.reviewed: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                token = body["spec"]["token"]
                outer.reviewed.append(token)
                user = {"username": "system:serviceaccount:ops:rotatectl", "uid": "uid-1"}
                status = {"authenticated": token == jwt, "user": user}
                data = json.dumps({"kind": "TokenReview", "status": status}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def service_account_jwt(signature: bytes = b"signature") -> str:
    """A JWT shaped like a service account token (OpenBao leaves the check to TokenReview)."""
    import base64
    import json

    def part(data: object) -> str:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = {
        "iss": "kubernetes/serviceaccount",
        "sub": "system:serviceaccount:ops:rotatectl",
        "kubernetes.io/serviceaccount/namespace": "ops",
        "kubernetes.io/serviceaccount/service-account.name": "rotatectl",
        "kubernetes.io/serviceaccount/service-account.uid": "uid-1",
    }
    return ".".join([part({"alg": "RS256", "typ": "JWT"}), part(claims), part(signature)])


def test_kubernetes_login_end_to_end(vault: Vault, tmp_path: Path) -> None:
    import re

    import certifi

    jwt = service_account_jwt()
    review = FakeTokenReview(jwt)
    try:
        root = vault.server.client()
        mount = f"k8s-{vault.prefix}"
        root.sys.enable_auth_method("kubernetes", path=mount)
        # Any CA will do: the fake API is plain http, but the config insists on one.
        pem = re.search(
            r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
            Path(certifi.where()).read_text(),
            re.S,
        )
        assert pem is not None
        root.auth.kubernetes.configure(
            kubernetes_host=review.url,
            disable_local_ca_jwt=True,
            kubernetes_ca_cert=pem.group(0),
            mount_point=mount,
        )
        vault.policy(f"{vault.prefix}-op", policy_text("rotatectl-operator.hcl", vault))
        root.auth.kubernetes.create_role(
            "rotatectl",
            bound_service_account_names=["rotatectl"],
            bound_service_account_namespaces=["ops"],
            policies=[f"{vault.prefix}-op"],
            mount_point=mount,
        )
        (tmp_path / "sa-token").write_text(jwt)
        settings = {
            "url": vault.url,
            "prefix": vault.prefix,
            "auth": {
                "method": "kubernetes",
                "role": "rotatectl",
                "jwt_path": "sa-token",
                "mount_point": mount,
            },
        }
        store = VaultStore.from_config(settings, ctx(tmp_path))
        store.publish(PATH, make_version(1), value_for(1))
        store.promote(PATH, "v1", None, T0)
        store.close()
        assert review.reviewed == [jwt]
        assert vault.read(PATH)["current"] == value_for(1)

        # A token the (fake) cluster does not recognise: the login is refused.
        (tmp_path / "sa-token").write_text(service_account_jwt(b"forged"))
        other = VaultStore.from_config(settings, ctx(tmp_path))
        with pytest.raises(PermissionDeniedError, match=f"kubernetes login at auth/{mount}/login"):
            other.versions(PATH)
        other.close()
    finally:
        review.close()


def test_tls_with_the_server_ca(tmp_path: Path) -> None:
    """A TLS dev server: its CA from ca_cert or $VAULT_CACERT works; without it, one clear line."""
    import subprocess

    from rotatectl.errors import StoreError

    from .conftest import bao_binary, bao_env, stop, wait_healthy

    port, certs = free_port(), tmp_path / "certs"
    certs.mkdir()
    log = tmp_path / "tls.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                bao_binary(),
                "server",
                "-dev",
                "-dev-tls",
                f"-dev-tls-cert-dir={certs}",
                "-dev-root-token-id=tls-root",
                f"-dev-listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=bao_env(tmp_path),
        )
    try:
        url = f"https://127.0.0.1:{port}"
        ca = str(certs / "vault-ca.pem")
        wait_healthy(url, proc, log, verify=ca)
        for settings, env in (
            ({"url": url, "ca_cert": ca}, {}),
            ({"url": url}, {"VAULT_CACERT": ca}),
        ):
            store = VaultStore.from_config(settings, ctx(tmp_path, VAULT_TOKEN="tls-root", **env))
            store.publish(PATH, make_version(1), value_for(1))
            assert store.versions(PATH)[0].version_id == "v1"
            store.close()
        store = VaultStore.from_config({"url": url}, ctx(tmp_path, VAULT_TOKEN="tls-root"))
        with pytest.raises(StoreError) as info:
            store.versions(PATH)
        assert (
            str(info.value)
            == f"vault token lookup: TLS handshake with {url} failed (check ca_cert/client_cert)"
        )
        assert not info.value.retryable
    finally:
        stop(proc)
