"""What the state store remembers of each copy destination across restarts and reloads.

A destination (``rule:master id:follower id``) carries three marks, kept in the store's
meta table; this module is the only place that spells their keys:

- ``started``: since when it copies new master trades (epoch ms). What the master opened
  before that moment and that has no copy is "existing" (copied only with
  ``copy_existing: true``).
- ``frozen_since``: since when it is in ``mode: frozen`` (epoch ms), absent when it is not;
  a return from frozen moves ``started`` (replication/routes_from_config.py decides).
- ``equity_stop``: the fingerprint of the ``equity_stop`` block under which its equity stop
  tripped, "" when not tripped (replication/equity_stop.py decides what it means).
"""

from __future__ import annotations

from dataclasses import dataclass

from cmamd.state.store import StateStore

_STARTED = "started:"
_FROZEN = "frozen:"
_EQUITY_STOP = "equity-stop:"


@dataclass(frozen=True, slots=True)
class DestinationMarks:
    started_ms: int | None = None
    frozen_since_ms: int | None = None
    equity_stop: str = ""


def _ms(stored: str | None) -> int | None:
    # "" is how a cleared mark is stored; anything not a number counts as never set
    return int(stored) if stored and stored.isdigit() else None


class MarkStore:
    """Typed reads and writes of the destination marks over the store's meta API."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    def all(self) -> dict[str, DestinationMarks]:
        """Every destination that has a mark, by id: three queries whatever the count."""
        started = self._by_dest(_STARTED)
        frozen = self._by_dest(_FROZEN)
        stops = self._by_dest(_EQUITY_STOP)
        return {
            dest_id: DestinationMarks(
                started_ms=_ms(started.get(dest_id)),
                frozen_since_ms=_ms(frozen.get(dest_id)),
                equity_stop=stops.get(dest_id, ""),
            )
            for dest_id in started.keys() | frozen.keys() | stops.keys()
        }

    def of(self, dest_id: str) -> DestinationMarks:
        return DestinationMarks(
            started_ms=_ms(self._store.get_meta(_STARTED + dest_id)),
            frozen_since_ms=_ms(self._store.get_meta(_FROZEN + dest_id)),
            equity_stop=self._store.get_meta(_EQUITY_STOP + dest_id) or "",
        )

    def equity_stops(self) -> dict[str, str]:
        """Tripped equity stops: destination id -> fingerprint of the block (one query)."""
        return {dest_id: value for dest_id, value in self._by_dest(_EQUITY_STOP).items() if value}

    def save(self, dest_id: str, old: DestinationMarks, new: DestinationMarks) -> None:
        """Write the marks of ``new`` that differ from ``old``."""
        if new.started_ms != old.started_ms:
            self._store.set_meta(_STARTED + dest_id, _text(new.started_ms))
        if new.frozen_since_ms != old.frozen_since_ms:
            self._store.set_meta(_FROZEN + dest_id, _text(new.frozen_since_ms))
        if new.equity_stop != old.equity_stop:
            self._store.set_meta(_EQUITY_STOP + dest_id, new.equity_stop)

    def latch_equity_stop(self, dest_id: str, fingerprint: str) -> None:
        self._store.set_meta(_EQUITY_STOP + dest_id, fingerprint)

    def _by_dest(self, prefix: str) -> dict[str, str]:
        return {key[len(prefix) :]: value for key, value in self._store.meta_items(prefix).items()}


def _text(ms: int | None) -> str:
    return "" if ms is None else str(ms)
