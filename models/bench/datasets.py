"""Loaders for the labeled loghub-format data in ``../shared/datasets``.

A `LogDataset` keeps the raw lines (file order = time order) apart from their labels, so that
a detector can be handed ``dataset.lines`` without ever seeing ground truth: BGL's first field
(its label) is stripped from every line here, at load time, and HDFS labels live in a separate
per-block table. Labels are for splitting off training normals and for the final metrics only.
"""

from __future__ import annotations

import csv
import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HDFS_SESSION_REGEX = r"blk_-?\d+"  # an HDFS session is a block; a line belongs to every block it names

DATASETS: dict[str, str] = {
    "hdfs-2pct": "HDFS: whole sessions of a 2% sample of all blocks over 38.7 h (222,579 lines, 11,501 blocks, 350 anomalous)",
    "hdfs-100k": "HDFS: the first 104,815 lines of HDFS.log, about 26 minutes (7,940 blocks, 313 anomalous)",
    "bgl-2k": "BGL: Loghub's 2,000-line sample over 215 days, per-line labels (143 alerts); extra_normal adds BGL_5000 (one day, all normal)",
}


@dataclass(frozen=True)
class _Spec:
    log: str  # path under the data folder
    labels: str | None  # BlockId,Label csv (sessions), or None
    preset: str  # HeaderParser preset
    session_regex: str | None
    label_field: bool  # BGL-style: the first field of each line is its label


_SPECS: dict[str, _Spec] = {
    "hdfs-2pct": _Spec("hdfs/HDFS_2pct.log.gz", "hdfs/HDFS_2pct.labels.csv", "hdfs", HDFS_SESSION_REGEX, False),
    "hdfs-100k": _Spec("hdfs/HDFS_100k.log.gz", "hdfs/HDFS_100k.labels.csv", "hdfs", HDFS_SESSION_REGEX, False),
    "bgl-2k": _Spec("bgl/BGL_2k.log", None, "bgl", None, True),
}
_EXTRA_NORMAL = {"bgl-2k": "bgl/BGL_5000.log"}

_ANOMALY = {"anomaly", "abnormal", "1", "true", "yes"}
_NORMAL = {"normal", "0", "false", "no", "-"}


class DatasetMissing(FileNotFoundError):
    """A data file is not where it was looked for. The message says which and how to point at it."""


@dataclass
class LogDataset:
    """Raw lines in time order plus labels kept beside them (never inside a line)."""

    name: str
    lines: list[str]  # raw lines, file order = time order; BGL's label field already stripped
    preset: str = "generic"  # HeaderParser preset: "hdfs", "bgl", ...
    session_regex: str | None = None  # session key regex (HDFS: blk_-?\d+); None: items are lines
    line_labels: np.ndarray | None = None  # (len(lines),) int8, 1 = alert (BGL-style data)
    session_labels: dict[str, int] | None = None  # session key -> 1 anomalous / 0 normal (HDFS-style)
    extra_normal_lines: list[str] = field(default_factory=list)  # extra normal data, before `lines` in time
    source: dict[str, str] = field(default_factory=dict)  # file paths, for the report

    def describe(self) -> str:
        """One line for logs and reports: size and how many items are anomalous."""
        text = f"{self.name}: {len(self.lines):,} lines"
        if self.line_labels is not None:
            text += f", {int(np.sum(self.line_labels)):,} alert lines"
        if self.session_labels is not None:
            text += f", {len(self.session_labels):,} labeled sessions ({sum(self.session_labels.values()):,} anomalous)"
        if self.extra_normal_lines:
            text += f", +{len(self.extra_normal_lines):,} extra normal lines"
        return text


