"""More receiving processes on the DICOM port, to use every core (``XRAYGATE_SCP_PROCESSES``).

pynetdicom decodes PDUs in Python threads, so one process is bound by one core. The first
receiving process is the one ``xraygate serve``/``scp`` runs in; :func:`start_receivers` spawns
the others. Every one binds the same port with ``SO_REUSEPORT`` (the kernel spreads incoming
connections over them) and shares the database and the object store; each has its own ingest
journal segments (see :mod:`xraygate.core.ingest.journal`), so any one that starts replays what
a killed one left.

A receiver ends like the main process: on SIGTERM it stops accepting and lets its associations
finish (``shutdown_grace_seconds``). It also dies with its parent (``PR_SET_PDEATHSIG``, and a
check of its parent's pid), so a SIGKILLed service leaves no orphan holding the port.
"""

from __future__ import annotations

import ctypes
import faulthandler
import logging
import multiprocessing
import os
import signal
import threading
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType

from xraygate.core.config import Settings

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def process_count(settings: Settings) -> int:
    """Receiving processes to run: the setting, or one per core when it is 0."""
    if settings.scp_processes > 0:
        return settings.scp_processes
    return max(1, len(os.sched_getaffinity(0)))


@dataclass
class Receivers:
    """The spawned receiving processes (not the one in the main process)."""

    processes: list[BaseProcess]

    def stop(self, grace: float) -> None:
        """SIGTERM each (a graceful stop), wait, then SIGKILL what is left."""
        for proc in self.processes:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            proc.join(timeout=grace + 10.0)
            if proc.is_alive():
                log.warning("receiver %s did not stop: killing it", proc.pid)
                proc.kill()
                proc.join(timeout=10.0)


def start_receivers(settings: Settings, count: int, port: int) -> Receivers:
    """Spawn ``count`` receiving processes on ``port`` (the one the main process bound)."""
    ctx = multiprocessing.get_context("spawn")
    child = settings.model_copy(update={"dicom_port": port})
    processes: list[BaseProcess] = []
    for n in range(count):
        proc = ctx.Process(
            target=run_receiver, args=(child, os.getpid()), name=f"scp-{n + 1}", daemon=False
        )
        proc.start()
        processes.append(proc)
    return Receivers(processes)


def run_receiver(settings: Settings, parent: int) -> None:
    """A receiving process: the SCP on the shared port until SIGTERM or the parent's end."""
    from xraygate.core.logging import configure_logging
    from xraygate.core.queue import JobQueue
    from xraygate.core.storage import store_from_settings
    from xraygate.dicom_scp.server import start_scp

    _die_with_parent()
    configure_logging(settings)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    stop = threading.Event()

    def _handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent leads
    server = start_scp(
        settings,
        store_from_settings(settings),
        JobQueue.from_settings(settings),
        reuse_port=True,
    )
    while not stop.wait(0.5):
        if os.getppid() != parent:  # the parent is gone (PDEATHSIG is best effort)
            os.kill(os.getpid(), signal.SIGKILL)
    server.stop(settings.shutdown_grace_seconds)


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the pid check remains
        pass
