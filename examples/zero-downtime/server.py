"""The demo's API server: the standard library's HTTP server and a rotatectl KeyRing.

    python server.py --config rotatectl.toml --credential demo/api [--port 0]
        [--refresh 0.5] [--max-staleness 1.5] [--usage-log usage.jsonl]
        [--outage-flag outage.flag]

Prints ``listening on http://127.0.0.1:PORT`` once it serves, then serves
until SIGTERM or Ctrl-C. Endpoints:

- ``GET /hello``   any accepted key: 200 with the credential, version and key id
- ``GET /trade``   the key must grant the ``trade`` scope (else 403 wrong-scope)
- ``GET /_status`` no key needed: the key ring's health (key ids, states,
  staleness, retired keys) as JSON

The key is read from ``Authorization: Bearer <key>`` or ``X-Api-Key``. The
server reads nothing but ``accepted_keys`` from the store (hashes only).
While the ``--outage-flag`` file exists, that view raises
StoreUnavailableError, which is how the demo simulates a store outage.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rotatectl.config import load_config
from rotatectl.errors import StoreUnavailableError
from rotatectl.model import AcceptedKey
from rotatectl.ports import SecretStore
from rotatectl.sdk import KeyHeaders, KeyRing, Rejection
from rotatectl.sdk.keyring import MISSING, challenge
from rotatectl.workspace import Workspace

HEADERS = KeyHeaders()


class VerifierView:
    """What a verifier may read of the store: accepted keys (hashes) only.

    While ``outage_flag`` exists every read fails as an unreachable store would.
    """

    def __init__(self, store: SecretStore, outage_flag: Path | None = None) -> None:
        self._store = store
        self._flag = outage_flag

    def accepted_keys(self, path: str, credential: str) -> list[AcceptedKey]:
        if self._flag is not None and self._flag.exists():
            raise StoreUnavailableError(f"{path}: store unreachable (simulated outage)")
        return self._store.accepted_keys(path, credential)


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], ring: KeyRing) -> None:
        super().__init__(address, Handler)
        self.ring = ring


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connection
    # Headers and body go out in two writes; with Nagle's algorithm the second
    # waits for the client's delayed ACK (~40 ms per request).
    disable_nagle_algorithm = True
    server: ApiServer

    def do_GET(self) -> None:
        ring = self.server.ring
        if self.path == "/_status":
            self._json(200, ring.status().to_dict())
            return
        if self.path not in ("/hello", "/trade"):
            self._json(404, {"error": "not found"})
            return
        key = HEADERS.extract(self.headers.get("Authorization"), self.headers.get("X-Api-Key"))
        scope = "trade" if self.path == "/trade" else None
        result = (
            MISSING if key is None else ring.verify(key, scope=scope, client=self.client_address[0])
        )
        if isinstance(result, Rejection):
            extra = {}
            if result.http_status == 401:
                extra["WWW-Authenticate"] = challenge(HEADERS, result)
            error = "forbidden" if result.http_status == 403 else "unauthorized"
            self._json(result.http_status, {"error": error, "reason": result.reason}, extra)
            return
        self._json(
            200,
            {
                "hello": result.credential,
                "version": result.version_id,
                "key_id": result.key_id,
                "state": result.state.value,
            },
        )

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the demo's output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--credential", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--refresh", type=float, default=0.5, help="key ring refresh (s)")
    parser.add_argument("--max-staleness", type=float, default=1.5, help="warn after (s)")
    parser.add_argument("--usage-log", type=Path)
    parser.add_argument("--outage-flag", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="server: %(levelname)s %(message)s")

    with Workspace(load_config(args.config)) as ws:
        target = ws.target(args.credential)
        ring = KeyRing(
            VerifierView(target.store, args.outage_flag),
            [(target.name, target.path)],
            refresh_interval=args.refresh,
            max_staleness=args.max_staleness,
            usage_log=args.usage_log,
        )
        server = ApiServer((args.host, args.port), ring)

        def stop(signum: int, frame: object) -> None:
            # shutdown() waits for serve_forever(): call it from another thread.
            threading.Thread(target=server.shutdown).start()

        signal.signal(signal.SIGTERM, stop)
        print(f"listening on http://{args.host}:{server.server_port}", flush=True)
        try:
            server.serve_forever(poll_interval=0.1)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
            ring.close()  # writes the usage records still queued
    return 0


if __name__ == "__main__":
    sys.exit(main())
