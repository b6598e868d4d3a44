"""Faults between rotatectl and the real servers, through :mod:`.faultproxy`.

The CLI's store points at the proxy, the proxy at moto_server or OpenBao.
rotatectl must retry what is retryable (latency, dropped connections, 5xx,
throttling), never add a second version or a second promotion when a reply
is lost after the server applied the write, and leave a state that
``rotatectl run`` finishes when its retries run out.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Cli

from .conftest import NAME, REMOTE, AwsBackend, Backend, VaultBackend
from .faultproxy import Fault, FaultProxy, Match, Request, any_request, aws, vault
from .invariants import Invariants, Snapshot

ROTATE = ("rotate", NAME, "--propagation", "0s", "--overlap", "0s")
RETAIN = "1h"  # nothing is destroyed behind the test's back

# Few, quick retries at the SDK level: the runner's own retries come on top.
FAST = {
    "moto_server": 'max_attempts = 3\nconnect_timeout = "2s"\nread_timeout = "5s"\n',
    "openbao": "timeout = 5\n",
}


@pytest.fixture
def proxy(backend: Backend) -> Iterator[FaultProxy]:
    with FaultProxy(backend.upstream, seed=1234).running() as p:
        backend.configure(url=p.url, store_settings=FAST[backend.kind], retain=RETAIN)
        yield p
        backend.note("faults", *(e.fault.label for e in p.injected()))


# -- what to hit, per store -------------------------------------------------------------


def writes(backend: Backend) -> dict[str, Match]:
    """The writes that matter, by the step they belong to."""
    if isinstance(backend, AwsBackend):
        record = f"{NAME}/.rotatectl"
        return {
            "publish": aws("PutSecretValue", secret=NAME),
            "promote": aws("UpdateSecretVersionStage", secret=NAME, VersionStage="AWSCURRENT"),
            "record": aws("PutSecretValue", secret=record),
        }
    assert isinstance(backend, VaultBackend)
    base = f"/v1/secret/data/{backend.vault.prefix}/{NAME}"
    return {
        "publish": vault("WRITE", f"{base}/.rotatectl/versions/"),
        "promote": vault("WRITE", base, exact_tail=base),
        "record": vault("WRITE", f"{base}/.rotatectl/rotation"),
    }


def is_write(request: Request) -> bool:
    if request.aws_operation:
        return not request.aws_operation.startswith(("Get", "Describe", "List", "BatchGet"))
    return request.is_write


def first_key(cli: Cli, inv: Invariants) -> None:
    run = cli("rotate", NAME)
    assert run.code == 0, run.err
    inv.check("first key", settled=True, versions=1)


def rotate_ok(cli: Cli, inv: Invariants, what: str) -> None:
    run = cli(*ROTATE)
    assert run.code == 0, f"{what}: {run.out}{run.err}"
    snap = inv.check(what, settled=True, versions=2)
    assert snap.states() == [(1, "retired"), (2, "current")]


def drive_one_rotation(
    cli: Cli, inv: Invariants, args: tuple[str, ...], what: str
) -> tuple[Snapshot, list[str]]:
    """``rotatectl ARGS`` (a rotate), then ``run`` until a new rotation has finished,
    checking every invariant after every command. A command that failed before it
    could even start the rotation is simply repeated. Returns the last snapshot and
    the error output of every command that did not succeed."""
    known = {r.id for r in inv.snapshot().rotations}
    run = cli(*args)
    failed: list[str] = []
    for _ in range(12):
        snap = inv.check(f"{what}, after {run.args[0]} (exit {run.code})")
        started = snap.rotation is not None and snap.rotation.id not in known
        if run.code == 0 and started and snap.rotation is not None and snap.rotation.phase.terminal:
            return snap, failed
        failed.append(f"exit {run.code}: {run.err.strip()}")
        run = cli("run") if started else cli(*args)
    raise AssertionError(f"{what}: the rotation never finished: {run.out}{run.err}")


# -- transient faults: retried, nothing visible ----------------------------------------


TRANSIENT = {
    "latency": lambda kind: Fault.delay(150),
    "drop": lambda kind: Fault.drop(),
    "500": lambda kind: (
        Fault.aws_error(500, "InternalFailure") if kind == "moto_server" else Fault.vault_error(500)
    ),
    "503": lambda kind: (
        Fault.aws_error(503, "ServiceUnavailable")
        if kind == "moto_server"
        else Fault.vault_error(503, "Vault is sealed")  # what a standby/sealed server says
    ),
    "throttle": lambda kind: (
        Fault.aws_throttle() if kind == "moto_server" else Fault.vault_error(429, "rate limited")
    ),
}


LONG = pytest.mark.long


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["mixed", *(pytest.param(f, marks=LONG) for f in TRANSIENT)])
@pytest.mark.parametrize("backend", REMOTE, indirect=True)
def test_transient_faults_are_retried(
    cli: Cli, backend: Backend, proxy: FaultProxy, fault: str
) -> None:
    """Every third request (reads and writes alike) fails once: the rotation still
    completes in one command, with one version and one promotion. ``mixed`` uses
    latency, a dropped connection, 500, 503 and throttling in turn."""
    inv = backend.invariants(retain=RETAIN)
    kinds = list(TRANSIENT) if fault == "mixed" else [fault]
    proxy.add(any_request, [TRANSIENT[k](backend.kind) for k in kinds], times=None, every=3)
    first_key(cli, inv)
    rotate_ok(cli, inv, f"{fault} on every third request")
    injected = {e.fault.label for e in proxy.injected()}
    assert len(proxy.injected()) >= 2 * len(kinds) and len(injected) == len(kinds), injected


# -- lost responses after the write: no second version, no second promotion -----------


@pytest.mark.slow
@pytest.mark.parametrize("step", ["publish", "promote", pytest.param("record", marks=LONG)])
@pytest.mark.parametrize("backend", REMOTE, indirect=True)
def test_lost_response_after_write_is_not_repeated(
    cli: Cli, backend: Backend, proxy: FaultProxy, step: str
) -> None:
    inv = backend.invariants(retain=RETAIN)
    first_key(cli, inv)
    match = writes(backend)[step]
    before = len(proxy.exchanges())
    proxy.add(match, Fault.lost(), times=1)
    rotate_ok(cli, inv, f"the reply to the {step} write was lost")

    lost = [e for e in proxy.injected() if e.fault.label == "lost"]
    assert len(lost) == 1 and lost[0].applied, "the server applied the write; the reply was lost"
    during = proxy.exchanges()[before:]
    snap = inv.snapshot()
    v2 = snap.versions[1]
    if step == "publish":
        # The server holds exactly one value for v2: the retry found the first write.
        assert backend.value_writes(NAME, v2.version_id) == 1
        if isinstance(backend, AwsBackend):
            assert len(backend.key_versions(NAME)) == 2  # v1 and v2, nothing else
    if step == "promote":
        promotions = [e for e in during if match(e.request) and e.applied]
        if isinstance(backend, VaultBackend):
            assert backend.client_writes(NAME) == 2  # v1's promotion and v2's, once each
            assert len(promotions) == 1
        else:
            # A replayed move would fail (AWSCURRENT is no longer on v1) or move it again.
            assert len(promotions) == 1, [e.upstream_status for e in during if match(e.request)]
        assert v2.promoted is not None and snap.versions[0].demoted is not None
    backend.note(
        "notes",
        f"lost reply after the {step} write, {backend.kind}: applied once, "
        f"{len(snap.versions)} versions, exit 0",
    )


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.parametrize("backend", REMOTE, indirect=True)
def test_lost_response_of_every_write_of_a_rotation(
    cli: Cli, backend: Backend, proxy: FaultProxy
) -> None:
    """The exhaustive version: rotation after rotation, the reply of the k-th write
    request is lost, for every k a rotation makes (each resumes to completion)."""
    inv = backend.invariants(retain=RETAIN)
    first_key(cli, inv)
    start = len(proxy.exchanges())
    rotate_ok(cli, inv, "a clean rotation to count its writes")
    total = sum(1 for e in proxy.exchanges()[start:] if is_write(e.request))
    assert total >= 5
    resumed: list[str] = []
    for k in range(1, total + 1):
        seen = [0]

        def kth(request: Request, k: int = k, seen: list[int] = seen) -> bool:
            if not is_write(request):
                return False
            seen[0] += 1
            return seen[0] == k

        proxy.clear()
        proxy.add(kth, Fault.lost(), times=1, name="lost")
        # Retries (or, where a step refuses to guess, the resume) finish the rotation.
        _, failed = drive_one_rotation(cli, inv, ROTATE, f"the reply to write {k} of {total} lost")
        proxy.clear()
        lost = proxy.injected()[-1].request
        what = lost.aws_operation or f"{lost.method} {lost.path.split('?')[0]}"
        if failed:  # not absorbed by a retry: the next command finished it
            resumed.append(f"write {k} ({what}): {failed[0]}")
        snap = inv.check(f"write {k} of {total} lost", settled=True, versions=k + 2)
        assert [s for _, s in snap.states()][-2:] == ["retired", "current"]
    backend.note(
        "notes",
        f"lost reply after each write of a rotation, {backend.kind}: {total} writes, "
        f"{total - len(resumed)} absorbed by retries, {len(resumed)} finished by the next command",
        *(f"  {line}" for line in resumed),
    )


# -- retries run out: a resumable state ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("step", [pytest.param("publish", marks=LONG), "promote"])
@pytest.mark.parametrize("backend", REMOTE, indirect=True)
def test_retries_running_out_leave_a_resumable_state(
    cli: Cli, backend: Backend, proxy: FaultProxy, step: str
) -> None:
    inv = backend.invariants(retain=RETAIN)
    first_key(cli, inv)
    outage = (
        Fault.aws_error(503, "ServiceUnavailable")
        if backend.kind == "moto_server"
        else (Fault.vault_error(503))
    )
    proxy.add(writes(backend)[step], outage, times=None)
    run = cli(*ROTATE)
    assert run.code == 1, run.out + run.err
    assert "Traceback" not in run.err
    snap = inv.check(f"{step} kept failing")
    assert snap.rotation is not None and not snap.rotation.phase.terminal
    assert snap.rotation.error, "the failure is noted in the rotation record"
    assert snap.states()[0] == (1, "current")

    proxy.clear()  # the server is back
    run = cli("run")
    assert run.code == 0, run.out + run.err
    snap = inv.check("resumed after the outage", settled=True, versions=2)
    assert snap.states() == [(1, "retired"), (2, "current")]


# -- chaos: random faults of every kind, seeded ------------------------------------------


def chaos(proxy: FaultProxy, kind: str, rate: float) -> None:
    faults = [
        Fault.drop(),
        Fault.lost(),
        Fault.delay(200),
        TRANSIENT["500"](kind),
        TRANSIENT["503"](kind),
        TRANSIENT["throttle"](kind),
    ]
    for fault in faults:
        proxy.add(any_request, fault, times=None, rate=rate / len(faults))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rotations", "rate"),
    [pytest.param(1, 0.15, id="short"), pytest.param(10, 0.2, id="long", marks=LONG)],
)
@pytest.mark.parametrize("backend", REMOTE, indirect=True)
def test_chaos(cli: Cli, backend: Backend, proxy: FaultProxy, rotations: int, rate: float) -> None:
    """Seeded random faults on every request; each rotation is driven by `rotate`,
    then `run` until settled, with every invariant checked after every command."""
    inv = backend.invariants(retain=RETAIN)
    chaos(proxy, backend.kind, rate)
    for n in range(1, rotations + 2):
        args = ("rotate", NAME) if n == 1 else ROTATE
        drive_one_rotation(cli, inv, args, f"chaos, rotation {n}")
    proxy.clear()
    final = cli("run")
    assert final.code == 0, final.err
    snap = inv.check("chaos over", settled=True, versions=rotations + 1)
    assert [s for _, s in snap.states()][-1] == "current"
    assert len(proxy.injected()) >= 5


# -- one retry policy ---------------------------------------------------------------------

# A request's attempts under FAST: botocore's `max_attempts` (total), Vault's policy.
ATTEMPTS = {"moto_server": 3, "openbao": 4}


@pytest.mark.parametrize("backend", REMOTE, indirect=True)
def test_a_failing_write_is_retried_once_not_per_layer(
    cli: Cli, backend: Backend, proxy: FaultProxy
) -> None:
    """One retry policy (issue 16 item 4): a publish the server keeps refusing with 503
    is attempted as often as the adapter retries one request; the runner does not retry
    it again (the attempts multiplied: Vault's 3 x the runner's 4, botocore's x 4).
    The rotation holds, and `run` finishes it once the server answers."""
    fault = (
        Fault.aws_error(503, "ServiceUnavailable")
        if isinstance(backend, AwsBackend)
        else (Fault.vault_error(503))
    )
    proxy.add(writes(backend)["publish"], fault, times=None)
    run = cli(*ROTATE)
    assert run.code == 1, run.out + run.err
    attempts = len(proxy.injected())
    assert 1 < attempts <= ATTEMPTS[backend.kind], [e.fault.label for e in proxy.injected()]
    proxy.clear()
    run = cli("run")
    assert run.code == 0, run.out + run.err
    assert [v.state.value for v in backend.store().versions(NAME)] == ["current"]
