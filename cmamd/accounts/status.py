"""Where an account's session stands: one value of a closed set, named once.

A StrEnum so that STATUS lines, logs, ``ctl status`` and metrics read the words they always
read, while a typo in a comparison is a type error instead of a silent ``False``.
"""

from __future__ import annotations

from enum import StrEnum


class SessionStatus(StrEnum):
    NEW = "new"  # made, not started
    STARTING = "starting"  # first start-up: auth, catalogue, reconcile
    READY = "ready"  # reconciled: the copy path may use it
    REAUTHORISING = "reauthorising"  # dropped (link, token, server) and coming back by itself
    NEEDS_REAUTH = "needs re-authorisation"  # its token pair is refused: waits for `cmamd auth`
    FAILED = "failed"  # refused for good (account or application): waits for an operator
    STOPPED = "stopped"


SETTLED = frozenset({SessionStatus.FAILED, SessionStatus.STOPPED, SessionStatus.NEEDS_REAUTH})
"""Not ready, and not coming up by itself: start-up does not wait for them."""

NEEDS_OPERATOR = frozenset({SessionStatus.FAILED, SessionStatus.NEEDS_REAUTH})
"""Only an operator brings these back (a retry, a new token pair): they are alerted."""

RETRYABLE = frozenset(
    {SessionStatus.FAILED, SessionStatus.NEEDS_REAUTH, SessionStatus.STOPPED, SessionStatus.NEW}
)
"""An operator's retry may restart these; any other is recovering on its own."""
