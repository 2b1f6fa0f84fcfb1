"""Issue 18: Schemathesis against the app's own OpenAPI spec, bounded in time.

A real server (uvicorn in a thread, `tests.web.live`) seeded with the demo data (a trained HDFS
stream with anomalies, a second stream) is run through `st run` on its `/openapi.json`: the
examples, coverage and fuzzing phases, a fixed seed and at most MAX_EXAMPLES generated cases per
operation, and two checks: no 5xx (`not_a_server_error`) and every answer as its schema says
(`response_schema_conformance`). The run's size (test cases, operations) and seed are printed.

Path parameters name the seeded rows, so the cases reach the routes' logic instead of 404s;
DELETE of a stream gets a stream of its own, and `train` one without lines (a job that ends at
once, not a training per case). The alert channel's receiver is a local HTTP server answering 200.

Left out: EXCLUDED (by operation), with the reason; ALLOWED_5XX: a documented 5xx an operation
may answer (its schema is still checked). About 1 to 2 minutes on 2 cores.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SEED = 18_2026
MAX_EXAMPLES = 100
PHASES = "examples,coverage,fuzzing"
CHECKS = "not_a_server_error,response_schema_conformance"
EXCLUDED: dict[str, str] = {}  # "METHOD /path": why it is left out of the run
ALLOWED_5XX: dict[str, tuple[list[int], str]] = {  # "METHOD /path": (statuses, why)
    "POST /api/v1/alerts/channels/{channel_id}/test": (
        [502], "documented: the receiver did not answer 2xx (a fuzzed PATCH may point the channel anywhere)"),
}


class _Receiver(BaseHTTPRequestHandler):
    """The alert channel's receiver: 200 to every POST."""

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _toml(value: object) -> str:
    return json.dumps(value)  # a JSON string or number is a TOML one


def _seed(server, receiver: str) -> dict[str, object]:  # noqa: ANN001
    """The demo data and a few more rows; the path parameters that name them."""
    from tests.web.live import seed_demo

    seed_demo(server)
    with server.api() as api:
        for name, settings in (("scratch", {"format": "generic"}), ("empty", {"format": "generic"})):
            assert api.post("/api/v1/streams", json={"name": name, "settings": settings}).status_code == 201
        anomalies = api.get("/api/v1/anomalies", params={"limit": 10}).json()
        incidents = api.get("/api/v1/incidents").json()
        jobs = api.get("/api/v1/jobs").json()
        review = api.get("/api/v1/streams/hdfs-prod/review").json()
        channel = api.post("/api/v1/alerts/channels", json={
            "name": "hook", "kind": "webhook", "url": receiver, "secret": "s" * 32})
    params: dict[str, object] = {"path.name": "hdfs-prod", "path.version": 1}
    if isinstance(anomalies, list) and anomalies:
        params["path.anomaly_id"] = anomalies[0]["id"]
    if isinstance(incidents, list) and incidents:
        params["path.incident_id"] = incidents[0]["id"]
    if isinstance(jobs, list) and jobs:
        params["path.job_id"] = jobs[0]["id"]
    if isinstance(review, list) and review:
        params["path.template_id"] = review[0]["template_id"]
    elif isinstance(anomalies, list) and anomalies and anomalies[0].get("template_id") is not None:
        params["path.template_id"] = anomalies[0]["template_id"]
    if channel.status_code == 201:
        params["path.channel_id"] = channel.json()["id"]
    return params


def _config(params: dict[str, object]) -> str:
    lines = ["[parameters]"] + [f"{_toml(k)} = {_toml(v)}" for k, v in params.items()]
    # (`include-name` is "METHOD /path": an entry's include-path and include-method would be either-or)
    for operation, name in (("DELETE /api/v1/streams/{name}", "scratch"), ("POST /api/v1/streams/{name}/train", "empty")):
        lines += ["", "[[operations]]", f"include-name = {_toml(operation)}",
                  f"parameters = {{ {_toml('path.name')} = {_toml(name)} }}"]
    for operation, (statuses, _) in ALLOWED_5XX.items():
        lines += ["", "[[operations]]", f"include-name = {_toml(operation)}",
                  f"checks.not_a_server_error.expected-statuses = {_toml(['2xx', '3xx', '4xx', *map(str, statuses)])}"]
    return "\n".join(lines) + "\n"


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    from tests.web.live import LiveServer

    training_log = logging.getLogger("logsense.training")
    training_log.disabled = True  # the `empty` stream's jobs fail (no lines) with a traceback each: expected
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    server = LiveServer(tmp_path / "data").start()
    try:
        params = _seed(server, f"http://127.0.0.1:{receiver.server_address[1]}/hook")
        config = tmp_path / "schemathesis.toml"
        config.write_text(_config(params))
        report = tmp_path / "report.json"
        command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
                   f"{server.url}/openapi.json", "-H", f"X-API-Key: {server.api_key}", "--seed", str(SEED),
                   "--max-examples", str(MAX_EXAMPLES), "--phases", PHASES, "--checks", CHECKS, "--workers", "1",
                   "--generation-database", "none", "--request-timeout", "60", "--no-color",
                   "--suppress-health-check", "all",  # a slow CI machine is no finding about the API
                   "--report", "json", "--report-json-path", str(report)]
        for operation in EXCLUDED:
            command += ["--exclude-name", operation]  # pragma: no cover
        run = subprocess.run(command, capture_output=True, text=True, timeout=540, cwd=tmp_path)
    finally:
        server.stop()
        receiver.shutdown()
        training_log.disabled = False
    summary = json.loads(report.read_text()) if report.exists() else {}
    cases, operations = summary.get("test_cases", {}), summary.get("operations", {})
    print(f"\nschemathesis: seed {summary.get('seed', SEED)}, {cases.get('generated')} test cases on "
          f"{operations.get('tested')} of {operations.get('total')} operations "
          f"({PHASES}; at most {MAX_EXAMPLES} generated per operation), {summary.get('running_time', 0):.0f} s; "
          f"path parameters {params}; left out: {EXCLUDED or 'none'}; 5xx allowed: "
          f"{ {op: codes for op, (codes, _) in ALLOWED_5XX.items()} }")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-20_000:]
    assert summary.get("complete") and not summary.get("failures") and not summary.get("errors"), output[-20_000:]
    assert operations.get("tested", 0) >= operations.get("total", 1) - len(EXCLUDED)
