"""``python -m bench --instructions`` (bench/instructions.py): the service's
CPU instructions per request under callgrind, the measure behind "nothing
slows the hot path by more than 3 %". A short count of each scenario must
give a plausible figure per request, and its two halves must agree
closely: that repeatability is what lets it tell a 3 % change apart where
wrk's requests per second cannot (no timing is asserted: instructions are
not time)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.procs import ROOT

pytestmark = [
    pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed (scripts/test installs it)"),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


def count(tmp_path: Path, name: str, *extra: str) -> dict[str, dict[str, float]]:
    out = tmp_path / f"{name}.json"
    run = subprocess.run([sys.executable, "-m", "bench", "--instructions", "--requests", "100", "--json", str(out), *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(out.read_text())
    assert doc["source"] == str(ROOT)
    return {row["scenario"]: row for row in doc["scenarios"]}


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    """Both scenarios counted once, open access (as the benchmark serves)."""
    return count(tmp_path_factory.mktemp("instructions"), "first")


def test_instructions_per_request_are_counted_and_repeat(first: dict[str, dict[str, float]]) -> None:
    assert set(first) == {"lp-get", "lp-patch"}
    for row in first.values():
        assert 50_000 < row["instructions_per_request"] < 20_000_000, row
        assert row["requests"] == 100 and row["instructions"] > 0, row
        assert row["halves_differ"] < 0.03, row  # the same requests, counted twice, agree
    # a write does more than a read: the count follows the work
    assert first["lp-patch"]["instructions_per_request"] > first["lp-get"]["instructions_per_request"]


def test_a_rate_limit_is_counted_in_the_request(first: dict[str, dict[str, float]], tmp_path: Path) -> None:
    open_access = first["lp-get"]["instructions_per_request"]
    rated = count(tmp_path, "rated", "--only", "lp-get", "--api-key-rate", "1000000/s")["lp-get"]
    # the key's check, and one more script on Redis per request with its round trip
    assert rated["instructions_per_request"] > open_access * 1.03, (rated, open_access)
