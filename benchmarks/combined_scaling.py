"""Does the combined workload's wall time grow linearly with its users? The workload of
benchmarks/test_combined.py with ``--users`` users and with ``--factor`` times as many
(the same arrival rate, so the run lasts that much longer in virtual time, with as many
users at once), for the naive and the optimized agent, each run timed on the wall clock.

    python benchmarks/combined_scaling.py [--users 100] [--factor 10]

Prints each run's wall time, CPU time and chats, and the ratio of the larger run's wall
time to the smaller one's (the goal: at most ``--factor``); the exit status is 1 if a
ratio is above. The CPU time (of this process) shows what other processes on a busy
machine added to the wall time: without them the two are about equal.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from perfkit import AnthropicSimulator, VirtualClock

KINDS = ("naive", "optimized")


def combined_benchmark() -> ModuleType:
    """benchmarks/test_combined.py, whose workload and agents this script runs."""
    path = Path(__file__).resolve().parent / "test_combined.py"
    spec = importlib.util.spec_from_file_location("test_combined", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of the combined workload: its wall and CPU seconds, and its chats."""

    wall: float
    cpu: float
    chats: int


def run(combined: ModuleType, kind: str, users: int) -> Run:
    """The combined workload with ``users`` users, for the ``kind`` agent."""
    workload = dataclasses.replace(combined.WORKLOAD, users=users)
    clock = VirtualClock()
    gc.collect()
    gc.freeze()  # as perf() measures a round: earlier runs' heap out of the collector's way
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        with AnthropicSimulator(
            clock=clock, handshake=workload.handshake, seed=workload.seed
        ) as sim:
            combined.simulate(sim, workload)
            agent = combined.make_agent(kind, clock, workload)
            perceived, _ = clock.run(combined.run_workload(agent, clock, workload))
        return Run(time.perf_counter() - wall, time.process_time() - cpu, len(perceived))
    finally:
        gc.unfreeze()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100, help="the smaller run's users")
    parser.add_argument("--factor", type=int, default=10, help="how many times more users")
    arguments = parser.parse_args(argv)
    if arguments.users < 1 or arguments.factor < 2:
        parser.error(
            f"--users must be >= 1, --factor >= 2; got {arguments.users}, {arguments.factor}"
        )
    combined = combined_benchmark()
    small, large = arguments.users, arguments.users * arguments.factor
    runs = {
        (kind, users): measure(combined, kind, users) for kind in KINDS for users in (small, large)
    }
    above = []
    for kind in (*KINDS, "both"):
        kinds = KINDS if kind == "both" else (kind,)
        wall = sum(runs[k, large].wall for k in kinds) / sum(runs[k, small].wall for k in kinds)
        cpu = sum(runs[k, large].cpu for k in kinds) / sum(runs[k, small].cpu for k in kinds)
        print(
            f"{kind:<9} {arguments.factor}x the users: {wall:5.2f}x the wall time "
            f"({cpu:5.2f}x the CPU time)"
        )
        if wall > arguments.factor:
            above.append(f"{kind} {wall:.2f}x")
    if above:
        print(f"above the goal of {arguments.factor}x: {', '.join(above)}")
        return 1
    print(f"every ratio within {arguments.factor}x")
    return 0


def measure(combined: ModuleType, kind: str, users: int) -> Run:
    """:func:`run`, its figures printed."""
    done = run(combined, kind, users)
    print(
        f"{kind:<9} {users:>6} users  {done.chats:>6} chats  {done.wall:8.2f} s wall  "
        f"{done.cpu:8.2f} s CPU  {done.wall / done.chats * 1e3:7.2f} ms per chat",
        flush=True,
    )
    return done


if __name__ == "__main__":
    sys.exit(main())
