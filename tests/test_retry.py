"""The one retry policy (rotatectl.retry.retry_call): how many attempts, how many
waits, and what the last error says, whatever the first attempt does."""

from __future__ import annotations

import pytest

from rotatectl.errors import ConflictError, RotatectlError, StoreUnavailableError
from rotatectl.retry import retry_call


class Flaky:
    """Fails with ``errors`` in turn, then answers "ok"; counts its calls."""

    def __init__(self, *errors: RotatectlError) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def transient() -> StoreUnavailableError:
    return StoreUnavailableError("the server is down; try again")


@pytest.mark.parametrize(
    ("failures", "calls", "waits"),
    [(0, 1, 0), (1, 2, 1), (2, 3, 2), (3, 4, 3)],
)
def test_transient_failures_are_retried_with_a_wait_before_each(
    failures: int, calls: int, waits: int
) -> None:
    fn, slept = Flaky(*(transient() for _ in range(failures))), []
    assert retry_call(fn, attempts=4, sleep=slept.append) == "ok"
    assert (fn.calls, len(slept)) == (calls, waits)
    assert all(0 < s <= 5.5 for s in slept)


def test_the_last_transient_error_is_raised_marked_retried() -> None:
    fn, slept = Flaky(*(transient() for _ in range(5))), []
    with pytest.raises(StoreUnavailableError) as caught:
        retry_call(fn, attempts=4, sleep=slept.append)
    assert (fn.calls, len(slept)) == (4, 3)
    assert caught.value.retried  # an outer retry_call does not retry it again
    outer = Flaky(caught.value)
    with pytest.raises(StoreUnavailableError):
        retry_call(outer, attempts=4, sleep=slept.append)
    assert outer.calls == 1


def test_an_error_that_is_not_transient_is_raised_at_once() -> None:
    fn, slept = Flaky(ConflictError("the revision moved")), []
    with pytest.raises(ConflictError):
        retry_call(fn, attempts=4, sleep=slept.append)
    assert (fn.calls, slept) == (1, [])
