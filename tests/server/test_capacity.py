"""`logsense bench --capacity --quick`: every phase runs against a real server and the results
name the issue's figures (the figures themselves are the benchmark's, not the suite's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

KEYS = ("novel_lines_ratio_to_encoder", "p99_all_new_batch_ms", "loggpt_drain_seconds", "peak_rss_mb",
        "lines", "distinct_masked")


def test_capacity_quick_run_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "cap"
    r = subprocess.run([sys.executable, "-m", "logsense.server.cli", "bench", "--capacity", "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    report = json.loads((out / "results.json").read_text())
    assert all(report[k] is not None for k in KEYS), report
    assert report["lines"] == 12_000 and report["distinct_masked"] > 3000  # every novel text masked apart
    assert report["novel"]["distinct_texts"] == report["novel"]["lines"]
    assert report["load"]["n_errors"] == 0
    assert set(report["targets"]) == {"novel_lines_ratio_to_encoder", "p99_all_new_batch_ms",
                                      "loggpt_drain_seconds", "peak_rss_mb"}
    assert "Protocol" not in report["protocol"] and "SentenceTransformer.encode" in report["protocol"]
