"""Where a chat message waits between its arrival and its broadcast: timestamps taken
inside a server that chatbench started with ``--hops``.

Each benchmark message carries its send time (``bench.load.message_text``); the
server stamps it again on the way through, on the same clock (``perf_counter_ns`` is
the system's monotonic clock, shared by every process on the machine):

    sent      the load generator wrote the frame
    received  ``ChatConsumer.receive`` began (uvicorn read and parsed the frame, the
              ASGI queue and Channels' dispatch handed it over)
    stored    the message has its id (``chat/writer.py``'s batch committed)
    published ``group_send`` returned (the broadcast is in Redis)
    fanout    the process's fan-out took the broadcast from the layer
    written   the fan-out handed the frame to its last local socket

and the load generator adds ``delivered`` (the last member read it). The server
keeps its stamps in memory and writes them as JSON lines to ``BENCH_HOPS_FILE`` when
it exits; ``bench.chatbench --hops`` reads them back and prints, per measurement, the
median and p99 of each hop. Installed by ``bench.apps`` only when that variable is
set, so a normal benchmark run pays nothing for it.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import json
import os
import signal
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.load import parse_mark
from bench.measure import latency_figures
from bench.report import aligned

# Stamps by (run, sender, send time): hop -> time (ns).
STAMPS: dict[tuple[int, int, int], dict[str, int]] = {}
# The message the current task is posting, so that the layer's sends can stamp it.
POSTING: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar(
    "bench_hops_posting", default=None
)


def stamps_for(text: str | None) -> dict[str, int] | None:
    mark = parse_mark(text) if text else None
    if mark is None:
        return None
    return STAMPS.setdefault(mark, {})


def wrap(owner: Any, name: str, around: Callable[..., Any]) -> None:
    original = getattr(owner, name)
    setattr(owner, name, functools.wraps(original)(around(original)))


def install(path: str) -> None:
    from chat import writer
    from chat.consumers.chat import ChatConsumer
    from realtime import fanout

    def receive(original):
        async def receive(self, text_data=None, bytes_data=None):
            stamps = stamps_for(text_data)
            if stamps is not None:
                stamps["received"] = time.perf_counter_ns()
            token = POSTING.set(stamps)
            try:
                return await original(self, text_data, bytes_data)
            finally:
                POSTING.reset(token)

        return receive

    def save(original):
        async def save(message):
            stored = await original(message)
            stamp("stored")
            return stored

        return save

    def deliver(original):
        async def deliver(self, event):
            stamps = stamps_for(event.get("frame"))
            if stamps is None:
                return await original(self, event)
            stamps.setdefault("fanout", time.perf_counter_ns())
            await original(self, event)
            stamps["written"] = time.perf_counter_ns()

        return deliver

    wrap(ChatConsumer, "receive", receive)
    wrap(writer, "save", save)
    wrap(fanout.GroupFanout, "deliver", deliver)
    from channels.layers import get_channel_layer

    # The worker's wake-up leaves later, off the message's path (chat/services.py).
    layer_class = type(get_channel_layer())
    wrap(layer_class, "group_send", lambda original: after(original, "published"))
    dump_on_exit(Path(path))


def dump_on_exit(path: Path) -> None:
    """Write the stamps when the server exits, and already when it is told to stop:
    uvicorn ends by raising the SIGTERM it caught again, which skips ``atexit``."""
    atexit.register(dump, path)
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        dump(path)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)


def stamp(hop: str) -> None:
    stamps = POSTING.get()
    if stamps is not None:
        stamps[hop] = time.perf_counter_ns()


def after(original, hop: str):
    async def call(self, *args, **kwargs):
        result = await original(self, *args, **kwargs)
        stamp(hop)
        return result

    return call


def dump(path: Path) -> None:
    with path.open("w") as out:
        for (run, sender, sent), stamps in STAMPS.items():
            out.write(json.dumps({"run": run, "sender": sender, "sent": sent, **stamps}) + "\n")


def enabled() -> str | None:
    return os.environ.get("BENCH_HOPS_FILE") or None


# Reading the stamps back (chatbench, after the servers stopped).

# Each reported hop: its name, and the stamps it runs between. A message not
# published by this process (another process's member sent it) has only the
# fan-out's stamps; a stamp missing leaves the hop out for that message.
INTERVALS = (
    ("to consumer", "sent", "received"),
    ("store", "received", "stored"),
    ("group_send", "stored", "published"),
    ("to fan-out", "published", "fanout"),
    ("write", "fanout", "written"),
    ("to last member", "written", "delivered"),
    ("sent to written", "sent", "written"),
    ("sent to delivered", "sent", "delivered"),
)


def read(paths: list[Path]) -> dict[int, list[dict[str, int]]]:
    """Each run's messages, with their stamps from every server process."""
    merged: dict[tuple[int, int, int], dict[str, int]] = {}
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            record = json.loads(line)
            merged.setdefault((record["run"], record["sender"], record["sent"]), {}).update(record)
    runs: dict[int, list[dict[str, int]]] = {}
    for record in merged.values():
        runs.setdefault(record["run"], []).append(record)
    return runs


def figures(records: list[dict[str, int]]) -> dict[str, dict[str, Any]]:
    """Median, p99 and max (ms) of each hop over a run's messages, and how many."""
    out = {}
    for name, start, end in INTERVALS:
        samples = array("q", (r[end] - r[start] for r in records if start in r and end in r))
        if samples:
            out[name] = {**latency_figures(samples), "count": len(samples)}
    return out


def add_to_rows(rows: list[dict[str, Any]], paths: list[Path]) -> None:
    runs = read(paths)
    for row in rows:
        completed = row.pop("completed", {})
        records = runs.get(row.get("run", -1)) or []
        for record in records:
            done = completed.get((record["sender"], record["sent"]))
            if done is not None:
                record["delivered"] = done
        # Only the messages the measurement counted: one sent during the warm-up or
        # still on its way when it ended would skew one hop's figures and not another's.
        if completed:
            records = [r for r in records if "delivered" in r]
        if records and row["server"] != "bare":
            row["hops"] = figures(records)


def table(rows: list[dict[str, Any]]) -> str:
    selected = [r for r in rows if r.get("hops")]
    if not selected:
        return ""
    names = [name for name, _, _ in INTERVALS]
    headers = ["mode", "server", "C", "senders", *names]
    body = []
    for r in selected:
        cells = []
        for name in names:
            hop = r["hops"].get(name)
            cells.append("n/a" if hop is None else f"{hop['p50_ms']:.2f}/{hop['p99_ms']:.1f}")
        senders = str(r.get("senders", ""))
        body.append([r["mode"], r["label"], f"{r['clients']:,}", senders, *cells])
    title = "\nhops (ms, median/p99, from the servers' timestamps: bench/hops.py)"
    return "\n".join([title, *aligned(headers, body)])
