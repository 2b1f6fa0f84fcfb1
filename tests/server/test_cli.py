"""The `logsense` command, in process (apikey, db) and as a real server process (serve)."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from logsense.server import cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env, and ./data lands in tmp


def test_apikey_create_prints_the_key_once_and_list_hides_it(tmp_path: Path, capsys) -> None:
    data = str(tmp_path / "d")
    assert cli.main(["apikey", "create", "ci-runner", "--data-dir", data]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith("ls_") and "only its hash is stored" in err.lower()
    assert cli.main(["apikey", "list", "--data-dir", data]) == 0
    listing = capsys.readouterr().out
    assert "ci-runner" in listing and key[:11] in listing and key not in listing and "active" in listing
    assert cli.main(["apikey", "revoke", "1", "--data-dir", data]) == 0
    assert cli.main(["apikey", "list", "--data-dir", data]) == 0
    assert "revoked" in capsys.readouterr().out
    assert cli.main(["apikey", "revoke", "99", "--data-dir", data]) == 1


def test_db_upgrade_uses_the_default_data_dir(tmp_path: Path, capsys) -> None:
    assert cli.main(["db", "upgrade"]) == 0
    assert "database at head" in capsys.readouterr().out
    assert (tmp_path / "data" / "logsense.db").exists()


def test_bench_is_imported_only_for_bench_and_may_fail_alone(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "logsense.models.bench", None)  # importing it now raises ImportError
    args = cli.build_parser().parse_args(["bench", "--whatever"])
    assert args.func(args) == 2 and "logsense.models.bench failed to import" in capsys.readouterr().err
    assert cli.main(["db", "upgrade"]) == 0  # the rest of the CLI works


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_starts_and_is_ready(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSENSE_")}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "logsense.server.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path / "srv")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 45
        status, body = None, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    status, body = r.status, json.loads(r.read())
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        assert status == 200 and body == {"status": "ready"}, f"server did not get ready (exit code {proc.poll()})"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/streams", timeout=2)
            raise AssertionError("the API answered without a key")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
        assert (tmp_path / "srv" / "logsense.db").exists()
    finally:
        proc.terminate()
        try:
            out = proc.communicate(timeout=15)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0].decode(errors="replace")
    assert proc.returncode is not None
    assert "Traceback" not in out, out
