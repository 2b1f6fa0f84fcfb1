"""A helper process for the stateless half of parsing: header, masking and session keys.

They are most of the parse time and need no state, so a second core can run them while the
caller mines templates and stores the chunk before. Template mining (Drain3, which learns)
stays with the caller. Frames are pickles on the helper's stdin and stdout; the helper exits
when its stdin closes, so it never outlives its parent.

    helper = PrepareHelper()
    for lines_part, prepared in helper.prepare(parser, lines, chunk=300):
        parsed = parser.finish_many(lines_part, prepared)   # == parser.parse_many(lines_part)

The answers never depend on the helper: while it is busy with another thread's batch, or once
it has died or answered with an error, `prepare` computes the chunks in the calling process
(a dead helper is started again on a later call).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger("logsense.parsing")

_LENGTH = struct.Struct("<Q")
_ROOT = str(Path(__file__).resolve().parents[2])  # where `models` can be imported from
RESTART_AFTER = 5.0  # seconds before a dead helper is started again


def _frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def _write_all(f: BinaryIO, data: bytes) -> None:
    """All of `data` (an unbuffered pipe may take it in pieces)."""
    view = memoryview(data)
    while view:
        n = f.write(view)
        view = view[n if n is not None else len(view) :]
    f.flush()


def _write(f: BinaryIO, obj: Any) -> None:
    _write_all(f, _frame(obj))


def _grow_pipe(fd: int) -> int:
    """Ask Linux for a 1 MB pipe buffer (F_SETPIPE_SZ); the size it has."""
    try:
        import fcntl

        return fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ: returns the new size
    except (ImportError, OSError):
        return 65536  # Linux's default


def _read_exactly(f: BinaryIO, n: int) -> bytes:
    """n bytes from a pipe, which may hand them over in pieces; EOFError if it closes first."""
    data = f.read(n)
    if data is not None and len(data) == n:
        return data
    buf = bytearray(data or b"")
    while len(buf) < n:
        piece = f.read(n - len(buf))
        if not piece:
            raise EOFError("the parse helper closed its pipe")
        buf += piece
    return bytes(buf)


def _read(f: BinaryIO) -> Any:
    (n,) = _LENGTH.unpack(_read_exactly(f, _LENGTH.size))
    return pickle.loads(_read_exactly(f, n))


def _preparer(config: dict) -> tuple:
    from logsense.models.parsing import HeaderParser, Masker, SessionKeyer

    rules = config.get("mask_rules")
    keyer = SessionKeyer(config["session_regex"]) if config.get("session_regex") else None
    return (HeaderParser(config.get("preset", "generic"), config.get("regex")),
            Masker(None if rules is None else [tuple(r) for r in rules]), keyer)


def serve(stdin: BinaryIO, stdout: BinaryIO) -> int:
    """The helper's loop: (config key, config, lines) in, prepared lines (or an error text) out."""
    from logsense.models.parsing import prepare_lines

    preparers: dict[str, tuple] = {}
    while True:
        try:
            key, config, lines = _read(stdin)
        except EOFError:
            return 0
        try:
            if key not in preparers:
                preparers[key] = _preparer(config)
            answer: Any = prepare_lines(*preparers[key], lines)
        except Exception as exc:  # noqa: BLE001 - the caller falls back to its own process
            answer = f"{type(exc).__name__}: {exc}"
        _write(stdout, answer)


