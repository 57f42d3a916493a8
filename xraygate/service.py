"""The whole service wired in one place, top to bottom.

    settings -> database (migrated) -> object store -> work queue
        -> DICOM SCP        writes objects + index rows + ``infer`` jobs
        -> workers          run jobs: infer -> emit-fhir / emit-hl7 / emit-pacs / deidentify
        -> HTTP gateway     FHIR API, admin API, pages, metrics

Services never call each other: they meet only in the database and the queue.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from xraygate.core import db, startup
from xraygate.core.config import Settings
from xraygate.core.errors import (
    ConfigurationError,
    DatabaseError,
    StorageError,
    StorageFull,
    XraygateError,
)
from xraygate.core.jobs import JobKind
from xraygate.core.logging import configure_logging
from xraygate.core.models import Instance, Patient, Series, Study
from xraygate.core.outbox import release_streams
from xraygate.core.queue import JobQueue
from xraygate.core.secret_policy import check_secrets
from xraygate.core.storage import ObjectStore, store_from_settings
from xraygate.core.worker import Handler, Worker

log = logging.getLogger("xraygate.service")

_T = TypeVar("_T")


def job_handlers(settings: Settings, store: ObjectStore, queue: JobQueue) -> dict[str, Handler]:
    """Every job kind the workers of this build can run, by kind."""
    from xraygate.anonymizer.worker import make_handlers as deid_handlers
    from xraygate.fhir.worker import make_handlers as fhir_handlers
    from xraygate.hl7.worker import make_handlers as hl7_handlers
    from xraygate.inference.worker import make_handlers as inference_handlers
    from xraygate.pacs.worker import make_handlers as pacs_handlers

    handlers: dict[str, Handler] = {}
    handlers.update(inference_handlers(settings, store, queue))
    handlers.update(deid_handlers(settings, store, queue))
    handlers.update(fhir_handlers(settings, store, queue))
    handlers.update(hl7_handlers(settings, store, queue))
    handlers.update(pacs_handlers(settings, store, queue))
    if missing := set(JobKind) - handlers.keys():
        raise ConfigurationError(f"no handler for job kinds {sorted(missing)}")
    return handlers


def _database_unreachable(exc: Exception) -> bool:
    """A refused or dropped database connection (raw, or wrapped as our DatabaseError)."""
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DatabaseError) and isinstance(exc.__cause__, OperationalError)
    )


def _store_unreachable(exc: Exception) -> bool:
    return isinstance(exc, StorageError) and not isinstance(exc, StorageFull)


@dataclass(frozen=True)
class _Backend:
    """A back end a process may start before: how its absence shows, what to say."""

    name: str
    settings: str  # the settings that point at it
    unreachable: Callable[[Exception], bool]
    error: type[XraygateError]


_DATABASE = _Backend("database", "XRAYGATE_DATABASE_URL", _database_unreachable, DatabaseError)
_OBJECT_STORE = _Backend(
    "object store",
    "XRAYGATE_STORAGE_URL, XRAYGATE_S3_ENDPOINT_URL",
    _store_unreachable,
    StorageError,
)


def open_queue(settings: Settings, sleep: Callable[[float], None] = time.sleep) -> JobQueue:
    """The queue on a migrated database, once the database can be reached (see
    :func:`_when_reachable`); any other database error is raised at once."""
    return _when_reachable(
        settings, lambda: JobQueue.from_settings(settings, migrate=True), _DATABASE, sleep
    )


def open_object_store(
    settings: Settings, sleep: Callable[[float], None] = time.sleep
) -> ObjectStore:
    """The object store, once its endpoint can be reached (an S3 endpoint down at start-up)."""
    return _when_reachable(settings, lambda: store_from_settings(settings), _OBJECT_STORE, sleep)


def _when_reachable(
    settings: Settings,
    open_it: Callable[[], _T],
    backend: _Backend,
    sleep: Callable[[float], None],
) -> _T:
    """``open_it()``, retried with a growing pause for up to ``startup_wait_seconds``
    while ``backend`` is unreachable (a pod started before its back end, or during an outage);
    then one error naming the settings."""
    wait = max(0.0, settings.startup_wait_seconds)
    deadline = time.monotonic() + wait
    pause = 1.0
    while True:
        try:
            return open_it()
        except (XraygateError, OperationalError) as exc:
            if not backend.unreachable(exc):
                raise
            if time.monotonic() + pause > deadline:
                raise backend.error(
                    f"{backend.name} unreachable for {wait:.0f} s "
                    f"({backend.settings}, XRAYGATE_STARTUP_WAIT_SECONDS)"
                ) from exc
            log.warning("%s not reachable yet; retrying in %.0f s", backend.name, pause)
            sleep(pause)
            pause = min(pause * 2, 10.0)


def run(settings: Settings, *, scp: bool, workers: bool, http: bool) -> None:
    """Run the chosen parts until SIGINT/SIGTERM; refuses to start with an unsafe secret."""
    configure_logging(settings)
    startup.quiet_third_party()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: every stack to stderr
    check_secrets(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    queue = open_queue(settings)
    store = open_object_store(settings)
    stop = threading.Event()

    scp_server = None
    receivers = None
    running: list[tuple[Worker, threading.Thread]] = []
    if scp:
        from xraygate.dicom_scp.processes import process_count, start_receivers
        from xraygate.dicom_scp.server import start_scp

        count = process_count(settings)
        scp_server = start_scp(settings, store, queue, reuse_port=count > 1)
        if count > 1:
            receivers = start_receivers(settings, count - 1, scp_server.port)
        log.info(
            "DICOM SCP %s listening on %s:%s (%d receiving processes)",
            settings.ae_title,
            settings.dicom_host,
            scp_server.port,
            count,
        )
    if workers:  # the handlers register the bundled model: the database again
        handlers = _when_reachable(
            settings, lambda: job_handlers(settings, store, queue), _DATABASE, time.sleep
        )
        for _ in range(max(1, settings.workers)):
            worker = Worker(queue, handlers)
            thread = threading.Thread(
                target=worker.run, args=(stop, settings.queue_poll_seconds), daemon=True
            )
            thread.start()
            running.append((worker, thread))
    if not http and settings.ops_port:
        _start_ops_listener(settings)  # a daemon thread: ends with the process
    scp_port = scp_server.port if scp_server is not None else None
    # Settings and the model only (no PHI), written as is: the log scrubber would take the
    # ORU^R01 and 0.0.0.0 in it for a name and a UID.
    block = startup.block(
        settings, engine=queue.engine, scp_port=scp_port, http=http, workers=workers
    )
    sys.stderr.write(block + "\n")
    sys.stderr.flush()
    try:
        if http:
            _serve_http(settings)
        else:
            _wait_for_signal(stop)
    finally:
        stop.set()  # workers claim nothing more; each finishes the job in hand
        grace = settings.shutdown_grace_seconds
        stopping = None
        if receivers is not None:  # they stop in parallel with this process's SCP
            stopping = threading.Thread(target=receivers.stop, args=(grace,))
            stopping.start()
        if scp_server is not None:
            scp_server.stop(grace)
        if stopping is not None:
            stopping.join()
        stop_workers(queue, running, settings.shutdown_grace_seconds)
        log.info("stopped")


def stop_workers(
    queue: JobQueue, running: list[tuple[Worker, threading.Thread]], grace: float
) -> None:
    """Wait up to ``grace`` seconds for the workers' jobs in hand; release what is left, so that
    no job (and no patient's delivery stream) waits for its lease to expire."""
    deadline = time.monotonic() + grace
    for _, thread in running:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    for worker, thread in running:
        if thread.is_alive():
            released = worker.release()
            streams = release_streams(queue.engine, released)
            log.warning(
                "worker %s: released %d unfinished jobs and %d delivery streams",
                worker.worker_id,
                len(released),
                streams,
            )


def _serve_http(settings: Settings) -> None:
    import uvicorn

    from xraygate.gateway.app import create_app
    from xraygate.gateway.server import uvicorn_options

    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        **uvicorn_options(settings),
    )


