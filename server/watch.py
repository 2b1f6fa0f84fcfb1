"""`logsense watch FILE`: follow a log file like `tail -F` and post its new lines to a stream.

The file is followed by name: when it is rotated (renamed away and created anew) the old one is
read to its end first, and when it is truncated reading starts again at its top. Only whole
lines are posted (a line still being written waits for its newline). Where the follower stands
(the file's inode and the offset after the last line the server acknowledged) is kept in a
state file, so a restart resumes there. Each batch carries an `Idempotency-Key` made of the
inode and its first byte's offset: a batch posted again after a crash is answered from the
first attempt, never stored twice.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MAX_BATCH_LINES = 1000


@dataclass
class Batch:
    lines: list[str]
    inode: int
    start: int  # offset of the batch's first byte in the file
    end: int  # offset after its last newline


class Follower:
    """Reads whole new lines of `path` in batches; `commit(batch)` records that they were posted."""

    def __init__(self, path: str | os.PathLike, state: str | os.PathLike, from_start: bool = False):
        self.path, self.state_path = Path(path), Path(state)
        self._file: BinaryIO | None = None
        self._inode: int | None = None
        self._offset = 0  # the next byte to read from the open file
        saved = self._load()
        if saved is not None:
            self._inode, self._offset = saved
        self._from_start = from_start or saved is not None

    def _load(self) -> tuple[int, int] | None:
        try:
            data = json.loads(self.state_path.read_text())
            return int(data["inode"]), int(data["offset"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def commit(self, batch: Batch) -> None:
        """The server has `batch`: resume after it from now on (written atomically)."""
        from logsense.models.atomic import write_json

        write_json(self.state_path, {"path": str(self.path), "inode": batch.inode, "offset": batch.end})

    def _open_current(self) -> bool:
        """Open the file now at `path`; False when there is none yet."""
        try:
            f = open(self.path, "rb")  # noqa: SIM115 (kept open across calls, closed on rotation)
        except FileNotFoundError:
            return False
        inode = os.fstat(f.fileno()).st_ino
        if inode == self._inode:  # the file of the saved state (or the one already followed)
            offset = self._offset
        elif self._inode is None and not self._from_start:
            offset = os.fstat(f.fileno()).st_size  # a first start follows from the end, as tail -F
        else:
            offset = 0  # a file created since: all of it is new
        size = os.fstat(f.fileno()).st_size
        if offset > size:  # truncated while we were away
            offset = 0
        f.seek(offset)
        self._file, self._inode, self._offset = f, inode, offset
        return True

    def read(self, max_lines: int = MAX_BATCH_LINES) -> Batch | None:
        """The next whole lines (at most `max_lines`), or None when there are none now."""
        if self._file is None and not self._open_current():
            return None
        f = self._file
        size = os.fstat(f.fileno()).st_size
        if size < self._offset:  # truncated in place: start again at the top
            f.seek(0)
            self._offset = 0
        batch = self._read_lines(f, max_lines)
        if batch is not None:
            return batch
        try:  # nothing more in the open file: has the name moved on to a new file?
            current = os.stat(self.path).st_ino
        except FileNotFoundError:
            return None
        if current != self._inode:
            f.close()
            self._file = None
            self._from_start = True  # the new file's lines are all new
            if self._open_current():
                return self._read_lines(self._file, max_lines)
        return None

    def _read_lines(self, f: BinaryIO, max_lines: int) -> Batch | None:
        start = self._offset
        lines, end = [], start
        f.seek(start)
        while len(lines) < max_lines:
            raw = f.readline()
            if not raw or not raw.endswith(b"\n"):  # end of file, or a line still being written
                break
            end += len(raw)
            text = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
            if text.strip():
                lines.append(text)
        f.seek(end)
        if end == start:
            return None
        self._offset = end
        return Batch(lines, self._inode, start, end)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def watch(follower: Follower, post: Callable[[Batch], Any], interval: float = 1.0, once: bool = False,
          say: Callable[[str], None] = lambda _m: None, stop: Callable[[], bool] = lambda: False) -> int:
    """Post new lines as they come: `post(batch)` must raise on failure (the batch is retried,
    with the same idempotency key, after a pause that doubles up to a minute). With `once`, return
    when nothing new is left. Returns the number of lines posted."""
    posted, pause = 0, interval
    while not stop():
        batch = follower.read()
        if batch is None:
            if once:
                break
            time.sleep(interval)
            continue
        while not stop():
            try:
                if batch.lines:
                    post(batch)
                break
            except Exception as exc:  # noqa: BLE001 (a server down or refusing: wait and try again)
                say(f"logsense watch: posting failed ({exc}); retrying in {pause:.0f} s")
                time.sleep(pause)
                pause = min(60.0, pause * 2)
        else:
            break
        pause = interval
        follower.commit(batch)
        posted += len(batch.lines)
    return posted


def idempotency_key(batch: Batch) -> str:
    return f"watch-{batch.inode}-{batch.start}"
