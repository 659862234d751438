"""``python -m bench [--quick] [--out PATH] [--only NAMES]``: cmamd's benchmarks.

Each scenario runs in a fresh interpreter (``bench.worker``), one after the other, against
the simulator on loopback. Prints tables, writes a JSON file (machine, parameters, results)
and the scenarios' logs next to it. Exits 1 when a scenario failed or a sanity check did
(a copy not done, a request the simulator refused for its rate limit, a mismatched fill).
See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import log_cost
from bench.latency import THROTTLE_SPAN_S, isolated_gap

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SCENARIOS = (
    "wire",
    "fanout",
    "tradeburst",
    "startup",
    "latency",
    "burst",
    "memory",
    "planner",
    "logline",
    "intake",
)
MAX_RPS = 50


def _iso(followers: int, round_trips: int) -> dict[str, Any]:
    return {"name": "isolated", "round_trips": round_trips, "gap_s": isolated_gap(followers)}


def _sustained(round_trips: int) -> dict[str, Any]:
    return {"name": "sustained", "round_trips": round_trips, "gap_s": 0.0}


def parameters(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "wire": {"trades": 20, "gap_s": 0.05, "repeats": 2, "idle_s": 1.0},
            "fanout": {
                "cases": [
                    {"followers": 10, "connections": 1, "trades": 1},
                    {"followers": 100, "connections": 1, "trades": 1},
                ]
            },
            "tradeburst": {"followers": 10, "positions": 10},
            "startup": {
                "cases": [
                    {"accounts": 50, "connections": 1, "idle_s": 3.0},
                    {"accounts": 50, "connections": 4, "idle_s": 3.0},
                ]
            },
            "latency": {
                "cases": [
                    {"followers": 1, "phases": [_iso(1, 10)]},
                    {"followers": 5, "phases": [_iso(5, 3), _sustained(5)]},
                ]
            },
            "burst": {"requests": 100},
            "memory": {"followers": 5, "positions": 5},
            "planner": {"copies": 100, "seconds": 0.2, "histories": [0, 1_000]},
            "logline": {"seconds": 0.3},
            "intake": {"round_trips": 500, "repeats": 5},
        }
    return {
        "wire": {"trades": 100, "gap_s": 0.05, "repeats": 5, "idle_s": 5.0},
        "fanout": {
            "cases": [
                {"followers": n, "connections": c, "trades": 3}
                for n in (10, 100, 500, 1000)
                for c in (1, 4)
            ]
        },
        "tradeburst": {"followers": 10, "positions": 100},
        "startup": {
            "cases": [
                {"accounts": 1000, "connections": 1, "idle_s": 60.0},
                {"accounts": 1000, "connections": 4, "idle_s": 60.0},
            ]
        },
        "latency": {
            "cases": [
                {"followers": 1, "phases": [_iso(1, 50)]},
                {"followers": 10, "phases": [_iso(10, 20), _sustained(10)]},
                {"followers": 50, "phases": [_iso(50, 5), _sustained(10)]},
                {"followers": 50, "connections": 5, "phases": [_sustained(10)]},
            ]
        },
        "burst": {"requests": 500},
        "memory": {"followers": 50, "positions": 10},
        "planner": {"copies": 500, "seconds": 1.0, "histories": [0, 10_000, 100_000]},
        "logline": {"seconds": 1.0},
        "intake": {"round_trips": 2_000, "repeats": 9},
    }


# --- machine ---------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _mem_total_mib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def machine() -> dict[str, Any]:
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "mem_total_mib": _mem_total_mib(),
        "platform": platform.platform(),
        "temp_dir": tempfile.gettempdir(),  # where the state store (fsync per write) lives
        "git_commit": _git("rev-parse", "HEAD"),
        "git_modified_files": None if status is None else len(status.splitlines()),
    }


# --- running ---------------------------------------------------------------------------


def run_scenario(
    name: str, params: dict[str, Any], log_dir: Path, timeout: float
) -> dict[str, Any]:
    log = log_dir / f"{name}.log"
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_path = Path(handle.name)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    started = time.monotonic()
    command = [
        sys.executable,
        "-m",
        "bench.worker",
        name,
        json.dumps(params),
        str(result_path),
        str(log),
    ]
    # its own process group, so that a timeout also ends the simulator process it may run
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            tail = (stderr or stdout).strip().splitlines()[-15:]
            return {"error": f"exit {proc.returncode}", "stderr_tail": tail}
        payload: dict[str, Any] = json.loads(result_path.read_text())
        payload["wall_s"] = round(time.monotonic() - started, 2)
        payload["log"] = str(log)
        return payload
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"error": f"timed out after {timeout} s"}
    finally:
        result_path.unlink(missing_ok=True)


# --- checks ----------------------------------------------------------------------------


def problems_of(results: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for name, payload in results.items():
        if "error" in payload:
            last = payload.get("stderr_tail", [""])[-1:] or [""]
            found.append(f"{name}: {payload['error']} {last[0]}".rstrip())
    latency = results.get("latency", {}).get("result") or []
    for case in latency:
        tag = f"latency N={case['followers']}x{case['connections']}conn"
        if case["rate_limit_rejections"]:
            found.append(f"{tag}: {case['rate_limit_rejections']} REQUEST_FREQUENCY_EXCEEDED")
        for phase_name, phase in case["phases"].items():
            if phase["not_done"]:
                found.append(f"{tag} {phase_name}: {phase['not_done']} copies not done")
            found += [f"{tag} {phase_name}: {p}" for p in phase["problems"]]
    wire = results.get("wire", {}).get("result")
    if wire:
        for row in wire["repeats"]:
            if row["daemon_open_count"] < wire["trades_per_repeat"]:
                found.append(f"wire repeat {row['repeat']}: daemon copied fewer opens than traded")
    for case in results.get("fanout", {}).get("result") or []:
        tag = f"fanout N={case['followers']} C={case['connections']}"
        if case["complete"] < case["expected"]:
            found.append(f"{tag}: {case['complete']}/{case['expected']} trades fully copied")
        if case["rate_limit_rejections"]:
            found.append(f"{tag}: {case['rate_limit_rejections']} REQUEST_FREQUENCY_EXCEEDED")
    tburst = results.get("tradeburst", {}).get("result")
    if tburst:
        if tburst["followers_not_flat"]:
            found.append(f"tradeburst: {tburst['followers_not_flat']} followers not flat")
        if tburst["closes_before_their_open"]:
            found.append(f"tradeburst: {tburst['closes_before_their_open']} closes out of order")
    for case in results.get("startup", {}).get("result") or []:
        if "ready" not in case["status"] or "not ready" in case["status"]:
            found.append(f"startup {case['accounts']}x{case['connections']}: {case['status']!r}")
    burst = results.get("burst", {}).get("result")
    if burst and burst["throttled"]["rate_limit_rejections"]:
        found.append("burst: the throttled connection was refused by the rate limiter")
    memory = results.get("memory", {}).get("result")
    if memory and memory["not_done"]:
        found.append(f"memory: {memory['not_done']} copies not done")
    return found


# --- tables ----------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def table(title: str, headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        pairs = enumerate(zip(values, widths, strict=True))
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in pairs)

    out = [title, line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _pcts(summary: dict[str, Any]) -> str:
    if not summary.get("count"):
        return "-"
    return "/".join(_fmt(summary[k]) for k in ("p50", "p95", "p99", "max"))


def _median_range(median: Any, bounds: list[float] | None) -> Any:
    if median is None or not bounds:
        return median
    return f"{median} [{bounds[0]}-{bounds[1]}]"


def _spread(data: dict[str, Any]) -> str:
    if data.get("median") is None:
        return "-"
    return f"{_fmt(data['median'])} [{_fmt(data['min'])}-{_fmt(data['max'])}]"


def render(results: dict[str, Any]) -> str:
    parts: list[str] = []
    wire = results.get("wire", {}).get("result")
    if wire:
        med = wire["median"]
        rows: list[list[Any]] = [
            [
                label,
                _spread(med[f"daemon_{kind}_p50_ms"]),
                _spread(med[f"bare_{kind}_p50_ms"]),
                _spread(med["ratio_p50"]) if kind == "open" else "-",
            ]
            for label, kind in (("open", "open"), ("close", "close"))
        ]
        parts.append(
            table(
                f"Copy latency at the simulator's socket (master fill out -> follower order in), "
                f"p50 ms, median [min-max] over {len(wire['repeats'])} repeats of "
                f"{wire['trades_per_repeat']} trades; ratio taken within each repeat",
                ["copy", "daemon", "bare copier", "ratio"],
                rows,
            )
        )
        parts[-1] += (
            f"\nDaemon CPU per copy: {_spread(med['cpu_ms_per_copy'])} ms (idle rate "
            f"subtracted); idle CPU {_spread(med['idle_cpu_pct'])} %"
            + (
                f"; event loop thread {_spread(med['loop_cpu_ms_per_copy'])} ms"
                if "loop_cpu_ms_per_copy" in med
                else ""
            )
        )
    fanout = results.get("fanout", {}).get("result")
    if fanout:
        rows = [
            [
                f"N={c['followers']} C={c['connections']}",
                f"{c['complete']}/{c['expected']}",
                c["first_ms_median"],
                c.get("burst_ms_median"),
                c["last_s_median"],
                c["exact_bound_s"],
                _median_range(c["last_vs_bound_median"], c.get("last_vs_bound_range")),
                c["rate_limit_rejections"],
            ]
            for c in fanout
        ]
        parts.append(
            table(
                "Fan-out of one master trade (opens and closes, medians), times at the "
                "simulator's socket from the master's fill; exact bound: floor((n-1)/50) s, "
                "n = follower orders on the busiest connection; 50th ms: the last copy of the "
                "first window there (then whole spans of 1 s + margin)",
                [
                    "case",
                    "complete",
                    "first ms",
                    "50th ms",
                    "last s",
                    "bound s",
                    "last/bound [min-max]",
                    "FREQ_EXC",
                ],
                rows,
            )
        )
    tburst = results.get("tradeburst", {}).get("result")
    if tburst:
        parts.append(
            table(
                f"Trade burst: {tburst['master_trades']} master trades (opens, then their "
                f"closes) in 1 s to {tburst['followers']} followers on one connection; bound "
                "floor((orders-1)/50) s",
                [
                    "orders",
                    "opens",
                    "closes",
                    "skipped whole",
                    "not flat",
                    "close<open",
                    "total s",
                    "bound s",
                    "x bound",
                ],
                [
                    [
                        tburst["follower_orders"],
                        tburst["opens"],
                        tburst["closes"],
                        tburst["positions_skipped_whole"],
                        tburst["followers_not_flat"],
                        tburst["closes_before_their_open"],
                        tburst["total_s"],
                        tburst["exact_bound_s"],
                        tburst["vs_bound"],
                    ]
                ],
            )
        )
    startup = results.get("startup", {}).get("result")
    if startup:
        rows = [
            [
                f"{c['accounts']} accounts, C={c['connections']}",
                c["startup_s"],
                c["requests"],
                c["requests_per_account"],
                c["bound_s"],
                c["vs_bound"],
                c["vs_client_span_bound"],
                c["rss_mib"],
                c["idle_cpu_pct"],
            ]
            for c in startup
        ]
        parts.append(
            table(
                "Start-up: `cmamd run` -> READY=1 (every account ready); bound = requests / "
                "(C x 50/s); idle CPU with every account ready",
                [
                    "case",
                    "READY s",
                    "requests",
                    "req/account",
                    "bound s",
                    "x bound",
                    f"x bound at {THROTTLE_SPAN_S:g} s",
                    "RSS MiB",
                    "idle CPU %",
                ],
                rows,
            )
        )
    latency = results.get("latency", {}).get("result")
    if latency:
        rows = []
        for case in latency:
            tag = f"N={case['followers']} {case['connections']}conn"
            for phase_name, phase in case["phases"].items():
                for kind in ("open", "close"):
                    data = phase[kind]
                    rows.append(
                        [
                            f"{tag} {phase_name}",
                            kind,
                            data["daemon_ms"].get("count", 0),
                            _pcts(data["daemon_ms"]),
                            _pcts(data["e2e_ms"]),
                            data["fanout_ms"].get("max"),
                        ]
                    )
        parts.append(
            table(
                "Copy latency, ms (p50/p95/p99/max) - daemon: master event received -> "
                "follower fill confirmed; e2e: master request sent -> follower filled on broker",
                ["case", "kind", "copies", "daemon ms", "e2e ms", "fan-out max ms"],
                rows,
            )
        )
        rows = []
        for case in latency:
            budget = case["connections"] * MAX_RPS / THROTTLE_SPAN_S
            for phase_name, phase in case["phases"].items():
                rows.append(
                    [
                        f"N={case['followers']} {case['connections']}conn {phase_name}",
                        phase["copies"],
                        phase["wall_s"],
                        phase["copies_per_s"] if phase_name != "isolated" else None,
                        round(budget, 1),
                        phase["max_requests_in_any_1s"],
                        phase["throttled_waits"],
                        phase["rate_limit_rejections"],
                        case["startup_s"],
                    ]
                )
        parts.append(
            table(
                "Copy throughput - trades back to back in 'sustained' (gaps excluded from wall "
                f"in 'isolated'); budget = connections x 50 req / {THROTTLE_SPAN_S:g} s",
                [
                    "case",
                    "copies",
                    "wall s",
                    "copies/s",
                    "budget/s",
                    "max req/1s",
                    "throttled",
                    "rejected",
                    "startup s",
                ],
                rows,
            )
        )
    burst = results.get("burst", {}).get("result")
    if burst:
        rows = []
        for variant in ("throttled", "unthrottled"):
            data = burst[variant]
            waits = data.get("request_ms", {})
            rows.append(
                [
                    variant,
                    data["requests"],
                    data["ok"],
                    data["wall_s"],
                    data["req_per_s"],
                    data["max_in_any_1s"],
                    data["rate_limit_rejections"],
                    _pcts(waits) if waits else "-",
                ]
            )
        parts.append(
            table(
                f"Rate limit under burst - one connection, simulator max_rps {burst['max_rps']}",
                [
                    "variant",
                    "requests",
                    "ok",
                    "wall s",
                    "req/s",
                    "max in 1s (sim)",
                    "FREQ_EXCEEDED",
                    "request ms p50/p95/p99/max",
                ],
                rows,
            )
        )
    memory = results.get("memory", {}).get("result")
    if memory:
        rows = [
            [
                p["at"],
                p["rss_mib"],
                p["traced_mib"],
                p["traced_peak_mib"],
                p["tracemalloc_overhead_mib"],
            ]
            for p in memory["points"]
        ]
        peak = memory["peak_rss_mib"]
        rows.append(["peak (ru_maxrss)", peak, "-", memory["traced_peak_mib"], "-"])
        parts.append(
            table(
                f"Memory - daemon process, {memory['followers']} followers, "
                f"{memory['copies']} copies "
                f"(RSS after imports {memory['rss_after_imports_mib']} MiB)",
                ["point", "RSS MiB", "traced MiB", "traced peak MiB", "tracemalloc own MiB"],
                rows,
            )
        )
        parts[-1] += (
            f"\nPython heap retained after start: {memory['retained_after_start_bytes_per_copy']}"
            f" B per copy; links cached in memory: {memory['links_cached_in_memory']}"
        )
        rows_text = ", ".join(f"{k} {v}" for k, v in memory["store_rows"].items())
        parts.append(
            f"State store: {memory['store_bytes_after_stop'] / 1024:.0f} KiB after stop "
            f"({memory['store_bytes_per_copy']} B/copy), "
            f"{memory['store_bytes_live'] / 1024:.0f} KiB live with WAL; rows: {rows_text}"
        )
    planner = results.get("planner", {}).get("result")
    if planner:
        rows = [
            [
                case,
                data["copies"],
                data["intents_per_call"],
                data["ms_per_call"],
                data["plans_per_s"],
                data["keys_per_s"],
                data["us_per_key"],
            ]
            for case, data in planner.items()
            if case not in ("live", "live_open")
        ]
        parts.append(
            table(
                "Planner CPU - plan_all over one follower",
                ["case", "copies", "intents", "ms/call", "plans/s", "keys/s", "us/key"],
                rows,
            )
        )
        rows = [
            [f"history {d['history_links']}", d["us_per_copy"], d["copies_per_s"]]
            for d in planner.get("live", [])
        ]
        parts.append(
            table(
                "Planner CPU per live copy - origins kept link by link + plan_key",
                ["closed links cached", "us/copy", "copies/s"],
                rows,
            )
        )
    logline = results.get("logline", {}).get("result")
    if logline:
        parts.append(table(*log_cost.table_parts(logline)))
        rows = [[d["open_copies"], d["us_per_copy"]] for d in planner.get("live_open", [])]
        parts.append(table("Planner CPU per live copy, K copies open", ["K", "us/copy"], rows))
    timing = [
        [name, payload.get("wall_s"), f"error: {payload['error']}" if "error" in payload else "ok"]
        for name, payload in results.items()
    ]
    parts.append(table("Scenarios", ["scenario", "wall s", "status"], timing))
    intake_result = results.get("intake", {}).get("result")
    if intake_result:
        from bench import intake

        parts.append(intake.render(intake_result))
    return "\n\n".join(parts)


# --- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke variant (< 2 min)")
    parser.add_argument(
        "--out", type=Path, help="JSON output (default bench/results/<timestamp>.json)"
    )
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)}",
    )
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    out: Path = args.out or RESULTS / f"{stamp}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    log_dir = out.with_name(out.stem + "-logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    params = parameters(args.quick)
    timeout = 90.0 if args.quick else 600.0
    started = time.monotonic()
    results: dict[str, Any] = {}
    for name in chosen:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = run_scenario(name, params[name], log_dir, timeout)
    problems = problems_of(results)
    report: dict[str, Any] = {
        "started": stamp,
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "parameters": {name: params[name] for name in chosen},
        "results": results,
        "problems": problems,
        "total_s": round(time.monotonic() - started, 1),
    }
    out.write_text(json.dumps(report, indent=1) + "\n")
    m = report["machine"]
    print(
        f"cmamd bench ({report['mode']}): Python {m['python']}, {m['cpu_count']} CPUs "
        f"({m['cpu_model']}), {m['platform']}\n"
    )
    print(render(results))
    print(f"\ntotal {report['total_s']} s; results: {out}; logs: {log_dir}")
    if problems:
        print("\nPROBLEMS:\n  " + "\n  ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
