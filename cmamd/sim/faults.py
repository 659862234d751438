"""Fault injection settings: delayed, swallowed, lost or closing exchanges, rejected orders."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Faults:
    delay_s: float = 0.0
    delay_types: frozenset[int] | None = None
    swallow_left: int = 0
    swallow_types: frozenset[int] | None = None
    reject_left: int = 0
    reject_code: str = "TRADING_DISABLED"
    reject_account: int | None = None
    lost_requests_left: int = 0
    lost_request_types: frozenset[int] | None = None
    late_reject_left: int = 0
    late_reject_code: str = "NOT_ENOUGH_MONEY"
    late_reject_account: int | None = None
    close_after_left: int = 0
    close_after_types: frozenset[int] | None = None

    def delay_for(self, payload_type: int) -> float:
        if self.delay_s <= 0:
            return 0.0
        if self.delay_types is not None and payload_type not in self.delay_types:
            return 0.0
        return self.delay_s

    def take_swallow(self, payload_type: int) -> bool:
        """Whether the replies to this request are dropped (counts down the budget)."""
        if self.swallow_left <= 0:
            return False
        if self.swallow_types is not None and payload_type not in self.swallow_types:
            return False
        self.swallow_left -= 1
        return True

    def take_lost_request(self, payload_type: int) -> bool:
        """Whether this request is lost before the server acts on it (counts down)."""
        if self.lost_requests_left <= 0:
            return False
        if self.lost_request_types is not None and payload_type not in self.lost_request_types:
            return False
        self.lost_requests_left -= 1
        return True

    def take_close_after(self, payload_type: int) -> bool:
        """Whether the requester's connection is closed right after this reply."""
        if self.close_after_left <= 0:
            return False
        if self.close_after_types is not None and payload_type not in self.close_after_types:
            return False
        self.close_after_left -= 1
        return True

    def take_late_reject(self, account_id: int) -> str | None:
        """The code to reject this new order with after accepting it, if one is pending."""
        if self.late_reject_left <= 0:
            return None
        if self.late_reject_account is not None and account_id != self.late_reject_account:
            return None
        self.late_reject_left -= 1
        return self.late_reject_code

    def take_reject(self, account_id: int) -> str | None:
        """The error code to refuse this new order with, if a rejection is pending."""
        if self.reject_left <= 0:
            return None
        if self.reject_account is not None and account_id != self.reject_account:
            return None
        self.reject_left -= 1
        return self.reject_code
