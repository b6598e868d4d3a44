"""Latency-bound fleets: ``rotatectl run --jobs J`` behind a proxy that delays every request.

    python benchmarks/latency.py --store vault --delay-ms 20 --jobs 1,4,16 --credentials 100
    python benchmarks/latency.py --store aws --delay-ms 100 --jobs 1,16 --credentials 40

The server (moto_server with benchmarks/moto_server_fixed.py, or ``bao server
-dev``) runs behind a latency proxy (``latency.py proxy``, its own process,
asyncio): each HTTP request waits the fixed delay once, before it is forwarded,
so a request/response exchange costs the delay once (a round trip of that
length, both directions counted together). Opening a connection costs no delay
(no TCP or TLS handshake is simulated): a client that opens many connections
is favoured, not penalised. The proxy counts requests (by kind) and the
connections clients open.

For each J, on a fresh set of N declared credentials with no key yet (each
gets its first key), in this order:

1. ``rotatectl run --jobs J`` as its own process: wall time, CPU time
   (user + system, ``os.wait4``), requests counted at the proxy;
2. the baseline, ``latency.py baseline`` as its own process: a hand-written
   client making, on J threads over the same proxy, the same number of
   requests a credential as rotatectl's ``--jobs 1`` run made, split into
   reads and writes as rotatectl's were (OpenBao: KV v2 writes and reads with
   ``requests``, one session a thread; AWS: CreateSecret, PutSecretValue and
   GetSecretValue with one boto3 client whose pool holds J connections). It is
   the ceiling of what J threads of Python get from this machine.

Each figure is one run (no medians: a run at J = 1 takes minutes). The
speed-up is wall(J = 1) / wall(J); the ratio is rotatectl's speed-up over the
baseline's. Targets (issue 21 item 1): on OpenBao at 20 ms, ``--jobs 16`` at
least 0.8x the baseline's speed-up; at 100 ms, ``--jobs 16`` at least 10x
``--jobs 1`` on both stores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CONTROL = b"/__latency/"
READS = {"GET", "HEAD", "LIST"}

# -- the proxy (its own process) -------------------------------------------------


class _Stats:
    def __init__(self) -> None:
        self.by: Counter[str] = Counter()
        self.upstream: Counter[str] = Counter()  # seconds the server took, by kind
        self.connections = 0
        self.body_wait = 0.0  # seconds between a request's head and the end of its body
        self.gaps = 0.0  # seconds between a reply and the next request on its connection

    def json(self) -> bytes:
        return json.dumps(
            {
                "requests": sum(self.by.values()),
                "connections": self.connections,
                "body_wait_ms": round(self.body_wait * 1000, 1),
                "client_gaps_ms": round(self.gaps * 1000, 1),
                "by": dict(self.by),
                "upstream_ms": {k: round(v * 1000, 1) for k, v in self.upstream.items()},
            }
        ).encode()


def _headers(head: bytes) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        if b":" in line:
            k, v = line.split(b":", 1)
            found[k.strip().decode("latin-1").lower()] = v.strip().decode("latin-1")
    return found


async def _body(reader: asyncio.StreamReader, headers: dict[str, str], response: bool) -> bytes:
    """The body as it came (chunk framing kept): it is forwarded byte for byte."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raw: list[bytes] = []
        while True:
            line = await reader.readuntil(b"\r\n")
            raw.append(line)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, up to the empty line
                    trailer = await reader.readuntil(b"\r\n")
                    raw.append(trailer)
                    if trailer == b"\r\n":
                        return b"".join(raw)
            raw.append(await reader.readexactly(size + 2))
    if "content-length" in headers:
        n = int(headers["content-length"])
        return await reader.readexactly(n) if n else b""
    return await reader.read() if response else b""  # a response ends at EOF


def _kind(method: str, target: str, headers: dict[str, str]) -> str:
    """What a request is, for the counts: the AWS operation, or a KV v2 method and
    endpoint (``GET data``, ``LIST metadata``, ``GET sys/...``)."""
    op = headers.get("x-amz-target")
    if op:
        return op.rsplit(".", 1)[-1]
    path, _, query = target.partition("?")
    if method == "GET" and "list=true" in query:
        method = "LIST"
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "v1" and parts[1] not in ("sys", "auth"):
        return f"{method} {parts[2]}"
    return f"{method} {'/'.join(parts[1:3])}"


