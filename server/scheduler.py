"""The nightly retraining schedule: one APScheduler per data directory, however many processes.

Several uvicorn workers (or servers on one data directory) each start an app; only the one that
takes an exclusive, non-blocking `flock` on `{data_dir}/scheduler.lock` runs the scheduler, and
holds the lock until it stops (the OS drops it when the process dies, so another can take over:
the others retry every `RETRY_SECONDS`). In a cluster (`settings.role`), the lock is a PostgreSQL
advisory lock instead (`server.cluster.leases.AdvisoryLock`): one schedule across hosts.

Per stream a cron job (the stream's `retrain_cron`, else `nightly_cron`; "off": none) starts a
`nightly` training job. While a stream has a `retention_days`, a daily job (`RETENTION_CRON`,
03:00 in `timezone`) deletes old data (`server.retention.prune_all`). The job list follows the
streams table: it is re-synced every `SYNC_SECONDS`, so created, deleted and rescheduled streams
need no restart. Each sync also settles the stored incidents (`server.incidents.settle`: those
none of whose anomalies is open any more resolve).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import Any

from sqlmodel import Session

from logsense.server.services import Services
from logsense.server.streams import all_streams

log = logging.getLogger("logsense.scheduler")

SYNC_SECONDS = 60.0
RETENTION_CRON = "0 3 * * *"  # the daily retention run
RETENTION_JOB = "retention"
RETRY_SECONDS = 60.0
LOCK_NAME = "scheduler.lock"


class SchedulerLock:
    """An exclusive advisory lock on a file; `acquire()` never blocks."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def nightly(services: Services, stream_id: int) -> None:
    """The scheduled job: a nightly training job for one stream (fine-tune, validate, maybe promote)."""
    from logsense.server.training import start_training

    try:
        start_training(services, stream_id, "nightly")
    except LookupError:
        pass  # the stream was deleted since the last sync


class Scheduler:
    """Owns the lock and, while holding it, a BackgroundScheduler with one cron job per stream."""

    def __init__(self, services: Services):
        self.services = services
        self.settings = services.settings
        if self.settings.cluster:  # one schedule for the whole cluster, whichever host holds the lock
            from logsense.server.cluster.leases import AdvisoryLock

            self.lock: Any = AdvisoryLock(services.engine, "logsense-scheduler")
        else:
            self.lock = SchedulerLock(self.settings.data_dir / LOCK_NAME)
        self._scheduler: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        """This process runs the schedule."""
        return self._scheduler is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="logsense-scheduler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._scheduler is None and self.lock.acquire():
                self._begin()
            if self._scheduler is not None:
                try:
                    self.sync()
                except Exception:  # noqa: BLE001
                    log.exception("could not sync the schedule with the streams")
                try:
                    from datetime import timedelta

                    from logsense.server.incidents import settle
                    from logsense.server.tables import utcnow

                    settle(self.services.engine, reopen_since=utcnow() - timedelta(days=1))
                except Exception:  # noqa: BLE001
                    log.exception("could not settle the incidents")
            self._stop.wait(SYNC_SECONDS if self._scheduler is not None else RETRY_SECONDS)

    def _begin(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self._scheduler = BackgroundScheduler(timezone=self.settings.timezone, daemon=True)
        self._scheduler.start()
        log.info("this process runs the retraining schedule (lock %s)", self.lock.path)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        self.lock.release()

    def sync(self) -> dict[str, str]:
        """Make the job list match the streams; {job id: crontab} of what is scheduled."""
        from apscheduler.triggers.cron import CronTrigger

        with Session(self.services.engine) as session:
            streams = all_streams(session)
        wanted: dict[str, tuple[int, str]] = {}
        for s in streams:
            cron = s.config().retrain_cron or self.settings.nightly_cron
            if cron != "off":
                wanted[f"nightly:{s.id}"] = (s.id, cron)
        if any(s.config().retention_days is not None for s in streams):
            wanted[RETENTION_JOB] = (0, RETENTION_CRON)  # one job for every stream with a retention
        sched = self._scheduler
        for job in sched.get_jobs():
            if job.id not in wanted or job.kwargs.get("cron") != wanted[job.id][1]:
                sched.remove_job(job.id)
        present = {job.id for job in sched.get_jobs()}
        for job_id, (stream_id, cron) in wanted.items():
            if job_id not in present:
                trigger = CronTrigger.from_crontab(cron, timezone=self.settings.timezone)
                if job_id == RETENTION_JOB:
                    sched.add_job(_run_retention, trigger, id=job_id,
                                  kwargs={"services_ref": _ServicesRef(self.services), "cron": cron},
                                  coalesce=True, max_instances=1, misfire_grace_time=6 * 3600)
                    continue
                sched.add_job(
                    _run_nightly, trigger, id=job_id,
                    kwargs={"services_ref": _ServicesRef(self.services), "stream_id": stream_id, "cron": cron},
                    coalesce=True, max_instances=1, misfire_grace_time=3600,
                )
        return {job_id: cron for job_id, (_, cron) in wanted.items()}

    def next_runs(self) -> dict[str, Any]:
        """{job id: next run time} (empty when this process does not run the schedule)."""
        if self._scheduler is None:
            return {}
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}


class _ServicesRef:
    """Holds the services for a job's kwargs (APScheduler's memory store keeps them as they are)."""

    def __init__(self, services: Services):
        self.services = services


def _run_nightly(services_ref: _ServicesRef, stream_id: int, cron: str) -> None:
    nightly(services_ref.services, stream_id)


def _run_retention(services_ref: _ServicesRef, cron: str) -> None:
    """The daily retention run: every stream with a `retention_days` (`server.retention.prune_all`)."""
    from logsense.server.retention import prune_all

    prune_all(services_ref.services.engine)
