"""The live replay (`logsense bench --protocol live`) on small fixtures."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from logsense.models.bench import add_arguments, run
from logsense.models.bench.datasets import load_loghub
from logsense.models.bench.live import LiveConfig, line_truth, replay
from logsense.models.embedding import load_embedder

FIXTURES = Path(__file__).parents[1] / "fixtures"
HDFS = ["--log", str(FIXTURES / "hdfs_small.log"), "--labels", str(FIXTURES / "hdfs_small.labels.csv"),
        "--preset", "hdfs", "--session-regex", r"blk_-?\d+"]
DETECTORS = {"rapid", "loggpt", "deeplog", "logbert", "lstm_ae", "iforest", "unseen_template", "severity_rule"}
TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 64, "max_epochs": 2, "batch_size": 32}


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


@pytest.fixture(scope="module")
def hdfs():
    return load_loghub(FIXTURES / "hdfs_small.log", FIXTURES / "hdfs_small.labels.csv", preset="hdfs",
                       session_regex=r"blk_-?\d+", name="hdfs-small")


def _bench(tmp_path: Path, *extra: str) -> dict:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args([*extra, "--quick", "--out", str(tmp_path)])) == 0
    return json.loads((tmp_path / "results.json").read_text())


def test_live_is_the_default_and_reports_the_product_beside_every_detector(tmp_path):
    report = _bench(tmp_path, *HDFS, "--idle-timeout", "60")
    assert report["protocol"] == "live" and report["train"] == "dirty" and report["idle_timeout"] == 60
    for key in ("precision", "recall", "f1", "normal_flagged_rate", "queue_items_per_1k_lines"):
        assert report["product"][key] is not None, key
    assert set(report["detectors"]) >= DETECTORS | {"unseen_session"}
    for d in report["detectors"].values():
        assert {"precision", "recall", "f1"} <= set(d)
    assert report["product"]["n_items"] > 0 and "session" in report["product"]
    assert "protocol: live" in (tmp_path / "results.md").read_text()


def test_line_data_clean_training_withholds_the_anomalous_lines(tmp_path):
    log = ["--log", str(FIXTURES / "bgl_small.log"), "--preset", "bgl", "--label-field"]
    dirty = _bench(tmp_path / "dirty", *log)
    clean = _bench(tmp_path / "clean", *log, "--train", "clean")
    assert clean["train"] == "clean" and "session" not in clean["product"]
    assert clean["lines_posted_in_train_mode"] < dirty["lines_posted_in_train_mode"]
    assert clean["product"]["lines_after_switch"] == dirty["product"]["lines_after_switch"]


def test_labels_never_reach_the_product(hdfs, embedder):
    """Under dirty training the product's verdicts are the same whatever the labels say."""
    cfg = LiveConfig(train="dirty", idle_timeout=60, loggpt=TINY)
    flipped = dataclasses.replace(hdfs, session_labels={k: 1 - v for k, v in hdfs.session_labels.items()})
    a, b = replay(hdfs, cfg, embedder, progress=False), replay(flipped, cfg, embedder, progress=False)
    assert a["stream"].severity == b["stream"].severity
    assert [w.anomalous for w in a["stream"].windows] == [w.anomalous for w in b["stream"].windows]
    assert not np.array_equal(line_truth(hdfs), line_truth(flipped))