async def _proxy(upstream: str, delay: float, ready: Path) -> None:
    host, port = upstream.removeprefix("http://").rsplit(":", 1)
    stats = _Stats()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        counted = False
        replied: float | None = None
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                arrived = time.perf_counter()
                if replied is not None:
                    stats.gaps += arrived - replied
                method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
                headers = _headers(head)
                body = await _body(reader, headers, response=False)
                stats.body_wait += time.perf_counter() - arrived
                if target.encode().startswith(CONTROL):
                    if target.encode() == CONTROL + b"reset":
                        stats.__init__()  # type: ignore[misc]
                    answer = stats.json()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer)
                    )
                    await writer.drain()
                    return
                if not counted:
                    stats.connections += 1
                    counted = True
                kind = _kind(method, target, headers)
                stats.by[kind] += 1
                await asyncio.sleep(delay)
                sent = time.perf_counter()
                if up is None:
                    up = await asyncio.open_connection(host, int(port))
                up[1].write(head + body)
                await up[1].drain()
                rhead = await up[0].readuntil(b"\r\n\r\n")
                status = int(rhead.split(b" ", 2)[1])
                rheaders = _headers(rhead)
                bodiless = method == "HEAD" or status in (204, 304) or status < 200
                rbody = b"" if bodiless else await _body(up[0], rheaders, response=True)
                stats.upstream[kind] += time.perf_counter() - sent
                writer.write(rhead + rbody)
                await writer.drain()
                replied = time.perf_counter()
                if rheaders.get("connection", "").lower() == "close" or (
                    "content-length" not in rheaders
                    and "chunked" not in rheaders.get("transfer-encoding", "")
                    and not bodiless
                ):
                    up[1].close()
                    up = None
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            if up is not None:
                up[1].close()
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=256)
    bound = server.sockets[0].getsockname()[1]
    ready.write_text(f"http://127.0.0.1:{bound}")
    async with server:
        await server.serve_forever()


@dataclass
class Proxy:
    url: str

    def _control(self, what: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/__latency/{what}", timeout=10) as reply:  # noqa: S310
            found: dict[str, Any] = json.loads(reply.read())
            return found

    def reset(self) -> None:
        self._control("reset")

    def stats(self) -> dict[str, Any]:
        return self._control("stats")


@contextlib.contextmanager
def latency_proxy(upstream: str, delay_ms: float) -> Iterator[Proxy]:
    with tempfile.TemporaryDirectory(prefix="rotatectl-latency-") as tmp:
        ready = Path(tmp) / "url"
        proc = subprocess.Popen(
            [sys.executable, __file__, "proxy", upstream, str(delay_ms), str(ready)]
        )
        try:
            deadline = time.monotonic() + 30
            while not ready.exists() or not ready.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the latency proxy did not start")
                time.sleep(0.05)
            yield Proxy(ready.read_text())
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


# -- the baseline client (its own process) ---------------------------------------


def _spread(total: int, n: int) -> list[int]:
    """``total`` over ``n`` credentials as evenly as whole numbers allow."""
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


def _baseline(args: argparse.Namespace) -> int:
    plan = json.loads(Path(args.plan).read_text())
    creds: list[str] = plan["names"]
    reads = _spread(plan["reads"], len(creds))
    writes = _spread(plan["writes"], len(creds))
    work = list(zip(creds, reads, writes, strict=True))

    if args.store == "vault":
        import requests

        local = threading.local()
        token = os.environ["VAULT_TOKEN"]

        def session() -> requests.Session:
            found: requests.Session | None = getattr(local, "session", None)
            if found is None:
                found = local.session = requests.Session()
                found.headers["X-Vault-Token"] = token
            return found

        def one(item: tuple[str, int, int]) -> None:
            name, r, w = item
            url = f"{args.url}/v1/secret/data/{plan['namespace']}/{name}"
            s = session()
            for step in _steps(r, w):
                if step == "w":
                    reply = s.post(url, json={"data": {"current": os.urandom(24).hex()}})
                else:
                    reply = s.get(url)
                reply.raise_for_status()

    else:
        import boto3
        import botocore.config

        sm = boto3.client(
            "secretsmanager",
            endpoint_url=args.url,
            config=botocore.config.Config(max_pool_connections=max(10, args.jobs)),
        )

        def one(item: tuple[str, int, int]) -> None:
            name, r, w = item
            secret = f"{plan['namespace']}/{name}"
            first = True
            for step in _steps(r, w):
                value = os.urandom(24).hex()
                if step == "w" and first:
                    sm.create_secret(Name=secret, SecretString=value)
                    first = False
                elif step == "w":
                    sm.put_secret_value(SecretId=secret, SecretString=value)
                else:
                    sm.get_secret_value(SecretId=secret)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, work))
    return 0


