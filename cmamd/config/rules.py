"""The shape of the ``copy:`` section: copy rules, one source, many destinations.

Only shape and local consistency are checked here; references to account names are
checked by the top-level config model, which knows the accounts.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class CopyMode(StrEnum):
    ON = "on"
    CLOSE_ONLY = "close_only"  # closes, reductions, SL/TP and cancels only
    FROZEN = "frozen"  # nothing at all


class Sides(StrEnum):
    BOTH = "both"
    BUY = "buy"
    SELL = "sell"


class VolumeMode(StrEnum):
    MULTIPLIER = "multiplier"  # follower lots = master lots x value
    FIXED_LOTS = "fixed_lots"  # follower lots = value
    BALANCE_RATIO = "balance_ratio"  # master lots x follower/master balance x value
    EQUITY_RATIO = "equity_ratio"  # master lots x follower/master equity x value
    RISK_PERCENT = "risk_percent"  # stop-out at master's SL loses value % of follower equity


Positive = Annotated[Decimal, Field(gt=0)]
# Upper bounds: far above any sane setting, low enough that a typo (1e400, an extra few
# zeros) is an error at load time instead of a huge order at the first trade.
MAX_FACTOR = Decimal(1000)  # multiplier, balance_ratio, equity_ratio
MAX_LOTS = Decimal(10_000)  # fixed_lots, min_lots, max_lots


class VolumeRule(StrictModel):
    mode: VolumeMode = VolumeMode.MULTIPLIER
    value: Positive = Decimal(1)
    min_lots: Positive | None = None
    max_lots: Positive | None = None
    force_min: bool = False  # raise a trade below the symbol minimum to it instead of skipping

    @model_validator(mode="after")
    def _bounds(self) -> VolumeRule:
        if (
            self.min_lots is not None
            and self.max_lots is not None
            and self.min_lots > self.max_lots
        ):
            raise ValueError(f"min_lots ({self.min_lots}) is above max_lots ({self.max_lots})")
        if self.mode is VolumeMode.RISK_PERCENT and self.value > 100:
            raise ValueError("risk_percent value is a percentage of equity: at most 100")
        return self

    @model_validator(mode="after")
    def _upper_bounds(self) -> VolumeRule:
        lots_mode = self.mode is VolumeMode.FIXED_LOTS
        if self.mode is not VolumeMode.RISK_PERCENT and not lots_mode and self.value > MAX_FACTOR:
            raise ValueError(f"{self.mode.value} value {self.value} is above {MAX_FACTOR}")
        for name, lots in (
            ("value", self.value if lots_mode else None),
            ("min_lots", self.min_lots),
            ("max_lots", self.max_lots),
        ):
            if lots is not None and lots > MAX_LOTS:
                raise ValueError(f"{name} {lots} is above {MAX_LOTS} lots")
        return self


# Broker symbol names, compared exactly (surrounding blanks are stripped by StrictModel).
SymbolName = Annotated[str, Field(min_length=1, max_length=100)]
Affix = Annotated[str, Field(max_length=50)]


class SymbolRule(StrictModel):
    """Master symbol name -> follower symbol name; names are matched exactly, case included.

    An explicit ``map`` entry wins; otherwise ``strip_prefix``/``strip_suffix`` come off the
    master name (only when present) and ``add_prefix``/``add_suffix`` go on. include/exclude
    select master names (exclude wins; empty include = every symbol).
    """

    map: dict[SymbolName, SymbolName] = Field(default_factory=dict)
    strip_prefix: Affix = ""
    strip_suffix: Affix = ""
    add_prefix: Affix = ""
    add_suffix: Affix = ""
    include: list[SymbolName] = Field(default_factory=list)  # master names; empty = all
    exclude: list[SymbolName] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> SymbolRule:
        both = sorted(set(self.include) & set(self.exclude))
        if both:
            raise ValueError(f"symbols both included and excluded: {', '.join(both)}")
        for name, listed in (("include", self.include), ("exclude", self.exclude)):
            twice = sorted({symbol for symbol in listed if listed.count(symbol) > 1})
            if twice:
                raise ValueError(f"symbols listed twice in {name}: {', '.join(twice)}")
        # a map entry that can never apply is a mistake worth stopping for
        excluded = sorted(set(self.map) & set(self.exclude))
        if excluded:
            raise ValueError(f"symbols both mapped and excluded: {', '.join(excluded)}")
        if self.include:
            unused = sorted(set(self.map) - set(self.include))
            if unused:
                raise ValueError(f"mapped symbols missing from include: {', '.join(unused)}")
        return self


class EquityStop(StrictModel):
    below: Positive  # follower equity, in its deposit currency
    # Any value; a tripped stop stays tripped until this block changes: bump it to re-arm.
    rearm: str | None = None

    @field_validator("rearm", mode="before")
    @classmethod
    def _any_scalar(cls, value: Any) -> Any:
        # `rearm: 2`, `rearm: 2026-11-27` (a date to YAML) and `rearm: x` all mark a change
        return str(value) if isinstance(value, int | float | date) else value


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
    # a master trade older than this is not opened any more (.inf: no limit)
    max_delay_s: Annotated[float, Field(gt=0)] = 60.0
    slippage_points: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None  # int32 field
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
