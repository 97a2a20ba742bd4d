"""Background jobs (DESIGN 10): work longer than a request, run by workers on any host.

The rest of the code declares a task with ``@jobs.task`` and defers it with ``.defer(...)``; it
never imports a queue library. Two queues stand behind this module, chosen by ``DPS_JOB_QUEUE``
(default: from the database URL):

- **procrastinate** on PostgreSQL. Jobs live in the service's own database (the
  ``procrastinate_*`` tables of migration 0008). A job is inserted on the connection of the
  transaction that defers it, so it exists if and only if the change it belongs to commits, and
  no worker sees it before. Workers (``flask --app dps worker``) LISTEN for new jobs and run on
  any host that reaches the database.
- **huey** (``SqliteHuey``) beside a SQLite database: the embedded default. Its jobs are in a
  SQLite file of their own (``instance/dps-jobs.sqlite3`` next to ``instance/dps.sqlite3``),
  durable across restarts, and need no service. A job is enqueued once the transaction that
  deferred it has committed. The web process runs a worker thread itself
  (``DPS_WORKER_IN_WEB``), so ``make run`` needs nothing else.

Tasks run inside an app context, with the simulated clock synced, like a command. A task
that raises ``RetryLater`` is tried again after a wait of ``DPS_JOB_RETRY_SECONDS``, doubled at
each attempt, until its attempts are used up; any other exception fails the job at once (and is
logged). Arguments are JSON values (ids, not objects): a job may run on another host, later.

Two queues of work: ``mail`` and ``exports``, so that an email never waits behind a long export
when workers are given to each (``flask --app dps worker --queue mail``).
"""
from __future__ import annotations

import asyncio
import atexit
import logging
import signal
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from flask import Flask, current_app
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from .extensions import db
from .filters import plural

log = logging.getLogger(__name__)

QUEUES = ("mail", "exports")
PROCRASTINATE = "procrastinate"
# How often an idle embedded (huey) worker looks for new jobs; procrastinate is woken by NOTIFY.
IDLE_POLL_SECONDS = 1.0


class RetryLater(Exception):
    """Raised by a task whose work may succeed later (a mail server saying "try again"): the job
    is tried again after the backoff while it has attempts left."""


@dataclass(frozen=True)
class Task:
    name: str
    func: Callable[..., None]
    queue: str
    attempts: int = 1  # tries in all, the first included

    def defer(self, **kwargs: Any) -> None:
        """Have a worker run this task once the current transaction commits (and never if it
        rolls back). Call it inside an app context, in the transaction of the change."""
        queue_of(current_app).defer(self, kwargs)

    def __call__(self, **kwargs: Any) -> None:
        """Run it here and now (a command catching up, or a test)."""
        self.func(**kwargs)


TASKS: dict[str, Task] = {}


def task(name: str, *, queue: str, attempts: int = 1) -> Callable[[Callable[..., None]], Task]:
    """Declare a task. ``attempts`` > 1: a ``RetryLater`` is tried again, with backoff."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}: one of {', '.join(QUEUES)}")

    def decorator(func: Callable[..., None]) -> Task:
        if name in TASKS:
            raise ValueError(f"task {name!r} declared twice")
        TASKS[name] = declared = Task(name, func, queue, attempts)
        return declared

    return decorator


def _import_tasks() -> None:
    # The modules that declare tasks: every queue knows every task before a worker starts.
    from . import mail  # noqa: F401
    from .exports import deliver  # noqa: F401


# --- Configuration ---------------------------------------------------------------------------------

def default_queue_url(database_url: str) -> str:
    """procrastinate on PostgreSQL; beside a SQLite database file, a jobs file next to it."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return PROCRASTINATE
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database).absolute()
        jobs_file = path.with_name(f"{path.stem}-jobs{path.suffix or '.sqlite3'}")
        return f"sqlite:///{jobs_file}"
    raise ValueError("no default job queue for this database: set DPS_JOB_QUEUE")