def _steps(reads: int, writes: int) -> list[str]:
    """A write first (the value must exist), then reads and writes interleaved evenly."""
    if writes == 0:
        return ["r"] * reads
    steps = ["w"]
    rest_w, rest_r = writes - 1, reads
    while rest_w or rest_r:
        # whichever kind is behind its share goes next
        if rest_r and (not rest_w or rest_r / (reads or 1) >= rest_w / (writes - 1 or 1)):
            steps.append("r")
            rest_r -= 1
        else:
            steps.append("w")
            rest_w -= 1
    return steps


# -- the measurement ---------------------------------------------------------------


@dataclass
class Run:
    wall: float
    cpu: float
    code: int
    requests: int
    connections: int
    by: dict[str, int]


def _measure(argv: list[str], env: dict[str, str], cwd: Path, proxy: Proxy) -> Run:
    import run as bench

    proxy.reset()
    got = bench.timed(argv, env, cwd)
    stats = proxy.stats()
    return Run(got.wall, got.cpu, got.code, stats["requests"], stats["connections"], stats["by"])


def _reads_writes(by: dict[str, int], store: str) -> tuple[int, int]:
    if store == "aws":
        reads = sum(
            n for op, n in by.items() if op.startswith(("Get", "BatchGet", "Describe", "List"))
        )
    else:
        reads = sum(n for kind, n in by.items() if kind.split(" ", 1)[0] in READS)
    return reads, sum(by.values()) - reads


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "proxy":
        upstream, delay_ms, ready = sys.argv[2:5]
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        asyncio.run(_proxy(upstream, float(delay_ms) / 1000, Path(ready)))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "baseline":
        p = argparse.ArgumentParser(prog="latency.py baseline")
        p.add_argument("--store", choices=("vault", "aws"), required=True)
        p.add_argument("--url", required=True)
        p.add_argument("--plan", required=True)
        p.add_argument("--jobs", type=int, required=True)
        return _baseline(p.parse_args(sys.argv[2:]))

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("vault", "aws"), required=True)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--jobs", default="1,4,16", help="comma-separated; 1 is added if absent")
    parser.add_argument("--credentials", type=int, default=100)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    jobs = sorted({1, *(int(j) for j in args.jobs.split(","))})

    import run as bench
    import servers

    label = {"vault": "OpenBao", "aws": "moto_server"}[args.store]
    print(
        f"{label} behind a {args.delay_ms:g} ms proxy (once a request), "
        f"{args.credentials} due credentials, --jobs {','.join(map(str, jobs))}; {bench.load()}",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        if args.store == "vault":
            bao = stack.enter_context(servers.bao_server())
            proxy = stack.enter_context(latency_proxy(bao.url, args.delay_ms))
            setup = bench.vault_setup(servers.Bao(proxy.url, bao.token, bao.bin))
        else:
            moto = stack.enter_context(servers.moto_server())
            proxy = stack.enter_context(latency_proxy(moto.url, args.delay_ms))
            setup = bench.aws_setup(servers.Moto(proxy.url))
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rotatectl-lat-")))
        wd = bench.Workdir(root, root / "pycache")

        def rotatectl(namespace: str, n: int, j: int) -> Run:
            env, cwd = bench.prepare(wd, setup, namespace, bench.names("c", n))
            return _measure([*bench.rotatectl_argv(), "run", "--jobs", str(j)], env, cwd, proxy)

        def baseline(namespace: str, n: int, j: int, reads: int, writes: int) -> Run:
            env, cwd = bench.prepare(wd, setup, namespace, [])
            plan = cwd / "plan.json"
            names = bench.names("c", n)
            doc = {"namespace": namespace, "names": names, "reads": reads, "writes": writes}
            plan.write_text(json.dumps(doc))
            argv = [sys.executable, __file__, "baseline", "--store", args.store]
            argv += ["--url", proxy.url, "--plan", str(plan), "--jobs", str(j)]
            return _measure(argv, env, cwd, proxy)

        # Warm-up, untimed: bytecode caches, the server's first writes.
        warm = rotatectl("warmup", 2, 2)
        if warm.code != 0:
            print(f"rotatectl run failed (exit {warm.code})", file=sys.stderr)
            return 1
        baseline("warmup-base", 2, 2, 2, 2)

        n = args.credentials
        rot: dict[int, Run] = {}
        base: dict[int, Run] = {}
        reads = writes = 0
        for j in jobs:  # 1 first: it sets the baseline's number of requests
            rot[j] = rotatectl(f"rot-j{j}", n, j)
            if j == 1:
                reads, writes = _reads_writes(rot[1].by, args.store)
            base[j] = baseline(f"base-j{j}", n, j, reads, writes)
            r, b = rot[j], base[j]
            print(
                f"  --jobs {j:>2}: rotatectl {r.wall:7.2f} s wall, {r.cpu:6.2f} s CPU, "
                f"{r.requests} requests ({r.connections} connections), exit {r.code}; "
                f"baseline {b.wall:7.2f} s wall, {b.requests} requests "
                f"({b.connections} connections), exit {b.code}",
                flush=True,
            )
    return report(args, jobs, n, rot, base, reads, writes)


def report(
    args: argparse.Namespace,
    jobs: list[int],
    n: int,
    rot: dict[int, Run],
    base: dict[int, Run],
    reads: int,
    writes: int,
) -> int:
    label = {"vault": "OpenBao", "aws": "moto_server"}[args.store]
    print(
        f"\n{label}, {args.delay_ms:g} ms a request, {n} credentials; the baseline makes "
        f"{(reads + writes) / n:.2f} requests a credential ({reads} reads, {writes} writes "
        "in all), as rotatectl's --jobs 1 did"
    )
    head = (
        "| --jobs | rotatectl wall | speed-up | requests/cred | connections | CPU ms/cred "
        "| baseline wall | baseline speed-up | ratio |"
    )
    print(head)
    print("|---" * 9 + "|")
    rows = []
    for j in jobs:
        r, b = rot[j], base[j]
        up, bup = rot[1].wall / r.wall, base[1].wall / b.wall
        rows.append(
            {
                "jobs": j,
                "wall": r.wall,
                "speedup": up,
                "requests_per_credential": r.requests / n,
                "connections": r.connections,
                "cpu_ms_per_credential": r.cpu * 1000 / n,
                "exit": r.code,
                "baseline_wall": b.wall,
                "baseline_speedup": bup,
                "baseline_requests": b.requests,
                "baseline_exit": b.code,
                "ratio": up / bup,
                "by": r.by,
            }
        )
        print(
            f"| {j} | {r.wall:.2f} s | {up:.2f}x | {r.requests / n:.2f} | {r.connections} "
            f"| {r.cpu * 1000 / n:.1f} | {b.wall:.2f} s | {bup:.2f}x | {up / bup:.2f}x |"
        )
    print(
        "rotatectl's requests by kind (--jobs 1): "
        + ", ".join(f"{k} {v}" for k, v in sorted(rot[1].by.items(), key=lambda kv: -kv[1]))
    )
    failed = [j for j in jobs if rot[j].code or base[j].code]
    verdicts: list[tuple[str, bool]] = []
    if 16 in rot:
        up16 = rot[1].wall / rot[16].wall
        ratio16 = up16 / (base[1].wall / base[16].wall)
        if args.store == "vault" and args.delay_ms == 20:
            verdicts.append(
                (f"--jobs 16 speed-up >= 0.8x the baseline's: {_floor(ratio16)}x", ratio16 >= 0.8)
            )
        if args.delay_ms == 100:
            verdicts.append((f"--jobs 16 >= 10x --jobs 1: {_floor(up16)}x", up16 >= 10))
    for what, ok in verdicts:
        print(f"target: {what}: {'met' if ok else 'missed'}")
    if not verdicts:
        print("target: none at this store and delay (20 ms: OpenBao ratio; 100 ms: speed-up)")
    if failed:
        print(f"runs that failed (non-zero exit): --jobs {failed}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "store": args.store,
                    "delay_ms": args.delay_ms,
                    "credentials": n,
                    "rows": rows,
                    "targets": [{"what": w, "met": ok} for w, ok in verdicts],
                },
                indent=2,
            )
        )
    return 1 if failed or not all(ok for _, ok in verdicts) else 0


def _floor(x: float) -> str:
    """Two decimals, rounded down: a target is never met by rounding."""
    return f"{int(x * 100) / 100:.2f}"


if __name__ == "__main__":
    sys.exit(main())
