"""The pre-promotion test: does every server accept the new key before clients get it?

AWS rotation Lambdas call this step ``testSecret``. Here it is an HTTP request
template run against every listed endpoint until each has accepted the new
key ``passes`` times in a row, or the deadline passes. It turns "we waited
long enough for propagation" into "every server accepts the new key".
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class PrePromotionTest:
    """One request template. ``value`` is formatted with ``{key}`` (the new key)."""

    urls: tuple[str, ...]
    method: str = "GET"
    header: str = "Authorization"
    value: str = "Bearer {key}"
    expect: int = 200
    passes: int = 3
    interval: timedelta = timedelta(seconds=1)
    deadline: timedelta = timedelta(minutes=2)
    timeout: timedelta = timedelta(seconds=5)


@dataclass(frozen=True)
class TestOutcome:
    ok: bool
    detail: str  # which endpoint refused and how; never the key
    rounds: int


def probe_once(test: PrePromotionTest, url: str, key: str) -> tuple[bool, str]:
    """One request. Returns (accepted, what happened)."""
    request = urllib.request.Request(url, method=test.method)  # noqa: S310 - operator's URL
    request.add_header(test.header, test.value.format(key=key))
    try:
        with urllib.request.urlopen(request, timeout=test.timeout.total_seconds()) as reply:  # noqa: S310
            status = int(reply.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{url}: unreachable ({reason})"
    if status == test.expect:
        return True, f"{url}: {status}"
    return False, f"{url}: answered {status}, expected {test.expect}"


def run_test(
    test: PrePromotionTest,
    key: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> TestOutcome:
    """Repeat rounds until every endpoint passed ``passes`` times in a row, or the deadline."""
    streak = dict.fromkeys(test.urls, 0)
    last = dict.fromkeys(test.urls, "not tried")
    end = monotonic() + test.deadline.total_seconds()
    rounds = 0
    while True:
        rounds += 1
        for url in test.urls:
            if streak[url] >= test.passes:
                continue
            ok, last[url] = probe_once(test, url, key)
            streak[url] = streak[url] + 1 if ok else 0
        if all(n >= test.passes for n in streak.values()):
            return TestOutcome(True, f"{len(test.urls)} endpoints accepted the new key", rounds)
        if monotonic() + test.interval.total_seconds() > end:
            failing = [last[u] for u in test.urls if streak[u] < test.passes]
            return TestOutcome(False, "; ".join(failing), rounds)
        sleep(test.interval.total_seconds())
