"""The benchmark end to end on small fixtures, and the rule that no threshold sees a test label."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from logsense.models.bench import add_arguments, run
from logsense.models.bench.datasets import load_loghub
from logsense.models.embedding import load_embedder
from logsense.models.bench.ensemble import SEVERE_LEVELS
from logsense.models.bench.experiments import RunConfig, run_lines, run_sessions
from logsense.models.parsing import LogParser

FIXTURES = Path(__file__).parents[1] / "fixtures"
DETECTORS = {"rapid", "rapid_session", "loggpt", "ensemble", "deeplog", "iforest", "unseen_template", "unseen_session", "severity_rule"}


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


@pytest.fixture(scope="module")
def hdfs():
    return load_loghub(FIXTURES / "hdfs_small.log", FIXTURES / "hdfs_small.labels.csv", preset="hdfs", session_regex=r"blk_-?\d+", name="hdfs-small")


@pytest.fixture(scope="module")
def bgl():
    return load_loghub(FIXTURES / "bgl_small.log", None, preset="bgl", label_field=True, name="bgl-small")


def thresholds(results: dict) -> dict:
    """Every detector's threshold; the ensembles' part thresholds (their own threshold is NaN)."""
    return {name: d.get("part_thresholds", d["threshold"]) for name, d in results["detectors"].items()} | {
        "ensemble_meta": results["meta"]["ensemble_thresholds"]}


def flip_test_labels(dataset, split_test_keys):
    """A copy of the data set whose test-part labels are all inverted."""
    if dataset.session_labels is not None:
        labels = dict(dataset.session_labels)
        for k in split_test_keys:
            labels[k] = 1 - labels[k]
        return dataclasses.replace(dataset, session_labels=labels)
    y = np.array(dataset.line_labels).copy()
    y[split_test_keys] = 1 - y[split_test_keys]
    return dataclasses.replace(dataset, line_labels=y)


def test_sessions_run_has_every_detector(hdfs, embedder):
    out = run_sessions(hdfs, RunConfig(quick=True), embedder, progress=False)
    assert DETECTORS <= set(out["detectors"])
    for name, d in out["detectors"].items():
        assert 0.0 <= d["precision"] <= 1.0 and 0.0 <= d["recall"] <= 1.0, name
    sizes = out["meta"]["split_sizes"]
    assert sizes["train"]["items"] > sizes["test"]["items"] > sizes["val"]["items"] > 0


def test_no_threshold_sees_test_labels_sessions(hdfs, embedder):
    """Invert every test label: every threshold, K and the ensemble's part thresholds stay put."""
    cfg = RunConfig(quick=True)
    first = run_sessions(hdfs, cfg, embedder, progress=False)
    # The test part under chrono is the last 30% of sessions by first line.
    from logsense.models.bench.experiments import parse_lines, session_items, split_items

    _, parsed = parse_lines(hdfs, progress=False)
    items, y, order = session_items(parsed, hdfs.session_labels)
    split = split_items(order, cfg)
    keys = list(dict.fromkeys(k for p in parsed for k in p.sessions if k in hdfs.session_labels))
    flipped = flip_test_labels(hdfs, [keys[i] for i in split.test])
    second = run_sessions(flipped, cfg, embedder, progress=False)
    assert thresholds(first) == thresholds(second)
    # ... while the metrics do see them: the test is not vacuous.
    assert first["detectors"]["unseen_session"]["f1"] != second["detectors"]["unseen_session"]["f1"]


def test_lines_run_with_feedback_and_label_independence(bgl, embedder):
    cfg = RunConfig(quick=True, feedback=True)
    first = run_lines(bgl, cfg, embedder, progress=False)
    assert {"rapid", "loggpt", "deeplog", "ensemble", "unseen_template", "severity_rule"} <= set(first["detectors"])
    # the floors are rules, not calibrated: severity_rule flags every severe test line
    sev = first["detectors"]["severity_rule"]
    assert sev["threshold"] == 0.0
    n = len(bgl.lines)
    start = int(round(n * 0.7))
    levels = [p.level for p in LogParser(preset="bgl").parse_many(bgl.lines[start:], learn=False)]
    severe = sum((lvl or "").upper() in SEVERE_LEVELS for lvl in levels)
    assert severe > 0 and sev["tp"] + sev["fp"] == severe
    fb = first["detectors"]["ensemble"]["feedback"]
    assert set(fb) >= {"precision", "recall", "f1", "clicks"}
    assert fb["clicks"] >= 0
    test_idx = np.arange(n)[start:]
    second = run_lines(flip_test_labels(bgl, test_idx), RunConfig(quick=True), embedder, progress=False)
    assert thresholds(first) == thresholds(second)


def test_cli_writes_results(tmp_path, hdfs):
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([
        "--log", str(FIXTURES / "hdfs_small.log"), "--labels", str(FIXTURES / "hdfs_small.labels.csv"),
        "--preset", "hdfs", "--session-regex", r"blk_-?\d+", "--quick", "--protocol", "chrono", "--out", str(tmp_path),
    ])
    assert run(args) == 0
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["protocol"] == "chrono" and report["cores"] >= 1
    for key in ("precision", "recall", "f1", "auprc", "threshold", "fit_seconds", "score_lines_per_second"):
        assert key in report["detectors"]["loggpt"], key
    assert (tmp_path / "pr.png").stat().st_size > 1000
    assert "protocol: chrono" in (tmp_path / "results.md").read_text()


def test_missing_data_is_a_clean_message(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--dataset", "hdfs-2pct", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert run(args) == 2
    assert "hdfs" in capsys.readouterr().err.lower()
