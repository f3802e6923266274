"""chatbench: how many chat messages the project moves, how fast, on how much memory.

C clients join one room over real WebSockets (the ``websockets`` library) and
post chat messages; every broadcast counts as C deliveries, one per member. Each
figure is measured on the project's server and, in the same run and on the same
load, on the bare ``websockets`` broadcast server of ``bench/bare_server.py``, and
printed also as a ratio to it ("x bare"), so results compare across machines and
across noisy runs.

    uv run python -m bench.chatbench                       # every mode, C = 10, 100, 500
    uv run python -m bench.chatbench --layer redis --clients 100 --modes saturate
    uv run python -m bench.chatbench --target tutorial     # the Channels tutorial's consumer
    uv run python -m bench.chatbench --url ws://127.0.0.1:8000 --origin http://127.0.0.1:8000

Modes:
    saturate  closed loop: ``--senders`` members each post, wait for their own
              message to come back, and post again, for ``--duration`` seconds
    open      open loop: messages are sent on a fixed schedule at ``--rate``
              deliveries a second, whatever the server does; latency counts from
              the scheduled send time, so a slow server cannot hide its queue
    storm     ``--storm`` clients connect at the same moment, one message reaches
              them all, then all leave; checks that the layer's groups are empty after
    idle      ``--idle`` connections held open; server memory per connection

Reported: deliveries/s, latency p50/p99/max, loss (deliveries expected and never
received), failed connects, server CPU per delivery (and Redis's, when chatbench
started it), server RSS, and the load generator's own CPU (near 100% means the
client, not the server, set the pace). The servers chatbench starts run the web
command of the project's Procfile on 127.0.0.1 with ``bench.settings``. Every wait
is bounded; servers it starts are stopped on the way out. Loopback only.
Output: a table, JSON lines (``--jsonl``), and a latency plot (``--plot``, needs
matplotlib). See docs/benchmark.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import hops, report
from bench.load import MODES, Bench
from bench.measure import machine
from bench.processes import (
    Server,
    Stack,
    procfile_command,
    raise_file_limit,
    start_stack,
    wait_ready,
)
from bench.report import add_ratios, plot, table

# Idle first, on servers that have not yet held many sockets: memory a server freed
# after other modes would otherwise be reused and hide the cost of new connections.
RUN_ORDER = ("idle", "saturate", "open", "storm")


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def float_list(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chatbench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    what = parser.add_argument_group("what to measure")
    what.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated: " + ", ".join(MODES)
    )
    what.add_argument("--clients", type=int_list, default=[10, 100, 500], help="room sizes C")
    what.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    what.add_argument(
        "--senders",
        type=int_list,
        default=[10, 100],
        help="closed loop: members posting at once, each waiting for its message to come "
        "back (10: a room's usual load, where each message's own path sets the pace; "
        "100: all of a room of 100, where batching does)",
    )
    what.add_argument("--rate", type=float_list, default=[1000.0], help="open loop: deliveries/s")
    what.add_argument("--storm", type=int, default=1000, help="storm: clients at once")
    what.add_argument("--idle", type=int, default=1000, help="idle: connections held")
    what.add_argument("--size", type=int, default=64, help="characters per message")
    what.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    where = parser.add_argument_group("servers")
    where.add_argument(
        "--target",
        dest="targets",
        default="project",
        type=lambda t: t.split(","),
        help="project (config.asgi), tutorial (bench/tutorial.py), or both",
    )
    where.add_argument(
        "--layer",
        choices=("memory", "redis", "redis_pubsub"),
        help="channel layer of the servers chatbench starts (default: redis, as in "
        "production, when redis-server is installed or --redis-url given; else memory)",
    )
    where.add_argument("--processes", type=int_list, default=[1], help="server processes, e.g. 1,2")
    where.add_argument("--command", help="server command (default: the Procfile's web line)")
    where.add_argument("--redis-url", help="Redis to use (default: a private redis-server)")
    where.add_argument("--database-url", help="database (default: a fresh SQLite file)")
    where.add_argument(
        "--worker",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the moderation worker beside the servers, as in production (Redis layers)",
    )
    where.add_argument(
        "--rate-limit", type=float, default=1e6, help="WEBSOCKET_RATE_LIMIT_PER_SECOND and BURST"
    )
    where.add_argument("--url", help="measure this running server (ws://host:port) instead")
    where.add_argument("--origin", help="Origin header for --url (default: its http origin)")
    where.add_argument("--pid", type=int, help="with --url: the server's pid, for CPU and RSS")
    where.add_argument("--no-bare", action="store_true", help="skip the bare reference")
    out = parser.add_argument_group("output")
    out.add_argument("--jsonl", help="write JSON lines here ('-': standard output)")
    out.add_argument("--plot", help="PNG of open-loop latency against offered load")
    out.add_argument("--logs", help="keep server logs in this folder")
    out.add_argument(
        "--compare",
        nargs=2,
        metavar=("BEFORE", "AFTER"),
        help="run nothing: print each figure's change between two --jsonl files",
    )
    out.add_argument(
        "--hops",
        action="store_true",
        help="time each hop of a message inside the project's servers (bench/hops.py)",
    )
    args = parser.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    unknown = set(args.modes) - set(MODES) or set(args.targets) - {"project", "tutorial"}
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    if args.url:
        args.targets, args.processes = ["url"], [1]
    if max(args.processes) > 1 and args.layer == "memory" and not args.url:
        parser.error("--processes above 1 needs a Redis layer (--layer redis or redis_pubsub)")
    if args.layer is None:
        args.layer = "redis" if args.redis_url or shutil.which("redis-server") else "memory"
    if args.layer == "memory":
        args.worker = False  # nothing would reach it: the layer lives in each server
    bounds = [*args.clients, args.storm, args.idle, *args.senders, *args.processes]
    if min(bounds) < 1 or args.duration <= 0 or min(args.rate) <= 0:
        parser.error("counts, rates and the duration must be positive")
    return args


async def measure(args: argparse.Namespace, stack: Stack, servers: dict[str, list[Server]]):
    await wait_ready(servers)
    bench = Bench(args, stack)
    rows: list[dict[str, Any]] = []
    targets = [t for t in servers if t != "bare"]

    def label(name: str, processes: int) -> str:
        return name if processes == 1 else f"{name} x{processes}"

    async def run(mode: str, name: str, processes: int, job) -> None:
        group = servers[name][:processes]
        for server in group:
            if server.process is not None:
                server.process.check_running()
        row = await job(group)
        row.update(mode=mode, server=name, processes=processes, label=label(name, processes))
        rows.append(row)
        senders = f" senders={row['senders']}" if "senders" in row else ""
        print(f"  {mode:8} {row['label']:14} C={row['clients']}{senders}: done", file=sys.stderr)

    plan = []
    for mode in sorted(args.modes, key=RUN_ORDER.index):
        if mode == "saturate":
            for clients in args.clients:
                for senders in sorted({min(s, clients) for s in args.senders}):
                    plan.append((mode, clients, senders))
        elif mode == "open":
            for clients in args.clients:
                plan.extend((mode, clients, rate) for rate in args.rate)
        else:
            plan.append((mode, args.storm if mode == "storm" else args.idle, None))
    for mode, clients, option in plan:
        # Typing only: annotated, because mypy cannot infer lambdas with default arguments.
        jobs: dict[str, Any] = {
            "saturate": lambda g, c=clients, s=option: bench.saturate(g, c, s),
            "open": lambda g, c=clients, r=option: bench.open_loop(g, c, r),
            "storm": lambda g, c=clients: bench.storm(g, c),
            "idle": lambda g, c=clients: bench.idle(g, c),
        }
        for name in targets:
            for processes in args.processes:
                await run(mode, name, processes, jobs[mode])
        if "bare" in servers:
            await run(mode, "bare", 1, jobs[mode])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare:
        return compare(*(Path(p) for p in args.compare))
    raise_file_limit(max(args.storm, args.idle, *args.clients))
    meta: dict[str, Any] = {
        "kind": "meta",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "python -m bench.chatbench " + " ".join(sys.argv[1:] if argv is None else argv),
        "server_command": args.url or args.command or procfile_command(),
        "layer": "n/a" if args.url else args.layer,
        "worker": bool(args.worker and not args.url),
    }
    with contextlib.ExitStack() as cleanup:
        if args.logs:
            logs = Path(args.logs)
            logs.mkdir(parents=True, exist_ok=True)
        else:
            logs = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="chatbench-")))
        print("chatbench: starting servers", file=sys.stderr)
        stack, servers = start_stack(args, logs)
        cleanup.callback(stack.stop)
        rows = asyncio.run(measure(args, stack, servers))
        if args.hops:
            stack.stop()  # the servers write their timestamps as they stop
            hops.add_to_rows(rows, sorted(logs.glob("hops-*.jsonl")))
    meta["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    add_ratios(rows)
    m = meta["machine"]
    print(f"\nchatbench {meta['date']}: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB")
    worker = "with the moderation worker" if meta["worker"] else "no worker"
    print(f"layer {meta['layer']}, {worker}; server: {meta['server_command']}")
    print(f"load average before {m['load_before']}, after {m['load_after']}")
    print(f"command: {meta['command']}")
    print(table(rows))
    if args.hops:
        print(hops.table(rows))
    if args.jsonl:
        lines = "".join(json.dumps(x) + "\n" for x in [meta, *rows])
        if args.jsonl == "-":
            sys.stdout.write(lines)
        else:
            Path(args.jsonl).write_text(lines)
    if args.plot:
        print(plot(rows, Path(args.plot)))
    return 0


def compare(before: Path, after: Path) -> int:
    try:
        (meta_a, rows_a), (meta_b, rows_b) = report.read_run(before), report.read_run(after)
    except (OSError, ValueError) as error:  # JSONDecodeError is a ValueError
        print(f"chatbench --compare: {error}", file=sys.stderr)
        return 2
    for name, meta in ((before, meta_a), (after, meta_b)):
        m = meta["machine"]
        print(f"{name}: {meta['date']}, {m['cpu']}, {m['cores']} cores; {meta['command']}")
    if meta_a["machine"]["cpu"] != meta_b["machine"]["cpu"]:
        print("(different machines: compare the ratios to the bare server, not the figures)")
    print(report.compare(rows_a, rows_b))
    return 0


if __name__ == "__main__":
    sys.exit(main())
