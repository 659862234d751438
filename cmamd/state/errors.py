"""Errors of the state store."""

from __future__ import annotations


class StateError(Exception):
    """The state store cannot do what was asked (bad input, wrong state, unusable file)."""


class StateLocked(StateError):
    """Another process holds the state directory: two copiers would place every order twice."""


class DuplicateIntent(StateError):
    """An intent id was journaled already: the order it stands for must not be sent again."""
