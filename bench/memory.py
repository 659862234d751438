"""Scenario 3: the daemon's memory and its state store on disk.

Runs in a process of its own (``python -m bench`` starts one per scenario), with the
simulator in yet another process (``bench.simproc``), so that this process's RSS is the
daemon's side only: the daemon plus the master's small client, which trades from here.

The master opens ``positions`` positions one after the other (each copied to every
follower), then closes them: 2 x positions x followers copies (1,000 with the defaults).
tracemalloc runs from just before the daemon starts; its own bookkeeping is reported
(``tracemalloc_overhead_mib``) because it inflates the RSS figures taken meanwhile.
"""

from __future__ import annotations

import gc
import sqlite3
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench import world
from bench.procs import SimProcess
from bench.stats import max_rss_bytes, mib, rss_bytes
from cmamd.accounts.model import Side
from cmamd.state.store import DB_NAME

REPO = Path(__file__).resolve().parents[1]
SYMBOL = "EURUSD"
LOTS = "0.10"


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _row_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("links", "journal", "meta", "tokens")
        }
    finally:
        conn.close()


def _traced() -> dict[str, float]:
    current, peak = tracemalloc.get_traced_memory()
    return {"traced_mib": mib(current), "traced_peak_mib": mib(peak)}


def _point(label: str) -> dict[str, Any]:
    gc.collect()
    return {
        "at": label,
        "rss_mib": mib(rss_bytes()),
        **_traced(),
        "tracemalloc_overhead_mib": mib(tracemalloc.get_tracemalloc_memory()),
    }


async def run(followers: int, positions: int) -> dict[str, Any]:
    gc.collect()
    imported_rss = rss_bytes()
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cmamd-bench-mem-") as tmp_name:
        tmp = Path(tmp_name)
        sim = await SimProcess.start(followers, tmp)
        described = sim.described
        state_dir = tmp / "state"
        config = world.write_config(
            tmp / "config.yaml",
            world.daemon_config(
                described, described["port"], state_dir, tmp / "client_secret", followers
            ),
        )
        daemon = world.BenchDaemon(config, keep_reports=False)
        master = None
        try:
            tracemalloc.start()
            points.append(_point("before start"))
            t0 = time.monotonic()
            await daemon.start()
            startup_s = time.monotonic() - t0
            points.append(_point("started"))
            traced_started = tracemalloc.get_traced_memory()[0]
            master = await world.connect_master(described["url"], described)
            t1 = time.monotonic()
            opened: list[int] = []
            for _ in range(positions):
                opened.append(await master.market(SYMBOL, Side.BUY, LOTS))
                await daemon.wait_reports(len(opened) * followers, timeout=60 + followers)
            points.append(_point(f"{len(opened) * followers} copies open"))
            for done, pid in enumerate(opened, 1):
                await master.close(pid, master.volume(SYMBOL, LOTS))
                await daemon.wait_reports((positions + done) * followers, timeout=60 + followers)
            copy_s = time.monotonic() - t1
            points.append(_point("all closed"))
            retained = tracemalloc.get_traced_memory()[0] - traced_started
            assert daemon.daemon is not None and daemon.daemon.replicator is not None
            # private, read for the report only: the executor's write-through link cache
            cached = daemon.daemon.replicator._links
            links_cached = sum(len(links) for links in cached.values())
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [
                    tracemalloc.Filter(False, tracemalloc.__file__),
                    tracemalloc.Filter(False, f"{REPO / 'bench'}/*"),
                ]
            )
            top = [
                {
                    "where": f"{_short(s.traceback[0].filename)}:{s.traceback[0].lineno}",
                    "kib": round(s.size / 1024, 1),
                    "blocks": s.count,
                }
                for s in snapshot.statistics("lineno")[:8]
            ]
            store_live = _dir_size(state_dir)
            peak_rss = max_rss_bytes()
            traced_peak = tracemalloc.get_traced_memory()[1]
            overhead = tracemalloc.get_tracemalloc_memory()
            tracemalloc.stop()
        finally:
            if master is not None:
                await master.close_connection()
            await daemon.stop()
            await sim.stop()
        store_closed = _dir_size(state_dir)
        files = {p.name: p.stat().st_size for p in sorted(state_dir.iterdir()) if p.is_file()}
        rows = _row_counts(state_dir / DB_NAME)
    copies = daemon.counts.get("done", 0)
    return {
        "followers": followers,
        "positions": positions,
        "copies": copies,
        "not_done": daemon.reported - copies,
        "startup_s": round(startup_s, 2),
        "copy_phase_s": round(copy_s, 2),
        "rss_after_imports_mib": mib(imported_rss),
        "peak_rss_mib": mib(peak_rss),
        "traced_peak_mib": mib(traced_peak),
        "tracemalloc_overhead_at_end_mib": mib(overhead),
        "points": points,
        "retained_after_start_bytes_per_copy": round(retained / copies) if copies else None,
        "links_cached_in_memory": links_cached,
        "top_allocations_at_end": top,
        "store_bytes_live": store_live,
        "store_bytes_after_stop": store_closed,
        "store_files_after_stop": files,
        "store_rows": rows,
        "store_bytes_per_copy": round(store_closed / copies) if copies else None,
    }


def _short(filename: str) -> str:
    for marker in ("/cmamd/", "/site-packages/", "/lib/python"):
        if marker in filename:
            return filename[filename.index(marker) + 1 :]
    return filename
