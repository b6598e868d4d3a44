"""redact.scrub at scale (issue 21 item 5): the same 10,000 output lines scrubbed with
1,000 registered keys (the baseline) and with 10,000, as a 10,000-credential run has.
Prints ``scrub / <baseline ms>: <ratio>x`` (target: <= 1.5x: linear in the text, not
in the number of values), and the time with 10 keys (a plain search per value).
Run: ``python benchmarks/scrub.py``."""

from __future__ import annotations

import secrets
import time

from rotatectl import keyformat, redact

LINES = 10_000


def timed(lines: list[str]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for line in lines:
            redact.scrub(line)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    keys = [keyformat.generate("rk_live") for _ in range(LINES)]
    lines = [
        f"fleet/cred-{n:05d}: retired v3 ({secrets.token_hex(4)}): overlap elapsed; "
        f"promoted v4 ({secrets.token_hex(4)}) to current"
        for n in range(LINES)
    ]
    lines[::100] = [f"leak {k} here" for k in keys[: len(lines[::100])]]  # some do hold one
    redact.forget_all_but(set())
    for key in keys[:10]:
        redact.register(key)
    ten = timed(lines)
    for key in keys[10:1000]:
        redact.register(key)
    base = timed(lines)
    for key in keys[1000:]:
        redact.register(key)
    many = timed(lines)
    masked = sum(redact.MASK in redact.scrub(line) for line in lines)
    ms = 1000
    print(
        f"scrub of {LINES:,} lines: 10 keys {ten * ms:.1f} ms, 1,000 keys {base * ms:.1f} ms, "
        f"{len(keys):,} keys {many * ms:.1f} ms"
    )
    print(f"scrub / {base * ms:.1f} ms: {many / base:.2f}x ({masked} lines held a key)")


if __name__ == "__main__":
    main()
