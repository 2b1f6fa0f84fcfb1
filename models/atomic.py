"""Writing artifacts so that a crash leaves the old one or the new one, never a torn one.

Every artifact the product keeps (parser JSON, the RAPID folders, LogGPT checkpoints, a stream's
and a version's metadata) goes through here: written under a temporary name beside its place,
fsync'd, renamed over it, and the folder fsync'd so the rename itself survives a power loss.
A folder is swapped through a symbolic link, so there is no moment without one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a folder's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` to write to (with any library's own save); on leaving the
    block it is fsync'd and renamed over `path`. On an exception, `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    """`data` as compact JSON at `path`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A fresh folder to fill; on leaving the block its files are fsync'd and it takes `path`'s
    place. `path` is a symbolic link to the newest such folder, replaced in one rename (a real
    folder left by an older version is moved aside once), and the folder it pointed to is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        for f in tmp.iterdir():
            if f.is_file():
                _fsync_file(f)
        fsync_dir(tmp)
        previous = path.resolve() if path.is_symlink() else None
        if path.exists() and not path.is_symlink():  # an older layout: move the real folder aside first
            aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, aside / "x")
            previous = aside
        link = path.with_name(f".{path.name}.link.{os.getpid()}")
        link.unlink(missing_ok=True)
        os.symlink(tmp.name, link)
        os.replace(link, path)
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if previous is not None and previous != tmp:
        shutil.rmtree(previous, ignore_errors=True)
