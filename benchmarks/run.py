"""rotatectl's performance figures, each against a baseline measured in the same run.

    python benchmarks/run.py            # the full profile (about 10 minutes on 2 cores)
    python benchmarks/run.py --quick    # a tiny profile (under a minute): the harness works
    python benchmarks/run.py --only startup,calls --json figures.json

Sections (see benchmarks/README.md for what each figure means):

- ``startup``: ``rotatectl --version``, ``--help`` and ``status`` of N local
  credentials against ``python -c "import typer"`` (the floor of a Typer CLI),
  with ``aws --version`` and ``bao version`` for comparison, and which heavy
  modules each command imports;
- ``calls``: store API calls of a full rotation, a ``status`` and a no-op
  ``run`` on the local store (SQLite transactions), moto_server (AWS API
  calls) and OpenBao (HTTP requests), next to the minimum the API allows;
- ``fleet``: ``run`` over N due credentials on each store with ``--jobs 1``
  and ``--jobs 8``, and the local store at growing N (linear cost);
- ``overhead``: a full rotation with zero waits against moto_server, against
  a minimal hand-written boto3 rotation (benchmarks/boto3_rotation.py);
- ``verify``: the SDK verifier figure (benchmarks/verify.py, if present).

Every timed command runs as its own process, interleaved with its baseline
round by round; the figure is the median. Start-up ratios are judged on CPU
time (user + system of the process), which a busy machine disturbs far less
than wall time; wall-time medians are printed next to them. Python bytecode is
cached in a private PYTHONPYCACHEPREFIX and warmed up first (a pip install
compiles it; this machine sets PYTHONDONTWRITEBYTECODE, which would make every
run compile rotatectl's sources). Exits 1 if a target ratio is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import servers  # noqa: E402 - a sibling module, found through the path set just above

SECTIONS = ("startup", "calls", "fleet", "overhead", "verify", "scrub")
STORES = ("local", "aws", "vault")
STORE_LABEL = {"local": "local store", "aws": "moto_server", "vault": "OpenBao"}

# Every figure the harness prints (the smoke test checks each one's line).
FIGURE_KEYS = (
    "startup.floor",
    "startup.version",
    "startup.help",
    "startup.status",
    "startup.aws",
    "startup.bao",
    "startup.imports",
    *(f"calls.{s}.{op}" for s in STORES for op in ("rotation", "status", "noop-run")),
    *(f"fleet.{s}.jobs{j}" for s in STORES for j in (1, 8)),
    *(f"fleet.{s}.speedup" for s in STORES),
    "fleet.local.linear",
    "overhead.rotation",
    "verify.sdk",
    "verify.refresh",
)


@dataclass(frozen=True)
class Profile:
    reps: int  # rounds of each start-up command
    status_n: int  # local credentials for `status`
    calls_n: int  # credentials for the per-N call counts (status, no-op run)
    fleet_local: int
    fleet_remote: int  # moto_server and OpenBao are far slower per call than SQLite
    linear: tuple[int, ...]  # local store sizes for the linear-growth check
    overhead_reps: int
    verify_args: tuple[str, ...]
    warmup: int = 2  # untimed runs of each command first (bytecode cache, page cache)


FULL = Profile(
    reps=15,
    status_n=100,
    calls_n=100,
    fleet_local=1000,
    fleet_remote=1000,
    linear=(100, 1000, 3000),
    overhead_reps=9,
    verify_args=("--keys", "10000", "--distinct", "1000", "--rounds", "15"),
)
QUICK = Profile(
    reps=1,
    status_n=5,
    calls_n=2,
    fleet_local=4,
    fleet_remote=2,
    linear=(2, 4, 8),
    overhead_reps=1,
    verify_args=("--keys", "2000", "--distinct", "100", "--rounds", "2"),
    warmup=1,
)

# Targets (max ratio to the baseline) from the performance issue.
TARGET_VERSION = 0.5
TARGET_STATUS = 2.0
TARGET_OVERHEAD = 1.3  # issue 21 (was 1.5)
LINEAR_TOLERANCE = 1.5  # per-credential cost may vary this much across sizes


# -- figures ------------------------------------------------------------------


@dataclass
class Figure:
    key: str
    what: str
    value: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None  # None: for information
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        mark = {True: "ok  ", False: "MISS", None: "info"}[self.ok]
        parts = [f"[{mark}] {self.key}: {self.what}: {self.value}"]
        if self.baseline:
            parts.append(f"baseline {self.baseline}")
        if self.ratio is not None:
            parts.append(
                f"ratio {self.ratio:.2f}x" + (f" (target {self.target})" if self.target else "")
            )
        elif self.target:
            parts.append(f"target {self.target}")
        if self.note:
            parts.append(self.note)
        return "; ".join(parts)


class Report:
    def __init__(self) -> None:
        self.figures: list[Figure] = []

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(figure.line(), flush=True)
        return figure

    def skip(self, key: str, what: str, why: str) -> None:
        self.add(Figure(key, what, "skipped", note=why))


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def section(name: str) -> None:
    print(f"\n== {name} ({load()})", flush=True)


@contextlib.contextmanager
def took(what: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    print(f"({what}: {time.monotonic() - started:.0f} s)", flush=True)


# -- processes ----------------------------------------------------------------


@dataclass
class Workdir:
    root: Path
    pycache: Path

    def env(self, name: str, **extra: str) -> dict[str, str]:
        """A clean environment for a CLI run with its own HOME and state directory."""
        home = self.root / name / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ROTATECTL_", "XDG_", "AWS_", "VAULT_", "BAO_"))
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(servers.AWS_ENV)
        env.update(
            HOME=str(home),
            ROTATECTL_STATE_DIR=str(self.root / name / "state"),
            NO_COLOR="1",
            COLUMNS="200",
            PYTHONPYCACHEPREFIX=str(self.pycache),
        )
        env.update(extra)
        return env

    def cwd(self, name: str) -> Path:
        path = self.root / name / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path


def rotatectl_argv() -> list[str]:
    script = Path(sys.executable).parent / "rotatectl"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "rotatectl"]


@dataclass
class Timed:
    wall: float
    cpu: float
    code: int


def timed(argv: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> Timed:
    """Run ``argv`` with its output discarded: wall time, CPU time (user+sys), exit code."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(argv), env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Timed(wall, usage.ru_utime + usage.ru_stime, proc.returncode)


