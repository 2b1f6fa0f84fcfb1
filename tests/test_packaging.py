"""What `pip install .` ships: one top-level package, `logsense`, with the migrations and the web
files a non-editable server needs; and the import rules that keep the pipeline apart."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_wheel_holds_one_top_level_package_with_migrations_and_web_files(tmp_path):
    source = tmp_path / "src"  # setuptools writes build/ beside the sources: build from a copy
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                                "data", "bench-out", "test-artifacts"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path), str(source)], capture_output=True, text=True)
    if built.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {built.stderr[-500:]}")
    wheel = next(tmp_path.glob("logsense-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"logsense", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    versions = {Path(n).name for n in names if n.startswith("logsense/migrations/versions/")}
    assert {p.name for p in (REPO / "migrations" / "versions").glob("*.py")} <= versions
    assert "logsense/migrations/env.py" in names and "logsense/migrations/script.py.mako" in names
    assert "logsense/web/templates/layout.html" in names and "logsense/web/static/htmx.min.js" in names
    assert "logsense/server/cli.py" in names and "logsense/models/stream.py" in names
    assert not any(n.startswith(("logsense/tests/", "logsense/scripts/")) for n in names)


def test_the_pipeline_never_imports_the_server_and_the_server_never_imports_the_benchmark():
    for path in (REPO / "models").rglob("*.py"):
        bad = {n for n in _imports(path) if n.startswith("logsense.server")}
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"
    for path in (REPO / "server").rglob("*.py"):
        if path.name == "cli.py":  # `logsense bench` is a command of its own, imported only when run
            continue
        bad = {n for n in _imports(path) if n.startswith("logsense.models.bench")}
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"
