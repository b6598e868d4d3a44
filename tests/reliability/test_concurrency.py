"""Concurrency against the real stores: one writer per credential, nothing done
twice, nothing skipped.

- 8 ``rotate`` processes on one credential at once;
- 4 ``run`` processes (2 threads each) over a fleet of credentials that are all
  due: every credential is rotated by exactly one of them, exactly once.

Each process is the real CLI; afterwards every credential's invariants are
checked by reading the store directly, and the shared audit log (hash chain,
flock) must still verify.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotatectl import keyformat
from rotatectl.model import Phase, Version, VersionState
from tests.conftest import Cli

from .conftest import NAME, PREFIX, REMOTE, STORES, Backend

RETAIN = "1h"
WRITERS = 8
RUNNERS = 4


def communicate(cli: Cli, procs: Sequence[subprocess.Popen[str]], what: str) -> list[Any]:
    """Wait for every process; record its output for the leak check; return (code, out, err)."""
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        cli.record((what, str(proc.pid)), proc.returncode, out, err)
        done.append((proc.pid, proc.returncode, out, err))
    return done


@pytest.mark.slow
@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_eight_rotates_of_one_credential_never_overlap(cli: Cli, backend: Backend) -> None:
    """Each process either does one whole rotation under the lock or exits 4 naming
    the holder; the rotations that happened are disjoint in time, one version each."""
    backend.configure(retain=RETAIN)
    inv = backend.invariants(retain=RETAIN)
    first = cli("rotate", NAME)
    assert first.code == 0, first.out + first.err
    inv.check("first key", settled=True, versions=1)

    args = ("rotate", NAME, "--propagation", "0s", "--overlap", "0s", "-o", "json")
    procs = [cli.popen(*args) for _ in range(WRITERS)]
    results = communicate(cli, procs, "rotate")
    pids = {pid for pid, *_ in results}
    winners = []
    for _, code, out, err in results:
        assert code in (0, 4), (code, out, err)
        (result,) = json.loads(out)["results"]
        if code == 0:
            assert result["outcome"] == "done", result
            assert any(s.startswith("started") for s in result["steps"]), result
            winners.append(result["rotation_id"])
        else:
            assert result["outcome"] == "locked" and not result["steps"], result
            holder = result["message"].split("held by ", 1)[1].split()[0]
            assert int(holder.rsplit(":", 1)[1]) in pids, f"{holder} is not one of ours"
    assert winners and len(set(winners)) == len(winners)

    snap = inv.check("after 8 concurrent rotates", settled=True, versions=1 + len(winners))
    rotations = [r for r in snap.rotations if r.id in winners]
    assert len(rotations) == len(winners)
    assert all(r.phase is Phase.COMPLETED for r in rotations)
    spans = sorted((r.started, r.finished) for r in rotations)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end is not None and end <= start, "two rotations of one credential overlapped"
    assert [s for _, s in snap.states()] == ["retired"] * len(winners) + ["current"]
    backend.note(
        "concurrent",
        f"{backend.kind}: {WRITERS} rotate processes on one credential -> "
        f"{len(winners)} rotations, {WRITERS - len(winners)} exited 4",
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_eight_rotates_continue_the_one_rotation_in_flight(cli: Cli, backend: Backend) -> None:
    """With a long propagation the first rotation stays in flight: the other seven
    continue it (or find it locked); none starts a second one or mints a second key."""
    backend.configure(retain=RETAIN, propagation="1h")
    inv = backend.invariants(retain=RETAIN, propagation="1h")
    first = cli("rotate", NAME)
    assert first.code == 0, first.out + first.err
    procs = [cli.popen("rotate", NAME, "--no-wait", "-o", "json") for _ in range(WRITERS)]
    ids = set()
    for _, code, out, err in communicate(cli, procs, "rotate --no-wait"):
        assert code in (0, 4), (code, out, err)
        if code == 0:
            (result,) = json.loads(out)["results"]
            assert result["outcome"] == "waiting" and result["phase"] == "propagate", result
            ids.add(result["rotation_id"])
    snap = inv.check("after 8 concurrent rotates", versions=2)
    assert snap.rotation is not None and ids == {snap.rotation.id}
    assert snap.states() == [(1, "current"), (2, "pending")]
    assert snap.lock_holder is None


def seed(backend: Backend, names: Sequence[str]) -> None:
    """One current version per credential, promoted two days ago: all due (max_age 1d)."""
    at = datetime.now(UTC) - timedelta(days=2)

    def one(name: str) -> None:
        store = backend.open_store()
        try:
            value = keyformat.generate(PREFIX)
            parsed = keyformat.parse(value)
            v = Version(
                f"{name.replace('/', '-')}-v1",
                1,
                parsed.key_id,
                keyformat.fingerprint(value),
                VersionState.PENDING,
                at,
            )
            store.publish(name, v, value)
            store.promote(name, v.version_id, None, at)
        finally:
            getattr(store, "close", lambda: None)()

    if backend.remote:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, names))
    else:
        for name in names:
            one(name)


def fleet(cli: Cli, backend: Backend, count: int) -> None:
    names = [f"fleet/c{i:03d}" for i in range(count)]
    backend.configure(names, max_age="1d", retain=RETAIN)
    seed(backend, names)

    procs = [cli.popen("run", "--jobs", "2", "-o", "json") for _ in range(RUNNERS)]
    outputs = communicate(cli, procs, "run")
    done: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for _, code, out, err in outputs:
        assert code == 0, err
        for r in json.loads(out)["results"]:
            outcomes[r["outcome"]] += 1
            assert r["outcome"] in ("done", "locked", "idle"), r
            if r["outcome"] == "done":
                assert any(s.startswith("started") for s in r["steps"]), r
                done[r["credential"]] += 1
    assert set(done) == set(names), f"skipped: {sorted(set(names) - set(done))[:5]}"
    twice = [n for n, c in done.items() if c > 1]
    assert not twice, f"rotated twice: {twice[:5]}"

    shared = backend.store()  # thread-safe: one adapter for all the checks

    def check(name: str) -> list[tuple[int, str]]:
        inv = backend.invariants(name, seeded=1, store=shared, retain=RETAIN)
        snap = inv.check("after the concurrent runs", settled=True, versions=2)
        assert len(snap.rotations) == 1 and snap.rotations[0].phase is Phase.COMPLETED
        return snap.states()

    with ThreadPoolExecutor(8 if backend.remote else 1) as pool:
        states = list(pool.map(check, names))
    assert all(s == [(1, "retired"), (2, "current")] for s in states)

    # Every start is in the shared audit log once, and the hash chain survived 4 writers.
    audit = cli("audit", "verify")
    assert audit.code == 0, audit.out + audit.err
    started = Counter(
        rec["credential"]
        for line in (cli.state_dir / "audit.jsonl").read_text().splitlines()
        if (rec := json.loads(line))["action"] == "started"
    )
    assert started == Counter({n: 1 for n in names})
    backend.note(
        "concurrent",
        f"{backend.kind}: {RUNNERS} run processes x 2 jobs over {count} due credentials -> "
        f"each rotated once ({dict(outcomes)})",
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "count"),
    [("local", 200), *((kind, 40) for kind in REMOTE)],
    indirect=["backend"],
)
def test_four_runs_share_a_fleet(cli: Cli, backend: Backend, count: int) -> None:
    fleet(cli, backend, count)


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.parametrize("backend", REMOTE, indirect=True)
def test_four_runs_share_a_fleet_of_200(cli: Cli, backend: Backend) -> None:
    fleet(cli, backend, 200)
