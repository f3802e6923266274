"""chatbench's measurements: what the members received (latency samples, loss), the
servers' CPU time and memory, and the machine the run was on."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.processes import Server, Stack

SETTLE_TIMEOUT = 5.0


@dataclass
class Measurement:
    """What one measurement's members received."""

    run: int
    members: int
    latencies: array = field(default_factory=lambda: array("q"))
    received: int = 0
    sent: int = 0
    # Closed loop: (sender, send time) -> [copies still to arrive, future set when none].
    waiting: dict[tuple[int, int], list[Any]] = field(default_factory=dict)
    # Closed loop: (sender, send time) -> when its last member received it.
    completed: dict[tuple[int, int], int] = field(default_factory=dict)

    def record(self, sender: int, t_ns: int, latency_ns: int) -> None:
        self.received += 1
        self.latencies.append(latency_ns)
        entry = self.waiting.get((sender, t_ns))
        if entry is not None:
            entry[0] -= 1
            if entry[0] <= 0:
                del self.waiting[(sender, t_ns)]
                self.completed[(sender, t_ns)] = t_ns + latency_ns
                if not entry[1].done():
                    entry[1].set_result(None)

    def expect(self, sender: int, t_ns: int) -> asyncio.Future[None]:
        """A future set once every member has received this message."""
        future = asyncio.get_running_loop().create_future()
        self.waiting[(sender, t_ns)] = [self.members, future]
        return future

    @property
    def expected(self) -> int:
        return self.sent * self.members


async def settled_rss(servers: Sequence[Server]) -> int | None:
    """The servers' total RSS once it stops moving (bounded)."""
    if any(s.ps is None for s in servers):
        return None
    previous = -1
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        await asyncio.sleep(0.5)
        total = sum(s.rss() or 0 for s in servers)
        if abs(total - previous) < 64 * 1024 or time.monotonic() > deadline:
            return total
        previous = total


class Usage:
    """CPU used by the servers, Redis and this process between start and stop."""

    def __init__(self, servers: Sequence[Server], stack: Stack) -> None:
        self.servers = servers
        self.redis = stack.redis_ps()
        self.wall = time.monotonic()
        self.client = time.process_time()
        self.server = self.server_cpu()
        self.redis_cpu = self.redis_cpu_seconds()

    def server_cpu(self) -> float | None:
        values = [s.cpu_seconds() for s in self.servers]
        return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]

    def redis_cpu_seconds(self) -> float | None:
        if self.redis is None:
            return None
        times = self.redis.cpu_times()
        return times.user + times.system

    def stop(self) -> Used:
        wall = time.monotonic() - self.wall
        server = self.server_cpu()
        redis_cpu = self.redis_cpu_seconds()
        rss = [s.rss() for s in self.servers]
        return Used(
            wall=wall,
            client=time.process_time() - self.client,
            server=None if server is None or self.server is None else server - self.server,
            redis=None
            if redis_cpu is None or self.redis_cpu is None
            else redis_cpu - self.redis_cpu,
            rss_mb=None if None in rss else sum(rss) / 2**20,  # type: ignore[arg-type]
        )


@dataclass
class Used:
    wall: float
    client: float
    server: float | None
    redis: float | None
    rss_mb: float | None

    def per_delivery(self, deliveries: int) -> dict[str, Any]:
        per = max(deliveries, 1)
        return {
            "server_cpu_us_per_delivery": None if self.server is None else self.server / per * 1e6,
            "redis_cpu_us_per_delivery": None if self.redis is None else self.redis / per * 1e6,
            "server_cpu_pct": None if self.server is None else 100 * self.server / self.wall,
            "client_cpu_pct": 100 * self.client / self.wall,
            "server_rss_mb": self.rss_mb,
        }


def latency_figures(samples: array) -> dict[str, float | None]:
    if not samples:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] / 1e6

    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": ordered[-1] / 1e6}


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
