"""The replication engine's timing and concurrency knobs, in one value the daemon passes in.

Production uses the defaults; tests and benchmarks pass their own (short timeouts, few
workers) instead of patching module constants.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReplicationTuning:
    workers: int = 32
    """Concurrent (follower, key) work items; one follower's items never overlap."""
    order_timeout_s: float = 15.0
    """How long a sent order may stay without an outcome before it is resolved by asking."""
    settle_s: float = 2.0
    """Pause before reconciling an ambiguous outcome, so the broker's events arrive first."""
    retry_first_s: float = 30.0
    """First delay before retrying a close/amend/cancel refused for a passing reason."""
    retry_max_s: float = 300.0
    """Ceiling of that retry's exponential backoff."""
    settle_retry_max_s: float = 30.0
    """Ceiling of the backoff between reconciles of an unsettled outcome."""
    audit_interval_s: float = 180.0
    """Period of the light reconcile that repairs orphans and missed copies."""
    max_rounds_per_take: int = 4
    """Plan/execute rounds for one key before yielding: convergence takes 1-2 in practice."""
