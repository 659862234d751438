"""What the state store remembers of a destination across restarts and reloads.

- Since when it copies new trades (``started:``): its first start, moved to the moment it
  comes back from ``mode: frozen``. What the master opened or placed before that moment
  and that has no copy is "existing": copied only with ``copy_existing: true``. So a
  frozen follower ignores what happens meanwhile, and picks up the thread of the copies it
  already has (closes, reductions, SL/TP) when it returns.
- Whether its equity stop has tripped (``equity-stop:``): a latch holding the fingerprint
  of the ``equity_stop`` block it tripped under. It holds when equity recovers, across
  restarts and across edits of the destination's other keys; changing the block itself
  (its ``below``, or its ``rearm`` marker) and reloading re-arms it.
"""

from __future__ import annotations

from cmamd.config.diff import fingerprint_of
from cmamd.config.rules import CopyMode, Destination
from cmamd.state.store import StateStore

EQUITY_STOP_PREFIX = "equity-stop:"


def equity_stop_key(dest_id: str) -> str:
    """The store's meta key of a destination's equity-stop latch."""
    return f"{EQUITY_STOP_PREFIX}{dest_id}"


def copying_since_ms(store: StateStore, dest_id: str, dest: Destination, now_ms: int) -> int:
    """When the destination (re)started copying new master trades."""
    started_key, frozen_key = f"started:{dest_id}", f"frozen:{dest_id}"
    started = store.get_meta(started_key)
    frozen_since = store.get_meta(frozen_key)
    if dest.mode is CopyMode.FROZEN:
        if not frozen_since:
            store.set_meta(frozen_key, str(now_ms))
    elif frozen_since:
        # back from frozen: what the master did meanwhile now predates the copy
        started = str(now_ms)
        store.set_meta(started_key, started)
        store.set_meta(frozen_key, "")
    if started is None:
        started = str(now_ms)
        store.set_meta(started_key, started)
    return int(started)


def equity_stop_latched(store: StateStore, dest_id: str, dest: Destination) -> bool:
    """Whether the destination's equity stop has tripped and not been re-armed."""
    if dest.equity_stop is None:
        return False
    stored = store.get_meta(equity_stop_key(dest_id))
    if not stored:
        return False
    if stored == fingerprint_of(dest.equity_stop):
        return True
    if stored == fingerprint_of(dest):
        # latched by a version that fingerprinted the whole destination: keep it, in the
        # current form, so that editing another key no longer re-arms it
        latch_equity_stop(store, dest_id, dest)
        return True
    return False


def latch_equity_stop(store: StateStore, dest_id: str, dest: Destination) -> None:
    if dest.equity_stop is not None:
        store.set_meta(equity_stop_key(dest_id), fingerprint_of(dest.equity_stop))
