"""What `cmamd auth` prints about a new grant (pure): the account table, a ready-to-paste
``accounts:`` block, and warnings for configured accounts the grant left out."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from cmamd.config.models import AccountConfig
from cmamd.onboarding.remote import Grant, GrantedAccount

MAX_NAME = 40


def suggested_name(account: GrantedAccount) -> str:
    """A config name from broker and login, e.g. ``icmarkets-5012345``."""
    broker = re.sub(r"[^a-z0-9]+", "-", account.broker.lower()).strip("-") or "account"
    suffix = f"-{account.login}" if account.login else f"-{account.account_id}"
    return broker[: MAX_NAME - len(suffix)].rstrip("-") + suffix


def account_table(grant: Grant, configured: Iterable[AccountConfig]) -> list[str]:
    names = {a.account_id: a.name for a in configured}
    lines = [f"{'account_id':>12}  {'login':>10}  env   broker / configured as"]
    for a in grant.accounts:
        env = "live" if a.live else "demo"
        known = f"  (configured as {names[a.account_id]!r})" if a.account_id in names else ""
        lines.append(f"{a.account_id:>12}  {a.login:>10}  {env}  {a.broker}{known}")
    return lines


def accounts_block(grant: Grant, configured: Iterable[AccountConfig]) -> str:
    """YAML to paste under the config's ``accounts:`` (configured names are kept)."""
    names = {a.account_id: a.name for a in configured}
    used: set[str] = set(names.values())
    lines = ["accounts:"]
    for a in grant.accounts:
        name = names.get(a.account_id)
        if name is None:
            name = base = suggested_name(a)
            n = 2
            while name in used:
                name = f"{base[: MAX_NAME - 3]}-{n}"
                n += 1
            used.add(name)
        lines.append(f"  - name: {name}")
        lines.append(f"    account_id: {a.account_id}    # login {a.login}, {a.broker}")
        lines.append(f"    live: {'true' if a.live else 'false'}")
    return "\n".join(lines) + "\n"


def missing_from_grant(
    grant: Grant,
    configured: Iterable[AccountConfig],
    previous_refresh: Mapping[int, str],
) -> list[str]:
    """Warnings for configured accounts the new grant does not cover.

    ``previous_refresh`` maps account ids to the refresh token stored before this grant:
    an account that shared one with a granted account was granted by the same cTrader ID
    before, and re-granting without selecting it again has just cut it off.
    """
    granted = {a.account_id for a in grant.accounts}
    same_ctid = {previous_refresh[a] for a in granted if previous_refresh.get(a)}
    warnings = []
    for account in configured:
        if account.account_id in granted or not account.enabled:
            continue
        old = previous_refresh.get(account.account_id)
        if old and old in same_ctid:
            warnings.append(
                f"warning: account {account.name!r} ({account.account_id}) was granted by this "
                "cTrader ID before but is not in the new grant, and the new grant revoked its "
                "old token: run `cmamd auth` again and select every account on the grant page"
            )
        elif not old:
            warnings.append(
                f"warning: account {account.name!r} ({account.account_id}) is configured but "
                "not in this grant and has no token: authorise the cTrader ID it belongs to "
                "(`cmamd auth`, selecting it on the grant page)"
            )
    return warnings