def check_queue_url(queue_url: str, database_url: str) -> str:
    """The queue ``DPS_JOB_QUEUE`` names, checked against the database (ValueError says why)."""
    if queue_url == PROCRASTINATE:
        if make_url(database_url).get_backend_name() != "postgresql":
            raise ValueError("DPS_JOB_QUEUE=procrastinate keeps its jobs in the service's database, "
                             "which must then be PostgreSQL (DPS_DATABASE_URL)")
        return queue_url
    if queue_url.startswith("sqlite:///") and len(queue_url) > len("sqlite:///"):
        return queue_url
    raise ValueError(f"DPS_JOB_QUEUE must be 'procrastinate' or sqlite:///path/to/jobs.sqlite3, not {queue_url!r}")


def include_in_schema_check(name: str | None, type_: str, parent_names: dict) -> bool:
    """For Alembic's autogenerate (``db check``): procrastinate's tables are made by migration
    0008 from procrastinate's own SQL, not from models, so the comparison leaves them out."""
    return not (type_ == "table" and name is not None and name.startswith("procrastinate_"))


# --- The queue of an app ---------------------------------------------------------------------------

def init_app(app: Flask) -> None:
    _import_tasks()
    queue_url = app.config["DPS_JOB_QUEUE"]
    retry_seconds = app.config["DPS_JOB_RETRY_SECONDS"]
    if queue_url == PROCRASTINATE:
        queue: Queue = ProcrastinateQueue(app, retry_seconds)
    else:
        queue = HueyQueue(app, unquote(queue_url[len("sqlite:///"):]), retry_seconds)
    app.extensions["dps_jobs"] = queue
    if app.config["DPS_WORKER_IN_WEB"]:
        @app.before_request
        def _start_worker_in_web() -> None:
            # On the first request, not at start: commands (db upgrade, export...) build the
            # app too, and must never start a worker that their exit would cut short.
            queue.start_in_web()


def queue_of(app: Flask) -> "Queue":
    return app.extensions["dps_jobs"]


class Queue(ABC):
    kind: str

    def __init__(self, app: Flask, retry_seconds: int):
        self.app = app
        self.retry_seconds = retry_seconds
        self._web_worker_lock = threading.Lock()
        self._stop_web_worker: Callable[[], None] | None = None

    @abstractmethod
    def defer(self, task: Task, kwargs: dict[str, Any]) -> None:
        """Queue ``task`` in the current transaction (or once it commits)."""

    @abstractmethod
    def run_worker(self, *, queues: Iterable[str] = QUEUES, concurrency: int = 2, burst: bool = False) -> None:
        """Run jobs in the foreground until stopped (SIGINT or SIGTERM: the jobs running finish
        first), or with ``burst`` until no job is due."""

    @abstractmethod
    def _start_threads(self) -> Callable[[], None]:
        """Start a worker in daemon threads of this process; return what stops it."""

    def start_in_web(self) -> None:
        """Start this process's own worker, once (DPS_WORKER_IN_WEB)."""
        with self._web_worker_lock:
            if self._stop_web_worker is not None:
                return
            self._stop_web_worker = self._start_threads()
        atexit.register(self.stop_in_web)
        log.info("Job worker (%s) started in this web process", self.kind)

    def stop_in_web(self) -> None:
        """Ask this process's own worker to stop (it ends after the jobs it is running)."""
        if self._stop_web_worker is not None:
            self._stop_web_worker()

    def delay(self, attempt: int) -> int:
        """Seconds to wait after failed attempt number ``attempt`` (1, 2...): doubling."""
        return self.retry_seconds * 2 ** (attempt - 1)

    def execute(self, task: Task, kwargs: dict[str, Any]) -> None:
        """Run one job as a worker does: in an app context of its own, the clock synced."""
        from . import clock

        with self.app.app_context():
            try:
                clock.sync()
                task.func(**kwargs)
            except RetryLater as exc:
                db.session.rollback()
                log.warning("Job %s %s will be tried again: %s", task.name, kwargs, exc)
                raise
            except Exception:
                db.session.rollback()
                log.exception("Job %s %s failed", task.name, kwargs)
                raise


