"""The SDK and a credential whose secret is a JSON document (issue 18 item 5).

The credential is declared ``format = "json"``, ``field = "api_key"`` and rotated
through the real CLI on the real local store, so every version's value is a whole
document. ``CurrentKey(field="api_key")`` and the auth adapters present the key in
that field; ``KeyRing`` verifies it against the fingerprints the engine recorded
(taken over the field, not the document).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
import requests

from rotatectl.errors import StoreError
from rotatectl.model import AcceptedKey, VersionState
from rotatectl.sdk import (
    CurrentKey,
    KeyRing,
    KeyRingWSGIMiddleware,
    Rejection,
    SecretDocumentError,
    Verification,
)
from rotatectl.sdk.httpx_auth import CurrentKeyAuth as HttpxAuth
from rotatectl.sdk.requests_auth import CurrentKeyAuth as RequestsAuth
from rotatectl.sdk.wsgi import ENVIRON_KEY
from rotatectl.secretformat import DocumentError
from rotatectl.stores.local import LocalStore

from ..conftest import Cli

NAME = "partners/acme"  # format = "json", field = "api_key"
BARE = "partners/bare"  # a bare key
PORTED = "partners/db"  # format = "json", field = "api_key", and a number in "port"
PREFIX = "rk_test"
USERNAME = "svc"
REGION = "eu-west-1"
STATIC = {"username": USERNAME, "region": REGION}


def _write_config(cli: Cli) -> None:
    """rotatectl.toml on the local store, as tests/scenarios' ``write_config`` writes it:
    no propagation, no overlap; retain long enough that a retired key stays retired."""
    issuer = f'issuer = {{ type = "generated", prefix = "{PREFIX}" }}'
    lines = [
        "[defaults]",
        'store = "local"',
        'propagation = "0s"',
        'overlap = "0s"',
        'retain = "1h"',
        "",
        f'[credentials."{NAME}"]',
        issuer,
        'format = "json"',
        'field = "api_key"',
        f'static = {{ username = "{USERNAME}", region = "{REGION}" }}',
        "",
        f'[credentials."{BARE}"]',
        issuer,
        "",
        f'[credentials."{PORTED}"]',
        issuer,
        'format = "json"',
        'field = "api_key"',
        f'static = {{ username = "{USERNAME}", port = 5432 }}',
        "",
    ]
    (cli.cwd / "rotatectl.toml").write_text("\n".join(lines))


def _rotate(cli: Cli, *args: str) -> None:
    run = cli("rotate", *args)
    assert run.code == 0, run.out + run.err


@pytest.fixture
def store(cli: Cli) -> Iterator[LocalStore]:
    """The local store after one rotation of each credential: v1 current everywhere."""
    _write_config(cli)
    _rotate(cli, NAME, BARE, PORTED, "--wait")
    opened = cli.store()
    yield opened
    opened.close()


def _document(store: LocalStore, path: str = NAME) -> tuple[str, str]:
    """The current version's whole document and the api_key in it."""
    text = store.read_value(path)
    return text, json.loads(text)["api_key"]


def _version_id(store: LocalStore, state: VersionState) -> str:
    return next(v.version_id for v in store.versions(NAME) if v.state is state)


def test_the_store_holds_documents_and_current_key_hands_out_the_field(
    cli: Cli, store: LocalStore
) -> None:
    doc1, key1 = _document(store)
    assert json.loads(doc1) == {**STATIC, "api_key": key1}
    assert key1.startswith(PREFIX + "_") and key1 != doc1
    current = CurrentKey(store, NAME, field="api_key", refresh_interval=3600, retry_interval=0)
    assert current.get() == key1
    assert "api_key" in repr(current) and key1 not in repr(current)

    _rotate(cli, NAME, "--wait")
    doc2, key2 = _document(store)
    assert key2 != key1 and json.loads(doc2) == {**STATIC, "api_key": key2}
    assert current.get() == key1  # cached for refresh_interval
    assert current.refresh() == key2  # a read: the new document's field
    assert current.changes == 1

    _rotate(cli, NAME, "--wait")
    _, key3 = _document(store)
    assert key3 not in (key1, key2)
    assert current.on_auth_failure(key2) == key3  # the API refused key2: read again
    assert current.get() == key3 and current.changes == 2
    # Without a field the same credential hands out the whole document, as before.
    assert CurrentKey(store, NAME).get() == store.read_value(NAME)


