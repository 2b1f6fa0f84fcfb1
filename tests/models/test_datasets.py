import os
import re
from pathlib import Path

import numpy as np
import pytest

from logsense.models.bench.datasets import (
    DATASETS,
    DatasetMissing,
    default_data_dir,
    load_dataset,
    load_loghub,
    read_lines,
    read_session_labels,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DATA = Path(os.environ.get("LOGSENSE_DATASETS") or Path(__file__).resolve().parents[2].parent / "shared" / "datasets")
needs_data = pytest.mark.skipif(not (DATA / "hdfs").is_dir() or not (DATA / "bgl").is_dir(), reason=f"shared datasets not found at {DATA} (set LOGSENSE_DATASETS)")

BLK = re.compile(r"blk_-?\d+")
BGL_LINE = re.compile(r"^\d{10} \d{4}\.\d{2}\.\d{2} \S+ \d{4}-\d{2}-\d{2}-\d{2}\.\d{2}\.\d{2}\.\d{6} ")  # epoch date node time
LABEL_THEN_EPOCH = re.compile(r"^\S+ \d{10} ")  # what a line still carrying BGL's label field looks like


def load_hdfs_fixture():
    return load_loghub(FIXTURES / "hdfs_small.log", FIXTURES / "hdfs_small.labels.csv", preset="hdfs", session_regex=r"blk_-?\d+", name="hdfs_small")


def load_bgl_fixture():
    return load_loghub(FIXTURES / "bgl_small.log", preset="bgl", label_field=True)


def test_hdfs_fixture_loads_with_a_label_for_every_block():
    ds = load_hdfs_fixture()
    assert ds.name == "hdfs_small" and ds.preset == "hdfs"
    assert len(ds.lines) == 2279
    assert ds.line_labels is None
    blocks = {b for line in ds.lines for b in BLK.findall(line)}
    assert all(BLK.search(line) for line in ds.lines)  # every line belongs to a session
    assert blocks == set(ds.session_labels)  # a label for every block, and no label without lines
    assert len(blocks) == 180 and sum(ds.session_labels.values()) == 30
    assert set(ds.session_labels.values()) == {0, 1}
    assert not any(word in line for line in ds.lines for word in ("Anomaly", "Normal"))
    assert "30 anomalous" in ds.describe()


def test_hdfs_fixture_is_in_time_order():
    ds = load_hdfs_fixture()
    stamps = [line.split(" ", 2)[:2] for line in ds.lines]  # yymmdd hhmmss
    assert stamps == sorted(stamps)


def test_bgl_fixture_label_field_is_stripped():
    ds = load_bgl_fixture()
    assert len(ds.lines) == len(ds.line_labels) == 600
    assert ds.line_labels.dtype == np.int8
    assert int(ds.line_labels.sum()) == 52  # enough alerts, and most lines normal
    assert not any(line.startswith("- ") for line in ds.lines)
    assert not any(LABEL_THEN_EPOCH.match(line) for line in ds.lines)  # no "APPREAD 1117..." left
    assert all(BGL_LINE.match(line) for line in ds.lines)
    assert not any(line.endswith("\r") for line in ds.lines)  # the original's CRLF is gone
    raw = (FIXTURES / "bgl_small.log").read_text(encoding="utf-8").splitlines()
    for line, label, rest in zip(raw, ds.line_labels, ds.lines):
        field, _, tail = line.partition(" ")
        assert tail == rest
        assert label == (field != "-")


def test_fixtures_folder_stays_small():
    assert sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file()) < 1_000_000


def test_load_dataset_on_a_missing_dir_says_how_to_fix_it(tmp_path):
    with pytest.raises(DatasetMissing) as err:
        load_dataset("hdfs-100k", data_dir=tmp_path / "nowhere")
    text = str(err.value)
    assert "HDFS_100k.log.gz" in text and "nowhere" in text
    assert "LOGSENSE_DATASETS" in text and "--data-dir" in text
    assert isinstance(err.value, FileNotFoundError)


def test_load_dataset_unknown_name_and_bad_extra():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("nope")
    with pytest.raises(ValueError):
        load_dataset("hdfs-100k", data_dir=FIXTURES, extra_normal=True)


def test_default_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LOGSENSE_DATASETS", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("LOGSENSE_DATASETS")
    assert default_data_dir().parts[-2:] == ("shared", "datasets")


def test_load_loghub_argument_checks(tmp_path):
    with pytest.raises(DatasetMissing):
        load_loghub(tmp_path / "missing.log")
    with pytest.raises(ValueError):
        load_loghub(FIXTURES / "bgl_small.log", FIXTURES / "hdfs_small.labels.csv", label_field=True)
    with pytest.raises(ValueError, match="session_regex"):
        load_loghub(FIXTURES / "hdfs_small.log", FIXTURES / "hdfs_small.labels.csv", preset="generic")
    ds = load_loghub(FIXTURES / "hdfs_small.log", FIXTURES / "hdfs_small.labels.csv", preset="hdfs")
    assert ds.session_regex == r"blk_-?\d+"  # the hdfs preset defaults it


def test_read_session_labels_formats(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("session,label\nx,1\ny,0\nz,Anomaly\nw,normal\n\n")
    assert read_session_labels(p) == {"x": 1, "y": 0, "z": 1, "w": 0}
    p.write_text("x,1\ny,maybe\n")
    with pytest.raises(ValueError, match="maybe"):
        read_session_labels(p)


def test_read_lines_gz_crlf_and_blank(tmp_path):
    import gzip

    p = tmp_path / "a.log.gz"
    with gzip.open(p, "wb") as f:
        f.write(b"one\r\n\r\ntwo \xff\nthree")
    assert read_lines(p) == ["one", "two \ufffd", "three"]


@needs_data
def test_real_datasets_load():
    bgl = load_dataset("bgl-2k", DATA, extra_normal=True)
    assert len(bgl.lines) == 2000 and int(bgl.line_labels.sum()) == 143
    assert not any(LABEL_THEN_EPOCH.match(line) for line in bgl.lines + bgl.extra_normal_lines)
    assert len(bgl.extra_normal_lines) > 4900
    hdfs = load_dataset("hdfs-100k", DATA)
    assert len(hdfs.lines) == 104_815
    assert len(hdfs.session_labels) == 7940 and sum(hdfs.session_labels.values()) == 313
    assert set(DATASETS) == {"hdfs-2pct", "hdfs-100k", "bgl-2k"}