def _start_ops_listener(settings: Settings) -> threading.Thread:
    """/healthz, /readyz and /metrics for the split `scp` and `worker` processes."""
    import uvicorn

    from xraygate.gateway.app import create_ops_app
    from xraygate.gateway.server import uvicorn_options

    config = uvicorn.Config(
        create_ops_app(settings),
        host=settings.http_host,
        port=settings.ops_port or 0,
        **uvicorn_options(settings),
    )
    thread = threading.Thread(target=uvicorn.Server(config).run, daemon=True)
    thread.start()
    return thread


def _wait_for_signal(stop: threading.Event) -> None:
    def _handle(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)
    while not stop.wait(1.0):
        pass


def status_counts(settings: Settings) -> dict[str, int]:
    """Counts for ``xraygate status``: index rows and jobs by state."""
    engine = db.open_database(settings.resolved_database_url, migrate=True)
    counts: dict[str, int] = {}
    with db.read_session(engine) as session:
        for name, model in (
            ("patients", Patient),
            ("studies", Study),
            ("series", Series),
            ("instances", Instance),
        ):
            counts[name] = int(session.scalar(select(func.count()).select_from(model)) or 0)
    for state, number in JobQueue(engine).counts().items():
        counts[f"jobs_{state}"] = number
    return counts
