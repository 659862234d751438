"""What the operator changed at run time with ``cmamd ctl``: modes, pauses, flattens.

Kept in the state store's meta rows, so they survive restarts until changed again, and
applied where the YAML's settings are: the planner reads the destination's ``mode`` and
the target's ``liquidate`` and knows nothing of where they came from.

Precedence, per destination: a flatten (close everything, never open: reported as
``frozen``) > the ``ctl mode`` of its follower > the YAML's ``mode``; then a pause (of the
follower or of the rule) turns ``on`` into ``close_only``: nothing new is opened, but what
the master closes is still closed, so a pause never leaves copies orphaned.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cmamd.config.rules import CopyMode
from cmamd.replication.planner import CopyTarget
from cmamd.state.store import StateStore

_MODE = "ctl:mode:"  # + follower account id -> on | close_only | frozen | "" (YAML's)
_PAUSE_ACCOUNT = "ctl:pause:account:"  # + follower account id -> "1" | ""
_PAUSE_RULE = "ctl:pause:rule:"  # + rule name -> "1" | ""
_FLATTEN = "ctl:flatten:"  # + destination id -> "1" | ""


@dataclass(frozen=True, slots=True)
class EffectiveMode:
    mode: str  # on | close_only | frozen
    source: str  # yaml | ctl | ctl pause | ctl flatten | equity stop


class Overrides:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    # queries -------------------------------------------------------------------------
    def mode_of(self, follower_id: int) -> CopyMode | None:
        value = self._store.get_meta(_MODE + str(follower_id))
        return CopyMode(value) if value else None

    def account_paused(self, follower_id: int) -> bool:
        return self._store.get_meta(_PAUSE_ACCOUNT + str(follower_id)) == "1"

    def rule_paused(self, rule: str) -> bool:
        return self._store.get_meta(_PAUSE_RULE + rule) == "1"

    def flattened(self, dest_id: str) -> bool:
        return self._store.get_meta(_FLATTEN + dest_id) == "1"

    # changes -------------------------------------------------------------------------
    def set_mode(self, follower_id: int, mode: CopyMode, dest_ids: list[str]) -> None:
        """An explicit mode also ends a flatten of the follower's destinations."""
        self._store.set_meta(_MODE + str(follower_id), mode.value)
        for dest_id in dest_ids:
            self._store.set_meta(_FLATTEN + dest_id, "")

    def set_account_paused(self, follower_id: int, paused: bool) -> None:
        self._store.set_meta(_PAUSE_ACCOUNT + str(follower_id), "1" if paused else "")

    def set_rule_paused(self, rule: str, paused: bool) -> None:
        self._store.set_meta(_PAUSE_RULE + rule, "1" if paused else "")

    def set_flattened(self, dest_id: str) -> None:
        self._store.set_meta(_FLATTEN + dest_id, "1")

    # application ---------------------------------------------------------------------
    def effective(self, target: CopyTarget, dest_id: str, yaml_mode: CopyMode) -> EffectiveMode:
        """The mode the planner works with and where it comes from; ``target`` may be the
        YAML's or the applied one, ``yaml_mode`` is always the YAML's."""
        if self.flattened(dest_id):
            return EffectiveMode(CopyMode.FROZEN.value, "ctl flatten")
        if target.liquidate:
            return EffectiveMode(CopyMode.FROZEN.value, "equity stop")
        override = self.mode_of(target.follower_account_id)
        mode, source = (override, "ctl") if override is not None else (yaml_mode, "yaml")
        paused = self.account_paused(target.follower_account_id) or self.rule_paused(target.rule)
        if paused and mode is CopyMode.ON:
            return EffectiveMode(CopyMode.CLOSE_ONLY.value, "ctl pause")
        return EffectiveMode(mode.value, source)

    def apply(self, target: CopyTarget, dest_id: str) -> CopyTarget:
        """The target the planner gets: the YAML's, with the operator's changes on top."""
        if self.flattened(dest_id):
            # the equity stop's liquidation: close every copy, cancel every pending copy,
            # never open again. Not FROZEN in the Destination: frozen plans nothing at all.
            dest = target.dest.model_copy(update={"mode": CopyMode.CLOSE_ONLY})
            return dataclasses.replace(target, dest=dest, liquidate=True)
        if target.liquidate:
            return target
        wanted = CopyMode(self.effective(target, dest_id, target.dest.mode).mode)
        if wanted is target.dest.mode:
            return target
        return dataclasses.replace(target, dest=target.dest.model_copy(update={"mode": wanted}))
