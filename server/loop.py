"""The shape the server's background threads share: call `round()` until stopped, and wait
`poll_seconds` (or until `wake()`) after a round that left nothing to do or while `ready()` is False.
The LogGPT worker, the new-text encoder and the search indexer are such loops."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("logsense.loop")


class Loop:
    """Daemon thread(s) around `round()`; subclasses set `name` and implement `round`."""

    name = "logsense-loop"

    def __init__(self, poll_seconds: float, threads: int = 1):
        self.poll_seconds = poll_seconds
        self.n_threads = threads
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.rounds = 0  # for tests: completed rounds

    def round(self) -> bool:  # pragma: no cover - interface
        """Do one share of the work; True when more is waiting (no pause before the next)."""
        raise NotImplementedError

    def ready(self) -> bool:
        """False while the loop must not work yet (the models still loading)."""
        return True

    def start(self) -> None:
        for i in range(self.n_threads):
            name = self.name if self.n_threads == 1 else f"{self.name}-{i}"
            thread = threading.Thread(target=self._run, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = False
            if self.ready():
                try:
                    busy = self.round()
                except Exception:  # noqa: BLE001 (the thread must survive; its work stays queued in the database)
                    log.exception("%s round failed", self.name)
                self.rounds += 1
            if not busy:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