# --- procrastinate (PostgreSQL) ---------------------------------------------------------------------

class ProcrastinateQueue(Queue):
    kind = "procrastinate"

    def __init__(self, app: Flask, retry_seconds: int):
        import procrastinate

        super().__init__(app, retry_seconds)
        conninfo = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(drivername="postgresql") \
            .render_as_string(hide_password=False)
        # Deferring never opens a pool: jobs go in on the connection of the transaction that
        # defers them. Workers open the async connector's pool (LISTEN/NOTIFY).
        self._deferrer = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=conninfo))
        self._workers = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))
        for declared in TASKS.values():
            self._workers.task(name=declared.name, queue=declared.queue, pass_context=False,
                               retry=_retry_strategy(self, declared.attempts))(self._runner(declared))

    def _runner(self, declared: Task) -> Callable[..., None]:
        def run(**kwargs: Any) -> None:
            self.execute(declared, kwargs)
        run.__name__ = declared.name.replace(".", "_")
        return run

    def defer(self, task: Task, kwargs: dict[str, Any]) -> None:
        connection = db.session.connection().connection.driver_connection
        self._deferrer.configure_task(task.name, queue=task.queue, connection=connection).defer(**kwargs)

    def _worker(self, queues: Iterable[str], concurrency: int, burst: bool, signals: bool):
        from procrastinate.worker import Worker

        # Finished jobs are deleted (their outcome is on the outbox row or the export job);
        # failed ones stay in procrastinate_jobs for whoever runs the service to look at.
        return Worker(app=self._workers, queues=list(queues), concurrency=concurrency, wait=not burst,
                      install_signal_handlers=signals, delete_jobs="successful", name="dps")

    async def _serve(self, worker) -> None:
        async with self._workers.open_async():
            await worker.run()

    def run_worker(self, *, queues: Iterable[str] = QUEUES, concurrency: int = 2, burst: bool = False) -> None:
        queues = list(queues)
        signals = threading.current_thread() is threading.main_thread()
        asyncio.run(self._serve(self._worker(queues, concurrency, burst, signals)))
        # A burst worker stops when it first finds nothing to fetch, though a job it was running
        # may have been put back for a retry due at once: go on until nothing is due.
        while burst and self._due(queues):
            asyncio.run(self._serve(self._worker(queues, concurrency, burst, signals)))

    def _due(self, queues: list[str]) -> bool:
        with self.app.app_context():
            return bool(db.session.scalar(
                text("SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE status = 'todo' "
                     "AND queue_name = ANY(:queues) AND (scheduled_at IS NULL OR scheduled_at <= now()))"),
                {"queues": queues}))

    def _start_threads(self) -> Callable[[], None]:
        worker = self._worker(QUEUES, len(QUEUES), burst=False, signals=False)
        thread = threading.Thread(target=asyncio.run, args=(self._serve(worker),), name="dps-jobs", daemon=True)
        thread.start()
        return worker.stop


def _retry_strategy(queue: Queue, attempts: int):
    """procrastinate's retry strategy for a task: only ``RetryLater``, with the doubling waits."""
    from procrastinate.retry import BaseRetryStrategy, RetryDecision

    class Backoff(BaseRetryStrategy):
        def get_retry_decision(self, *, exception: BaseException, job) -> RetryDecision | None:
            tried = job.attempts + 1  # job.attempts counts the attempts before this one
            if not isinstance(exception, RetryLater) or tried >= attempts:
                return None
            return RetryDecision(retry_in={"seconds": queue.delay(tried)})

    return Backoff() if attempts > 1 else None


# --- huey (embedded, SQLite) ----------------------------------------------------------------------

_AFTER_COMMIT = "dps_jobs_after_commit"


