"""`logsense scan`: the command offline, on the data set of issue 17 when it is there, and against a
server (the same steps through a TestClient)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from logsense.models.scan import ScanConfig, read_files
from logsense.server.cli import main
from logsense.server.scan import scan_server

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BGL = FIXTURES / "bgl_small.log"
DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "bgl"
TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 64, "max_epochs": 1, "batch_size": 32}
KEYS = {"template", "template_id", "severity", "first_ts", "last_ts", "count", "first_line"}


@pytest.fixture(autouse=True)
def _tiny_loggpt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("logsense.models.scan.QUICK_LOGGPT", TINY)


def test_scan_refuses_without_a_baseline(capsys) -> None:
    assert main(["scan", str(BGL)]) == 2
    assert "a normal baseline is needed" in capsys.readouterr().err


def test_scan_json_parses_and_follows_the_schema(capsys) -> None:
    assert main(["scan", str(BGL), "--train-fraction", "0.6", "--preset", "bgl", "--format", "json", "--quiet"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)  # one JSON document on stdout
    assert report["lines"] == 240 and isinstance(report["anomalies"], int)
    assert report["protocol"].startswith("protocol: scan")
    assert all(KEYS <= set(i) for i in report["incidents"])


def test_scan_text_on_the_issue_data(capsys) -> None:
    """Issue 17, must-show 3: BGL_2k judged against BGL_5000 as the normal baseline."""
    if not (DATASETS / "BGL_2k.log").exists() or not (DATASETS / "BGL_5000.log").exists():
        pytest.skip(f"the BGL data set is not at {DATASETS}")
    assert main(["scan", str(DATASETS / "BGL_2k.log"), "--train", str(DATASETS / "BGL_5000.log"), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("2000 lines scanned, ") and "protocol: scan (offline" in text


class _Through:
    """`server.client.Client`'s `call`, through a TestClient."""

    def __init__(self, client, auth: dict) -> None:  # noqa: ANN001
        self.client, self.auth, self.base = client, auth, "testclient"

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        r = self.client.request(method, path, json=body, headers=self.auth)
        return r.status_code, (r.json() if r.content else {})


def test_scan_against_a_server_creates_trains_and_reads_the_queue(served) -> None:
    client, auth, _app = served
    lines = read_files([BGL])
    via = _Through(client, auth)
    report = scan_server(via, "bgl", lines[400:], lines[:400], ScanConfig(preset="bgl"), wait=120, progress=False)
    assert report["lines"] == 200 and report["format"]["label_field_cut"]
    stream = client.get("/api/v1/streams/bgl", headers=auth).json()
    assert stream["settings"]["train_mode"] is False and stream["settings"]["format"] == "bgl"
    flagged = [r for r in client.get("/api/v1/streams/bgl/lines?limit=10000", headers=auth).json()
               if r["severity"] in ("watch", "danger")]
    assert report["anomalies"] == len(flagged)
    assert sum(i["count"] for i in report["incidents"]) == report["queue_items"]
    assert all(KEYS <= set(i) for i in report["incidents"])
    assert all(not (i["first_line"] or "").startswith("- ") for i in report["incidents"])  # labels cut off
    # a second scan of a stream out of train mode: no --train; only the new lines' anomalies come back
    again = scan_server(via, "bgl", lines[400:450], None, ScanConfig(preset="bgl"), wait=120, progress=False)
    assert again["lines"] == 50 and again["queue_items"] <= 50 + 3  # line anomalies, and a few windows at most
    with pytest.raises(Exception, match="no stream"):
        scan_server(via, "nope", lines[:10], None, ScanConfig(), progress=False)
