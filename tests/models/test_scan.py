"""`logsense scan`, offline (`models.scan`): the embedded stream on a small BGL slice, and the
incident grouping."""

from __future__ import annotations

from pathlib import Path

import pytest

from logsense.models.policy import INCIDENT_GAP_SECONDS
from logsense.models.scan import ScanConfig, format_report, has_label_field, incidents, read_files, scan, strip_label_field

FIXTURES = Path(__file__).parents[1] / "fixtures"
BGL = FIXTURES / "bgl_small.log"
TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 64, "max_epochs": 1, "batch_size": 32}


@pytest.fixture(scope="module")
def embedder():
    from logsense.models.embedding import load_embedder

    return load_embedder()


def test_incidents_group_one_template_by_the_gap_in_log_time():
    g = INCIDENT_GAP_SECONDS
    rows = [{"template": 1, "ts": 0.0, "order": 0}, {"template": 2, "ts": 1.0, "order": 1},
            {"template": 1, "ts": g, "order": 2},  # within the gap of the one before: same incident
            {"template": 1, "ts": 2 * g + 1, "order": 3},  # more than the gap later: a new one
            {"template": None, "kind": "window", "ts": None, "order": 4}]
    runs = incidents(rows)
    assert [[a["order"] for a in r] for r in runs] == [[0, 2], [1], [3], [4]]


def test_the_label_field_is_recognized_and_cut_off():
    lines = read_files([BGL])
    assert has_label_field(lines) and not has_label_field(["2026-01-01 10:00:00 INFO hello"])
    rest, labels = strip_label_field(lines[:3])
    assert labels[0] == "-" and rest[0].startswith("1117838570 2005.06.03")


def test_a_baseline_is_needed():
    with pytest.raises(ValueError, match="baseline"):
        scan(["a line"], None, ScanConfig(), embedder=None)


def test_scan_judges_the_lines_after_a_normal_baseline(embedder, monkeypatch):
    monkeypatch.setattr("logsense.models.scan.QUICK_LOGGPT", TINY)
    lines = read_files([BGL])
    train, test = lines[:400], lines[400:]
    report = scan(test, train, ScanConfig(preset="bgl"), embedder, progress=False, say=lambda _m: None)
    assert report["lines"] == 200 and 0 <= report["anomalies"] <= 200
    assert report["format"]["label_field_cut"] and report["format"]["layout"] == "bgl"
    assert report["model"]["train_lines"] == 400
    assert sum(i["count"] for i in report["incidents"]) == report["queue_items"]
    for inc in report["incidents"]:
        assert inc["severity"] in ("watch", "danger") and inc["count"] >= 1
        assert inc["first_line"] is None or not inc["first_line"].startswith("- ")  # the label never shows
    assert report["labels"]["alert_lines"] == sum(not line.startswith("- ") for line in test)
    assert report["protocol"].startswith("protocol: scan (offline")
    text = format_report(report)
    assert text.startswith("200 lines scanned,") and "protocol: scan" in text


def test_train_fraction_learns_the_first_part_of_the_scanned_lines(embedder, monkeypatch):
    monkeypatch.setattr("logsense.models.scan.QUICK_LOGGPT", TINY)
    lines = read_files([BGL])[:300]
    report = scan(lines, None, ScanConfig(preset="bgl", train_fraction=0.5), embedder, progress=False,
                  say=lambda _m: None)
    assert report["lines"] == 150 and report["model"]["train_lines"] == 150
    assert "the first 50% of the scanned lines" in report["protocol"]