class HueyQueue(Queue):
    kind = "huey"

    def __init__(self, app: Flask, path: str, retry_seconds: int):
        from huey import SqliteHuey

        super().__init__(app, retry_seconds)
        if not Path(path).is_absolute():
            path = str(Path(app.instance_path) / path)
        self.path = path
        # One huey per queue of work, all in one file (huey keeps a queue name on every row).
        # fsync: a job accepted survives a power cut, as the database's own rows do.
        self._hueys = {name: SqliteHuey(name=f"dps-{name}", filename=path, results=False, utc=True,
                                        fsync=True, timeout=30)
                       for name in QUEUES}
        self._tasks = {}
        for declared in TASKS.values():
            self._tasks[declared.name] = self._hueys[declared.queue].task(
                name=declared.name, retries=declared.attempts - 1, retry_delay=retry_seconds,
                retry_backoff=2)(self._runner(declared))

    def _runner(self, declared: Task) -> Callable[..., None]:
        from huey.exceptions import CancelExecution

        def run(**kwargs: Any) -> None:
            try:
                self.execute(declared, kwargs)
            except RetryLater:
                raise  # huey tries it again after the backoff, while it has retries left
            except Exception as exc:
                raise CancelExecution(retry=False) from exc  # failed for good (logged above)
        return run

    def defer(self, task: Task, kwargs: dict[str, Any]) -> None:
        session = db.session()
        transaction = session.get_nested_transaction() or session.get_transaction() or session.begin()
        session.info.setdefault(_AFTER_COMMIT, []).append((self, task, kwargs, transaction))

    def enqueue(self, task: Task, kwargs: dict[str, Any]) -> None:
        self._tasks[task.name](**kwargs)

    def run_worker(self, *, queues: Iterable[str] = QUEUES, concurrency: int = 2, burst: bool = False) -> None:
        queues = list(queues)
        if burst:
            while self._run_one(queues):
                pass
            return
        stop = threading.Event()
        threads = [threading.Thread(target=self._work, args=(queues, stop), name=f"dps-jobs-{n}")
                   for n in range(concurrency)]
        if threading.current_thread() is threading.main_thread():
            def stop_gracefully(signum, _frame) -> None:
                stop.set()  # each thread ends once its current job is done...
                signal.signal(signum, signal.SIG_DFL)  # ...unless the signal comes again

            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, stop_gracefully)
        for thread in threads:
            thread.start()
        log.info("Job worker (huey, %s) running %s on %s", self.path, plural(concurrency, "thread"), ", ".join(queues))
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)  # wakes for signals; each thread ends after its current job

    def _start_threads(self) -> Callable[[], None]:
        stop = threading.Event()
        # A thread for each queue, so an email never waits behind a long export.
        for name in QUEUES:
            threading.Thread(target=self._work, args=([name], stop), name=f"dps-jobs-{name}", daemon=True).start()
        return stop.set

    def _work(self, queues: list[str], stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                ran = self._run_one(queues)
            except Exception:
                log.exception("The job worker could not read its queue %s", self.path)
                ran = False
            if not ran:
                stop.wait(IDLE_POLL_SECONDS)

    def _run_one(self, queues: list[str]) -> bool:
        """Run the first job due in ``queues`` (in their order); False when none is."""
        for name in queues:
            huey = self._hueys[name]
            for scheduled in huey.read_schedule():  # retries whose wait is over
                huey.enqueue(scheduled)
            job = huey.dequeue()
            if job is not None:
                huey.execute(job)  # retries and failures are handled (and logged) by huey
                return True
        return False


@event.listens_for(Session, "after_commit")
def _enqueue_committed(session: Session) -> None:
    for queue, task, kwargs, _transaction in session.info.pop(_AFTER_COMMIT, ()):
        try:
            queue.enqueue(task, kwargs)
        except Exception:
            # The change is committed; its job is not. Say so: `outbox send` catches emails up.
            log.exception("Could not queue job %s %s after commit", task.name, kwargs)


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction) -> None:
    """Jobs deferred inside a transaction (or savepoint) that rolled back are never run."""
    deferred = session.info.get(_AFTER_COMMIT)
    if not deferred:
        return

    def inside(transaction) -> bool:
        while transaction is not None:
            if transaction is previous_transaction:
                return True
            transaction = transaction.parent
        return False

    session.info[_AFTER_COMMIT] = [entry for entry in deferred if not inside(entry[3])]
