"""Many credentials at once: ``run`` (cron), and ``rotate`` with its follow/wait loop.

Each credential is handled in isolation, in the manner of certbot's renew
loop: any exception while handling one — a store down, a denied call, a
plugin's bug — becomes that credential's failed result naming it and the
step, and the others go on. Only a UsageError (the command itself was wrong)
stops the whole command. :func:`rotatectl.model.overall_exit` then picks the
most serious exit code.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Protocol

from ..errors import RotatectlError, UsageError
from ..machine import (
    Action,
    ActionKind,
    check_overlap,
    drift_action,
    expiry_action,
    next_action,
)
from ..model import Outcome, Result, RotationKind, Version, VersionState
from ..ports import Target
from .session import Runner, Session, StartRequest

# How often a waiting `rotate --wait` renews its leases: also how soon it notices
# that an emergency pre-empted it.
RENEW_EVERY = timedelta(seconds=10)


def isolated(name: str, call: Callable[[], Result]) -> Result:
    """``call()``, with any exception but UsageError turned into ``name``'s failed result."""
    try:
        return call()
    except UsageError:
        raise
    except RotatectlError as exc:
        return Result(name, Outcome.FAILED, str(exc))
    except Exception as exc:  # a plugin's bug must not hide the other credentials
        return Result(name, Outcome.FAILED, f"internal error: {type(exc).__name__}: {exc}")


# -- run -----------------------------------------------------------------------------


def run(
    runner: Runner, work: Sequence[Target | Result], *, jobs: int = 1, dry_run: bool = False
) -> list[Result]:
    """The cron entry over every credential: ``work`` holds their targets, or the
    result of building one that failed (a bad adapter table). Never sleeps."""
    targets = [t for t in work if not isinstance(t, Result)]
    quiet: dict[str, Result] = {}
    if not dry_run:
        # Credentials with nothing to do now need no lock: batched reads decide.
        quiet = settled_in_shares(targets, runner.clock.now(), jobs)

    # Set once this run meets a credential another runner holds or has just advanced:
    # from then on a credential is looked at without its lease first (one batched read,
    # no drift check), and one that another runner advanced since the pass is left as
    # that runner left it, instead of taking and giving back its lease.
    others = threading.Event()

    def one(item: Target | Result) -> Result:
        if isinstance(item, Result):
            return item
        found = quiet.get(item.name)
        if found is not None:
            return found
        if others.is_set() and not dry_run:
            found = settled([item], runner.clock.now(), drift=False, locks=False).get(item.name)
            if found is not None:
                return found
        result = isolated(item.name, lambda: runner.advance(item, dry_run=dry_run))
        if result.outcome is Outcome.LOCKED or (
            result.outcome is Outcome.IDLE and not result.steps and not dry_run
        ):
            others.set()
        return result

    # Several runners over one fleet (hosts, CronJob pods) start together: each takes
    # the credentials in an order of its own, so they spread over the fleet instead of
    # queueing on the same locks. Results keep the config's order.
    order = spread(runner.holder, work)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        done = dict(zip(order, pool.map(one, [work[i] for i in order]), strict=True))
    return [done[i] for i in range(len(work))]


def spread(holder: str, work: Sequence[Target | Result]) -> list[int]:
    """The order a runner (``holder``: user, host and process) takes ``work`` in: a
    hash of its holder and each credential's name, so two runners' orders differ and
    one runner's is the same on every call."""
    import hashlib

    def key(index: int) -> bytes:
        item = work[index]
        name = item.credential if isinstance(item, Result) else item.name
        return hashlib.blake2b(f"{holder}\0{name}".encode(), digest_size=8).digest()

    return sorted(range(len(work)), key=key)


