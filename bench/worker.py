"""``python -m bench.worker SCENARIO PARAMS_JSON RESULT_PATH LOG_PATH``: one scenario in a
fresh interpreter (clean RSS, logging and event loop), its result written as JSON.

Everything the daemon, the simulator and the clients log goes to LOG_PATH (JSON lines at
info, as in production), not to the terminal.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from cmamd.logs import configure_logging


def _run(scenario: str, params: dict[str, Any]) -> Any:
    if scenario == "latency":
        from bench import latency

        async def cases() -> list[dict[str, Any]]:
            return [await latency.run_case(**case) for case in params["cases"]]

        return asyncio.run(cases())
    if scenario == "burst":
        from bench import burst

        return asyncio.run(burst.run(**params))
    if scenario == "memory":
        from bench import memory

        return asyncio.run(memory.run(**params))
    if scenario == "wire":
        from bench import wire

        return asyncio.run(wire.run(**params))
    if scenario == "fanout":
        from bench import fanout

        return asyncio.run(fanout.run(**params))
    if scenario == "tradeburst":
        from bench import tradeburst

        return asyncio.run(tradeburst.run(**params))
    if scenario == "startup":
        from bench import startup

        return asyncio.run(startup.run(**params))
    if scenario == "planner":
        from bench import planner_cpu

        return planner_cpu.run(**params)
    if scenario == "logline":
        from bench import log_cost

        return log_cost.run(**params)
    if scenario == "intake":
        from bench import intake

        return intake.run(**params)
    raise SystemExit(f"unknown scenario {scenario!r}")


def _log_levels(log: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            level = json.loads(line).get("level", "?")
        except ValueError:
            level = "unparsed"
        counts[level] = counts.get(level, 0) + 1
    return counts


def main() -> None:
    scenario, params_json, result_path, log_path = sys.argv[1:5]
    log = Path(log_path)
    started = time.monotonic()
    with log.open("w") as stream:
        real_stdout = sys.stdout
        sys.stdout = stream  # the daemon configures its logging onto sys.stdout
        try:
            configure_logging("info", "json", stream=stream)
            result = _run(scenario, json.loads(params_json))
        finally:
            sys.stdout = real_stdout
    payload = {
        "result": result,
        "elapsed_s": round(time.monotonic() - started, 2),
        "log_lines": _log_levels(log),
    }
    Path(result_path).write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
