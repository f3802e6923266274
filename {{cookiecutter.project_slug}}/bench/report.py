"""chatbench's report: each figure also as a ratio to the bare server, the table, and
the latency plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.load import MODES

# Figure -> True when higher is better (ratios are always ours / bare).
RATIO_FIGURES = {
    "deliveries_per_s": True,
    "server_cpu_us_per_delivery": False,
    "p50_ms": False,
    "p99_ms": False,
    "kb_per_connection": False,
    "all_in_ms": False,
}


def add_ratios(rows: list[dict[str, Any]]) -> None:
    bare = {key(r): r for r in rows if r["server"] == "bare"}
    for row in rows:
        reference = bare.get(key(row))
        if reference is None or row["server"] == "bare":
            continue
        ratios = {}
        for figure in RATIO_FIGURES:
            ours, theirs = row.get(figure), reference.get(figure)
            if ours is not None and theirs:
                ratios[figure] = ours / theirs
        row["x_bare"] = ratios


def key(row: dict[str, Any]) -> tuple:
    return row["mode"], row["clients"], row.get("senders"), row.get("offered_per_s")


DELIVERED = ("deliv/s", "deliveries_per_s", "{:,.0f}")
LATENCY_AND_LOSS = [
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("max ms", "max_ms", "{:.0f}"),
    ("loss", "loss", "{:,}"),
]
SERVER_CPU = ("CPU us/deliv", "server_cpu_us_per_delivery", "{:.1f}")
SERVER_RSS = ("RSS MB", "server_rss_mb", "{:.0f}")
CONNECTED = ("connected", "connected", "{:,}")
COLUMNS = {
    "saturate": [
        ("senders", "senders", "{:,}"),
        DELIVERED,
        *LATENCY_AND_LOSS,
        SERVER_CPU,
        ("Redis us", "redis_cpu_us_per_delivery", "{:.1f}"),
        SERVER_RSS,
        ("client CPU", "client_cpu_pct", "{:.0f}%"),
    ],
    "open": [("offered/s", "offered_per_s", "{:,.0f}"), DELIVERED, *LATENCY_AND_LOSS, SERVER_CPU],
    "storm": [
        CONNECTED,
        ("failed", "failed_connects", "{:,}"),
        ("connect p50 ms", "connect_p50_ms", "{:.0f}"),
        ("connect p99 ms", "connect_p99_ms", "{:.0f}"),
        ("all in ms", "all_in_ms", "{:,.0f}"),
        ("delivered", "delivered", "{:,}"),
        ("left in group", "left_in_group", "{}"),
        SERVER_RSS,
    ],
    "idle": [CONNECTED, ("KB/conn", "kb_per_connection", "{:.1f}"), SERVER_RSS],
}


def cell(row: dict[str, Any], figure: str, fmt: str) -> str:
    value = row.get(figure)
    if value is None:
        return "n/a"
    text = fmt.format(value)
    ratio = row.get("x_bare", {}).get(figure)
    return f"{text} ({ratio:.2f}x)" if ratio is not None else text


def table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for mode in MODES:
        selected = [r for r in rows if r["mode"] == mode]
        if not selected:
            continue
        headers = ["server", "C", *(title for title, _, _ in COLUMNS[mode])]
        body = [
            [r["label"], f"{r['clients']:,}", *(cell(r, f, fmt) for _, f, fmt in COLUMNS[mode])]
            for r in selected
        ]
        lines.append(f"\n{mode}")
        lines.extend(aligned(headers, body))
    return "\n".join(lines)


def aligned(headers: list[str], body: list[list[str]]) -> list[str]:
    """The header and each row, every column right-aligned to its widest cell."""
    widths = [max(len(x) for x in column) for column in zip(headers, *body, strict=True)]
    return [
        "  ".join(v.rjust(w) for v, w in zip(values, widths, strict=True))
        for values in [headers, *body]
    ]


def plot(rows: list[dict[str, Any]], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (uv run --with matplotlib ...)"
    selected = [r for r in rows if r["mode"] == "open" and r.get("p99_ms") is not None]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label in sorted({r["label"] for r in selected}):
        for clients in sorted({r["clients"] for r in selected}):
            points = sorted(
                (r["offered_per_s"], r["p99_ms"], r["p50_ms"])
                for r in selected
                if r["label"] == label and r["clients"] == clients
            )
            if not points:
                continue
            xs = [p[0] for p in points]
            axes.plot(xs, [p[1] for p in points], marker="o", label=f"{label} C={clients} p99")
            axes.plot(xs, [p[2] for p in points], linestyle="--", label=f"{label} C={clients} p50")
    axes.set_xlabel("offered deliveries/s")
    axes.set_ylabel("latency (ms, from scheduled send)")
    axes.set_yscale("log")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return f"plot written to {path}"


# Figures --compare prints for two runs, and whether higher is better (None: neither):
# those with a ratio to the bare server, and these.
COMPARED = {
    **RATIO_FIGURES,
    "max_ms": False,
    "loss": False,
    "redis_cpu_us_per_delivery": False,
    "server_rss_mb": False,
    "client_cpu_pct": None,
    "connected": True,
    "failed_connects": False,
    "connect_p50_ms": False,
    "connect_p99_ms": False,
    "left_in_group": False,
}


def read_run(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run saved with --jsonl: its meta line and its rows."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not lines or lines[0].get("kind") != "meta":
        raise ValueError(f"{path} is not a chatbench --jsonl file (no meta line first)")
    return lines[0], lines[1:]


def row_key(row: dict[str, Any]) -> tuple:
    return (row["label"], *key(row))


def describe(row_key_: tuple) -> str:
    label, mode, clients, senders, offered = row_key_
    parts = [mode, label, f"C={clients}"]
    if senders is not None:
        parts.append(f"senders={senders}")
    if offered is not None:
        parts.append(f"offered={offered:,.0f}/s")
    return " ".join(parts)


def compare(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> str:
    """Each figure of each row found in both runs: before, after, and the change
    (``+`` better, ``-`` worse, by the figure's direction). Figures, ratios to the
    bare server included, as each run measured them."""
    old = {row_key(r): r for r in before}
    new = {row_key(r): r for r in after}
    lines = []
    for k in [k for k in new if k in old]:
        lines.append(f"\n{describe(k)}")
        a, b = old[k], new[k]
        figures = [(f, a.get(f), b.get(f), better) for f, better in COMPARED.items()]
        figures += [
            (f"{f} x bare", a.get("x_bare", {}).get(f), b.get("x_bare", {}).get(f), up)
            for f, up in RATIO_FIGURES.items()
        ]
        for figure, x, y, better in figures:
            if x is None and y is None:
                continue
            lines.append(f"  {figure:32} {fmt(x):>12} -> {fmt(y):>12}  {change(x, y, better)}")
    only = sorted(describe(k) for k in set(old) ^ set(new))
    if only:
        lines.append("\nin one run only: " + "; ".join(only))
    return "\n".join(lines) if lines else "no row is in both runs"


def fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}"


def change(before: Any, after: Any, better: bool | None) -> str:
    if not isinstance(before, int | float) or not isinstance(after, int | float):
        return ""
    if before == after:
        return "same"
    if before == 0:
        return "was 0"
    percent = (after - before) / abs(before) * 100
    verdict = "" if better is None else (" better" if (after > before) == better else " worse")
    return f"{percent:+.1f}%{verdict}"