def default_data_dir() -> Path:
    """$LOGSENSE_DATASETS, else ``shared/datasets`` beside the repository (``../shared/datasets``) or
    beside the working directory (an installed package has no repository around it)."""
    env = os.environ.get("LOGSENSE_DATASETS")
    if env:
        return Path(env)
    for base in (*Path(__file__).resolve().parents, Path.cwd()):
        found = base.parent / "shared" / "datasets"
        if found.is_dir():
            return found
    return Path.cwd().parent / "shared" / "datasets"


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, extra_normal: bool = False) -> LogDataset:
    """One of `DATASETS` by name. Raises `DatasetMissing` (a FileNotFoundError) when a file is absent.

    ``extra_normal`` (bgl-2k only) adds BGL_5000.log, one contiguous normal day at the very start of
    BGL's time range, as ``extra_normal_lines``: usable as more training data because it precedes
    (4 lines coincide with) the earliest part of BGL_2k and so never overlaps a later split part.
    """
    if name not in _SPECS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if extra_normal and name not in _EXTRA_NORMAL:  # an argument error, whether or not the files exist
        raise ValueError(f"extra normal data exists for {', '.join(_EXTRA_NORMAL)} only, not {name}")
    spec = _SPECS[name]
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    log_path = _require(root / spec.log, name, root)
    labels_path = _require(root / spec.labels, name, root) if spec.labels else None
    extra_path = _require(root / _EXTRA_NORMAL[name], name, root) if extra_normal else None
    dataset = load_loghub(log_path, labels_path, spec.preset, spec.session_regex, spec.label_field, name)
    if extra_path is not None:
        raw = read_lines(extra_path)
        # Keep only lines that the extra file itself labels normal (all of BGL_5000 is).
        dataset.extra_normal_lines = [rest for label, rest in map(_split_label, raw) if label == "-"]
        dataset.source["extra_normal"] = str(extra_path)
    return dataset


def load_loghub(
    log_path: str | os.PathLike,
    labels_path: str | os.PathLike | None = None,
    preset: str = "generic",
    session_regex: str | None = None,
    label_field: bool = False,
    name: str | None = None,
) -> LogDataset:
    """Any loghub-format log (``.gz`` ok) with its labels.

    - ``labels_path``: a csv of per-session labels, ``BlockId,Label`` with Normal/Anomaly or
      ``session,label`` with 0/1 (a header row is optional). Needs a ``session_regex``; preset
      "hdfs" defaults it to HDFS block ids.
    - ``label_field=True``: BGL style, the first space-separated field of each line is its label
      ("-" normal, anything else an alert); it is cut off every line and kept in ``line_labels``.
    Blank lines are dropped. Undecodable bytes become U+FFFD.
    """
    log_path = Path(log_path)
    if not log_path.exists():
        raise DatasetMissing(f"log file not found: {log_path}")
    if labels_path is not None and label_field:
        raise ValueError("give either a labels csv (sessions) or label_field=True (per line), not both")
    if labels_path is not None and session_regex is None:
        if preset != "hdfs":
            raise ValueError("a labels csv labels sessions: give the session_regex that finds their keys")
        session_regex = HDFS_SESSION_REGEX
    lines = read_lines(log_path)
    dataset = LogDataset(
        name=name or log_path.name.split(".")[0],
        lines=lines,
        preset=preset,
        session_regex=session_regex,
        source={"log": str(log_path)},
    )
    if label_field:
        pairs = [_split_label(line) for line in lines]
        dataset.lines = [rest for _, rest in pairs]
        dataset.line_labels = np.array([label != "-" for label, _ in pairs], dtype=np.int8)
    if labels_path is not None:
        labels_path = Path(labels_path)
        if not labels_path.exists():
            raise DatasetMissing(f"labels file not found: {labels_path}")
        dataset.session_labels = read_session_labels(labels_path)
        dataset.source["labels"] = str(labels_path)
    return dataset


def read_lines(path: str | os.PathLike) -> list[str]:
    """All non-blank lines of a text file (``.gz`` ok), line endings (LF or CRLF) removed."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        text = f.read()
    return [line.removesuffix("\r") for line in text.split("\n") if line.strip()]


def read_session_labels(path: str | os.PathLike) -> dict[str, int]:
    """``session,label`` csv -> {session: 0 or 1}. Accepts Normal/Anomaly, 0/1; header optional."""
    out: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        for row_no, row in enumerate(csv.reader(f), start=1):
            if not row or not row[0].strip():
                continue
            if len(row) < 2:
                raise ValueError(f"{path}:{row_no}: expected 'session,label', got {row!r}")
            key, value = row[0].strip(), row[1].strip().lower()
            if value in _ANOMALY:
                out[key] = 1
            elif value in _NORMAL:
                out[key] = 0
            elif row_no == 1:
                continue  # header
            else:
                raise ValueError(f"{path}:{row_no}: label {row[1]!r} is neither Normal/Anomaly nor 0/1")
    return out


def _split_label(line: str) -> tuple[str, str]:
    """BGL: ('-', rest) for a normal line, (category, rest) for an alert."""
    label, _, rest = line.partition(" ")
    return label, rest


def _require(path: Path, name: str, root: Path) -> Path:
    if not path.exists():
        raise DatasetMissing(
            f"{name}: {path} not found. Point at the folder that holds hdfs/ and bgl/ with "
            f"--data-dir DIR or the environment variable LOGSENSE_DATASETS=DIR (looked in {root})."
        )
    return path
