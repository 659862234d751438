"""Simulator configuration: assets, brokers and their symbols, cTrader IDs owning accounts, limits.

In code, ``SimConfig(**keys)`` (or ``SimConfig.default(**keys)``) is the default demo broker
(``cmamd.sim.defaults``) with the given top-level keys replaced.

YAML format (``SimConfig.from_yaml(path)``, ``cmamd sim --config sim.yaml``); every key not
marked optional is required, unknown keys are errors::

    client_id: my-app                  # application credentials clients must present
    client_secret: s3cret
    environment: demo                  # optional: demo (default) | live; accounts of the
                                       #   other environment get CANT_ROUTE_REQUEST
    seed: 1                            # optional: seeds tokens and the price walk
    max_rps: 50                        # optional limits, shown with their defaults
    max_historical_rps: 5              #   deal and order history requests
    heartbeat_interval_s: 10
    idle_timeout_s: 30
    max_connections: 25
    token_ttl_s: 2628000
    redirect_uris: [http://127.0.0.1:8765/callback]   # optional: OAuth redirect URIs
    grant_ctid: alice                  # optional: whose accounts the OAuth page grants
    price_walk: false                  # optional: random walk of prices (cmamd sim turns it on)
    price_walk_interval_s: 1.0
    timer_interval_s: 0.05             # optional: how often GTD expiry is checked
    assets:
      - {asset_id: 1, name: USD, digits: 2}
      - {asset_id: 2, name: EUR, digits: 2}
    brokers:
      - name: Demo Markets
        symbols:
          # volumes in cents of a unit (FX lot 100,000 units = 10_000_000); prices in real units
          - {symbol_id: 1, name: EURUSD, base_asset: EUR, quote_asset: USD, digits: 5,
             pip_position: 4, lot_size: 10000000, min_volume: 100000, step_volume: 100000,
             max_volume: 10000000000, bid: 1.08, ask: 1.0801}
          # optional symbol keys: trading_mode (enabled | disabled | disabled_with_pendings |
          #   close_only), short_selling (true), description, category_id, volatility
    ctids:                             # a cTrader ID: one token pair authorises its accounts
      - name: alice
        access_token: tok-a            # optional: generated from the seed when absent
        refresh_token: ref-a           # optional
        accounts:
          - {name: alice-1, account_id: 1000001, trader_login: 500001, broker: Demo Markets,
             kind: hedged, balance: 10000}
          # optional account keys: deposit_asset (USD), money_digits (2),
          #   leverage_in_cents (10000 = 1:100), is_live (false), access_rights
          #   (full | close_only | no_trading)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cmamd.protocol.units import round_price
from cmamd.sim.defaults import CLIENT_ID, CLIENT_SECRET, DEFAULT_SEED, default_config_data

TradingMode = Literal["enabled", "disabled", "disabled_with_pendings", "close_only"]
AccessRights = Literal["full", "close_only", "no_trading"]
REQUIRED_YAML_KEYS = frozenset({"client_id", "client_secret", "assets", "brokers", "ctids"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AssetConfig(_Model):
    asset_id: int = Field(gt=0)
    name: str = Field(min_length=1)
    digits: int = Field(default=2, ge=0, le=10)


class SymbolConfig(_Model):
    symbol_id: int = Field(gt=0)
    name: str = Field(min_length=1)
    base_asset: str
    quote_asset: str
    # Spot prices travel in 1/100000 whatever the digits, so finer digits cannot be quoted.
    digits: int = Field(ge=0, le=5)
    pip_position: int = Field(ge=0, le=5)
    lot_size: int = Field(gt=0)
    min_volume: int = Field(gt=0)
    step_volume: int = Field(gt=0)
    max_volume: int = Field(gt=0)
    bid: float = Field(gt=0)
    ask: float = Field(gt=0)
    trading_mode: TradingMode = "enabled"
    short_selling: bool = True
    description: str = ""
    category_id: int = 1
    volatility: float = Field(default=0.0002, ge=0)
    """Standard deviation of one price-walk step, relative to the mid price."""

    @model_validator(mode="after")
    def _consistent(self) -> SymbolConfig:
        if self.ask < self.bid:
            raise ValueError(f"{self.name}: ask {self.ask} is below bid {self.bid}")
        for label, price in (("bid", self.bid), ("ask", self.ask)):
            if round_price(price, self.digits) != price:
                raise ValueError(f"{self.name}: {label} {price} has more than {self.digits} digits")
        if self.min_volume % self.step_volume or self.max_volume % self.step_volume:
            raise ValueError(f"{self.name}: min/max volume must be multiples of step_volume")
        if self.max_volume < self.min_volume:
            raise ValueError(f"{self.name}: max_volume is below min_volume")
        return self


class BrokerConfig(_Model):
    name: str = Field(min_length=1)
    symbols: list[SymbolConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> BrokerConfig:
        _require_unique((s.name for s in self.symbols), f"symbol name in {self.name}")
        return self


class AccountConfig(_Model):
    name: str = Field(min_length=1)
    account_id: int = Field(gt=0)
    trader_login: int = Field(gt=0)
    broker: str
    kind: Literal["hedged", "netted"] = "hedged"
    balance: Decimal = Field(ge=0)
    deposit_asset: str = "USD"
    money_digits: int = Field(default=2, ge=0, le=8)
    leverage_in_cents: int = Field(default=10_000, gt=0)
    is_live: bool = False
    access_rights: AccessRights = "full"


class CtidConfig(_Model):
    """A cTrader ID: its access token authorises all of its accounts."""

    name: str = Field(min_length=1)
    access_token: str | None = None
    refresh_token: str | None = None
    accounts: list[AccountConfig] = Field(min_length=1)


def _demo(key: str) -> Any:
    return default_config_data()[key]


class SimConfig(_Model):
    # Every default is the demo broker's (cmamd.sim.defaults).
    client_id: str = Field(default=CLIENT_ID, min_length=1)
    client_secret: str = Field(default=CLIENT_SECRET, min_length=1)
    environment: Literal["demo", "live"] = "demo"
    seed: int = DEFAULT_SEED
    assets: list[AssetConfig] = Field(
        default_factory=lambda: _demo("assets"), min_length=1, validate_default=True
    )
    brokers: list[BrokerConfig] = Field(
        default_factory=lambda: _demo("brokers"), min_length=1, validate_default=True
    )
    ctids: list[CtidConfig] = Field(
        default_factory=lambda: _demo("ctids"), min_length=1, validate_default=True
    )
    max_rps: int = Field(default=50, gt=0)
    max_historical_rps: int = Field(default=5, gt=0)
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    idle_timeout_s: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=25, gt=0)
    token_ttl_s: float = Field(default=2_628_000, gt=0)
    price_walk: bool = False
    price_walk_interval_s: float = Field(default=1.0, gt=0)
    timer_interval_s: float = Field(default=0.05, gt=0)
    version: str = "cmamd-sim-1"
    # OAuth stand-in (cmamd.sim.oauth): redirect URIs registered for the application, and
    # the cTID whose grant the authorisation page gives (default: the first one)
    redirect_uris: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8765/callback"])
    grant_ctid: str | None = None

    @model_validator(mode="after")
    def _references(self) -> SimConfig:
        asset_names = {a.name for a in self.assets}
        _require_unique((a.name for a in self.assets), "asset name")
        _require_unique((a.asset_id for a in self.assets), "asset id")
        _require_unique((b.name for b in self.brokers), "broker name")
        _require_unique((s.symbol_id for b in self.brokers for s in b.symbols), "symbol id")
        _require_unique((c.name for c in self.ctids), "ctid name")
        accounts = list(self.accounts())
        _require_unique((a.name for a in accounts), "account name")
        _require_unique((a.account_id for a in accounts), "account id")
        _require_unique((a.trader_login for a in accounts), "trader login")
        if self.grant_ctid is not None and self.grant_ctid not in {c.name for c in self.ctids}:
            raise ValueError(f"grant_ctid: unknown ctid {self.grant_ctid!r}")
        tokens = [t for c in self.ctids for t in (c.access_token, c.refresh_token) if t]
        _require_unique(tokens, "token")
        broker_names = {b.name for b in self.brokers}
        for broker in self.brokers:
            for symbol in broker.symbols:
                for asset in (symbol.base_asset, symbol.quote_asset):
                    if asset not in asset_names:
                        raise ValueError(f"{symbol.name}: unknown asset {asset!r}")
        for account in accounts:
            if account.broker not in broker_names:
                raise ValueError(f"account {account.name}: unknown broker {account.broker!r}")
            if account.deposit_asset not in asset_names:
                raise ValueError(f"account {account.name}: unknown asset {account.deposit_asset!r}")
        return self

    def accounts(self) -> Iterator[AccountConfig]:
        for ctid in self.ctids:
            yield from ctid.accounts

    def account(self, name: str) -> AccountConfig:
        """The account called ``name`` (e.g. ``"master"``); KeyError when there is none."""
        for account in self.accounts():
            if account.name == name:
                return account
        raise KeyError(name)

    def broker(self, name: str) -> BrokerConfig:
        for broker in self.brokers:
            if broker.name == name:
                return broker
        raise KeyError(name)

    def asset(self, name: str) -> AssetConfig:
        for asset in self.assets:
            if asset.name == name:
                return asset
        raise KeyError(name)

    @classmethod
    def default(cls, **overrides: Any) -> SimConfig:
        """The default demo broker (``cmamd.sim.defaults``); keywords override top-level keys."""
        return cls(**overrides)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> SimConfig:
        """A config file; unlike keywords, a file must define its whole world itself."""
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        missing = sorted(REQUIRED_YAML_KEYS - data.keys())
        if missing:
            raise ValueError(f"{path}: missing {', '.join(missing)}")
        return cls.model_validate({**data, **overrides})


def _require_unique(values: Iterable[Any], what: str) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what}: {value!r}")
        seen.add(value)
