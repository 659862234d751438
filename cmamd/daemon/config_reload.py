"""SIGHUP: load and validate the file again and apply only the difference, atomically.

Invalid, or changing what needs a restart (state_dir, api), or an added account without a
connection: the running configuration is kept and the outcome written for `cmamd reload`.
Past those checks nothing can be refused: rules first (the removed accounts' destinations
stop taking work), their in-flight work drains, then their sessions go and the added
accounts start.
"""

from __future__ import annotations

from collections.abc import Container
from typing import TYPE_CHECKING

from cmamd.config.diff import diff_configs
from cmamd.config.loader import ConfigError, load_config
from cmamd.config.models import Config
from cmamd.daemon import reload_status
from cmamd.daemon.pool import ConnectionPool
from cmamd.logs import configure_logging, get_logger, register_secret

if TYPE_CHECKING:
    from cmamd.daemon.supervisor import Daemon

log = get_logger("cmamd.daemon")


async def reload(daemon: Daemon) -> None:
    """Apply the configuration file again; a reload never takes the daemon down."""
    try:
        await _reload(daemon)
    except Exception as exc:
        log.exception("reload failed part-way", error=repr(exc))
        problems = [f"{exc!r}; restart cmamd to apply the configuration cleanly"]
        reload_status.write(daemon.config.state_dir, ok=False, problems=problems, partial=True)
        daemon.notifier.ready()


def _reject(daemon: Daemon, problems: list[str], reason: str) -> None:
    log.error("reload rejected", reason=reason, problems=problems)
    reload_status.write(daemon.config.state_dir, ok=False, problems=problems)
    daemon.notifier.ready()


async def _reload(daemon: Daemon) -> None:
    daemon.notifier.reloading()
    log.info("reloading", path=str(daemon.config_path))
    try:
        new = load_config(daemon.config_path, environ=daemon.environ)
    except ConfigError as exc:
        _reject(daemon, str(exc).splitlines(), "invalid configuration, the running one is kept")
        daemon.update_status(extra="last reload rejected")
        return
    old = daemon.config
    diff = diff_configs(old, new)
    if new.state_dir != old.state_dir or diff.api_changed:
        # Connections and the store are built from these; a restart applies them.
        why = "state_dir" if new.state_dir != old.state_dir else "api"
        problems = [f"{why}: changes here need a restart (systemctl restart cmamd)"]
        _reject(daemon, problems, "needs a restart")
        return
    for secret in new.secret_values():
        register_secret(secret)
    if diff.logging_changed:
        configure_logging(new.logging.level, new.logging.format, secrets=new.secret_values())
    for session in daemon.sessions.values():  # new tokens from `cmamd auth` are tried now
        session.retry_authorisation("reload")
    removed = set(diff.accounts_removed) | set(diff.accounts_changed)
    added = set(diff.accounts_added) | set(diff.accounts_changed)
    added = {n for n in added if new.account(n).enabled}
    problems = await _prepare_connections(daemon.pool, new, added, daemon.sessions)
    if problems:
        _reject(daemon, problems, "an added account has no connection")
        return
    # Nothing below can be refused: the reload now applies completely.
    daemon.config = new
    replicator = daemon.replicator
    replicator.set_destinations(
        [d for d in daemon.routes(new) if d.master not in added and d.follower not in added]
    )
    if removed:
        await replicator.drain(new.shutdown_timeout_s)
        for name in sorted(removed):
            await daemon.accounts.stop(name, logout=True)
    if added:
        await daemon.accounts.start(new, [new.account(n) for n in sorted(added)])
    replicator.set_destinations(daemon.routes(new))
    replicator.audit_interval_s = new.audit_interval_s
    retried = daemon.accounts.retry_failed(new, exclude=added)
    reload_status.write(new.state_dir, ok=True, problems=[])
    log.info(
        "reloaded",
        added=sorted(added - removed),
        removed=sorted(removed - added),
        changed=sorted(added & removed),
        rules_changed=diff.rules_changed,
        retried=retried,
    )
    daemon.notifier.ready()
    daemon.update_status()


async def _prepare_connections(
    pool: ConnectionPool, new: Config, added: set[str], running: Container[str]
) -> list[str]:
    """Get the added accounts' connections before anything changes; the problems."""
    problems = []
    for name in sorted(added):
        account = new.account(name)
        try:
            await pool.connection_for(name, account.live)
        except Exception as exc:
            problems.append(f"accounts.{name}: no connection: {exc}")
    if problems:
        for name in added:
            if name not in running:
                await pool.release(name)
    return problems