def settled_in_shares(targets: Sequence[Target], now: datetime, jobs: int) -> dict[str, Result]:
    """:func:`settled` on up to ``jobs`` threads, each over a share of one store's
    credentials: ``ceil(N / jobs)`` of them, but at least what one of the store's
    batched reads takes (``read_batch``: Secrets Manager's BatchGetSecretValue 20, the
    local store any number). A store that reads credential by credential (OpenBao)
    then spreads its round trips over every thread: behind 100 ms a request, the pass
    in shares of 20 was two thirds of a ``--jobs 16`` run (``benchmarks/latency.py``)."""
    by_store: dict[int, list[Target]] = {}
    for t in targets:
        by_store.setdefault(id(t.store), []).append(t)
    shares: list[Sequence[Target]] = []
    for group in by_store.values():
        size = max(group[0].store.read_batch, -(-len(group) // max(jobs, 1)), 1)
        shares.extend(group[i : i + size] for i in range(0, len(group), size))
    if len(shares) <= 1:
        return settled(targets, now)
    with ThreadPoolExecutor(max_workers=min(len(shares), max(jobs, 1))) as pool:
        parts = list(pool.map(lambda share: settled(share, now), shares))
    return {name: result for part in parts for name, result in part.items()}


def settled(
    targets: Sequence[Target], now: datetime, *, drift: bool = True, locks: bool = True
) -> dict[str, Result]:
    """The results ``run`` needs no lock for: credentials with nothing to do now.

    For each target whose store reads snapshots in batches and whose credential
    no one has locked, the decision the runner would take first under the lock
    is taken on the snapshot; when it is "idle" (with no retired key a usage
    probe must watch) or a plain "wait" (no attention, nothing to notify), the
    result is built here; a credential whose store drifted gets its attention
    result here too. So a no-op ``run`` costs one batched read (and the batched
    drift check) instead of a lock acquire and release per credential.
    Everything else is left to the runner, which decides again under the lock.
    Any error leaves the credential to the runner, where it stays its own.
    ``drift`` False: no drift check (a credential another runner advanced since this
    run's pass: its session checked). ``locks`` False: the lock is not read (a store
    without batch reads saves a request a credential), so a credential another runner
    holds is settled as its records show it (finished, or waiting), not as locked;
    one with work left still goes to the runner, whose lease attempt says it is held.
    """
    from ..drift import detect, detect_many
    from ..probes.none import NoProbe
    from ..report import snapshots

    try:
        batch = snapshots(targets, locks=locks)
    except RotatectlError:
        return {}
    # What the runner would do first, on the snapshot; only the credentials settled
    # here need the drift check: the runner's session checks the others' itself.
    candidates: list[tuple[Target, Action]] = []
    for t in targets:
        found = batch.get(t.name)
        if found is None or found[3]:
            continue
        versions, rotation = found[0], found[1]
        action = next_action(
            rotation,
            versions,
            t.policy,
            now,
            start_if_due=True,
            requires_test=t.pretest is not None,
        )
        if action.attention or action.kind not in (ActionKind.IDLE, ActionKind.WAIT):
            continue
        if (
            action.kind is ActionKind.IDLE
            and _watched(versions)
            and not isinstance(t.probe, NoProbe)
        ):
            continue  # the runner asks the probe whether a retired key is still presented
        candidates.append((t, action))
    try:
        checked = [t for t, _ in candidates]
        drifts = (
            detect_many(checked, {t.name: batch[t.name][0] for t in checked})
            if drift and checked
            else {t.name: [] for t in checked}
        )
    except RotatectlError:
        return {}
    done: dict[str, Result] = {}
    for t, action in candidates:
        versions, rotation = batch[t.name][0], batch[t.name][1]
        try:
            problems = drifts[t.name] if t.name in drifts else detect(t, versions)
        except RotatectlError:
            continue
        if problems:
            action = drift_action(t.name, problems)
        elif expiry_action(action, versions, t.policy, now) is not action:
            continue  # the runner says it, and tells the notifiers (an attention event)
        # As Session._settle builds it for these actions (a WAIT is always in
        # flight; an IDLE credential shows its finished rotation).
        outcome = {
            ActionKind.WAIT: Outcome.WAITING,
            ActionKind.IDLE: Outcome.IDLE,
            ActionKind.ATTENTION: Outcome.ATTENTION,
        }[action.kind]
        result = Result(t.name, outcome, action.reason, until=action.until)
        if rotation is not None:
            result.phase, result.rotation_id = rotation.phase, rotation.id
        done[t.name] = result
    return done


def _watched(versions: Sequence[Version]) -> bool:
    return any(v.state is VersionState.RETIRED and v.retired for v in versions)


# -- rotate, and --wait -----------------------------------------------------------------


class Display(Protocol):
    """What ``rotate`` shows while it works: each result as it comes, and a live
    countdown while it sleeps (the CLI renders both; tests pass nothing)."""

    def progress(self, result: Result, now: datetime) -> None: ...

    def waiting(
        self, results: Sequence[Result]
    ) -> contextlib.AbstractContextManager[Callable[[datetime], None]]: ...


class Silent:
    """A display that shows nothing."""

    def progress(self, result: Result, now: datetime) -> None:
        return None

    @contextlib.contextmanager
    def waiting(self, results: Sequence[Result]) -> Iterator[Callable[[datetime], None]]:
        yield lambda now: None


def follow(
    runner: Runner,
    targets: Sequence[Target],
    *,
    propagation: timedelta | None = None,
    overlap: timedelta | None = None,
    wait: bool = False,
    display: Display | None = None,
) -> list[Result]:
    """Start (or continue) a rotation per target; with ``wait``, drive them until
    none waits, renewing the leases. A credential pre-empted by an emergency
    stops at once with its own result; the others go on.

    Raises UsageError (before any work) for an override longer than max_overlap, and
    AuditError (before any work) when the audit log cannot be written.
    """
    show = display or Silent()
    for t in targets:
        check_overlap(t.name, t.policy, overlap)
    runner.check_audit()
    request = StartRequest(RotationKind.MANUAL, propagation, overlap)
    with contextlib.ExitStack() as stack:
        sessions: list[Session] = []
        results: list[Result] = []
        for t in targets:
            session = stack.enter_context(runner.session(t))
            sessions.append(session)
            results.append(isolated(t.name, lambda s=session: s.drive(start=request)))  # type: ignore[misc]
            show.progress(results[-1], runner.clock.now())
        if not wait:
            return results
        while True:
            waiting = [i for i, r in enumerate(results) if r.outcome is Outcome.WAITING]
            if not waiting:
                return results
            deadline = min(results[i].until or runner.clock.now() for i in waiting)
            with show.waiting(results) as refresh:
                lost = _sleep_until(runner, [sessions[i] for i in waiting], deadline, refresh)
            now = runner.clock.now()
            for i in waiting:
                until = results[i].until
                if sessions[i] in lost or until is None or until <= now:
                    results[i] = isolated(targets[i].name, sessions[i].drive)
                    show.progress(results[i], runner.clock.now())


def _sleep_until(
    runner: Runner,
    sessions: Sequence[Session],
    deadline: datetime,
    refresh: Callable[[datetime], None],
) -> list[Session]:
    """Sleep in short slices until ``deadline``, renewing leases; returns early with
    the sessions whose lease an emergency took."""
    renew_every = min(RENEW_EVERY, runner.lock_ttl / 3).total_seconds()
    last_renew = runner.clock.now()
    while True:
        now = runner.clock.now()
        remaining = (deadline - now).total_seconds()
        if remaining <= 0:
            return []
        if (now - last_renew).total_seconds() >= renew_every:
            lost = [s for s in sessions if not s.renew()]
            if lost:
                return lost
            last_renew = now
        refresh(now)
        runner.clock.sleep(max(0.0, min(1.0, remaining, renew_every)))