class _Echo(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Api:
    """An API on 127.0.0.1 behind a KeyRing over the same store; it echoes the
    Authorization header it was sent and the version the ring matched."""

    def __init__(self, store: LocalStore) -> None:
        self.ring = KeyRing(store, NAME, start=False)

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            verification = environ.get(ENVIRON_KEY)
            payload = {
                "authorization": environ.get("HTTP_AUTHORIZATION"),
                "version": verification.version_id
                if isinstance(verification, Verification)
                else None,
            }
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(payload).encode()]

        guarded = KeyRingWSGIMiddleware(app, self.ring)
        self.server: WSGIServer = make_server("127.0.0.1", 0, guarded, handler_class=_Echo)
        self.url = f"http://127.0.0.1:{self.server.server_port}/x"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.ring.close()


@pytest.fixture
def api(store: LocalStore) -> Iterator[Api]:
    server = Api(store)
    yield server
    server.close()


def test_requests_adapter_sends_the_api_key_and_retries_after_a_rotation(
    cli: Cli, store: LocalStore, api: Api
) -> None:
    _, key1 = _document(store)
    current = CurrentKey(store, NAME, field="api_key", refresh_interval=3600)
    with requests.Session() as session:
        session.auth = RequestsAuth(current)
        first = session.get(api.url, timeout=5)
        assert first.status_code == 200, first.text
        assert first.json() == {
            "authorization": f"Bearer {key1}",
            "version": _version_id(store, VersionState.CURRENT),
        }
        _rotate(cli, NAME, "--wait")  # overlap 0s: key1 is retired at once
        _, key2 = _document(store)
        api.ring.refresh()
        second = session.get(api.url, timeout=5)  # key1 cached: refused, refreshed, resent
        assert [r.status_code for r in second.history] == [401]
        assert second.status_code == 200
        assert second.json() == {
            "authorization": f"Bearer {key2}",
            "version": _version_id(store, VersionState.CURRENT),
        }


def test_httpx_adapter_sends_the_api_key_and_retries_after_a_rotation(
    cli: Cli, store: LocalStore, api: Api
) -> None:
    _, key1 = _document(store)
    current = CurrentKey(store, NAME, field="api_key", refresh_interval=3600)
    plain = HttpxAuth(current, header="X-Api-Key", scheme=None)
    with httpx.Client(auth=HttpxAuth(current)) as client:
        first = client.get(api.url)
        assert first.status_code == 200, first.text
        assert first.json()["authorization"] == f"Bearer {key1}"
        # The plain header carries the bare field too (the echo shows Authorization only).
        assert client.get(api.url, auth=plain).json()["version"] == first.json()["version"]
        _rotate(cli, NAME, "--wait")
        _, key2 = _document(store)
        api.ring.refresh()
        second = client.get(api.url)
        assert [r.status_code for r in second.history] == [401]
        assert second.status_code == 200
        assert second.json() == {
            "authorization": f"Bearer {key2}",
            "version": _version_id(store, VersionState.CURRENT),
        }


class _Hashes:
    """Only the verifier view of the store: a key ring must never read a value."""

    def __init__(self, store: LocalStore) -> None:
        self._store = store

    def accepted_keys(self, path: str, credential: str) -> list[AcceptedKey]:
        return self._store.accepted_keys(path, credential)

    def read_value(self, path: str, version_id: str | None = None) -> str:
        raise AssertionError("a verifier must never read a key value")


