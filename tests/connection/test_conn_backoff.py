"""Backoff: exponential ceiling, full jitter, cap, reset after a stable session."""

from __future__ import annotations

import random

import pytest

from cmamd.connection.backoff import Backoff


def test_ceiling_doubles_per_failure_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 10.0, rand=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert backoff.failures == 8


def test_full_jitter_draws_between_zero_and_the_ceiling() -> None:
    rng = random.Random(3)
    backoff = Backoff(0.1, 5.0, rand=rng.random)
    delays = [backoff.next_delay() for _ in range(2000)]
    assert all(0.0 <= d <= 5.0 for d in delays)
    assert all(0.0 <= d <= 0.1 * 2**i for i, d in enumerate(delays[:5]))
    late = delays[10:]
    assert min(late) < 1.0 and max(late) > 4.0  # spread over the whole range, not fixed


def test_many_failures_do_not_overflow() -> None:
    backoff = Backoff(1.0, 60.0, rand=lambda: 1.0)
    for _ in range(5000):
        backoff.next_delay()
    assert backoff.next_delay() == 60.0


def test_only_a_stable_session_resets_the_count() -> None:
    backoff = Backoff(1.0, 60.0, stable_after_s=30.0, rand=lambda: 1.0)
    for _ in range(4):
        backoff.next_delay()
    backoff.session_ended(uptime_s=5.0)  # flapping: keep backing off
    assert backoff.next_delay() == 16.0
    backoff.session_ended(uptime_s=30.0)
    assert backoff.failures == 0
    assert backoff.next_delay() == 1.0


@pytest.mark.parametrize("base, cap", [(0.0, 1.0), (2.0, 1.0), (-1.0, 5.0)])
def test_nonsense_bounds_are_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base, cap)
