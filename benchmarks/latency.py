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

Several runners on one fleet (issue 21 item 2), with ``--runners R``:

    python benchmarks/latency.py --store aws --delay-ms 100 --runners 4 --jobs 4 --credentials 500

On a fresh set of N due credentials, one ``rotatectl run --jobs J -o json``;
then, on another fresh set of N (another namespace, same server and proxy), R
such processes started together (all started, then all waited for). Each
runner has a state directory (audit log) of its own, as on separate hosts;
all read the same config. Wall time is from the first start to the last exit;
CPU time is each process's (``os.wait4``), summed. Afterwards each fleet is
checked: its runners' JSON results (``done`` with a ``started`` step, counted
by credential; ``locked``; ``failed``) and ``rotatectl status -o json`` (one
version, current, its rotation completed, no error, no drift): a credential
is rotated exactly once when both say so. Requests are counted at the proxy
for the runs alone (not the check). Target: R runners' wall at most 0.4x the
one runner's (judged unrounded; printed rounded up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
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


# -- several runners on one fleet ----------------------------------------------------


@dataclass
class Runner:
    wall: float  # from its own start to its exit
    cpu: float
    code: int
    outcomes: dict[str, int]  # outcome -> credentials, from its JSON results
    started: list[str]  # credentials it rotated: ``done`` with a ``started`` step
    error: str  # the end of its stderr when it printed no JSON document


@dataclass
class Fleet:
    wall: float  # from the first start to the last exit
    runners: list[Runner]
    requests: int
    connections: int
    by: dict[str, int]
    once: int  # rotated exactly once: by one runner, and one current version in status
    twice: list[str]  # started by more than one runner
    missed: list[str]  # started by no runner
    bad: list[str]  # status is not one current version of a completed rotation
    failed: int  # ``failed`` results, all runners together

    @property
    def cpu(self) -> float:
        return sum(r.cpu for r in self.runners)

    def outcomes(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for r in self.runners:
            total.update(r.outcomes)
        return dict(total)


def _together(
    argv: list[str], envs: list[dict[str, str]], cwd: Path, proxy: Proxy
) -> tuple[float, list[Runner], dict[str, Any]]:
    """One process per environment, all started, then all waited for (``os.wait4``
    on its own thread each, so each exit is timed when it happens)."""
    proxy.reset()
    procs: list[subprocess.Popen[bytes]] = []
    starts: list[float] = []
    with contextlib.ExitStack() as files:
        first = time.perf_counter()
        for i, env in enumerate(envs):
            out = files.enter_context((cwd / f"runner-{i}.json").open("wb"))
            err = files.enter_context((cwd / f"runner-{i}.err").open("wb"))
            starts.append(time.perf_counter())
            procs.append(subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err))

        def wait(i: int) -> tuple[float, float, int]:
            _, status, usage = os.wait4(procs[i].pid, 0)
            ended = time.perf_counter()
            procs[i].returncode = os.waitstatus_to_exitcode(status)
            return ended, usage.ru_utime + usage.ru_stime, procs[i].returncode

        with ThreadPoolExecutor(max_workers=len(procs)) as pool:
            ends = list(pool.map(wait, range(len(procs))))
    stats = proxy.stats()
    runners = []
    for i, ((ended, cpu, code), start) in enumerate(zip(ends, starts, strict=True)):
        outcomes: Counter[str] = Counter()
        started: list[str] = []
        error = ""
        try:
            results = json.loads((cwd / f"runner-{i}.json").read_text())["results"]
        except (ValueError, KeyError):
            results = []
            error = (cwd / f"runner-{i}.err").read_text(errors="replace")[-500:]
        for r in results:
            outcomes[r["outcome"]] += 1
            if r["outcome"] == "done" and any(s.startswith("started") for s in r["steps"]):
                started.append(r["credential"])
        runners.append(Runner(ended - start, cpu, code, dict(outcomes), started, error))
    return max(e for e, _, _ in ends) - first, runners, stats


