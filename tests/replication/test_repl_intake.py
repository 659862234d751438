"""Account changes reach only their own routes; origins are held for masters only and
forgotten once their position is gone (intake.py, routes.py, link_cache.py): no sockets."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cmamd.accounts.session import AccountChange
from cmamd.replication.intake import Intake
from cmamd.replication.labels import label
from cmamd.replication.link_cache import LinkCache
from cmamd.replication.links import Link, LinkStatus
from cmamd.replication.queue import ReplicationQueue
from cmamd.replication.routes import CopyRoute
from cmamd.state.store import StateStore

from .repl_kit import F, M, account, follower, master, position, target

M2, F2 = 1003, 2004


def route(master_id: int, follower_id: int, master_name: str, follower_name: str) -> CopyRoute:
    t = dataclasses.replace(target(), master_account_id=master_id, follower_account_id=follower_id)
    return CopyRoute(f"main:{master_id}:{follower_id}", t, master_name, follower_name)


def session(state: Any, ready: bool = True) -> Any:
    return SimpleNamespace(state=state, ready=SimpleNamespace(is_set=lambda: ready))


def pending(queue: ReplicationQueue) -> set[tuple[str, int, str]]:
    return set(queue._pending)


def make(tmp_path: Path, store: StateStore, sessions: dict[str, Any]) -> tuple[Intake, Any]:
    queue = ReplicationQueue()
    intake = Intake(sessions, LinkCache(store), queue)
    intake.set_routes(
        [route(M, F, "m", "f"), route(M, F2, "m", "f2"), route(M2, F, "m2", "f")], "inst1"
    )
    return intake, queue


def test_a_master_change_queues_its_routes_only(tmp_path: Path) -> None:
    sessions = {"m": session(master()), "m2": session(account(M2, [])), "f": session(follower())}
    with StateStore.open(tmp_path / "state") as store:
        intake, queue = make(tmp_path, store, sessions)
        intake.on_change(AccountChange(M, frozenset({"p1"}), received_at=1.0))
        assert pending(queue) == {(f"main:{M}:{F}", F, "p1"), (f"main:{M}:{F2}", F2, "p1")}
        # every route got this daemon's instance (it names the client order ids)
        assert {r.target.instance for r in intake.routes} == {"inst1"}


def test_a_follower_change_wakes_the_master_items_its_copies_belong_to(tmp_path: Path) -> None:
    copy = position(55, 100_000, text=label(M, "p7"))
    sessions = {
        "m": session(master()),
        "m2": session(account(M2, [])),
        "f": session(follower(copy)),
    }
    with StateStore.open(tmp_path / "state") as store:
        intake, queue = make(tmp_path, store, sessions)
        intake.on_change(AccountChange(F, frozenset({"p55"}), received_at=1.0))
        # the copy is labelled for master M: route M2 -> F has nothing to do with it
        assert pending(queue) == {(f"main:{M}:{F}", F, "p7")}


def test_origins_are_kept_for_masters_only(tmp_path: Path) -> None:
    sessions = {"m": session(master()), "m2": session(account(M2, [])), "f": session(follower())}
    with StateStore.open(tmp_path / "state") as store:
        intake, _ = make(tmp_path, store, sessions)
        intake.on_change(AccountChange(F, frozenset(), 1.0, origins={"p60": "o59"}))
        intake.on_change(AccountChange(M, frozenset({"p10"}), 1.0, origins={"p10": "o9"}))
        links = LinkCache(store)  # what a restart loads
        links.load_route("x", "main", F, M)
        links.load_route("y", "main", M, F)
        assert links.origins(F) == {} and links.origins(M) == {"p10": "o9"}


def test_origins_of_positions_gone_from_the_master_are_forgotten(tmp_path: Path) -> None:
    live = {"m": session(master(position(10, 100_000), position(11, 100_000)))}
    with StateStore.open(tmp_path / "state") as store:
        links = LinkCache(store)
        links.load_route("r", "main", M, F)
        found = {"p10": "o9", "p11": "o8", "p12": "o7", "p13": "o6"}
        links.add_origins(M, found)
        links.persist_origins(M, found)
        # p12 is gone from the master but its copy is still being closed: kept
        links.save("r", Link("main", M, F, "p12", LinkStatus.OPEN, 1, 1))
        gone = links.prune_origins(M, live["m"].state, ["r"])
        assert gone == ["p13"]
        assert links.origins(M) == {"p10": "o9", "p11": "o8", "p12": "o7"}
        reloaded = LinkCache(store)
        reloaded.load_route("r", "main", M, F)
        assert reloaded.origins(M) == {"p10": "o9", "p11": "o8", "p12": "o7"}


def test_a_resync_of_a_master_prunes_its_origins(tmp_path: Path) -> None:
    sessions = {
        "m": session(master(position(10, 100_000))),
        "m2": session(account(M2, [])),
        "f": session(follower()),
        "f2": session(dataclasses.replace(follower(), account_id=F2)),
    }
    with StateStore.open(tmp_path / "state") as store:
        intake, queue = make(tmp_path, store, sessions)
        intake.on_change(AccountChange(M, frozenset(), 1.0, origins={"p10": "o9", "p3": "o2"}))
        intake.on_change(AccountChange(M, frozenset(), 2.0, resync=True))
        assert intake._links.origins(M) == {"p10": "o9"}
        assert (f"main:{M}:{F}", F, "p10") in pending(queue)


async def test_a_wide_fan_out_queues_the_first_routes_at_once_and_the_rest_next_turn(
    tmp_path: Path,
) -> None:
    sessions = {"m": session(master())}
    routes = [route(M, 5000 + i, "m", f"f{i}") for i in range(10)]
    with StateStore.open(tmp_path / "state") as store:
        queue = ReplicationQueue()
        intake = Intake(sessions, LinkCache(store), queue, eager=3)
        intake.set_routes(routes, "inst1")
        intake.on_change(AccountChange(M, frozenset({"p1"}), received_at=1.0))
        # the first three followers' workers run before the other seven are queued
        assert {work[1] for work in pending(queue)} == {5000, 5001, 5002}
        first, _ = await queue.take()
        assert first[1] == 5000
        await asyncio.sleep(0)
        assert {work[1] for work in pending(queue)} == set(range(5001, 5010))
