"""Scenario 4: the pure planner's CPU cost, ``plan_all`` over one follower.

Cases, each with ``copies`` master positions (EURUSD, 1 lot, SL/TP set, several symbols
mixed in so the symbol mapping is exercised):
  steady  every position copied, links OPEN and mirrored: plan_all finds nothing to do
          (what every reconcile after a reconnect costs in the common case)
  open    no copies and no links yet: one OpenPosition per key (a start with copy_existing,
          or a burst of master trades planned at once)
  close   the master holds nothing, every copy and link still there: one ClosePosition each

and ``live`` cases: what the executor plans per copy — the route's origins merged from what
its live links say (kept link by link, ``origins.LinkOrigins``), then ``plan_key`` for one
new master position — with ``history`` closed links of earlier copies (settled: looked up by
key, never walked), and with K copies open on the follower (``live_open``).

Timed with ``time.process_time`` (CPU of this process) over repeated calls for at least
``seconds``; states are built once and never mutated by the planner.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from cmamd.accounts.model import AccountKind, AccountState, Position, Side, SymbolSpec, TraderInfo
from cmamd.config.rules import Destination
from cmamd.item_keys import position_key
from cmamd.replication.labels import label
from cmamd.replication.links import Link, LinkStatus
from cmamd.replication.origins import LinkOrigins
from cmamd.replication.planner import CopyTarget, plan_all, plan_key

MASTER = 1001
FOLLOWER = 2002
NOW_MS = 1_700_000_000_000
FX_LOT = 10_000_000
SYMBOLS = [
    SymbolSpec(1, "EURUSD", 5, 4, FX_LOT, 100_000, 100_000, 10_000_000_000),
    SymbolSpec(2, "GBPUSD", 5, 4, FX_LOT, 100_000, 100_000, 10_000_000_000),
    SymbolSpec(3, "USDJPY", 3, 2, FX_LOT, 100_000, 100_000, 10_000_000_000),
    SymbolSpec(4, "XAUUSD", 2, 2, 10_000, 100, 100, 1_000_000),
]
ENTRY = {1: 1.08, 2: 1.265, 3: 150.0, 4: 2350.0}
STOP = {1: 0.005, 2: 0.005, 3: 0.5, 4: 10.0}


def _account(account_id: int, positions: list[Position], suffix: str = "") -> AccountState:
    specs = [
        SymbolSpec(s.symbol_id + (100 if suffix else 0), s.name + suffix, *_spec_tail(s))
        for s in SYMBOLS
    ]
    return AccountState(
        account_id=account_id,
        trader=TraderInfo(account_id, Decimal("1000000"), 2, AccountKind.HEDGED),
        symbols_by_id={s.symbol_id: s for s in specs},
        symbols_by_name={s.name: s for s in specs},
        positions={p.position_id: p for p in positions},
    )


def _spec_tail(s: SymbolSpec) -> tuple[int, int, int, int, int, int]:
    return (s.digits, s.pip_position, s.lot_size, s.min_volume, s.step_volume, s.max_volume)


def _master_position(i: int) -> Position:
    symbol_id = SYMBOLS[i % len(SYMBOLS)].symbol_id
    volume = SYMBOLS[i % len(SYMBOLS)].lot_size
    entry = ENTRY[symbol_id]
    side = Side.BUY if i % 2 else Side.SELL
    sign = 1 if side is Side.BUY else -1
    return Position(
        position_id=10_000 + i,
        symbol_id=symbol_id,
        side=side,
        volume=volume,
        entry_price=entry,
        stop_loss=round(entry - sign * STOP[symbol_id], 5),
        take_profit=round(entry + sign * 2 * STOP[symbol_id], 5),
        open_ms=NOW_MS - 1_000,
    )


def _copy(master_position: Position) -> Position:
    return Position(
        position_id=50_000 + master_position.position_id,
        symbol_id=master_position.symbol_id + 100,
        side=master_position.side,
        volume=master_position.volume,
        entry_price=master_position.entry_price,
        stop_loss=master_position.stop_loss,
        take_profit=master_position.take_profit,
        label=label(MASTER, position_key(master_position.position_id)),
        open_ms=NOW_MS - 900,
    )


def _link(master_position: Position) -> Link:
    return Link(
        rule="bench",
        master_account_id=MASTER,
        follower_account_id=FOLLOWER,
        key=position_key(master_position.position_id),
        status=LinkStatus.OPEN,
        master_volume=master_position.volume,
        follower_volume=master_position.volume,
        master_sl=master_position.stop_loss,
        master_tp=master_position.take_profit,
        seq=1,
        updated_ms=NOW_MS - 900,
    )


def _target() -> CopyTarget:
    return CopyTarget(
        rule="bench",
        dest=Destination.model_validate(
            {"account": "follower", "symbols": {"add_suffix": ".m"}, "volume": {"value": 1}}
        ),
        master_account_id=MASTER,
        follower_account_id=FOLLOWER,
        started_ms=NOW_MS - 3_600_000,
    )


def _no_rate(_: SymbolSpec) -> Decimal | None:
    return None


def build(case: str, copies: int) -> tuple[AccountState, AccountState, dict[str, Link], int]:
    """(master, follower, links, expected intents)."""
    positions = [_master_position(i) for i in range(copies)]
    copied = [_copy(p) for p in positions]
    links = {link.key: link for link in map(_link, positions)}
    if case == "steady":
        return _account(MASTER, positions), _account(FOLLOWER, copied, ".m"), links, 0
    if case == "open":
        return _account(MASTER, positions), _account(FOLLOWER, [], ".m"), {}, copies
    if case == "close":
        return _account(MASTER, []), _account(FOLLOWER, copied, ".m"), links, copies
    raise ValueError(case)


def _measure(case: str, copies: int, seconds: float) -> dict[str, Any]:
    master, follower, links, expected = build(case, copies)
    target = _target()

    def once() -> int:
        plans = plan_all(target, master, follower, links, NOW_MS, {}, _no_rate)
        return sum(len(p.intents) for p in plans)

    intents = once()  # warm-up, and the sanity check
    if intents != expected:
        raise AssertionError(f"{case}: {intents} intents, expected {expected}")
    calls, cpu, wall = _timed(once, seconds)
    return {
        "copies": copies,
        "intents_per_call": intents,
        "calls": calls,
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "plans_per_s": round(calls / cpu, 2),
        "keys_per_s": round(calls * copies / cpu),
        "us_per_key": round(cpu / (calls * copies) * 1e6, 1),
        "ms_per_call": round(cpu / calls * 1000, 2),
    }


def _timed(once: Any, seconds: float) -> tuple[int, float, float]:
    """(calls, cpu s, wall s) of calling ``once`` for at least ``seconds`` of CPU."""
    calls = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while True:
        once()
        calls += 1
        cpu = time.process_time() - cpu0
        if cpu >= seconds and calls >= 3:
            return calls, cpu, time.perf_counter() - wall0


def _time_one_copy(
    master: AccountState, follower: AccountState, links: dict[str, Link], seconds: float
) -> tuple[int, float]:
    """(calls, cpu s) of planning the master's newest position as the executor does: the
    origins merged from what the live links say (kept link by link), then ``plan_key``."""
    new = max(master.positions.values(), key=lambda p: p.position_id)
    target = _target()
    key = position_key(new.position_id)
    kept = LinkOrigins.of(link for link in links.values() if link.active)

    def once() -> int:
        origins = kept.merged(master, {})
        plan = plan_key(target, key, master, follower, links.get(key), NOW_MS, origins, _no_rate)
        return len(plan.intents)

    if once() != 1:
        raise AssertionError("live: expected one OpenPosition")
    calls, cpu, _ = _timed(once, seconds)
    return calls, cpu


def _measure_live(history: int, seconds: float) -> dict[str, Any]:
    """With ``history`` closed links of earlier copies: settled, looked up by key."""
    links: dict[str, Link] = {}
    for i in range(history):
        old = _link(_master_position(100_000 + i)).closed(NOW_MS - 60_000)
        links[old.key] = old
    master = _account(MASTER, [_master_position(1)])
    calls, cpu = _time_one_copy(master, _account(FOLLOWER, [], ".m"), links, seconds)
    return {
        "history_links": history,
        "calls": calls,
        "cpu_s": round(cpu, 3),
        "us_per_copy": round(cpu / calls * 1e6, 1),
        "copies_per_s": round(calls / cpu),
    }


def _measure_live_open(open_copies: int, seconds: float) -> dict[str, Any]:
    """One new master position planned while ``open_copies`` items are copied and open."""
    held = [_master_position(i) for i in range(open_copies)]
    master = _account(MASTER, [*held, _master_position(open_copies)])
    follower = _account(FOLLOWER, [_copy(p) for p in held], ".m")
    links = {link.key: link for link in map(_link, held)}
    calls, cpu = _time_one_copy(master, follower, links, seconds)
    return {
        "open_copies": open_copies,
        "calls": calls,
        "us_per_copy": round(cpu / calls * 1e6, 1),
        "copies_per_s": round(calls / cpu),
    }


OPEN_COPIES = (10, 2_000)
"""K open copies on the follower for the live case (issue 10: <= 60 us at K = 2000)."""


def run(copies: int, seconds: float, histories: list[int] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {
        case: _measure(case, copies, seconds) for case in ("steady", "open", "close")
    }
    result["live"] = [_measure_live(h, seconds) for h in (histories or [0])]
    result["live_open"] = [_measure_live_open(k, seconds) for k in OPEN_COPIES]
    return result
