"""Issue 16, point 3's last clause: other sessions' latency while one session
is hammered with writes (``python -m bench --hot-key``, see bench/hotkey.py).
A short run of its four phases (the normal load alone, then with a second
wrk PATCHing one session through the same instance, then through a second
instance, then as a fleet of ten instances would take it: a tenth through
the instance, the rest straight into Redis) must produce every figure: the
hammer's write rate, the other sessions' p50 and p99 over normal. Neither the rate nor the 2 × is asserted
(no timing asserts in tests: the bench reports them); what is asserted is
that the hammer's writes landed on the one session and nothing failed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.hotkey import render
from bench.procs import ROOT


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (python -m bench installs it with apt-get)")
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_a_short_hot_key_run_gives_every_figure(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--hot-key", "--hot-key-seconds", "2", "--warmup", "1",
         "--hot-key-sessions", "1000", "--results-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (written,) = tmp_path.glob("*-hot-key.json")
    doc = json.loads(written.read_text())
    print(render(doc))
    phases = {p["phase"]: p for p in doc["phases"]}
    assert list(phases) == ["alone", "same-instance", "other-instance", "fleet"]
    assert "hammer" not in phases["alone"]
    for phase in phases.values():
        assert phase["normal"]["requests"] > 0 and phase["normal"]["error_count"] == 0, phase
        assert phase["normal"]["p99_ms"] >= phase["normal"]["p50_ms"] > 0, phase
    hammered = [phases[name]["hammer"] for name in ("same-instance", "other-instance", "fleet")]
    for hammer in hammered:
        assert hammer["requests"] > 0 and hammer["error_count"] == 0, hammer
    fleet = phases["fleet"]["fleet"]
    assert fleet["written"] > 0 and fleet["failed"] == 0, fleet
    # every write the hammer counted changed the one session (warm-ups' writes too: at least as many)
    assert doc["hot_session_version"] >= sum(h["requests"] for h in hammered) + fleet["written"]
    summary = doc["summary"]
    assert [h["phase"] for h in summary["hammered"]] == ["same-instance", "other-instance", "fleet"]
    for h in summary["hammered"]:
        assert h["hammer_writes_per_s"] > 0 and h["p50_ratio"] > 0 and h["p99_ratio"] > 0, h
    assert {t["result"] for t in summary["targets"]} <= {"PASS", "MISS"} and len(summary["targets"]) == 6