class PrepareHelper:
    """One helper process, used by one batch at a time (other threads parse in their own process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._outbox: queue.SimpleQueue | None = None
        self._dead_since: float | None = None
        # chunks prepared where: helper; server (each batch's first chunk); fallback (helper busy, dead, failing)
        self.counts = {"helper": 0, "server": 0, "fallback": 0}
        self.start()

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "logsense.models.parsing.helper"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=env, bufsize=0)
        # A batch's frames go into the pipe at once when they fit (the helper reads them while this
        # process works); larger ones through a writer thread, so that this process never waits
        # for the helper to read (both pipes full would deadlock the two processes).
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._pipe_bytes = min(_grow_pipe(self._proc.stdin.fileno()), _grow_pipe(self._proc.stdout.fileno()))
        self._outbox = outbox = queue.SimpleQueue()
        threading.Thread(target=self._send, args=(self._proc.stdin, outbox), name="parse-helper-writer",
                         daemon=True).start()
        self._dead_since = None

    @staticmethod
    def _send(pipe: BinaryIO, outbox: queue.SimpleQueue) -> None:
        while (frame := outbox.get()) is not None:
            try:
                _write_all(pipe, frame)
            except (OSError, ValueError):  # the helper died: its reader sees EOF
                return

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self._dead_since is None

    def _usable(self) -> bool:
        if self.alive():
            return True
        if self._dead_since is None:
            self._dead_since = time.monotonic()
        if time.monotonic() - self._dead_since >= RESTART_AFTER:
            self.close()
            try:
                self.start()
            except OSError as exc:
                log.warning("parse helper could not start (%s); parsing in the server process", exc)
                self._dead_since = time.monotonic()
                return False
            return True
        return False

    def _fail(self, why: str) -> None:
        log.warning("parse helper failed (%s); parsing in the server process until it is restarted", why)
        self._dead_since = time.monotonic()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()

    def prepare(self, parser: Any, lines: Sequence[str], chunk: int = 300,
                first: int = 300) -> Iterator[tuple[Sequence[str], list]]:
        """(lines of the chunk, `parser.prepare_many` of them) for each chunk of `lines`, in order.

        The first `first` lines are prepared here while the helper starts on the rest: waiting
        for its first answer would leave this process idle. 300 and 300: with 200 here and
        chunks of 250 there, the server waited ~5.7 ms per 1,000-line batch for the helper's
        answers (ingest in one process, batches alternated: 43.1 against 46.3 ms per batch).
        """
        first = max(1, min(first, chunk))
        head, rest = lines[:first], [lines[i : i + chunk] for i in range(first, len(lines), chunk)]
        if not len(head):
            return
        if not rest:  # a small batch: not worth a round trip
            self.counts["server"] += 1
            yield head, parser.prepare_many(head)
            return
        if not self._lock.acquire(blocking=False):  # another batch has the helper: no waiting for it
            yield from self._here(parser, (head, *rest))
            return
        unread = 0
        try:
            if not self._usable():
                yield from self._here(parser, (head, *rest))
                return
            config = parser.config()
            key = json.dumps(config, sort_keys=True)
            assert self._outbox is not None and self._proc is not None and self._proc.stdout is not None
            frames = [_frame((key, config, list(part))) for part in rest]
            if sum(map(len, frames)) <= self._pipe_bytes // 2:  # the pipe is empty between batches: no wait
                try:
                    _write_all(self._proc.stdin, b"".join(frames))
                except (OSError, ValueError) as exc:
                    self._fail(str(exc))
                    frames = []
            else:
                for frame in frames:
                    self._outbox.put(frame)
            unread = len(frames)
            self.counts["server"] += 1
            yield head, parser.prepare_many(head)
            for part in rest:
                answer = None
                if unread:
                    try:
                        answer = _read(self._proc.stdout)
                        unread -= 1
                    except (EOFError, OSError, pickle.UnpicklingError) as exc:
                        self._fail(str(exc))
                        unread = 0
                if not isinstance(answer, list) or len(answer) != len(part):
                    if isinstance(answer, str):
                        log.warning("parse helper: %s; this chunk parsed in the server process", answer)
                    answer = parser.prepare_many(part)
                    self.counts["fallback"] += 1
                else:
                    self.counts["helper"] += 1
                yield part, answer
        finally:
            if unread:  # the caller stopped early: read what is on its way, so the next batch starts clean
                try:
                    for _ in range(unread):
                        _read(self._proc.stdout)
                except (EOFError, OSError, pickle.UnpicklingError) as exc:
                    self._fail(str(exc))
            self._lock.release()

    def _here(self, parser: Any, parts: Sequence[Sequence[str]]) -> Iterator[tuple[Sequence[str], list]]:
        """Every chunk prepared in this process (the helper busy or down)."""
        self.counts["fallback"] += len(parts)
        for part in parts:
            yield part, parser.prepare_many(part)

    def close(self) -> None:
        """Stop the helper (it exits when its stdin closes)."""
        proc, self._proc = self._proc, None
        if self._outbox is not None:
            self._outbox.put(None)
            self._outbox = None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


if __name__ == "__main__":
    sys.exit(serve(sys.stdin.buffer, sys.stdout.buffer))