def test_key_ring_verifies_the_rotated_field_not_the_document(cli: Cli, store: LocalStore) -> None:
    doc1, key1 = _document(store)
    ring = KeyRing(_Hashes(store), NAME, start=False)
    try:
        first = ring.verify(key1)
        assert isinstance(first, Verification) and first.state is VersionState.CURRENT

        _rotate(cli, NAME, "--wait")  # v2 current; v1 retired (overlap 0s)
        doc2, key2 = _document(store)
        # v3 current, v2 previous: a rotation left in its overlap.
        _rotate(cli, NAME, "--overlap", "1h")
        doc3, key3 = _document(store)
        states = {v.number: v.state for v in store.versions(NAME)}
        assert states == {
            1: VersionState.RETIRED,
            2: VersionState.PREVIOUS,
            3: VersionState.CURRENT,
        }
        assert {v.field for v in store.versions(NAME)} == {"api_key"}
        assert ring.refresh()

        current = ring.verify(key3)
        assert isinstance(current, Verification)
        assert (current.state, current.version_id) == (
            VersionState.CURRENT,
            _version_id(store, VersionState.CURRENT),
        )
        previous = ring.verify(key2)  # still accepted during the overlap
        assert isinstance(previous, Verification)
        assert (previous.state, previous.version_id) == (
            VersionState.PREVIOUS,
            _version_id(store, VersionState.PREVIOUS),
        )
        retired = ring.verify(key1)
        assert isinstance(retired, Rejection) and retired.reason == "retired"
        for document in (doc1, doc2, doc3):  # the whole document is not a key
            refused = ring.verify(document)
            assert isinstance(refused, Rejection) and refused.reason == "malformed"
        # What a client with field="api_key" presents is what the ring accepts.
        presented = CurrentKey(store, NAME, field="api_key").get()
        assert ring.verify(presented) == current
    finally:
        ring.close()


def _secrets(store: LocalStore) -> list[str]:
    """Every value of every credential, and every string in every document."""
    found = {USERNAME, REGION}
    for path in (NAME, BARE, PORTED):
        for v in store.versions(path):
            value = store.read_value(path, v.version_id)
            found.add(value)
            if v.field:
                found.update(s for s in json.loads(value).values() if isinstance(s, str))
    return sorted(found)


def _assert_secret_free(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text


@pytest.mark.parametrize(
    ("path", "field", "problem"),
    [
        (BARE, "api_key", "not a JSON object"),  # field= on a bare credential
        (NAME, "password", "no field 'password'"),  # a field the document lacks
        (PORTED, "port", "'port' is not a string"),  # a number, not a key
    ],
    ids=["bare-value", "absent-field", "not-a-string"],
)
def test_an_unreadable_document_fails_the_first_read_without_a_value(
    store: LocalStore,
    caplog: pytest.LogCaptureFixture,
    path: str,
    field: str,
    problem: str,
) -> None:
    secrets = _secrets(store)
    current = CurrentKey(store, path, field=field)
    with caplog.at_level(logging.DEBUG):
        for read in (current.get, current.refresh, current.on_auth_failure):
            with pytest.raises(SecretDocumentError) as caught:
                read()
            exc = caught.value
            # The error type of any failed first read (a StoreError), and a DocumentError.
            assert isinstance(exc, StoreError) and isinstance(exc, DocumentError)
            assert path in str(exc) and problem in str(exc)
            _assert_secret_free(str(exc), secrets)
            _assert_secret_free(repr(exc), secrets)
    assert current.failed_reads == 3 and current.cached() is None
    _assert_secret_free(caplog.text, secrets)
    _assert_secret_free(repr(current), secrets)


class _Switch:
    """``read_value`` of the real store at another path once ``to`` is set (the
    document replaced by something that is not one, as far as the client can tell)."""

    def __init__(self, store: LocalStore) -> None:
        self._store = store
        self.to: str | None = None

    def read_value(self, path: str) -> str:
        return self._store.read_value(self.to or path)


def test_an_unreadable_document_on_refresh_keeps_the_cached_key(
    store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = _secrets(store)
    _, key = _document(store)
    source = _Switch(store)
    current = CurrentKey(source, NAME, field="api_key")
    assert current.get() == key
    source.to = BARE  # now a bare key where a document was expected
    with caplog.at_level(logging.DEBUG, logger="rotatectl.sdk.client"):
        assert current.refresh() == key  # a failed refresh, like a store error
        assert current.on_auth_failure(key) == key
    assert (current.failed_reads, current.changes) == (2, 0)
    assert caplog.text.count("keeping the cached key") == 2
    assert "SecretDocumentError" in caplog.text and "not a JSON object" in caplog.text
    _assert_secret_free(caplog.text, secrets)
    source.to = None  # the document is back: the next read succeeds
    assert current.refresh() == key and current.failed_reads == 2
