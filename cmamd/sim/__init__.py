"""The simulated cTrader Open API server (a broker) behind every end-to-end test and demo."""

from cmamd.sim.broker import AccountEvent, Broker
from cmamd.sim.config import (
    AccountConfig,
    AssetConfig,
    BrokerConfig,
    CtidConfig,
    SimConfig,
    SymbolConfig,
)
from cmamd.sim.market import Market
from cmamd.sim.server import SimServer
from cmamd.sim.session import ConnectionInfo, FrameEvent, RecordedRequest
from cmamd.sim.validation import Rejected

__all__ = [
    "AccountConfig",
    "AccountEvent",
    "AssetConfig",
    "Broker",
    "BrokerConfig",
    "ConnectionInfo",
    "CtidConfig",
    "FrameEvent",
    "Market",
    "RecordedRequest",
    "Rejected",
    "SimConfig",
    "SimServer",
    "SymbolConfig",
]
