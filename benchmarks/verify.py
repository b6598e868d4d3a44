"""KeyRing.verify throughput against a bare loop measured in the same run.

    python benchmarks/verify.py [--keys 10000] [--distinct 1000] [--rounds 31]

The bare loop does only the unavoidable work for each presented key: split
it, look its key id up in a dict, SHA-256 its secret part, compare with
hmac.compare_digest. ``KeyRing.verify`` does that plus everything a real
verifier needs (format and checksum check, expiry, scope, the result
object). Both run over the same keys, interleaved round by round and timed
in thread CPU time (so other processes on the machine do not count); each
side's best round is compared. Exits non-zero if verify is below 0.7x the
bare loop.

Also printed, for information: the full path (first sight of a key: format
and CRC check, lookup, hash), rejections, verify with a usage log, and the
cost of a refresh of 10,000 keys (the ring's own work, and through the
in-memory store with 100 credentials).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from rotatectl import keyformat
from rotatectl.model import AcceptedKey, Version, VersionState
from rotatectl.sdk import KeyRing
from rotatectl.testing.memory import MemoryStore

TARGET = 0.7
CRED = "bench/api"


class Source:
    """An in-memory verifier view: isolates the ring's own cost from the store's."""

    def __init__(self, keys: list[AcceptedKey]) -> None:
        self.keys = keys

    def accepted_keys(self, path: str, credential: str) -> list[AcceptedKey]:
        return self.keys


def make_keys(n: int) -> tuple[list[str], list[AcceptedKey]]:
    values = [keyformat.generate("rk_live") for _ in range(n)]
    accepted = [
        AcceptedKey(
            CRED,
            f"v{i}",
            keyformat.parse(v).key_id,
            keyformat.fingerprint(v),
            VersionState.PREVIOUS,
            ("read",),
        )
        for i, v in enumerate(values)
    ]
    return values, accepted


def bare_str(table: dict[str, bytes], keys: Sequence[str]) -> Callable[[], None]:
    sha256, compare = hashlib.sha256, hmac.compare_digest

    def loop() -> None:
        get = table.get
        for key in keys:
            _, _, body = key.rpartition("_")
            digest = get(body[:8])
            if digest is None or not compare(sha256(body[8:51].encode()).digest(), digest):
                raise AssertionError("the bare loop rejected a valid key")

    return loop


def bare_bytes(table: dict[bytes, bytes], keys: Sequence[str]) -> Callable[[], None]:
    sha256, compare = hashlib.sha256, hmac.compare_digest

    def loop() -> None:
        get = table.get
        for key in keys:
            _, _, body = key.encode().rpartition(b"_")
            digest = get(body[:8])
            if digest is None or not compare(sha256(body[8:51]).digest(), digest):
                raise AssertionError("the bare loop rejected a valid key")

    return loop


def verify_loop(ring: KeyRing, keys: Sequence[str], **kw: str) -> Callable[[], None]:
    def loop() -> None:
        verify = ring.verify
        for key in keys:
            verify(key, **kw)

    return loop


def cpu_time(fn: Callable[[], object], repeat: int = 1) -> float:
    start = time.thread_time()
    for _ in range(repeat):
        fn()
    return (time.thread_time() - start) / repeat


def per_key(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e9:7.0f} ns/key  {n / seconds:>11,.0f} keys/s"


def refresh_through_memory_store(values: list[str], credentials: int) -> tuple[float, int]:
    """Best refresh time of a ring over ``credentials`` paths of a MemoryStore
    (the store's own rules and AcceptedKey building included, no I/O)."""
    store = MemoryStore()
    now = datetime.now(UTC)
    per = len(values) // credentials
    names = [f"bench/api-{c}" for c in range(credentials)]
    for c, name in enumerate(names):
        for i, value in enumerate(values[c * per : (c + 1) * per], start=1):
            version = Version(
                version_id=f"v{i}",
                number=i,
                key_id=keyformat.parse(value).key_id,
                fingerprint=keyformat.fingerprint(value),
                state=VersionState.PENDING,
                created=now,
            )
            store.publish(name, version, value)
    ring = KeyRing(store, names, start=False)
    best = min(cpu_time(ring.refresh) for _ in range(9))
    ring.close()
    return best, per * credentials


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000, help="accepted keys in the ring")
    parser.add_argument("--distinct", type=int, default=1_000, help="distinct keys presented")
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args()

    values, accepted = make_keys(args.keys)
    presented = values[: args.distinct]
    table = {a.key_id: bytes.fromhex(a.fingerprint) for a in accepted}
    btable = {k.encode(): v for k, v in table.items()}
    ring = KeyRing(Source(accepted), CRED, start=False)
    assert all(ring.verify(k) for k in presented)  # warm: every key seen once
    n = len(presented)

    loops = {
        "bare (str)": bare_str(table, presented),
        "bare (bytes)": bare_bytes(btable, presented),
        "verify": verify_loop(ring, presented),
    }
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.rounds):
        for name, loop in loops.items():
            times[name].append(cpu_time(loop))
    bare_name = min(("bare (str)", "bare (bytes)"), key=lambda k: min(times[k]))
    bare, mine = min(times[bare_name]), min(times["verify"])
    ratio = bare / mine
    paired = statistics.median(
        b / v for b, v in zip(times[bare_name], times["verify"], strict=True)
    )

    print(f"{args.keys:,} accepted keys, {n:,} distinct keys presented, {args.rounds} rounds")
    print("best round, thread CPU time:")
    for name in loops:
        print(f"  {name:<28} {per_key(min(times[name]), n)}")
    print(f"verify / {bare_name}: {ratio:.2f}x (median of paired rounds {paired:.2f}x)")

    print("for information:")

    def cold() -> None:
        ring._state.memo.clear()  # forget the fast path: every key takes the full path
        for key in presented:
            ring.verify(key)

    print(f"  {'full path (first sight)':<28} {per_key(min(cpu_time(cold) for _ in range(9)), n)}")
    bad = [v[:-1] + ("0" if v[-1] != "0" else "1") for v in presented]
    malformed = [v[:-3] for v in presented]
    unknown = [keyformat.generate("rk_live") for _ in range(n)]
    for label, batch in (
        ("bad checksum", bad),
        ("malformed", malformed),
        ("unknown key id", unknown),
    ):
        print(
            f"  {label:<28} {per_key(min(cpu_time(verify_loop(ring, batch)) for _ in range(9)), n)}"
        )
    scoped = verify_loop(ring, presented, scope="read")
    print(f"  {'verify, scope required':<28} {per_key(min(cpu_time(scoped) for _ in range(9)), n)}")
    with tempfile.TemporaryDirectory() as scratch:
        logged = KeyRing(Source(accepted), CRED, start=False, usage_log=Path(scratch) / "u.jsonl")
        for key in presented:
            logged.verify(key)
        with_log = min(
            cpu_time(verify_loop(logged, presented, client="10.0.0.7")) for _ in range(5)
        )
        logged.close()
    print(f"  {'verify + usage log':<28} {per_key(with_log, n)}")
    refresh = min(cpu_time(ring.refresh) for _ in range(9))
    print(f"  {f'refresh, {args.keys:,} keys':<28} {refresh * 1000:7.1f} ms  (the ring's own work)")
    through, total = refresh_through_memory_store(values, 100)
    print(
        f"  {f'refresh, {total:,} keys':<28} {through * 1000:7.1f} ms  "
        "(100 credentials of a MemoryStore)"
    )
    ring.close()

    if ratio < TARGET:
        print(f"FAIL: verify is {ratio:.2f}x the bare loop, below the {TARGET}x target")
        return 1
    print(f"ok: verify is {ratio:.2f}x the bare loop (target >= {TARGET}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
