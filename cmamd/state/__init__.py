"""Durable daemon state: tokens, master<->follower links, the replication journal."""

from cmamd.state.errors import DuplicateIntent, StateError, StateLocked
from cmamd.state.records import CLOSED_LINK_STATUS, OUTCOMES, JournalEntry, Outcome, StoredTokens
from cmamd.state.store import StateStore

__all__ = [
    "CLOSED_LINK_STATUS",
    "OUTCOMES",
    "DuplicateIntent",
    "JournalEntry",
    "Outcome",
    "StateError",
    "StateLocked",
    "StateStore",
    "StoredTokens",
]
