"""Throwaway PostgreSQL and Redis servers for the cluster benchmark and the tests: started from
the Debian packages' binaries in a temporary folder, on loopback, and stopped after. `None`
(the caller skips, saying why) where the binaries are missing or the server would not start."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from logsense.server.client import free_port

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)  # Debian: one folder per version


def _pg_bin(name: str) -> str | None:
    for folder in PG_BIN_DIRS:
        if (folder / name).exists():
            return str(folder / name)
    return shutil.which(name)


@contextmanager
def postgres() -> Iterator[str | None]:
    """A PostgreSQL server on 127.0.0.1 (trust auth) in a temporary folder: its SQLAlchemy URL
    to the `postgres` database, whose user may create databases; None when it cannot be started."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        yield None
        return
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: its own user runs it
        if shutil.which("runuser") is None:
            yield None
            return
        as_user = ["runuser", "-u", "postgres", "--"]
    tmp = Path(tempfile.mkdtemp(prefix="logsense-pg-"))  # not under pytest's folder: the postgres user reaches it
    if as_user:
        shutil.chown(tmp, "postgres")
    data, port = tmp / "data", free_port()
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-w", "-t", "60", "-l", str(tmp / "pg.log"), "-o",
                        f"-p {port} -c listen_addresses=127.0.0.1 -k {tmp} -c fsync=on -c max_connections=200",
                        "start"], check=True, capture_output=True, timeout=120)
    except (subprocess.SubprocessError, OSError):
        shutil.rmtree(tmp, ignore_errors=True)
        yield None
        return
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def redis(tmp: Path) -> Iterator[str | None]:
    """A Redis server on 127.0.0.1 with the append-only file on (fsync every second): its URL,
    or None when redis-server is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    folder = tmp / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                             "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        yield None
        return
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(10)


def fresh_database(admin_url: str, name: str) -> str:
    """Drop and create database `name` on the server of `admin_url` (a user who may create
    databases): its URL."""
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name
