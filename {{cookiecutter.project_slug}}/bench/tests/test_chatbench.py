"""chatbench, run for a moment on the servers it starts: it must produce sane
figures (deliveries counted, no loss, latencies ordered, ratios to the bare
reference). Never a timing threshold: how fast this machine is says nothing
about the code.
"""

from __future__ import annotations

import json
import math
from array import array

import pytest
from django.conf import settings

from bench import chatbench, load, measure, processes, report

# A short run of every mode: a few clients, half a second per measurement.
SHORT = ["--clients", "4", "--senders", "2", "--duration", "0.5", "--rate", "200"]
SHORT += ["--storm", "20", "--idle", "20"]


def run(tmp_path, *args: str) -> tuple[dict, list[dict], str]:
    """Run chatbench; its meta line, its rows and its printed table."""
    out = tmp_path / "bench.jsonl"
    assert chatbench.main([*SHORT, "--jsonl", str(out), *args]) == 0
    meta, *rows = (json.loads(line) for line in out.read_text().splitlines())
    return meta, rows, report.table(rows)


def rows_of(rows: list[dict], mode: str, server: str) -> list[dict]:
    found = [r for r in rows if r["mode"] == mode and r["server"] == server]
    assert found, f"no {mode} row for {server}"
    return found


def assert_sane_broadcasts(row: dict) -> None:
    assert row["connected"] == row["clients"]
    assert row["failed_connects"] == 0
    assert row["sent"] >= 1
    # Every member got every message: C deliveries per broadcast, none lost.
    assert row["deliveries"] == row["sent"] * row["clients"]
    assert row["loss"] == 0
    assert row["refused"] == 0
    assert row["deliveries_per_s"] > 0
    assert 0 <= row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    if row["server_cpu_us_per_delivery"] is not None:
        # CPU time is counted in clock ticks (10 ms): a short run on a server process
        # that did little (one of two, on the Pub/Sub layer) may round down to 0.
        assert row["server_cpu_us_per_delivery"] >= 0
        assert row["server_rss_mb"] > 0


def assert_sane(rows: list[dict], server: str, *, groups_visible: bool) -> None:
    for mode in ("saturate", "open"):
        for row in rows_of(rows, mode, server) + rows_of(rows, mode, "bare"):
            assert_sane_broadcasts(row)
    for row in rows_of(rows, "saturate", server):
        ratios = row["x_bare"]
        assert set(ratios) >= {"deliveries_per_s", "server_cpu_us_per_delivery", "p99_ms"}
        assert all(math.isfinite(v) and v > 0 for v in ratios.values())
    for row in rows_of(rows, "storm", server) + rows_of(rows, "storm", "bare"):
        assert (row["connected"], row["failed_connects"], row["delivered"]) == (20, 0, 20)
        assert 0 < row["connect_p50_ms"] <= row["connect_p99_ms"] <= row["all_in_ms"]
        assert row["not_in"] == 0  # every member got its history
    for row in rows_of(rows, "storm", server):
        assert row["x_bare"]["all_in_ms"] > 0
    for row in rows_of(rows, "storm", server):
        # Everyone left: the layer's group is empty again (None: in-process layer).
        assert row["left_in_group"] == (0 if groups_visible else None)
    for row in rows_of(rows, "idle", server) + rows_of(rows, "idle", "bare"):
        assert row["connected"] == 20
        assert math.isfinite(row["kb_per_connection"])
        assert row["server_rss_mb"] > 0


def test_marks_survive_any_frame_format():
    text = load.message_text(7, 42, 123456789, 64)
    assert len(text) == 64
    for frame in (
        json.dumps({"type": "message", "id": 1, "message": text}),
        json.dumps({"message": text}),
    ):
        assert load.parse_mark(frame) == (7, 42, 123456789)
    assert load.parse_mark('{"type": "history", "messages": []}') is None


