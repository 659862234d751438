"""Unsolicited messages routed to the accounts they concern, in O(1) per message.

A connection may carry a thousand accounts; offering every execution or spot event to
every account's session and letting each ignore what is not its own costs a thousand
calls per message. Listeners registered for an account id get only the messages that
carry that id (``ctidTraderAccountId``), the token-invalidated event when it lists them,
and messages that name no account at all (rare: errors, client disconnect).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cmamd.protocol.codec import Envelope
from cmamd.protocol.proto import messages_pb2

Listener = Callable[[Envelope], None]


def account_ids_of(message: Any) -> tuple[int, ...] | None:
    """The accounts a message concerns; None when it names none (then it goes to all)."""
    if isinstance(message, messages_pb2.ProtoOAAccountsTokenInvalidatedEvent):
        return tuple(message.ctidTraderAccountIds)
    account_id = getattr(message, "ctidTraderAccountId", None)
    if not account_id:
        return None
    return (int(account_id),)


class AccountRouter:
    def __init__(self, log: Any) -> None:
        self._log = log
        self._by_account: dict[int, list[Listener]] = {}

    def __len__(self) -> int:
        return sum(len(listeners) for listeners in self._by_account.values())

    def add(self, account_id: int, callback: Listener) -> None:
        self._by_account.setdefault(account_id, []).append(callback)

    def remove(self, account_id: int, callback: Listener) -> None:
        listeners = self._by_account.get(account_id)
        if listeners is not None and callback in listeners:
            listeners.remove(callback)
            if not listeners:
                del self._by_account[account_id]

    def route(self, envelope: Envelope) -> None:
        if not self._by_account:
            return
        ids = account_ids_of(envelope.message)
        if ids is None:
            targets = [cb for listeners in self._by_account.values() for cb in listeners]
        elif len(ids) == 1:
            targets = list(self._by_account.get(ids[0], ()))
        else:
            targets = [cb for i in ids for cb in self._by_account.get(i, ())]
        for callback in targets:
            try:
                callback(envelope)
            except Exception:
                # One account's bug must not stop the reader or starve the other accounts.
                self._log.exception(
                    "account listener failed", callback=_name(callback), message=envelope.name
                )


def _name(callback: Any) -> str:
    return str(getattr(callback, "__qualname__", None) or repr(callback))
