"""Run the rotatectl CLI in this process and count what it asks of its stores.

    python benchmarks/counted.py --out counts.json -- status -o json

Counts, per operation:
- AWS: every API call, through a botocore ``before-call`` event hook on each
  session rotatectl creates (and every HTTP request, ``before-send``, which
  also counts botocore's own retries);
- Vault/OpenBao: every HTTP request, by wrapping hvac's adapter ``request``;
- the local store: every SQLite transaction (one per store operation; writes
  are ``BEGIN IMMEDIATE`` ... ``COMMIT``), by wrapping ``LocalStore._op``.

Writes ``{"code", "seconds", "calls": {kind: {operation: n}}, "modules": [...]}``
to ``--out``: ``seconds`` is the wall time of ``main()`` alone (no interpreter
start-up), ``modules`` the heavy optional modules that were imported.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
calls: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
WATCHED_MODULES = ("typer", "boto3", "botocore", "hvac", "rich", "requests", "rotatectl.engine")


def count(kind: str, operation: str) -> None:
    with _lock:
        calls[kind][operation] += 1


def hook_botocore() -> None:
    """Count each API call and HTTP request of every botocore session rotatectl makes."""
    from rotatectl import aws_common

    make = aws_common._botocore_session

    def before_call(model: Any = None, **_: Any) -> None:
        count("aws", model.name if model is not None else "?")

    def before_send(request: Any = None, **_: Any) -> None:
        count("aws-http", "request")

    def counted_session() -> Any:
        session = make()
        session.register("before-call.*.*", before_call)
        session.register("before-send.*.*", before_send)
        return session

    aws_common._botocore_session = counted_session


def hook_hvac() -> None:
    """Count each HTTP request hvac sends (method and the path with ids folded)."""
    from hvac import adapters

    request = adapters.RawAdapter.request

    def counted(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        count("vault", f"{method.upper()} {_shape(url)}")
        return request(self, method, url, *args, **kwargs)

    adapters.RawAdapter.request = counted  # type: ignore[method-assign]


def _shape(url: str) -> str:
    """``/v1/secret/data/p/.rotatectl/index`` -> ``data .../index``: the kind of request."""
    parts = url.split("?")[0].strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "v1" and parts[2] in ("data", "metadata", "destroy"):
        leaf = parts[-1] if ".rotatectl" in parts else "<client path>"
        if ".rotatectl" in parts and parts[-2] == "versions":
            leaf = "versions/<id>"
        return f"{parts[2]} .../{leaf}"
    return "/".join(parts[:4])


def hook_local() -> None:
    """Count every LocalStore operation: one SQLite transaction each."""
    from rotatectl.stores.local import LocalStore

    op = LocalStore._op

    @contextlib.contextmanager
    def counted(self: Any, name: str, path: str | None, *, write: bool = False) -> Iterator[Any]:
        verb = name.removesuffix(" of").removesuffix(" on")
        count("local", f"{'write' if write else 'read'}: {verb}")
        with op(self, name, path, write=write) as conn:
            yield conn

    LocalStore._op = counted  # type: ignore[assignment]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--quiet-output", action="store_true", help="discard the CLI's stdout")
    parser.add_argument(
        "--count",
        action="append",
        default=[],
        choices=("local", "aws", "vault"),
        help="stores to count calls of (none: only time it and list the modules it imports)",
    )
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args()
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    hooks = {"local": hook_local, "aws": hook_botocore, "vault": hook_hvac}
    for kind in ns.count:
        hooks[kind]()
    # A hook imports what it hooks: only what the CLI imported itself is reported.
    preloaded = {m for m in WATCHED_MODULES if m in sys.modules}
    from rotatectl.cli.main import main as cli_main  # the console script's entry point

    sys.argv = ["rotatectl", *args]
    started = time.perf_counter()
    code = 0
    stdout = sys.stdout
    try:
        if ns.quiet_output:
            sys.stdout = open("/dev/null", "w")  # noqa: SIM115
        cli_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        if sys.stdout is not stdout:
            sys.stdout.close()
            sys.stdout = stdout
    seconds = time.perf_counter() - started
    with open(ns.out, "w") as out:
        json.dump(
            {
                "code": code,
                "seconds": seconds,
                "calls": {kind: dict(c) for kind, c in calls.items()},
                "modules": sorted(
                    m for m in WATCHED_MODULES if m in sys.modules and m not in preloaded
                ),
            },
            out,
            indent=1,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