def test_only_live_message_frames_count_as_deliveries():
    text = load.message_text(7, 42, 123456789, 64)
    message = {"type": "message", "id": 1, "message": text}
    assert load.delivery_mark(json.dumps(message)) == (7, 42, 123456789)
    # The sender's ack and a history carry the message too; neither is a delivery.
    ack = {"type": "ack", "client_id": load.client_id("ab12", 7, 42, 123456789)}
    assert load.delivery_mark(json.dumps({**ack, "message": message})) is None
    assert load.delivery_mark(json.dumps({"type": "history", "messages": [message]})) is None


def test_client_ids_are_what_the_server_takes():
    from chat.protocol import CLIENT_ID_RE

    longest = load.client_id("f" * 8, 9999, 999999, 2**63 - 1)
    assert CLIENT_ID_RE.fullmatch(longest)
    assert load.client_id("ab12", 1, 2, 3) != load.client_id("ab12", 1, 3, 3)


def test_the_procfile_command_is_served_on_the_handed_over_socket():
    args = processes.server_args(
        "daphne --proxy-headers -b 0.0.0.0 -p $PORT --ping-interval 20 config.asgi:application",
        7,
        processes.TUTORIAL_APP,
    )
    assert args[1:] == [
        "-m",
        "daphne",
        "--proxy-headers",
        "--ping-interval",
        "20",
        "--fd",
        "7",
        "bench.tutorial:application",
    ]
    uvicorn = processes.server_args(
        "uvicorn --host 0.0.0.0 --port=8000 config.asgi:application", 3, processes.PROJECT_APP
    )
    assert uvicorn[1:] == ["-m", "uvicorn", "--fd", "3", "config.asgi:application"]
    assert processes.procfile_command().split()[-1] == processes.PROJECT_APP


def test_ratios_are_ours_over_bare_and_missing_figures_print_na():
    rows = [
        {"mode": "saturate", "server": "bare", "label": "bare", "clients": 10,
         "deliveries_per_s": 1000.0, "p99_ms": 2.0, "server_cpu_us_per_delivery": 5.0},
        {"mode": "saturate", "server": "project", "label": "project", "clients": 10,
         "deliveries_per_s": 400.0, "p99_ms": 4.0, "server_cpu_us_per_delivery": None},
    ]  # fmt: skip
    report.add_ratios(rows)
    assert rows[1]["x_bare"] == {"deliveries_per_s": 0.4, "p99_ms": 2.0}
    text = report.table(rows)
    assert "400 (0.40x)" in text
    assert "4.0 (2.00x)" in text
    assert "n/a" in text


def test_the_closed_loop_runs_once_per_number_of_senders_each_with_its_ratio(tmp_path):
    _, rows, table = run(tmp_path, "--layer", "memory", "--modes", "saturate", "--senders", "1,2,9")
    for server in ("project", "bare"):
        # 9 senders in a room of 4 are its 4 members.
        assert [r["senders"] for r in rows_of(rows, "saturate", server)] == [1, 2, 4]
    for row in rows_of(rows, "saturate", "project"):
        assert_sane_broadcasts(row)
        assert row["x_bare"]["deliveries_per_s"] > 0
    assert "senders" in table


def test_hops_are_timed_inside_the_server_and_add_up(tmp_path):
    _, rows, _ = run(tmp_path, "--layer", "memory", "--modes", "saturate", "--hops")
    (row,) = rows_of(rows, "saturate", "project")
    hops = row["hops"]
    steps = ["to consumer", "store", "group_send", "to fan-out", "write", "to last member"]
    assert set(hops) >= {*steps, "sent to delivered"}
    for name in steps:
        assert hops[name]["count"] >= 1
        assert 0 <= hops[name]["p50_ms"] <= hops[name]["p99_ms"]
    # Every message in the measurement was stamped, and its hops end where it arrived.
    assert hops["sent to delivered"]["count"] == row["sent"]
    assert hops["sent to written"]["p50_ms"] <= hops["sent to delivered"]["p50_ms"]
    assert "hops" not in rows_of(rows, "saturate", "bare")[0]
    assert "completed" not in row  # only the figures are saved