@dataclass
class Series:
    runs: list[Timed]

    @property
    def wall(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    @property
    def cpu(self) -> float:
        return statistics.median(r.cpu for r in self.runs)

    def text(self) -> str:
        return f"{ms(self.cpu)} CPU, {ms(self.wall)} wall"


def interleaved(
    commands: dict[str, tuple[list[str], dict[str, str], Path | None]], reps: int, warmup: int = 2
) -> dict[str, Series]:
    """Median-ready runs of each command, round by round, after ``warmup`` untimed runs."""
    for _ in range(warmup):
        for argv, env, cwd in commands.values():
            timed(argv, env, cwd)
    results: dict[str, list[Timed]] = {name: [] for name in commands}
    for _ in range(reps):
        for name, (argv, env, cwd) in commands.items():
            results[name].append(timed(argv, env, cwd))
    return {name: Series(runs) for name, runs in results.items()}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


@dataclass
class Counted:
    code: int
    wall: float  # the whole process, from outside
    cpu: float  # the whole process: user + system time
    seconds: float  # main() alone, wall time
    calls: dict[str, dict[str, int]]
    modules: list[str]

    def total(self, kind: str) -> int:
        return sum(self.calls.get(kind, {}).values())

    def breakdown(self, kind: str) -> str:
        found = self.calls.get(kind, {})
        return ", ".join(f"{op} {n}" for op, n in sorted(found.items(), key=lambda x: -x[1]))


def counted(
    args: Sequence[str], env: dict[str, str], cwd: Path, count: Sequence[str] = ()
) -> Counted:
    """Run the CLI through benchmarks/counted.py: its calls per store, and its wall time."""
    out = cwd / "counted.json"
    argv = [sys.executable, str(HERE / "counted.py"), "--out", str(out), "--quiet-output"]
    for kind in count:
        argv += ["--count", kind]
    errors = cwd / "counted.err"
    started = time.perf_counter()
    with errors.open("w") as err:
        proc = subprocess.Popen(
            [*argv, "--", *args], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"counted.py {' '.join(args)} failed: {errors.read_text()[-2000:]}")
    data = json.loads(out.read_text())
    out.unlink()
    cpu = usage.ru_utime + usage.ru_stime
    return Counted(data["code"], wall, cpu, data["seconds"], data["calls"], data["modules"])


# -- stores -------------------------------------------------------------------


@dataclass
class StoreSetup:
    """How to point the CLI at one store, with a namespace per measurement."""

    kind: str
    table: Callable[[str], str]  # namespace -> [stores.X] table ("" for local)
    env: dict[str, str]
    count: str

    def config(self, namespace: str, names: Sequence[str], defaults: str = "") -> str:
        store = self.table(namespace)
        head = '[defaults]\nstore = "s"\n' if store else "[defaults]\n"
        body = "".join(f'[credentials."{n}"]\n' for n in names)
        return head + defaults + "\n" + store + "\n" + body


def local_setup() -> StoreSetup:
    return StoreSetup("local", lambda ns: "", {}, "local")


def aws_setup(moto: servers.Moto) -> StoreSetup:
    def table(ns: str) -> str:
        return moto.store_table(f"{ns}/").replace("[stores.aws]", "[stores.s]")

    return StoreSetup("aws", table, {}, "aws")


def vault_setup(bao: servers.Bao) -> StoreSetup:
    def table(ns: str) -> str:
        return bao.store_table(ns).replace("[stores.vault]", "[stores.s]")

    return StoreSetup("vault", table, bao.env(), "vault")


@contextlib.contextmanager
def stores(
    wanted: Sequence[str], report: Report, keys: Sequence[str]
) -> Iterator[dict[str, StoreSetup]]:
    """The store setups that could be started; a skip line for each one that could not."""
    found: dict[str, StoreSetup] = {}
    with contextlib.ExitStack() as stack:
        if "local" in wanted:
            found["local"] = local_setup()
        if "aws" in wanted:
            try:
                found["aws"] = aws_setup(stack.enter_context(servers.moto_server()))
            except servers.ServerError as exc:
                for key in keys:
                    if ".aws." in key:
                        report.skip(key, "moto_server", str(exc))
        if "vault" in wanted:
            try:
                found["vault"] = vault_setup(stack.enter_context(servers.bao_server()))
            except servers.ServerError as exc:
                for key in keys:
                    if ".vault." in key:
                        report.skip(key, "OpenBao", str(exc))
        yield found


def names(prefix: str, n: int) -> list[str]:
    width = max(4, len(str(n)))
    return [f"{prefix}/c{i:0{width}d}" for i in range(1, n + 1)]


def prepare(
    wd: Workdir, setup: StoreSetup, namespace: str, creds: Sequence[str], defaults: str = ""
) -> tuple[dict[str, str], Path]:
    """A working directory whose rotatectl.toml declares ``creds`` in a fresh namespace."""
    cwd = wd.cwd(namespace)
    (cwd / "rotatectl.toml").write_text(setup.config(namespace, creds, defaults))
    return wd.env(namespace, **setup.env), cwd


# -- sections -----------------------------------------------------------------


def aws_cli() -> list[str] | None:
    """The real ``aws`` executable (a pyenv shim resolved: its bash start-up is not aws's)."""
    beside = Path(sys.executable).parent / "aws"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("aws")
    if found is None:
        return None
    if "/.pyenv/shims/" in found and shutil.which("pyenv"):
        real = subprocess.run(
            ["pyenv", "which", "aws"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if real:
            return [real]
    return [found]


def startup(wd: Workdir, prof: Profile, report: Report) -> None:
    section(f"start-up: median of {prof.reps} interleaved rounds, CPU time judged")
    env, cwd = wd.env("startup"), wd.cwd("startup")
    cli = rotatectl_argv()
    seed = names("svc", prof.status_n)
    made = subprocess.run(
        [*cli, "-q", "rotate", *seed], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        raise RuntimeError(f"seeding {len(seed)} credentials failed: {made.stderr[-1000:]}")
    commands: dict[str, tuple[list[str], dict[str, str], Path | None]] = {
        "floor": ([sys.executable, "-c", "import typer"], env, cwd),
        "version": ([*cli, "--version"], env, cwd),
        "help": ([*cli, "--help"], env, cwd),
        "status": ([*cli, "status"], env, cwd),
    }
    aws = aws_cli()
    if aws is not None:
        commands["aws"] = ([*aws, "--version"], env, cwd)
    with contextlib.suppress(servers.ServerError):
        commands["bao"] = ([servers.binary("bao"), "version"], env, cwd)
    got = interleaved(commands, prof.reps, prof.warmup)
    floor = got["floor"]
    report.add(
        Figure(
            "startup.floor",
            'python -c "import typer" (the floor of a Typer CLI)',
            floor.text(),
            data={"cpu": floor.cpu, "wall": floor.wall},
        )
    )

    def versus(key: str, what: str, name: str, target: float | None, note: str = "") -> None:
        s = got[name]
        ratio = s.cpu / floor.cpu
        wall = s.wall / floor.wall
        report.add(
            Figure(
                key,
                what,
                s.text(),
                baseline=f"{ms(floor.cpu)} CPU",
                ratio=ratio,
                target=f"<= {target}x CPU" if target else "",
                ok=(ratio <= target) if target else None,
                note=f"wall ratio {wall:.2f}x" + (f"; {note}" if note else ""),
                data={"cpu": s.cpu, "wall": s.wall, "ratio_cpu": ratio, "ratio_wall": wall},
            )
        )

    versus("startup.version", "rotatectl --version", "version", TARGET_VERSION)
    versus("startup.help", "rotatectl --help", "help", None, "rich renders the help (Typer)")
    versus(
        "startup.status",
        f"rotatectl status, {prof.status_n} local credentials, to a pipe",
        "status",
        TARGET_STATUS,
    )
    if "aws" in got:
        versus("startup.aws", f"{Path(commands['aws'][0][0]).name} --version (awscli)", "aws", None)
    else:
        report.skip(
            "startup.aws", "aws --version", "the aws CLI is not installed (pip install awscli)"
        )
    if "bao" in got:
        versus("startup.bao", "bao version (OpenBao, Go)", "bao", None)
    else:
        report.skip("startup.bao", "bao version", "bao is not installed")

    seen: dict[str, list[str]] = {}
    for args in (["--version"], ["--help"], ["status"]):
        seen[" ".join(args)] = counted(args, env, cwd).modules
    heavy = {"boto3", "botocore", "hvac"}
    forbidden = {
        "--version": {*heavy, "typer", "rich"},
        "--help": heavy,
        "status": {*heavy, "typer", "rich", "rotatectl.engine"},
    }
    bad = {cmd: sorted(set(mods) & forbidden[cmd]) for cmd, mods in seen.items()}
    report.add(
        Figure(
            "startup.imports",
            "heavy modules imported (local store, output to a pipe)",
            "; ".join(f"{cmd}: {', '.join(m) or 'none'}" for cmd, m in seen.items()),
            target="no boto3/hvac; typer and rich only for --help; status without the runner",
            ok=not any(bad.values()),
            data=seen,
        )
    )


# The minimum number of store calls each operation needs, with the reasoning.
MINIMUM = {
    ("local", "rotation"): (
        "7 txns: 1 read, 4 writes that each change the state with its record (intent; "
        "publish; promote; retire+complete) and the lease lock's acquire and release",
    ),
    ("local", "status"): ("1 read txn: one snapshot of every credential, values included",),
    ("local", "noop-run"): (
        "1 read txn: one snapshot (and every current value, for the drift check cron "
        "must report) shows nothing is due, locked or drifted",
    ),
    ("aws", "rotation"): (
        "9 calls (11 with the lease lock as 2 record writes): GetSecretValue(record), "
        "DescribeSecret(key), PutSecretValue(key, AWSPENDING), 2 UpdateSecretVersionStage "
        "(key: promote, retire), 4 record writes of 1 PutSecretValue each (its "
        "ClientRequestToken derived from the record's sequence number is the CAS: intent, "
        "published, promoted, completed)",
    ),
    ("aws", "status"): (
        "ceil(N/20) + ceil(N/100) calls: BatchGetSecretValue of the N records, 20 a call, "
        "and ListSecrets for the key secrets' labels (the drift check; a version's value "
        "cannot change, so where AWSCURRENT is proves it), 100 a page",
    ),
    ("aws", "noop-run"): (
        "ceil(N/20) + ceil(N/100) calls: BatchGetSecretValue of the N records, and "
        "ListSecrets for the drift check cron must report (labels, no values)",
    ),
    ("vault", "rotation"): (
        "12 requests: read the index (it holds the rotation record); write index (intent), "
        "value, index (published), index (promotion intent), client path, index "
        "(promoted), index (retired and completed); lock write and release (KV v2: one "
        "path a request); 18 with the process's token lookup and mount check and the "
        "drift check (client path, current value, two paths' settings)",
    ),
    ("vault", "status"): (
        "2N + 2 requests: index (with the rotation record) and client path of each "
        "credential (KV v2 has no batch read), and the token lookup and mount check; the "
        "drift check's settings and value-path versions come from one SCAN of "
        "detailed-metadata (OpenBao)",
    ),
    ("vault", "noop-run"): (
        "2N + 2 requests: index (with the rotation record) and lock of each credential "
        "(no batch read), and the token lookup and mount check; the drift check cron must "
        "report adds the client path of each (and one SCAN of detailed-metadata, OpenBao)",
    ),
}
CALL_KIND = {"local": "local", "aws": "aws", "vault": "vault"}
CALL_UNIT = {"local": "SQLite transactions", "aws": "API calls", "vault": "HTTP requests"}


def calls(wd: Workdir, prof: Profile, report: Report, setups: dict[str, StoreSetup]) -> None:
    n = prof.calls_n
    section(f"API calls per operation (N = {n} for status and the no-op run)")
    for kind in STORES:
        setup = setups.get(kind)
        if setup is None:
            continue
        unit, count = CALL_UNIT[kind], [setup.count]
        one = "calls/api"
        fleet = names("calls", n)
        env, cwd = prepare(wd, setup, f"calls-{kind}", [one, *fleet])
        first = counted(["rotate", one, *fleet], env, cwd, count)
        if first.code != 0:
            raise RuntimeError(f"{kind}: first keys failed (exit {first.code})")
        rot = counted(["rotate", one, "--propagation", "0s", "--overlap", "0s"], env, cwd, count)
        report.add(
            Figure(
                f"calls.{kind}.rotation",
                f"{STORE_LABEL[kind]}: a full rotation, zero waits ({unit})",
                str(rot.total(CALL_KIND[kind])),
                baseline=f"minimum {MINIMUM[(kind, 'rotation')][0]}",
                note=rot.breakdown(CALL_KIND[kind]),
                data=asdict(rot),
            )
        )
        st = counted(["status"], env, cwd, count)
        report.add(
            Figure(
                f"calls.{kind}.status",
                f"{STORE_LABEL[kind]}: status of N={n + 1} ({unit})",
                str(st.total(CALL_KIND[kind])),
                baseline=f"minimum {MINIMUM[(kind, 'status')][0]}",
                note=st.breakdown(CALL_KIND[kind]),
                data=asdict(st),
            )
        )
        noop = counted(["run"], env, cwd, count)
        total = noop.total(CALL_KIND[kind])
        ok: bool | None = None
        target = ""
        if kind == "aws":
            # O(N/20): one batch call per 20 credentials, and one label listing per
            # 100 for the drift check (plus rounding).
            bound = math.ceil((n + 1) / 20) + math.ceil((n + 1) / 100)
            target, ok = f"<= ceil(N/20) + ceil(N/100) = {bound}", total <= bound
        report.add(
            Figure(
                f"calls.{kind}.noop-run",
                f"{STORE_LABEL[kind]}: no-op run over N={n + 1} ({unit})",
                str(total),
                baseline=f"minimum {MINIMUM[(kind, 'noop-run')][0]}",
                target=target,
                ok=ok,
                note=noop.breakdown(CALL_KIND[kind]),
                data=asdict(noop),
            )
        )


def fleet(wd: Workdir, prof: Profile, report: Report, setups: dict[str, StoreSetup]) -> None:
    section("fleet: run over N due credentials (no key yet), --jobs 1 and --jobs 8")
    for kind in STORES:
        setup = setups.get(kind)
        if setup is None:
            continue
        n = prof.fleet_local if kind == "local" else prof.fleet_remote
        walls: dict[int, float] = {}
        for jobs in (1, 8):
            namespace = f"fleet-{kind}-j{jobs}"
            env, cwd = prepare(wd, setup, namespace, names("fleet", n))
            got = counted(["run", "--jobs", str(jobs)], env, cwd, [setup.count])
            walls[jobs] = got.wall
            total = got.total(CALL_KIND[kind])
            report.add(
                Figure(
                    f"fleet.{kind}.jobs{jobs}",
                    f"{STORE_LABEL[kind]}: run over {n} due credentials, --jobs {jobs}",
                    f"{ms(got.wall)} wall, {total} {CALL_UNIT[kind]} ({total / n:.1f} each)",
                    ok=None if got.code == 0 else False,
                    note=f"exit {got.code}; {ms(got.wall / n)} per credential; "
                    f"client CPU {ms(got.cpu)}",
                    data=asdict(got),
                )
            )
        report.add(
            Figure(
                f"fleet.{kind}.speedup",
                f"{STORE_LABEL[kind]}: speed-up of --jobs 8 over --jobs 1",
                f"{walls[1] / walls[8]:.2f}x",
                baseline=f"--jobs 1: {ms(walls[1])}",
                note=_speedup_note(kind),
            )
        )
    if "local" not in setups:
        return
    sizes = prof.linear
    per: list[tuple[int, float]] = []  # (N, CPU seconds): the work, whatever the load
    walls: list[float] = []
    for n in sizes:
        env, cwd = prepare(wd, setups["local"], f"linear-{n}", names("lin", n))
        got = counted(["run", "--jobs", "1"], env, cwd, ["local"])
        per.append((n, got.cpu))
        walls.append(got.wall)
    slope, intercept, r2 = _fit(per)
    # Linear growth: the cost of one more credential is the same at every size.
    marginal = [(t2 - t1) / (n2 - n1) for (n1, t1), (n2, t2) in itertools.pairwise(per)]
    spread = max(marginal) / min(marginal) if min(marginal) > 0 else math.inf
    report.add(
        Figure(
            "fleet.local.linear",
            f"local store: run over {', '.join(f'{n:,}' for n in sizes)} due credentials",
            ", ".join(f"{n:,}: {ms(t)} CPU" for n, t in per),
            baseline=f"fit t = {intercept * 1000:.0f} ms + {slope * 1000:.2f} ms x N (r2 {r2:.3f})",
            ratio=spread,
            target=f"marginal cost per credential within {LINEAR_TOLERANCE}x between sizes",
            ok=spread <= LINEAR_TOLERANCE,
            note="marginal CPU ms per credential: "
            + ", ".join(f"{m * 1000:.1f}" for m in marginal)
            + "; wall "
            + ", ".join(ms(w) for w in walls)
            + " (wall adds each commit's fsync and the machine's load)",
            data={"points": per, "walls": walls, "slope": slope, "intercept": intercept},
        )
    )


def _speedup_note(kind: str) -> str:
    if kind == "local":
        return "SQLite takes one writer at a time, and each write waits for its fsync"
    return "threads overlap the server's round trips; the GIL bounds the client's own work"


def _fit(points: Sequence[tuple[int, float]]) -> tuple[float, float, float]:
    """Least squares t = a + b*n: (b, a, r^2)."""
    xs, ys = [float(n) for n, _ in points], [t for _, t in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys) or 1e-12
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return slope, intercept, 1 - ss_res / ss_tot


def overhead(wd: Workdir, prof: Profile, report: Report, setups: dict[str, StoreSetup]) -> None:
    section(f"rotation overhead against moto_server: median of {prof.overhead_reps} rounds")
    setup = setups.get("aws")
    if setup is None:
        return
    namespace = "overhead"
    env, cwd = prepare(wd, setup, namespace, ["ovh/cli", "ovh/base"])
    first = counted(["rotate", "ovh/cli", "ovh/base"], env, cwd)
    if first.code != 0:
        raise RuntimeError(f"overhead: first keys failed (exit {first.code})")
    url = re.search(r'endpoint_url = "([^"]+)"', (cwd / "rotatectl.toml").read_text())
    assert url is not None
    cli = [*rotatectl_argv(), "rotate", "ovh/cli", "--propagation", "0s", "--overlap", "0s"]
    base = [
        sys.executable,
        str(HERE / "boto3_rotation.py"),
        "--endpoint",
        url.group(1),
        "--name",
        "ovh/base",
        "--prefix",
        f"{namespace}/",
    ]
    got = interleaved(
        {"cli": (cli, env, cwd), "base": (base, env, cwd)},
        prof.overhead_reps,
        warmup=min(prof.warmup, 1),
    )
    codes = {r.code for s in got.values() for r in s.runs}
    ratio = got["cli"].wall / got["base"].wall
    report.add(
        Figure(
            "overhead.rotation",
            "rotatectl rotate, zero waits, moto_server (whole process)",
            got["cli"].text(),
            baseline=f"boto3_rotation.py (9 calls): {got['base'].text()}",
            ratio=ratio,
            target=f"<= {TARGET_OVERHEAD}x wall",
            ok=ratio <= TARGET_OVERHEAD and codes == {0},
            note=f"CPU ratio {got['cli'].cpu / got['base'].cpu:.2f}x; exit codes {sorted(codes)}",
            data={"cli": asdict(got["cli"]), "base": asdict(got["base"])},
        )
    )


def verify(wd: Workdir, prof: Profile, report: Report) -> None:
    script = HERE / "verify.py"
    section("SDK verifier (benchmarks/verify.py)")
    if not script.exists():
        report.skip("verify.sdk", "KeyRing.verify", "benchmarks/verify.py is not present")
        report.skip(
            "verify.refresh", "refresh of 10,000 keys", "benchmarks/verify.py is not present"
        )
        return
    env = wd.env("verify")
    proc = subprocess.run(
        [sys.executable, str(script), *prof.verify_args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    out = proc.stdout
    found = re.search(r"^verify / (.+?): ([\d.]+)x(.*)$", out, re.MULTILINE)
    if found is None:
        report.add(
            Figure(
                "verify.sdk",
                "KeyRing.verify",
                "no figure",
                ok=False,
                note=f"exit {proc.returncode}: {(proc.stderr or out)[-500:]}",
            )
        )
    else:
        report.add(
            Figure(
                "verify.sdk",
                "KeyRing.verify throughput (benchmarks/verify.py)",
                f"{float(found.group(2)):.2f}x the bare loop{found.group(3)}",
                baseline=f"bare loop: {found.group(1)}",
                target="verify.py's own (>= 0.7x)",
                ok=proc.returncode == 0,
                note=f"verify.py exit {proc.returncode}",
            )
        )
    refresh = [line.strip() for line in out.splitlines() if "refresh" in line]
    report.add(
        Figure(
            "verify.refresh",
            "refresh cost (benchmarks/verify.py)",
            "; ".join(re.sub(r"\s+", " ", r) for r in refresh) or "no figure",
            ok=None if refresh else False,
        )
    )


def scrub(wd: Workdir, report: Report) -> None:
    """redact.scrub with 10,000 registered keys against 1,000 (benchmarks/scrub.py)."""
    section("output scrubbing at scale (benchmarks/scrub.py)")
    proc = subprocess.run(
        [sys.executable, str(HERE / "scrub.py")],
        env=wd.env("scrub"),
        capture_output=True,
        text=True,
        check=False,
    )
    print(proc.stdout, end="")
    found = re.search(r"^scrub / ([\d.]+ ms): ([\d.]+)x", proc.stdout, re.MULTILINE)
    if found is None:
        report.add(Figure("scrub", "scrub", "no figure", ok=False, note=(proc.stderr or "")[-500:]))
        return
    ratio = float(found.group(2))
    report.add(
        Figure(
            "scrub",
            "redact.scrub of 10,000 lines, 10,000 keys registered",
            f"{ratio:.2f}x",
            baseline=f"1,000 keys registered: {found.group(1)}",
            target="<= 1.5x (linear in the text)",
            ok=ratio <= 1.5,
        )
    )


# -- main -----------------------------------------------------------------------


def summary(report: Report, started: float, prof: Profile) -> int:
    print("\n== summary")
    machine = f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs"
    print(f"machine: {machine}, {platform.platform()}")
    print(
        f"python {platform.python_version()}; {load()}; {time.monotonic() - started:.0f} s in all"
    )
    print()
    print("| figure | value | baseline | ratio | target |")
    print("|---|---|---|---|---|")
    for f in report.figures:
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else ""
        mark = {True: "met", False: "**missed**", None: ""}[f.ok]
        target = f"{f.target} {mark}".strip()
        print(f"| {f.key} | {f.value} | {f.baseline} | {ratio} | {target} |")
    printed = {f.key for f in report.figures}
    missing = [k for k in FIGURE_KEYS if k not in printed]
    missed = [f.key for f in report.figures if f.ok is False]
    print(f"\nfigures printed: {len(printed & set(FIGURE_KEYS))} of {len(FIGURE_KEYS)}")
    if missing:
        print("not measured: " + ", ".join(missing))
    if missed:
        print("MISSED: " + ", ".join(missed))
        return 1
    print("every target met")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny profile (under a minute)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--fleet-remote", type=int, help="credentials for moto_server/OpenBao")
    parser.add_argument("--fleet-local", type=int, help="credentials for the local fleet run")
    parser.add_argument("--linear", help="local sizes for the linear check, e.g. 100,1000,10000")
    parser.add_argument(
        "--stores", default=",".join(STORES), help="stores to measure (local,aws,vault)"
    )
    args = parser.parse_args()
    prof = QUICK if args.quick else FULL
    if args.fleet_remote:
        prof = _replace(prof, fleet_remote=args.fleet_remote)
    if args.fleet_local:
        prof = _replace(prof, fleet_local=args.fleet_local)
    if args.linear:
        prof = _replace(prof, linear=tuple(int(n) for n in args.linear.split(",")))
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    started = time.monotonic()
    report = Report()
    print(f"rotatectl benchmarks ({'quick' if args.quick else 'full'} profile); {load()}")
    with tempfile.TemporaryDirectory(prefix="rotatectl-bench-") as tmp:
        wd = Workdir(Path(tmp), Path(tmp) / "pycache")
        if "startup" in only:
            with took("start-up"):
                startup(wd, prof, report)
        need = [s for s in ("calls", "fleet", "overhead") if s in only]
        if need:
            chosen = [x for x in STORES if x in args.stores.split(",")]
            wanted = chosen if set(need) & {"calls", "fleet"} else ["aws"]
            keys = [k for k in FIGURE_KEYS if k.split(".")[0] in need]
            with took("servers"), stores(wanted, report, keys) as setups:
                # The overhead before the fleets: moto_server answers more slowly once
                # it holds the fleets' thousands of secrets, and the rotation makes
                # more calls than its baseline, so the ratio would measure moto.
                if "overhead" in only and "aws" in setups:
                    with took("overhead"):
                        overhead(wd, prof, report, setups)
                if "calls" in only:
                    with took("calls"):
                        calls(wd, prof, report, setups)
                if "fleet" in only:
                    with took("fleet"):
                        fleet(wd, prof, report, setups)
        if "verify" in only:
            with took("verify"):
                verify(wd, prof, report)
        if "scrub" in only:
            with took("scrub"):
                scrub(wd, report)
    code = summary(report, started, prof)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "load": load(),
                    "profile": "quick" if args.quick else "full",
                    "figures": [asdict(f) for f in report.figures],
                },
                indent=1,
                default=str,
            )
        )
    return code


def _replace(prof: Profile, **changes: Any) -> Profile:
    return Profile(**{**asdict(prof), **changes})


if __name__ == "__main__":
    sys.exit(main())
