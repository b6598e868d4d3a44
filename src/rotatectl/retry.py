"""Bounded retries of retryable rotatectl errors: exponential backoff with jitter."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from .errors import RotatectlError

T = TypeVar("T")


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, RotatectlError) and exc.retryable


def retry_call(
    fn: Callable[[], T],
    *,
    attempts: int = 4,
    max_delay: float = 30.0,
    first_wait: float = 0.2,
    max_wait: float = 5.0,
    jitter: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``; retry a RotatectlError marked ``retryable``, at most ``attempts``
    times and ``max_delay`` seconds in all. The last error is re-raised unchanged."""
    retryer = Retrying(
        retry=retry_if_exception(_retryable),
        stop=stop_after_attempt(attempts) | stop_after_delay(max_delay),
        wait=wait_exponential(multiplier=first_wait, max=max_wait) + wait_random(0, jitter),
        sleep=sleep,
        reraise=True,
    )
    return retryer(fn)