def test_compare_prints_each_figures_change_between_two_saved_runs(tmp_path, capsys):
    def saved(name: str, deliveries: float, cpu: float) -> str:
        path = tmp_path / name
        meta = {
            "kind": "meta",
            "date": name,
            "command": "python -m bench.chatbench",
            "machine": {"cpu": "test", "cores": 2},
        }
        rows = [
            {"mode": "saturate", "server": "project", "label": "project", "clients": 100,
             "senders": 10, "deliveries_per_s": deliveries, "server_cpu_us_per_delivery": cpu,
             "x_bare": {"deliveries_per_s": deliveries / 1000}},
            {"mode": "idle", "server": "project", "label": "project", "clients": 1000,
             "kb_per_connection": 30.0},
        ]  # fmt: skip
        path.write_text("".join(json.dumps(x) + "\n" for x in [meta, *rows]))
        return str(path)

    before, after = saved("before", 400.0, 20.0), saved("after", 600.0, 10.0)
    assert chatbench.main(["--compare", before, after]) == 0
    out = capsys.readouterr().out
    assert "saturate project C=100 senders=10" in out
    assert "+50.0% better" in out  # deliveries/s
    assert "-50.0% better" in out  # CPU per delivery
    assert "idle project C=1000" in out
    assert "same" in out
    (tmp_path / "bad.jsonl").write_text("not json\n")
    assert chatbench.main(["--compare", before, str(tmp_path / "bad.jsonl")]) == 2
    assert "chatbench --compare" in capsys.readouterr().err


def test_the_default_layer_is_productions_when_redis_is_at_hand(monkeypatch):
    monkeypatch.setattr(chatbench.shutil, "which", lambda name: "/usr/bin/redis-server")
    args = chatbench.parse_args([])
    assert (args.layer, args.worker) == ("redis", True)
    monkeypatch.setattr(chatbench.shutil, "which", lambda name: None)
    args = chatbench.parse_args([])
    assert (args.layer, args.worker) == ("memory", False)
    assert chatbench.parse_args(["--redis-url", "redis://x"]).layer == "redis"
    assert chatbench.parse_args(["--layer", "redis", "--no-worker"]).worker is False


def test_latency_percentiles():
    figures = measure.latency_figures(array("q", [i * 10**6 for i in range(1, 101)]))
    assert figures == {"p50_ms": 50.0, "p99_ms": 99.0, "max_ms": 100.0}
    assert measure.latency_figures(array("q"))["p99_ms"] is None


def test_a_short_run_on_the_embedded_layer(tmp_path):
    meta, rows, table = run(tmp_path, "--target", "project,tutorial", "--layer", "memory")
    assert meta["layer"] == "memory"
    assert meta["worker"] is False  # nothing could reach it
    assert meta["machine"]["cores"] >= 1
    assert_sane(rows, "project", groups_visible=False)
    assert_sane(rows, "tutorial", groups_visible=False)
    for mode in ("saturate", "open", "storm", "idle"):
        assert f"\n{mode}\n" in table
    assert "x)" in table  # ratios to the bare reference are printed


@pytest.mark.services("REDIS_URL")
@pytest.mark.parametrize("kind", ["redis", "redis_pubsub"])
def test_a_short_run_on_redis_across_two_processes(kind, tmp_path, servers_database):
    meta, rows, _ = run(
        tmp_path,
        *("--layer", kind, "--redis-url", settings.REDIS_URL, "--processes", "1,2"),
        *("--database-url", servers_database),
    )
    assert meta["layer"] == kind
    assert meta["worker"] is True  # production's topology: web and the worker
    assert_sane(rows, "project", groups_visible=True)
    two = [r for r in rows if r["server"] == "project" and r["processes"] == 2]
    assert {r["mode"] for r in two} == {"saturate", "open", "storm", "idle"}
    for row in two:
        assert row["label"] == "project x2"
