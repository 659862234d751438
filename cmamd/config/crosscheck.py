"""Checks across sections: names and ids, rule references, the copy graph, TLS, warnings.

Each finding carries the YAML path it is about (``copy[0].destinations[1].account``) so
that the loader can point at the line.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from cmamd.config.problems import Loc
from cmamd.config.rules import CopyMode
from cmamd.config.secrets import loose_permissions

if TYPE_CHECKING:
    from cmamd.config.models import Config

Finding = tuple[Loc, str]
Edge = tuple[str, str, Loc]  # source, destination, path of the destination's account key


def problems(config: Config) -> list[Finding]:
    found: list[Finding] = []
    found += _unique(config, "name", "account name")
    found += _unique(config, "account_id", "account_id")
    found += _unique_rule_names(config)
    found += _references(config)
    edges = _edges(config)
    found += _repeated_pairs(edges)
    found += _cycles(edges)
    found += _tls(config)
    return found


def _unique(config: Config, key: str, what: str) -> list[Finding]:
    first: dict[object, int] = {}
    found: list[Finding] = []
    for index, account in enumerate(config.accounts):
        value = getattr(account, key)
        if value in first:
            found.append(
                (
                    ("accounts", index, key),
                    f"duplicate {what} {value!r} (also accounts[{first[value]}])",
                )
            )
        else:
            first[value] = index
    return found


def _unique_rule_names(config: Config) -> list[Finding]:
    first: dict[str, int] = {}
    found: list[Finding] = []
    for index, rule in enumerate(config.copy_rules):
        if rule.name in first:
            found.append(
                (
                    ("copy", index, "name"),
                    f"duplicate rule name {rule.name!r} (also copy[{first[rule.name]}])",
                )
            )
        else:
            first[rule.name] = index
    return found


def _references(config: Config) -> list[Finding]:
    names = {account.name for account in config.accounts}
    known = ", ".join(sorted(names))
    found: list[Finding] = []
    for index, rule in enumerate(config.copy_rules):
        if rule.source not in names:
            found.append(
                (("copy", index, "source"), f"unknown account {rule.source!r} (accounts: {known})")
            )
        for d_index, destination in enumerate(rule.destinations):
            if destination.account not in names:
                found.append(
                    (
                        ("copy", index, "destinations", d_index, "account"),
                        f"unknown account {destination.account!r} (accounts: {known})",
                    )
                )
    return found


def _edges(config: Config) -> list[Edge]:
    # Disabled rules count too: enabling one later must not create a cycle or a double copy.
    names = {account.name for account in config.accounts}
    return [
        (rule.source, destination.account, ("copy", index, "destinations", d_index, "account"))
        for index, rule in enumerate(config.copy_rules)
        for d_index, destination in enumerate(rule.destinations)
        if rule.source in names and destination.account in names
    ]


def _repeated_pairs(edges: list[Edge]) -> list[Finding]:
    first: dict[tuple[str, str], Loc] = {}
    found: list[Finding] = []
    for source, destination, loc in edges:
        pair = (source, destination)
        if pair in first:
            other = first[pair]
            if other[:2] != loc[:2]:  # a rule listing it twice is reported by the rule itself
                found.append(
                    (loc, f"{destination!r} already copies {source!r} through copy[{other[1]}]")
                )
        else:
            first[pair] = loc
    return found


def _cycles(edges: list[Edge]) -> list[Finding]:
    """Each back edge of a depth-first search closes a cycle; report it at that edge."""
    graph: dict[str, list[tuple[str, Loc]]] = {}
    for source, destination, loc in edges:
        graph.setdefault(source, []).append((destination, loc))
    found: list[Finding] = []
    done: set[str] = set()
    stack: list[str] = []

    def visit(node: str) -> None:
        stack.append(node)
        for successor, loc in graph.get(node, []):
            if successor in stack:
                cycle = [*stack[stack.index(successor) :], successor]
                found.append((loc, "copy cycle: " + " -> ".join(cycle)))
            elif successor not in done:
                visit(successor)
        stack.pop()
        done.add(node)

    for source, _, _ in edges:
        if source not in done:
            visit(source)
    return found


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls(config: Config) -> list[Finding]:
    if config.api.tls:
        return []
    found: list[Finding] = []
    for live in sorted({account.live for account in config.accounts}):
        host = config.api.host_for(live)
        if not is_loopback(host):
            key = "live_host" if live else "demo_host"
            found.append(
                (
                    ("api", "tls"),
                    f"tls: false is only accepted with loopback hosts (the simulator); "
                    f"{key} {host!r} is not one",
                )
            )
    return found


def warnings(config: Config) -> list[Finding]:
    found = _secret_warnings(config) + _rule_warnings(config) + _chain_warnings(config)
    used = {rule.source for rule in config.copy_rules} | {
        destination.account for rule in config.copy_rules for destination in rule.destinations
    }
    for index, account in enumerate(config.accounts):
        if account.enabled and account.name not in used:
            found.append(
                (("accounts", index, "name"), f"account {account.name!r} is in no copy rule")
            )
    if not config.copy_rules:
        found.append((("copy",), "no copy rules: nothing will be copied"))
    if not config.api.tls:
        found.append((("api", "tls"), "TLS is off: meant for the local simulator only"))
    return found


def _rule_warnings(config: Config) -> list[Finding]:
    found: list[Finding] = []
    by_name = {account.name: account for account in config.accounts}
    for index, rule in enumerate(config.copy_rules):
        source = by_name.get(rule.source)
        if rule.enabled and source is not None and not source.enabled:
            message = f"account {rule.source!r} is disabled: this rule copies nothing"
            found.append((("copy", index, "source"), message))
        for d_index, destination in enumerate(rule.destinations):
            loc: Loc = ("copy", index, "destinations", d_index)
            target = by_name.get(destination.account)
            if rule.enabled and target is not None and not target.enabled:
                message = f"account {destination.account!r} is disabled: nothing is copied to it"
                found.append(((*loc, "account"), message))
            if destination.mode is CopyMode.FROZEN:
                message = "frozen: nothing is copied to this account, not even closes"
                found.append(((*loc, "mode"), message))
    return found


def _chain_warnings(config: Config) -> list[Finding]:
    """A follower that is also a source passes on what it receives: legal, often a slip."""
    sources = {rule.source for rule in config.copy_rules}
    return [
        (
            ("copy", index, "destinations", d_index, "account"),
            f"{destination.account!r} is also a source: what it receives is copied on",
        )
        for index, rule in enumerate(config.copy_rules)
        for d_index, destination in enumerate(rule.destinations)
        if destination.account in sources
    ]


def _secret_warnings(config: Config) -> list[Finding]:
    found: list[Finding] = []
    sections: list[tuple[Loc, object, tuple[str, ...]]] = [
        (("api",), config.api, ("client_secret",))
    ]
    sections += [
        (("accounts", index), account, ("access_token", "refresh_token"))
        for index, account in enumerate(config.accounts)
    ]
    for loc, section, stems in sections:
        for stem in stems:
            if getattr(section, stem) is not None:
                found.append(
                    ((*loc, stem), f"inline secret: prefer {stem}_credential or {stem}_file")
                )
            path = getattr(section, f"{stem}_file")
            if path is not None and (loose := loose_permissions(path)) is not None:
                found.append(((*loc, f"{stem}_file"), loose))
    return found
