"""The shutdown's promise: every step bounded, a hung one named, the process still exits."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from structlog.testing import capture_logs

from cmamd.daemon.shutdown import ShutdownStep, run_steps

ROOT = Path(__file__).resolve().parents[2]


async def _hangs() -> None:
    await asyncio.Event().wait()


def _ignores_cancellation(release: asyncio.Event) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        while not release.is_set():  # the test lets it end, or its loop could not close
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue

    return step


async def test_a_hung_step_is_cut_off_by_name_and_the_next_steps_still_run() -> None:
    ran: list[str] = []
    release = asyncio.Event()

    async def records(name: str) -> None:
        ran.append(name)

    async def fails() -> None:
        raise RuntimeError("socket gone")

    steps = [
        ShutdownStep("first", lambda: records("first")),
        ShutdownStep("hangs", _hangs),
        ShutdownStep("ignores its cancellation", _ignores_cancellation(release)),
        ShutdownStep("fails", fails),
        ShutdownStep("last", lambda: records("last")),
    ]
    started = time.monotonic()
    with capture_logs() as logged:
        unfinished = await run_steps(
            steps, 0.3, time.monotonic, min_step_s=0.05, cancel_grace_s=0.1
        )
    elapsed = time.monotonic() - started
    release.set()
    assert unfinished == ["hangs", "ignores its cancellation", "fails"]
    assert ran == ["first", "last"], "a step after a hung one still runs"
    # the budget, then at most two floors per step past it (run, cancellation), + slack
    assert elapsed < 0.3 + 4 * 2 * 0.05 + 0.5
    overran = [e["step"] for e in logged if e["event"] == "shutdown step did not finish in time"]
    assert overran == ["hangs", "ignores its cancellation"]
    assert [e["step"] for e in logged if e["event"] == "shutdown step failed"] == ["fails"]


async def test_steps_within_the_budget_all_finish() -> None:
    async def quick() -> None:
        await asyncio.sleep(0)

    steps = [ShutdownStep(str(n), quick) for n in range(3)]
    assert await run_steps(steps, 1.0, time.monotonic, min_step_s=0.05) == []


def test_a_task_that_ignores_its_cancellation_does_not_keep_the_process_alive() -> None:
    script = textwrap.dedent(
        """
        import asyncio
        from cmamd.daemon.shutdown import run_to_exit

        async def stubborn() -> None:
            while True:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    continue

        async def main() -> int:
            asyncio.get_running_loop().create_task(stubborn(), name="stubborn")
            await asyncio.sleep(0)
            return 3

        raise SystemExit(run_to_exit(main(), grace_s=0.2))
        """
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=ROOT,
    )
    assert done.returncode == 3, done.stderr
    assert time.monotonic() - started < 10
    assert "tasks still running at exit" in done.stdout + done.stderr
    assert "stubborn" in done.stdout + done.stderr
