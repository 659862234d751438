"""Starting and stopping the account sessions the configuration names.

A broken account never stops the others: each starts on its own; one still starting after
the start timeout keeps coming up in the background and copies once it is ready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from pydantic import SecretStr

from cmamd.accounts.session import AccountSession, ChangeListener
from cmamd.accounts.token_keeper import TokenKeeper
from cmamd.config.models import AccountConfig, Config
from cmamd.config.rules import VolumeMode
from cmamd.daemon.pool import ConnectionPool
from cmamd.daemon.timing import DaemonTiming
from cmamd.logs import get_logger

log = get_logger("cmamd.daemon")

EQUITY_MODES = {VolumeMode.EQUITY_RATIO, VolumeMode.RISK_PERCENT}


def accounts_needing_equity(config: Config) -> set[str]:
    """Accounts whose equity (so their unrealised P&L) a rule needs."""
    names: set[str] = set()
    for rule in config.copy_rules:
        for dest in rule.destinations:
            if dest.volume.mode in EQUITY_MODES or dest.equity_stop is not None:
                names.add(dest.account)
            if dest.volume.mode is VolumeMode.EQUITY_RATIO:
                names.add(rule.source)
    return names


def accounts_needing_conversion(config: Config) -> set[str]:
    """Accounts sized by risk: the stop's loss is converted into the deposit currency."""
    return {
        dest.account
        for rule in config.copy_rules
        for dest in rule.destinations
        if dest.volume.mode is VolumeMode.RISK_PERCENT
    }


class AccountRunner:
    def __init__(
        self,
        sessions: dict[str, AccountSession],
        pool: ConnectionPool,
        tokens: TokenKeeper,
        on_change: ChangeListener,
        timing: DaemonTiming,
    ) -> None:
        self.sessions = sessions
        self._pool = pool
        self._tokens = tokens
        self._on_change = on_change
        self._timing = timing
        self._starting: set[asyncio.Task[None]] = set()

    async def start(self, config: Config, accounts: Iterable[AccountConfig]) -> None:
        accounts = list(accounts)
        equity = accounts_needing_equity(config)
        conversion = accounts_needing_conversion(config)
        for account in accounts:
            self.seed_tokens(account)
        await asyncio.gather(
            *(self._start_one(a, a.name in equity, a.name in conversion) for a in accounts)
        )

    async def _start_one(
        self, account: AccountConfig, wants_equity: bool, wants_conversion: bool
    ) -> None:
        try:
            connection = await self._pool.connection_for(account.name, account.live)
        except Exception as exc:
            log.error("no connection for account", account=account.name, error=str(exc))
            return
        session = AccountSession(
            name=account.name,
            account_id=account.account_id,
            is_live=account.live,
            connection=connection,
            tokens=self._tokens,
            on_change=self._on_change,
            pnl_interval_s=self._timing.pnl_interval_s if wants_equity else None,
            conversion_quotes=wants_conversion,
            timing=self._timing.session,
        )
        self.sessions[account.name] = session
        # Not cancelled when slow: READY must not wait forever for one account, but the
        # account keeps coming up in the background and copies once it is ready.
        starting = asyncio.create_task(session.start(), name=f"start-{account.name}")
        self._starting.add(starting)
        starting.add_done_callback(self._starting.discard)
        done, _ = await asyncio.wait({starting}, timeout=self._timing.account_start_timeout_s)
        if not done:
            log.warning("account still starting", account=account.name, next="going on without it")

    async def stop(self, name: str, *, logout: bool) -> None:
        session = self.sessions.pop(name, None)
        if session is not None:
            await session.stop(logout=logout)
        await self._pool.release(name)

    async def stop_all(self) -> None:
        for task in list(self._starting):
            task.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)
        for name in list(self.sessions):
            await self.stop(name, logout=False)

    def seed_tokens(self, account: AccountConfig) -> None:
        self._tokens.seed(
            account.account_id,
            _secret(account.initial_access_token),
            _secret(account.initial_refresh_token),
        )

    def retry_failed(self, config: Config, *, exclude: set[str]) -> list[str]:
        """SIGHUP also means "try again": failed accounts start over (with the config's
        tokens, should the stored pair be the one refused)."""
        retried = []
        for account in config.enabled_accounts:
            session = self.sessions.get(account.name)
            if account.name in exclude or session is None:
                continue
            self.seed_tokens(account)
            if session.retry_if_failed():
                retried.append(account.name)
        return retried


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
