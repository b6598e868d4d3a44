"""The one retry policy: bounded retries of retryable rotatectl errors, with
exponential backoff and jitter, applied once.

A transient failure is retried where the request is made: botocore's standard
retry mode for AWS (``max_attempts``), :func:`retry_call` around each Vault request,
and the runner's :func:`retry_call` around store calls that nothing below retried
(the local store). An error that gave up after its retries is marked ``retried``
and passes every outer :func:`retry_call` unretried, so attempts never multiply
(they did: Vault's 3 x the runner's 4, botocore's 4 x the runner's 4).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from .errors import RotatectlError

T = TypeVar("T")


ATTEMPTS = 4  # a request and three retries, as botocore's standard mode
MAX_DELAY = 30.0  # seconds, all attempts together


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, RotatectlError) and exc.retryable and not exc.retried


def retry_call(
    fn: Callable[[], T],
    *,
    attempts: int = ATTEMPTS,
    max_delay: float = MAX_DELAY,
    first_wait: float = 0.2,
    max_wait: float = 5.0,
    jitter: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``; retry a RotatectlError marked ``retryable`` (and not ``retried``),
    at most ``attempts`` times and ``max_delay`` seconds in all. The last error is
    re-raised, marked ``retried`` when it was retryable."""
    # The first attempt outside tenacity: most calls succeed, and its machinery cost
    # more CPU than a Vault request's own (issue 21). A failure is replayed to it as
    # its own first attempt, so the waits and bounds are the same.
    try:
        return fn()
    except RotatectlError as exc:
        if not _retryable(exc):
            if exc.retryable:
                exc.retried = True
            raise
        first: RotatectlError | None = exc

    # Imported on the first retry: a command whose calls all succeed never loads it.
    from tenacity import (
        Retrying,
        retry_if_exception,
        stop_after_attempt,
        stop_after_delay,
        wait_exponential,
        wait_random,
    )

    def attempt() -> T:
        nonlocal first
        if first is not None:
            failed, first = first, None
            raise failed
        return fn()

    retryer = Retrying(
        retry=retry_if_exception(_retryable),
        stop=stop_after_attempt(attempts) | stop_after_delay(max_delay),
        wait=wait_exponential(multiplier=first_wait, max=max_wait) + wait_random(0, jitter),
        sleep=sleep,
        reraise=True,
    )
    try:
        return retryer(attempt)
    except RotatectlError as exc:
        if exc.retryable:
            exc.retried = True
        raise
