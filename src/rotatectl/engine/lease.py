"""The lease lock a session holds: taken, renewed, released, and pre-empted.

A holder is ``user@host:pid``. A holder dead on this host is taken over at
once; one elsewhere only when its lease expires — except by an emergency,
which takes the lease from any holder with a higher fencing token. The
pre-empted holder learns it at its next renewal (the token moved) or its next
write (every record write is a compare-and-set, which a newer writer won).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
from datetime import timedelta
from typing import TYPE_CHECKING

from ..errors import ConflictError, LockedError, RotatectlError

if TYPE_CHECKING:
    from ..model import Lease
    from ..ports import Clock, SecretStore


def default_holder() -> str:
    """``user@host:pid`` — names the lock holder for humans and for dead-holder checks."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}:{os.getpid()}"


def holder_is_dead_here(holder: str) -> bool:
    """True if ``holder`` names a process on this host that no longer exists."""
    _, _, where = holder.rpartition("@")
    host, _, pid_text = where.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LeaseHolder:
    """One credential's lease, as this process holds it."""

    def __init__(
        self, store: SecretStore, path: str, holder: str, ttl: timedelta, clock: Clock
    ) -> None:
        self.store, self.path, self.holder, self.ttl, self.clock = store, path, holder, ttl, clock
        self.lease: Lease | None = None
        self.lost = False

    def acquire(self, *, preempt: bool = False) -> str:
        """Take the lease; returns a warning when it was taken from someone.

        ``preempt`` (an emergency): take it from any holder. Otherwise only from
        a holder dead on this host. Raises LockedError naming the holder.
        """
        for _ in range(3):  # a holder renewing in between moves nothing: try again
            try:
                self.lease = self.store.acquire_lock(
                    self.path, self.holder, self.ttl, self.clock.now()
                )
                return ""
            except LockedError as exc:
                dead = holder_is_dead_here(exc.holder)
                if exc.token is None or not (preempt or dead):
                    raise
                try:
                    self.lease = self.store.acquire_lock(
                        self.path, self.holder, self.ttl, self.clock.now(), steal_token=exc.token
                    )
                except LockedError:
                    continue
                if dead:
                    return f"took over the lock of {exc.holder}, which is no longer running"
                return f"pre-empted {exc.holder}, which held the lock since {exc.since}"
        raise LockedError(self.path, "a holder that keeps changing", "just now")

    def renew(self) -> bool:
        """Extend the lease. False when it was lost: someone (an emergency) took it.
        A store that cannot be reached is not a loss: writes stay compare-and-set."""
        if self.lease is None or self.lost:
            return not self.lost
        try:
            self.lease = self.store.renew_lock(self.lease, self.ttl, self.clock.now())
        except ConflictError:
            self.lost = True
        except RotatectlError:
            pass
        return not self.lost

    def release(self) -> None:
        """Release the lease (best effort: a lost one expires or is someone else's)."""
        lease, self.lease = self.lease, None
        if lease is None or self.lost:
            return
        with contextlib.suppress(RotatectlError):
            self.store.release_lock(lease)
