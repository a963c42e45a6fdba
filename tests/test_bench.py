"""The benchmark harness: its pure parts (no servers, no wrk, no timing):
reading wrk's figures, the report's tables and targets, the command line,
the RESP encoding of the filler; and one short real run (every server, one
Redis and a Redis Cluster) whose JSON must hold every figure, without
asserting any speed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import hiredis
import pytest

from bench import fill, report
from bench.client import Reply, is_router_404
from bench.procs import ROOT, tree_cpu_seconds
from bench.run import Options, find_properties, parse_args, save
from bench.wrk import WrkError, parse_output

WRK_TEXT = """Running 10s test @ http://127.0.0.1:40000
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.10ms    2.01ms  40.00ms   90.00%
  95000 requests in 10.00s, 20.00MB read
Requests/sec:   9500.00
BENCH_JSON {"requests":95000,"duration_us":10000000,"bytes":20971520,"errors":{"connect":0,"read":0,"write":0,"status":12,"timeout":0},"latency_us":{"min":300,"max":40000,"mean":6100.5,"stdev":2010.0,"percentiles":{"50":5800,"75":6900,"90":8000,"99":17400,"99.9":30000}}}
"""


def test_wrk_figures_come_from_the_json_line() -> None:
    result = parse_output(WRK_TEXT)
    assert result.requests == 95000
    assert result.rps == pytest.approx(9500.0)
    assert result.p50_ms == pytest.approx(5.8)
    assert result.p99_ms == pytest.approx(17.4)
    assert result.percentile_ms("99.9") == pytest.approx(30.0)
    assert result.error_count == 12
    as_json = result.to_json()
    assert as_json["rps"] == 9500.0 and as_json["errors"]["status"] == 12


def test_wrk_output_without_the_json_line_is_an_error() -> None:
    with pytest.raises(WrkError, match="BENCH_JSON"):
        parse_output("Running 10s test\nRequests/sec: 100\n")


def record(name: str, group: str, rps: float, p50: float, p99: float, yardstick: float = 10000.0, server: str = "uvicorn",
           **extra: Any) -> dict[str, Any]:
    wrk = {"requests": int(rps * 10), "duration_s": 10.0, "rps": rps, "p50_ms": p50, "p99_ms": p99,
           "errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}, "latency_us": {}}
    wrk.update(extra)
    scenario = name.removesuffix(f"-{server}")
    return report.scenario(name, name, group, wrk, yardstick_rps=yardstick, server=server, scenario=scenario,
                           server_cpu_us_per_request=rps / 100)


def document() -> dict[str, Any]:
    scenarios = [
        record("yardstick", "yardstick", 10000, 2.0, 4.0),
        record("yardstick-end", "yardstick", 8000, 2.0, 4.0, other_load_cores=0.6),
        record("lp-get", "read", 8000, 3.0, 8.0),  # 0.80, p99/p50 2.7: both pass
        record("native-get", "read", 5000, 3.0, 12.0),  # 0.50, 4.0: both miss
        report.scenario("emporix-get", "Emporix GET", "read", skipped="face not present"),
        record("lp-patch", "write", 6000, 4.0, 9.0),  # 0.60 pass
        record("mix", "mix", 6400, 4.0, 9.0, errors={"status": 500}),  # 0.64 and 0.5 % errors: miss
    ]
    return {
        "started_utc": "2026-01-01T00:00:00Z",
        "settings": {"duration_s": 10.0, "warmup_s": 2.0, "connections": 64, "wrk_threads": 1},
        "machine": {"cpu": "Test CPU", "cores": 2, "memory_gib": 24.0, "os": "Debian", "python": "3.11.7",
                    "redis_server": "7.0.15", "load_average_at_start": [0.1, 0.2, 0.3]},
        "yardstick_rps": 10000.0,
        "scenarios": scenarios,
        "memory": {"session_bytes": 344, "bare_bytes": 280, "ratio": 1.229,
                   "amortised": {"sessions": 10000, "session_bytes": 394.0, "bare_bytes": 354.0, "ratio": 1.113}},
        "scaling": {"status": "ok", "small": 1000, "large": 1_000_000, "small_rps": 8000.0, "large_rps": 7000.0, "ratio": 0.875},
        "namespace_delete": [{"sessions": 10, "times_ms": [0.5, 0.6, 0.7], "median_ms": 0.6}],
    }


def test_the_quietest_yardstick_is_the_reference() -> None:
    noisy = record("yardstick", "yardstick", 7000, 2.0, 4.0, other_load_cores=0.8)
    quiet = record("yardstick-end", "yardstick", 9000, 2.0, 4.0, other_load_cores=0.1)
    read = record("lp-get", "read", 4500, 3.0, 8.0)
    doc: dict[str, Any] = {}
    report.apply_reference(doc, [noisy, read, quiet])
    assert doc["yardstick_rps"] == 9000 and doc["yardstick"]["reference"] == "yardstick-end"
    assert read["ratio"] == 0.5 and quiet["ratio"] == 1.0 and noisy["ratio"] == pytest.approx(0.778, abs=1e-3)
    assert report.doc_reference(doc["scenarios"]) == "yardstick-end"


def test_ratios_are_to_the_yardstick() -> None:
    doc = document()
    by_name = {r["name"]: r for r in doc["scenarios"]}
    assert by_name["lp-get"]["ratio"] == 0.8
    assert by_name["emporix-get"] == {"name": "emporix-get", "label": "Emporix GET", "group": "read", "server": "uvicorn",
                                      "status": "skipped", "reason": "face not present"}
    assert by_name["mix"]["error_share"] == pytest.approx(500 / 64000, abs=1e-4)


def test_targets_pass_and_miss() -> None:
    results = {t["figure"]: t["result"] for t in report.evaluate_targets(document())}
    assert results["lp-get: ratio to the yardstick"] == "PASS"
    assert results["native-get: ratio to the yardstick"] == "MISS"
    assert results["Emporix GET: ratio to the yardstick"] == "skipped"
    assert results["lp-patch: ratio to the yardstick"] == "PASS"
    assert results["mix: ratio to the yardstick"] == "MISS"
    assert results["lp-get: p99 / p50"] == "PASS"
    assert results["native-get: p99 / p50"] == "MISS"
    assert results["Redis memory per session / bare HSET"] == "PASS"
    assert results["reads at 1,000,000 sessions / reads at 1,000"] == "MISS"


def test_many_errors_miss_the_target_whatever_the_speed() -> None:
    fast = record("lp-patch", "write", 9000, 3.0, 6.0, errors={"status": 9000})
    (target,) = report.evaluate_targets({"scenarios": [fast]})
    assert target["result"] == "MISS" and "errors" in target["measured"]


def test_the_report_is_markdown() -> None:
    text = report.render(document())
    lines = text.splitlines()
    assert lines[0].startswith("Machine: Test CPU, 2 cores, 24.0 GiB")
    table = [line for line in lines if line.startswith("| ")]
    assert table[0].split("|")[1].strip() == "scenario"
    assert "| lp-get " in text and "8,000" in text and "0.80" in text
    assert "skipped: face not present" in text
    assert "344 B vs bare HSET 280 B = 1.23 ×" in text
    assert "| yardstick     " in text and "1.00 (reference)" in text and "0.80" in text
    assert "| MISS" in text and "| PASS" in text
    # every row of a table has the same width
    for block in text.split("\n\n")[1:]:
        widths = {len(line) for line in block.splitlines() if line.startswith("|")}
        assert len(widths) <= 1, block


def test_markdown_table_alignment() -> None:
    table = report.markdown_table(["a", "n"], [["x", "1"], ["yy", "100"]], "lr")
    assert table.splitlines() == ["| a  |   n |", "| -- | --: |", "| x  |   1 |", "| yy | 100 |"]


def test_command_line() -> None:
    default = parse_args([])
    assert default.complete and default.duration_s == 10 and default.connections == 64
    assert default.large_sessions == 1_000_000 and default.mix_sessions == 100_000
    quick = parse_args(["--quick", "--duration", "2"])
    assert not quick.complete and quick.duration_s == 2 and quick.warmup_s == 1 and quick.large_sessions < 1_000_000
    only = parse_args(["--only", "lp-get,mix", "--only", "memory"])
    assert only.only == frozenset({"lp-get", "mix", "memory"}) and not only.complete
    with pytest.raises(SystemExit):
        parse_args(["--only", "no-such-scenario"])
    assert default.servers == ("uvicorn", "granian")
    one = parse_args(["--server", "granian", "--only", "lp-get-cluster"])
    assert one.servers == ("granian",) and one.only == frozenset({"lp-get-cluster"}) and not one.complete
    assert not parse_args(["--server", "uvicorn"]).complete
    with pytest.raises(SystemExit):
        parse_args(["--server", "hypercorn"])


def two_servers() -> dict[str, Any]:
    """A run on uvicorn and granian, with the cluster scenario."""
    doc = document()
    doc["settings"]["servers"] = ["uvicorn", "granian"]
    records = [
        record("yardstick", "yardstick", 10000, 2.0, 4.0),
        record("yardstick-granian", "yardstick", 20000, 1.0, 2.0, server="granian", other_load_cores=0.5),
        record("yardstick-end-granian", "yardstick", 18000, 1.0, 2.0, server="granian", other_load_cores=0.1),
        record("lp-get", "read", 5000, 3.0, 8.0),
        record("lp-get-granian", "read", 6000, 3.0, 8.0, server="granian"),
        record("lp-get-cluster", "cluster", 4500, 3.0, 8.0, primaries=3),
        record("lp-patch-granian", "write", 3600, 3.0, 8.0, server="granian"),
    ]
    report.apply_reference(doc, records)
    doc["cluster"] = report.cluster_figure(records)
    return doc


def test_each_server_has_its_reference_yardstick() -> None:
    doc = two_servers()
    by_name = {r["name"]: r for r in doc["scenarios"]}
    assert doc["servers"]["uvicorn"]["reference"] == "yardstick" and doc["yardstick_rps"] == 10000
    assert doc["servers"]["granian"] == {"reference": "yardstick-end-granian", "yardstick_rps": 18000,
                                         "yardstick_over_uvicorn": 1.8}
    assert by_name["lp-get"]["ratio"] == 0.5 and by_name["lp-get"]["ratio_to_uvicorn_yardstick"] == 0.5
    assert by_name["lp-get-granian"]["ratio"] == pytest.approx(0.333, abs=1e-3)
    assert by_name["lp-get-granian"]["ratio_to_uvicorn_yardstick"] == 0.6
    assert by_name["lp-patch-granian"]["ratio"] == 0.2
    assert [r["name"] for r in doc["scenarios"] if r.get("reference")] == ["yardstick", "yardstick-end-granian"]
    assert report.doc_reference(doc["scenarios"]) == "yardstick"


def test_the_cluster_ratio_is_to_one_redis_on_the_same_server() -> None:
    doc = two_servers()
    assert doc["cluster"]["status"] == "ok" and doc["cluster"]["ratio"] == 0.9
    assert doc["cluster"]["single"] == "lp-get" and doc["cluster"]["server"] == "uvicorn"
    assert doc["cluster"]["cluster_server_cpu_us_per_request"] == 45
    targets = {t["figure"]: t for t in report.evaluate_targets(doc)}
    assert targets["LivePerson GET on a 3-primary Redis Cluster / on one Redis"]["result"] == "PASS"
    # the targets are the first server's: granian's rows are reported, not judged
    assert not any("granian" in figure for figure in targets)
    assert "lp-patch: ratio to the yardstick" not in targets
    cluster = [r for r in doc["scenarios"] if r["group"] == "cluster"]
    assert report.cluster_figure(doc["scenarios"][:3] + cluster)["status"] == "skipped"  # no LivePerson GET on one Redis
    skipped = report.scenario("lp-get-cluster", "cluster", "cluster", skipped="no redis-cli")
    assert report.cluster_figure([skipped]) == {"status": "skipped", "reason": "no redis-cli"}


def test_the_report_of_two_servers() -> None:
    text = report.render(two_servers())
    assert "| server " in text and "ratio to uvicorn yardstick" in text and "server CPU µs/request" in text
    assert "4,500 vs 5,000 requests/s = 0.90 ×" in text and "yardstick on granian / on uvicorn" in text
    assert "of uvicorn (uvloop + httptools) and of granian" in text
    for block in text.split("\n\n")[1:]:
        widths = {len(line) for line in block.splitlines() if line.startswith("|")}
        assert len(widths) <= 1, block


def test_the_cpu_of_a_process_tree_counts_its_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        seconds, processes = tree_cpu_seconds(os.getpid())
        assert seconds > 0 and processes >= 2
        assert tree_cpu_seconds(child.pid)[1] == 1
    finally:
        child.communicate(b"")
    assert tree_cpu_seconds(child.pid) == (0.0, 0)  # gone


def test_a_partial_run_writes_nothing_unless_asked(tmp_path: Path) -> None:
    doc = document()
    assert save(doc, Options(quick=True, results_dir=tmp_path)) == []
    assert list(tmp_path.iterdir()) == []
    written = save(doc, Options(quick=True, save=True, results_dir=tmp_path))
    assert written and written[0].name == "20260101T000000Z-partial.json"
    assert json.loads(written[0].read_text())["yardstick_rps"] == 10000.0


@pytest.mark.parametrize("doc", [document, two_servers])
def test_the_chart_is_a_png(tmp_path: Path, doc: Any) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "chart.png"
    report.draw_chart(doc(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_router_404_tells_a_missing_face() -> None:
    assert is_router_404(Reply(404, {}, b'{"code":404,"message":"no such resource"}'))
    assert is_router_404(Reply(404, {}, b"Not Found"))
    assert not is_router_404(Reply(404, {}, b'{"sessionId":"x","code":404,"message":"Session not found"}'))
    assert not is_router_404(Reply(200, {}, b"{}"))


def test_properties_are_found_wherever_the_representation_puts_them() -> None:
    assert find_properties({"botName": "b"}) == {"botName": "b"}
    assert find_properties({"id": "s", "properties": {"botName": "b", "step": "x"}}) == {"botName": "b", "step": "x"}
    assert find_properties({"id": "s"}) is None


def test_fill_commands_are_resp() -> None:
    encoded = fill.command("HSET", "k", b"f", 7)
    assert encoded == b"*4\r\n$4\r\nHSET\r\n$1\r\nk\r\n$1\r\nf\r\n$1\r\n7\r\n"
    reader = hiredis.Reader()
    reader.feed(b"*4\r\n$2\r\nok\r\n:1\r\n:1\r\n$0\r\n\r\n")
    assert reader.gets() == [b"ok", 1, 1, b""]
    names = [name for name, _ in fill.PROPERTIES]
    assert len(names) == 10 == len(set(names))
    assert all(json.loads(value) is not None for _, value in fill.PROPERTIES)


@pytest.mark.anyio
async def test_filled_sessions_read_back_through_the_store(redis_server: Any) -> None:
    """The filler mirrors SessionStore.write()'s arguments to session_mutate:
    sessions it writes must read back as the store wrote them."""
    from service.store import clients
    from service.store.core import SessionStore

    client = clients.connect(redis_server.url, timeout_s=5)
    try:
        await client.flushall()
        store = SessionStore(client)
        ns = await store.ensure_namespace("bench", "filled")
        assert fill.Filler(redis_server.port, "bench", "filled", ns.generation).fill(["s-1", "s-2"]) == 2
        found = await store.read("bench", "filled", "s-2")
        assert found is not None and found.properties == dict(fill.PROPERTIES) and found.version == 1
        assert found.expires_ms == found.modified_ms + store.limits.retention_ms
    finally:
        await client.flushall()
        await client.aclose()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (python -m bench installs it with apt-get)")
def test_a_short_run_records_every_figure(tmp_path: Path) -> None:
    """The cluster scenario with its one-Redis counterpart, on both servers,
    1 s each: every record has the service's CPU per request, the cluster
    ratio is there. No speed is asserted."""
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "lp-get-cluster", "--duration", "1", "--warmup", "0",
         "--retries", "0", "--save", "--results-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (written,) = tmp_path.glob("*-partial.json")
    doc = json.loads(written.read_text())
    by_name = {r["name"]: r for r in doc["scenarios"]}
    assert set(by_name) == {"yardstick", "yardstick-granian", "lp-get", "lp-get-granian", "lp-get-cluster",
                            "yardstick-end", "yardstick-end-granian"}
    for r in doc["scenarios"]:
        assert r["status"] == "ok" and r["requests"] > 0, r
        assert r["server_cpu_us_per_request"] > 0 and r["redis_cpu_us_per_request"] >= 0, r
        assert r["server_processes"] >= (2 if r["server"] == "granian" else 1), r  # granian: its worker counted too
        assert r["ratio"] > 0 and r["ratio_to_uvicorn_yardstick"] > 0, r
    assert by_name["lp-get-cluster"]["redis_calls_per_request"], "the cluster nodes' commands are counted"
    cluster = doc["cluster"]
    assert cluster["status"] == "ok" and cluster["ratio"] > 0 and cluster["primaries"] == 3
    assert cluster["single"] == "lp-get" and cluster["server"] == "uvicorn"
    assert set(doc["servers"]) == {"uvicorn", "granian"} and doc["servers"]["granian"]["yardstick_over_uvicorn"] > 0
    assert "LivePerson GET on a 3-primary Redis Cluster / on one Redis" in {t["figure"] for t in doc["targets"]}
    assert written.with_suffix(".png").exists() or "matplotlib is missing" in run.stderr
