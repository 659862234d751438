"""Origins kept link by link (origins.LinkOrigins) say what a walk over the links says."""

from __future__ import annotations

import random

from cmamd.replication.links import Link, LinkStatus
from cmamd.replication.origins import LinkOrigins, origins_for

from .repl_kit import F, M, master, order, position


def _random_link(rnd: random.Random) -> Link:
    if rnd.random() < 0.5:
        key = f"o{rnd.randint(1, 6)}"
        fill = f"p{rnd.randint(1, 6)}" if rnd.random() < 0.7 else None
        return Link("main", M, F, key, LinkStatus.OPEN, fill_key=fill)
    key = f"p{rnd.randint(1, 6)}"
    origin = f"o{rnd.randint(1, 6)}" if rnd.random() < 0.7 else None
    return Link("main", M, F, key, LinkStatus.OPEN, origin_key=origin)


def test_kept_link_by_link_they_match_a_walk_over_the_links() -> None:
    rnd = random.Random(7)
    m = master(
        position(1, 100_000),
        position(2, 100_000),
        position(4, 100_000),
        order(5, 100_000, position_id=3),
    )
    known = {"p2": "o9"}
    for _ in range(200):
        live: dict[str, Link] = {}
        kept = LinkOrigins()
        for _ in range(rnd.randint(1, 12)):
            if live and rnd.random() < 0.3:  # a link leaves the live ones (settled)
                key = rnd.choice(sorted(live))
                kept.changed(live.pop(key), None)
                continue
            link = _random_link(rnd)
            # one fill position per order link, as the planner records them
            if link.fill_key is not None and any(
                other.fill_key == link.fill_key and other.key != link.key for other in live.values()
            ):
                continue
            kept.changed(live.get(link.key), link)
            live[link.key] = link
        assert kept.merged(m, known) == origins_for(m, live.values(), known)


def test_a_fill_counts_only_once_its_position_exists() -> None:
    link = Link("main", M, F, "o5", LinkStatus.OPEN, fill_key="p7")
    kept = LinkOrigins.of([link])
    assert kept.merged(master(), None) == {}
    assert kept.merged(master(position(7, 100_000)), None) == {"p7": "o5"}
