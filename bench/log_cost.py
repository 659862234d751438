"""Scenario: the CPU cost of one log line through the daemon's configured pipeline.

Rows, each in microseconds per line (``time.process_time`` over at least ``seconds``),
all writing to the same temporary file and flushing every line, as the daemon does on
journald's pipe:
  floor      ``json.dumps`` of the same field dict plus write and flush, nothing else
  info json  an info line with the copy report's fields through ``configure_logging``'s
             JSON pipeline (as ``cmamd run`` configures it: loggers cached)
  debug off  a debug line while the level is info: the filter before any work
  library    a stdlib ``logging`` record from a library through the same pipeline
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cmamd import logs

FIELDS: dict[str, Any] = {
    "account": "follower-1",
    "master": "master",
    "follower": "follower-1",
    "rule": "mirror",
    "master_item": "p123456",
    "symbol": "EURUSD",
    "side": "buy",
    "volume": 1_000_000,
    "lots": "0.10",
    "position_id": 987_654,
    "client_order_id": "cmamd-1001-123456-o",
    "latency_ms": 1.234,
}


def _per_line_us(write_line: Callable[[], None], seconds: float) -> float:
    lines = 0
    started = time.process_time()
    deadline = started + seconds
    while True:
        for _ in range(200):
            write_line()
        lines += 200
        now = time.process_time()
        if now >= deadline:
            return round((now - started) / lines * 1e6, 2)


def run(seconds: float = 1.0) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, Path(tmp, "lines.log").open("w") as out:

        def floor() -> None:
            out.write(json.dumps({"event": "copy sent", **FIELDS}) + "\n")
            out.flush()

        logs.enable_logger_cache()  # as `cmamd run` does
        logs.register_secret("bench-client-secret-0123456789")  # the daemon always has some
        logs.configure_logging("info", "json", stream=out)
        log = logs.get_logger("bench.log_cost")
        library = logging.getLogger("bench.library")
        result = {
            "floor_us": _per_line_us(floor, seconds),
            "info_json_us": _per_line_us(lambda: log.info("copy sent", **FIELDS), seconds),
            "debug_filtered_us": _per_line_us(lambda: log.debug("copy sent", **FIELDS), seconds),
            "library_us": _per_line_us(lambda: library.info("copy sent %s", "x"), seconds),
        }
    result["info_over_floor"] = round(result["info_json_us"] / result["floor_us"], 2)
    return result


ROWS = (
    ("floor: json.dumps + write + flush", "floor_us"),
    ("info line, JSON", "info_json_us"),
    ("debug line at level info", "debug_filtered_us"),
    ("library record (stdlib), JSON", "library_us"),
)


def table_parts(result: dict[str, float]) -> tuple[str, list[str], list[list[Any]]]:
    floor = result["floor_us"]
    rows: list[list[Any]] = [
        [label, result[key], round(result[key] / floor, 2)] for label, key in ROWS
    ]
    title = "Log line CPU, copy report's 12 fields, one line at a time to a file (same run)"
    return title, ["line", "us/line", "x floor"], rows


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
