"""Cut a small HDFS slice of whole blocks (every line of the first N blocks to appear) with labels.

    python scripts/cut_hdfs_slice.py --blocks 120 --out tests/fixtures/server_hdfs

writes `server_hdfs.log` (lines in file order) and `server_hdfs.labels.csv` (BlockId,Label).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import re
from pathlib import Path

BLK = re.compile(r"blk_-?\d+")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hdfs"))
    ap.add_argument("--blocks", type=int, default=120)
    ap.add_argument("--out", default="tests/fixtures/server_hdfs")
    args = ap.parse_args()
    data = Path(args.data)
    labels = {r["BlockId"]: r["Label"] for r in csv.DictReader(open(data / "HDFS_2pct.labels.csv"))}
    with gzip.open(data / "HDFS_2pct.log.gz", "rt") as f:
        lines = [line.rstrip("\n") for line in f]
    chosen: dict[str, None] = {}
    for line in lines:
        for b in BLK.findall(line):
            if len(chosen) < args.blocks:
                chosen.setdefault(b, None)
    keep = [line for line in lines if (bs := BLK.findall(line)) and all(b in chosen for b in bs)]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".log").write_text("\n".join(keep) + "\n")
    with open(out.with_suffix(".labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["BlockId", "Label"])
        for b in chosen:
            w.writerow([b, labels.get(b, "Normal")])
    n_anomalous = sum(labels.get(b) == "Anomaly" for b in chosen)
    print(f"{len(keep)} lines, {len(chosen)} blocks ({n_anomalous} anomalous) -> {out}.log")


if __name__ == "__main__":
    main()
