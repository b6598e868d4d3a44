"""The lease lock on a KV v2 path: check-and-set, fencing tokens, takeover."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest

from rotatectl.errors import ConflictError, LockedError
from rotatectl.model import Lease
from rotatectl.testing.store_contract import PATH, T0, TTL

from .conftest import Vault


def test_eight_concurrent_attempts_one_holder(vault: Vault) -> None:
    stores = [vault.store() for _ in range(8)]  # eight runners, eight connections
    for store in stores:
        store.versions(PATH)  # connect and authenticate before the race
    barrier = threading.Barrier(8)
    won: list[Lease] = []
    lost: list[LockedError] = []
    other: list[BaseException] = []

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            won.append(stores[i].acquire_lock(PATH, f"host-{i}", TTL, T0))
        except LockedError as exc:
            lost.append(exc)
        except BaseException as exc:
            other.append(exc)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert other == []
    assert len(won) == 1 and len(lost) == 7
    holder = won[0]
    assert {exc.holder for exc in lost} == {holder.holder}
    assert {exc.token for exc in lost} == {holder.token}
    # The fencing token is the lock path's KV version.
    meta = vault.kv().read_secret_metadata(f"{vault.prefix}/{PATH}/.rotatectl/lock", "secret")
    assert meta["data"]["current_version"] == holder.token


def test_stale_token_release_fails(vault: Vault) -> None:
    store = vault.store()
    first = store.acquire_lock(PATH, "host-a", TTL, T0)
    store.release_lock(first)
    second = store.acquire_lock(PATH, "host-b", TTL, T0 + timedelta(seconds=1))
    assert second.token > first.token
    with pytest.raises(ConflictError, match="stale"):
        store.release_lock(first)
    with pytest.raises(ConflictError):
        store.release_lock(Lease(PATH, "host-b", second.token - 1, T0, T0 + TTL))
    store.release_lock(second)


def test_renewals_do_not_change_the_token_but_keep_it_fencing(vault: Vault) -> None:
    store = vault.store()
    lease = store.acquire_lock(PATH, "host-a", TTL, T0)
    for i in range(3):
        lease = store.renew_lock(lease, TTL, T0 + timedelta(seconds=i))
    store.release_lock(lease)
    # Four writes since the acquisition: the next token is still larger than all of them.
    after = store.acquire_lock(PATH, "host-b", TTL, T0 + timedelta(seconds=5))
    assert after.token == lease.token + 5


def test_expired_lease_is_taken_over_and_logged(
    vault: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = vault.store(), vault.store()
    old = a.acquire_lock(PATH, "host-a", TTL, T0)
    with caplog.at_level(logging.WARNING, logger="rotatectl.stores.vault"):
        new = b.acquire_lock(PATH, "host-b", TTL, T0 + TTL + timedelta(seconds=1))
    assert new.token > old.token
    [record] = [r for r in caplog.records if "took over" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "host-a" in record.getMessage() and "expired" in record.getMessage()
    with pytest.raises(ConflictError):
        a.renew_lock(old, TTL, T0 + TTL * 2)
    with pytest.raises(ConflictError):
        a.release_lock(old)
    b.release_lock(new)
