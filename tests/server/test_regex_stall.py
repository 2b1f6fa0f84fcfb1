"""Issue 18: one stream's regex must not stall everyone.

`(a+)+$` on a line of 30 `a`s and a `!` is about 2**30 steps for a backtracking engine (Python's
`re` holds the GIL meanwhile, and `/healthz` waits with it; the issue has the measurement). Operator
regexes run on RE2 now, so the same settings are accepted and cost linear time; what RE2 cannot
run (a backreference, a lookaround) is refused with a 422 that says why.

The server is a real `logsense serve` process: were a regex to stall it again, the test's own
threads (and their timeouts) would still run, and it would fail instead of hanging. The timed
checks are of a stall (seconds, doubling per character), not of speed: their margins are wide.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from logsense.server.client import Client, free_port

from .helpers import stop

REPO = Path(__file__).resolve().parents[2]
EVIL = "(a+)+$"
STALL_STREAMS = {
    "stall-session": {"format": "generic", "session_regex": EVIL},
    "stall-format": {"format_regex": f"(?P<message>{EVIL})"},
    "stall-mask": {"format": "generic", "mask_rules": [{"name": "aaa", "regex": EVIL, "replacement": "<A>"}, "default"]},
}
# 30 to 60 `a`s and a `!`: `$` never matches, every split of the run is tried by a backtracker
EVIL_LINES = ["a" * n + "!" for n in range(30, 61)] + ["a" * 45]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSENSE_")}
    env.update(HF_HUB_OFFLINE="1", LOGSENSE_SCHEDULER_ENABLED="false", LOGSENSE_WORKER_POLL_SECONDS="0.1")
    return env


def _timed(c: Client, method: str, path: str, body: dict | None = None, timeout: float = 10) -> tuple[int, float]:
    """Status and seconds; a stalled server fails the test by a timeout here, instead of hanging it."""
    start = time.monotonic()
    code, _ = c.call(method, path, body, timeout=timeout)
    return code, time.monotonic() - start


def test_a_pathological_regex_stalls_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    key = subprocess.run([sys.executable, "-m", "logsense.server.cli", "apikey", "create", "test", "--data-dir", str(data_dir)],
                         cwd=REPO, env=_env(), capture_output=True, text=True, check=True).stdout.strip()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "logsense.server.cli", "serve", "--port", str(port),
                             "--data-dir", str(data_dir)], cwd=REPO, env=_env(),
                            stdout=open(tmp_path / "server.log", "ab"), stderr=subprocess.STDOUT)
    c = Client(port, key, timeout=60)
    try:
        c.wait_ready(lambda: proc.poll() is None, timeout=180)
        for name, settings in STALL_STREAMS.items():  # accepted: RE2 runs them in linear time
            code, body = c.call("POST", "/api/v1/streams", {"name": name, "settings": settings})
            assert code == 201, (name, body)
        assert c.call("POST", "/api/v1/streams", {"name": "other", "settings": {"format": "generic"}})[0] == 201
        other_line = {"lines": ["2026-01-01T00:00:00Z INFO an ordinary line 42"]}
        for name in ("other", *STALL_STREAMS):  # each stream's model is built (a fraction of a second, once)
            assert c.call("POST", f"/api/v1/streams/{name}/logs", other_line)[0] == 200

        stalled: list[tuple[str, int, float]] = []
        done = threading.Event()

        def post_evil_lines() -> None:
            try:
                for _ in range(3):
                    for name in STALL_STREAMS:
                        code, took = _timed(c, "POST", f"/api/v1/streams/{name}/logs", {"lines": EVIL_LINES}, timeout=30)
                        stalled.append((name, code, took))
            finally:
                done.set()

        poster = threading.Thread(target=post_evil_lines, daemon=True)
        poster.start()
        others: list[tuple[str, int, float]] = []
        while not done.is_set() or len(others) < 10:
            others.append(("/healthz", *_timed(c, "GET", "/healthz")))
            others.append(("other", *_timed(c, "POST", "/api/v1/streams/other/logs", other_line)))
        poster.join(120)
        assert not poster.is_alive(), "the posts to the regex streams never finished"

        assert len(stalled) == 3 * len(STALL_STREAMS)
        assert all(code == 200 for _, code, _ in stalled), stalled
        assert max(took for _, _, took in stalled) < 5, stalled  # a backtracker: minutes per line
        assert all(code == 200 for _, code, _ in others), others
        slowest = max(others, key=lambda x: x[2])
        assert slowest[2] < 1, f"{slowest[0]} took {slowest[2]:.2f} s while the regex streams were fed"

        # The regexes did run: the mask rule masked the all-`a` line, the session regex keyed it.
        by_raw = {x["raw"]: x for x in c.ok("GET", "/api/v1/streams/stall-mask/lines?limit=10000")}
        assert by_raw["a" * 45]["masked"] == "<A>" and by_raw[EVIL_LINES[0]]["masked"] == EVIL_LINES[0]
        by_raw = {x["raw"]: x for x in c.ok("GET", "/api/v1/streams/stall-session/lines?limit=10000")}
        assert by_raw["a" * 45]["sessions"] == ["a" * 45] and by_raw[EVIL_LINES[0]]["sessions"] == []
        by_raw = {x["raw"]: x for x in c.ok("GET", "/api/v1/streams/stall-format/lines?limit=10000")}
        assert by_raw["a" * 45]["masked"] == "a" * 45  # the header regex fit: the message is the line
    finally:
        stop(proc)


def test_what_re2_cannot_run_is_refused_saying_why(client, auth) -> None:
    cases = {
        "session_regex": (r"(blk_\d+).*\1", {}),
        "format_regex": (r"(?P<message>.*)(?<=x)", {}),
        "mask_rules": ([{"name": "pair", "regex": r"(?=\d)\w+", "replacement": "<P>"}], {}),
    }
    for field, (value, extra) in cases.items():
        r = client.post("/api/v1/streams", json={"name": "refused", "settings": {field: value, **extra}}, headers=auth)
        assert r.status_code == 422, (field, r.text)
        message = r.json()["message"]
        assert field in message and "RE2 cannot run in linear time" in message, message
    r = client.post("/api/v1/streams", json={"name": "refused", "settings": {"session_regex": "a{5000}"}}, headers=auth)
    assert r.status_code == 422 and "too large" in r.json()["message"], r.text
    r = client.post("/api/v1/streams", json={"name": "refused", "settings": {"session_regex": "blk_("}}, headers=auth)
    assert r.status_code == 422 and "invalid regular expression" in r.json()["message"], r.text
    assert client.get("/api/v1/streams/refused", headers=auth).status_code == 404  # nothing was stored
