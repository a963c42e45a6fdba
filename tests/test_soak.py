"""Issue 16, point 4: the soak. The 90/10 read/write mix at 64 connections
on the service on a real redis-server (``python -m bench --soak``, see
bench/soak.py): after a 20 s warm-up, the service's RSS grows by under 5 %,
its open file descriptors stay flat, and no request fails.

The default suite runs one minute; ``SOAK_TEST_MINUTES=10`` runs the issue's
ten (opt-in: about eleven minutes). p99 per minute is printed, not asserted
(no timing asserts in tests: the bench reports it against the 1.5 × target).
``SOAK_TEST_LEAK=1`` serves a variant of the service that leaks memory and
descriptors with each request (tests/soak_leaky_app.py; ``=memory`` or
``=fds``: that one only): the asserts must then fail, which shows that they
can."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.procs import ROOT, tree_memory
from bench.soak import FD_SLACK, RSS_GROWTH_PCT, render, summarise

MINUTES = int(os.environ.get("SOAK_TEST_MINUTES", "1"))
LEAK = os.environ.get("SOAK_TEST_LEAK", "")  # 1: memory and descriptors; memory, fds: that one only


def minute(index: int, p99: float, requests: int = 1000, errors: int = 0, other: float = 0.1) -> dict[str, object]:
    return {"minute": index, "requests": requests, "duration_s": 60.0, "rps": requests / 60, "p50_ms": p99 / 2,
            "p99_ms": p99, "error_count": errors, "other_load_cores": other, "rss_mib_last": 50.0, "fds_min": 70,
            "fds_max": 70}


def sample(rss: int, fds: int) -> dict[str, int]:
    return {"rss_bytes": rss, "fds": fds}


def test_the_figures_and_targets_of_a_soak() -> None:
    flat = summarise([minute(1, 10.0, other=0.5), minute(2, 12.0, other=0.1)],
                     [sample(100_000, 70), sample(104_000, 72), sample(104_900, 71)])
    assert flat["rss"]["growth_pct"] == 4.9 and flat["fds"] == {"start": 70, "end": 71, "min": 70, "max": 72}
    assert flat["p99_ms"]["max_over_first"] == 1.2 and flat["p99_ms"]["quietest_minute"] == 2
    assert flat["p99_ms"]["max_over_quietest"] == 1.0 and flat["requests"] == 2000 and flat["errors"] == 0
    assert [t["result"] for t in flat["targets"]] == ["PASS"] * 4
    leaking = summarise([minute(1, 10.0), minute(2, 16.0, errors=3)],
                        [sample(100_000, 70), sample(106_000, 70 + FD_SLACK + 1)])
    assert [t["result"] for t in leaking["targets"]] == ["MISS"] * 4


def test_the_memory_and_descriptors_of_a_process_tree() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        mine, alone = tree_memory(os.getpid()), tree_memory(child.pid)
        assert mine.processes >= 2 and alone.processes == 1
        assert mine.rss_bytes > alone.rss_bytes > 0 and mine.fds > alone.fds >= 3
    finally:
        child.communicate(b"")
    assert tree_memory(child.pid).processes == 0  # gone


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (python -m bench installs it with apt-get)")
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_a_soak_keeps_memory_and_descriptors_flat(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bench", "--soak", "--soak-minutes", str(MINUTES), "--warmup", "20",
            "--soak-sessions", "10000", "--results-dir", str(tmp_path)]
    if LEAK:
        argv += ["--soak-app", "tests.soak_leaky_app:app"]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=MINUTES * 60 + 300, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (written,) = tmp_path.glob("*-soak.json")
    doc = json.loads(written.read_text())
    print(render(doc))  # p99 per minute and its ratio to the first minute: reported, not asserted
    summary = doc["summary"]
    assert len(doc["minutes"]) == MINUTES and summary["samples"] >= 10 * MINUTES
    assert summary["requests"] > 0 and all(m["requests"] > 0 for m in doc["minutes"])
    assert summary["errors"] == 0, doc["minutes"]
    assert summary["rss"]["growth_pct"] < RSS_GROWTH_PCT, summary["rss"]
    assert summary["fds"]["max"] - summary["fds"]["min"] <= FD_SLACK, summary["fds"]
