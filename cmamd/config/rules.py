"""The shape of the ``copy:`` section: copy rules, one source, many destinations.

Only shape and local consistency are checked here; references to account names are
checked by the top-level config model, which knows the accounts.
"""

from __future__ import annotations

from decimal import Decimal
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class CopyMode(str, Enum):
    ON = "on"
    CLOSE_ONLY = "close_only"  # closes, reductions, SL/TP and cancels only
    FROZEN = "frozen"  # nothing at all


class Sides(str, Enum):
    BOTH = "both"
    BUY = "buy"
    SELL = "sell"


class VolumeMode(str, Enum):
    MULTIPLIER = "multiplier"  # follower lots = master lots x value
    FIXED_LOTS = "fixed_lots"  # follower lots = value
    BALANCE_RATIO = "balance_ratio"  # master lots x follower/master balance x value
    EQUITY_RATIO = "equity_ratio"  # master lots x follower/master equity x value
    RISK_PERCENT = "risk_percent"  # stop-out at master's SL loses value % of follower equity


Positive = Annotated[Decimal, Field(gt=0)]


class VolumeRule(StrictModel):
    mode: VolumeMode = VolumeMode.MULTIPLIER
    value: Positive = Decimal(1)
    min_lots: Positive | None = None
    max_lots: Positive | None = None
    force_min: bool = False  # raise a trade below the symbol minimum to it instead of skipping

    @model_validator(mode="after")
    def _bounds(self) -> VolumeRule:
        if self.min_lots is not None and self.max_lots is not None and self.min_lots > self.max_lots:
            raise ValueError(f"min_lots ({self.min_lots}) is above max_lots ({self.max_lots})")
        if self.mode is VolumeMode.RISK_PERCENT and self.value > 100:
            raise ValueError("risk_percent value is a percentage of equity: at most 100")
        return self


class SymbolRule(StrictModel):
    map: dict[str, str] = Field(default_factory=dict)  # master name -> follower name, first
    strip_prefix: str = ""
    strip_suffix: str = ""
    add_prefix: str = ""
    add_suffix: str = ""
    include: list[str] = Field(default_factory=list)  # master names; empty = all
    exclude: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _disjoint(self) -> SymbolRule:
        both = sorted(set(self.include) & set(self.exclude))
        if both:
            raise ValueError(f"symbols both included and excluded: {', '.join(both)}")
        return self


class EquityStop(StrictModel):
    below: Positive  # follower equity, in its deposit currency


def _yaml_on(value: Any) -> Any:
    # YAML 1.1 (PyYAML) reads a bare `on` as True; `mode: on` is what users write.
    if value is True:
        return "on"
    if value is False:
        raise ValueError("write mode: frozen (or close_only); a bare `off` is not a mode")
    return value


class Destination(StrictModel):
    account: str
    volume: VolumeRule = Field(default_factory=VolumeRule)
    symbols: SymbolRule = Field(default_factory=SymbolRule)
    reverse: bool = False  # buy <-> sell, SL <-> TP, limit <-> stop
    copy_sl_tp: bool = True
    copy_pending: bool = True
    sides: Sides = Sides.BOTH
    max_delay_s: Annotated[float, Field(gt=0)] = 60.0
    slippage_points: Annotated[int, Field(ge=0)] | None = None
    mode: CopyMode = CopyMode.ON
    copy_existing: bool = False
    equity_stop: EquityStop | None = None

    _mode_on = field_validator("mode", mode="before")(_yaml_on)


class CopyRule(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
    source: str
    destinations: Annotated[list[Destination], Field(min_length=1)]
    enabled: bool = True

    @model_validator(mode="after")
    def _distinct_destinations(self) -> CopyRule:
        seen: set[str] = set()
        for destination in self.destinations:
            if destination.account in seen:
                raise ValueError(f"account {destination.account!r} is listed twice")
            seen.add(destination.account)
            if destination.account == self.source:
                raise ValueError(f"account {self.source!r} copies to itself")
        return self