def _status_ok(cred: dict[str, Any]) -> bool:
    """One version, current, made by a completed rotation; no error, no drift."""
    versions, rotation = cred["versions"], cred["rotation"]
    return (
        not cred["error"]
        and not cred["drift"]
        and len(versions) == 1
        and versions[0]["state"] == "current"
        and cred["current_version"] == versions[0]["number"]
        and rotation is not None
        and rotation["phase"] == "completed"
        and not rotation["failure"]
    )


def _fleet(
    wd: Any,
    setup: Any,
    namespace: str,
    n: int,
    runners: int,
    jobs: int,
    proxy: Proxy,
) -> Fleet:
    """``runners`` processes of ``run --jobs J`` together over N fresh due credentials,
    then the check: who rotated what, and ``status -o json``."""
    import run as bench

    creds = bench.names("c", n)
    env, cwd = bench.prepare(wd, setup, namespace, creds)
    # One state directory (audit log) a runner, as on separate hosts; one config.
    envs = [env] + [wd.env(f"{namespace}-r{i}", **setup.env) for i in range(1, runners)]
    argv = [*bench.rotatectl_argv(), "run", "--jobs", str(jobs), "-o", "json"]
    wall, done, stats = _together(argv, envs, cwd, proxy)

    status = subprocess.run(
        [*bench.rotatectl_argv(), "status", "-o", "json"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        found = {c["name"]: c for c in json.loads(status.stdout)["credentials"]}
    except (ValueError, KeyError):
        print(f"status -o json (exit {status.returncode}): {status.stderr[-500:]}", file=sys.stderr)
        found = {}
    by_runner: Counter[str] = Counter(c for r in done for c in r.started)
    good = {c for c in creds if c in found and _status_ok(found[c])}
    return Fleet(
        wall=wall,
        runners=done,
        requests=stats["requests"],
        connections=stats["connections"],
        by=stats["by"],
        once=sum(1 for c in creds if by_runner[c] == 1 and c in good),
        twice=[c for c in creds if by_runner[c] > 1],
        missed=[c for c in creds if by_runner[c] == 0],
        bad=[c for c in creds if c not in good],
        failed=sum(r.outcomes.get("failed", 0) for r in done),
    )


def report_runners(args: argparse.Namespace, n: int, one: Fleet, many: Fleet) -> int:
    label = {"vault": "OpenBao", "aws": "moto_server"}[args.store]
    r = len(many.runners)
    print(
        f"\n{label}, {args.delay_ms:g} ms a request, {n} credentials, "
        f"rotatectl run --jobs {args.jobs} -o json"
    )
    print(
        "| runners | wall | CPU | requests/cred | connections | rotated once | failed "
        "| twice / none / status not one current | exit codes | outcomes |"
    )
    print("|---" * 10 + "|")
    rows = []
    for fleet in (one, many):
        codes = [x.code for x in fleet.runners]
        outcomes = fleet.outcomes()
        rows.append(
            {
                "runners": len(fleet.runners),
                "wall": fleet.wall,
                "cpu": fleet.cpu,
                "requests": fleet.requests,
                "requests_per_credential": fleet.requests / n,
                "connections": fleet.connections,
                "rotated_once": fleet.once,
                "failed": fleet.failed,
                "rotated_twice": fleet.twice,
                "not_rotated": fleet.missed,
                "status_not_one_current": fleet.bad,
                "by": fleet.by,
                "per_runner": [
                    {
                        "exit": x.code,
                        "wall": x.wall,
                        "cpu": x.cpu,
                        "rotated": len(x.started),
                        "outcomes": x.outcomes,
                    }
                    for x in fleet.runners
                ],
            }
        )
        print(
            f"| {len(fleet.runners)} | {fleet.wall:.2f} s | {fleet.cpu:.2f} s "
            f"| {fleet.requests / n:.2f} | {fleet.connections} | {fleet.once} / {n} "
            f"| {fleet.failed} | {len(fleet.twice)} / {len(fleet.missed)} / {len(fleet.bad)} "
            f"| {', '.join(map(str, codes))} "
            f"| {', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))} |"
        )
    for i, x in enumerate(many.runners):
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(x.outcomes.items()))
        print(
            f"  runner {i + 1}: exit {x.code}, {x.wall:.2f} s wall, {x.cpu:.2f} s CPU, "
            f"rotated {len(x.started)} ({outcomes or 'no JSON results'})"
        )
        if x.error:
            print(f"    stderr: {x.error.strip()}")
    for what, fleet in (("1 runner", one), (f"{r} runners", many)):
        for kind, found in (("rotated twice", fleet.twice), ("not rotated", fleet.missed)):
            if found:
                print(f"  {what}: {kind}: {len(found)} ({', '.join(found[:5])})")
        if fleet.bad:
            print(
                f"  {what}: status not one current version of a completed rotation: "
                f"{len(fleet.bad)} ({', '.join(fleet.bad[:5])})"
            )
    ratio = many.wall / one.wall
    ok = ratio <= 0.4
    print(
        f"target: {r} runners' wall <= 0.4x one runner's: {many.wall:.2f} s / "
        f"{one.wall:.2f} s = {_ceil(ratio)}x: {'met' if ok else 'missed'}"
    )
    correct = all(f.once == n and not f.failed for f in (one, many))
    codes_ok = all(x.code == 0 for f in (one, many) for x in f.runners)
    if not correct:
        print("not every credential was rotated exactly once (see above)")
    if not codes_ok:
        print("runs that exited non-zero: see the exit codes above")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "store": args.store,
                    "delay_ms": args.delay_ms,
                    "credentials": n,
                    "jobs": int(args.jobs),
                    "runners": r,
                    "rows": rows,
                    "ratio": ratio,
                    "targets": [{"what": f"{r} runners' wall <= 0.4x one runner's", "met": ok}],
                },
                indent=2,
            )
        )
    return 0 if ok and correct and codes_ok else 1


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
    parser.add_argument(
        "--jobs",
        help="comma-separated; 1 is added if absent (default 1,4,16); "
        "with --runners, one number (default 4)",
    )
    parser.add_argument("--credentials", type=int, default=100)
    parser.add_argument(
        "--runners", type=int, help="R runners on one fleet against one (no baseline)"
    )
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    if args.runners is not None:
        args.jobs = args.jobs or "4"
        if not args.jobs.isdigit() or args.runners < 1:
            parser.error("--runners takes one --jobs number and at least 1 runner")
        jobs = [int(args.jobs)]
    else:
        jobs = sorted({1, *(int(j) for j in (args.jobs or "1,4,16").split(","))})

    import run as bench
    import servers

    label = {"vault": "OpenBao", "aws": "moto_server"}[args.store]
    runners = f", {args.runners} runners against 1" if args.runners is not None else ""
    print(
        f"{label} behind a {args.delay_ms:g} ms proxy (once a request), "
        f"{args.credentials} due credentials, --jobs {','.join(map(str, jobs))}{runners}; "
        f"{bench.load()}",
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
        n = args.credentials
        if args.runners is not None:
            j = jobs[0]
            one = _fleet(wd, setup, "one-runner", n, 1, j, proxy)
            print(
                f"  1 runner: {one.wall:7.2f} s wall, {one.cpu:6.2f} s CPU, "
                f"{one.requests} requests, exit {one.runners[0].code}",
                flush=True,
            )
            many = _fleet(wd, setup, f"{args.runners}-runners", n, args.runners, j, proxy)
            print(
                f"  {args.runners} runners: {many.wall:7.2f} s wall, {many.cpu:6.2f} s CPU, "
                f"{many.requests} requests, exits {[x.code for x in many.runners]}",
                flush=True,
            )
            return report_runners(args, n, one, many)
        baseline("warmup-base", 2, 2, 2, 2)

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


def _ceil(x: float) -> str:
    """Two decimals, rounded up: a ceiling is never met by rounding."""
    return f"{math.ceil(x * 100) / 100:.2f}"


def _floor(x: float) -> str:
    """Two decimals, rounded down: a target is never met by rounding."""
    return f"{int(x * 100) / 100:.2f}"


if __name__ == "__main__":
    sys.exit(main())
