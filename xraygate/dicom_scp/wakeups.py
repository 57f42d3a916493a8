"""Wake pynetdicom's polling threads when there is work, instead of after their next 1 ms nap.

pynetdicom (3.x) runs two polling loops per association. The DUL thread reads PDUs and sends
what the association queues; when a pass finds nothing it sleeps ``_run_loop_delay`` (1 ms).
The association's reactor sleeps 1 ms before every look at its DIMSE message queue. A C-STORE
therefore waits for up to three naps: the request reaches the DUL (its nap), the decoded message
reaches the reactor (its nap), the response reaches the DUL (its nap again). With small
instances that is most of an exchange: a bare pynetdicom SCP is at a seventh of dcmtk's pace.
(pynetdicom's own source says so: ``TODO: try and make this event based rather than running
loops`` in ``DULServiceProvider.__init__``.)

This adapter keeps both loops exactly as they are and only makes their naps end early:

- The DUL thread naps in ``select`` on its socket and an ``eventfd`` that every put on its
  outgoing queue (``to_provider_queue``) and its event queue signals.
- The reactor naps on a ``threading.Event`` that every put on the DIMSE message queue and on
  the DUL's queue to the user (release and abort primitives) sets, and so do the end of the
  DUL thread and ``Association.kill()``: everything its loop looks for but the network
  timeout. Its 1 ms poll therefore becomes a wait of up to :data:`REACTOR_NAP` (50 ms) for
  that event: a reactor polling 1,000 times a second per association cost ~1.3 ms of CPU per
  7 MB instance at 4 associations (the C-STOREs of the fast path never reach its queue), and
  the network timeout (seconds) is seen at most that much later.

Only an acceptor's reactor is woken. A requestor's ``send_*()`` methods pause its reactor by
clearing a checkpoint and waiting for an ``_is_paused`` flag that the reactor sets just before
it waits on that checkpoint; a flag seen in the instant after the wait returned lets the reactor
take the response off the queue ("Received unexpected C-ECHO service message", then a DIMSE
timeout). Waking the reactor when the previous response is queued lines it up with exactly that
instant for back-to-back requests (seen in tests/dicom_scp/test_fastpath.py), so requestors,
which xraygate's senders are, keep pynetdicom's plain naps. The SCP never sends requests on an
association it accepted.

Apart from the reactor's poll, a nap never lasts longer than pynetdicom asked for, so every
condition pynetdicom polls (timers, kill flags, states) is seen at least as soon as before; a nap
cut short only means an extra pass of a loop that was written to run every millisecond anyway.
Anything unexpected (no socket yet, a closed descriptor, another thread calling ``sleep``) falls
back to ``time.sleep``.
:func:`install` patches pynetdicom's ``time`` references in ``dul`` and ``association`` and
hooks the queues when a DUL thread or an association is created.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import threading
import time
from types import SimpleNamespace
from typing import Any

_installed = False
#: How long an acceptor's reactor waits for its event instead of pynetdicom's 1 ms poll.
REACTOR_NAP = 0.05
#: pynetdicom's reactor poll (``time.sleep(0.001)`` in ``Association._run_reactor``); its other
#: sleeps (``kill()`` waiting for the DUL, 10 ms) keep their length.
_REACTOR_POLL = 0.001


class _DulWake:
    """An ``eventfd`` the DUL thread naps on beside its socket. Signalling and closing hold a
    lock: a put racing the end of the DUL thread must never write to a closed descriptor (its
    number may already be another connection's)."""

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._lock = threading.Lock()

    def signal(self) -> None:
        with self._lock:
            if self.fd >= 0:
                os.eventfd_write(self.fd, 1)

    def drain(self) -> None:
        with self._lock, contextlib.suppress(BlockingIOError):  # nothing to read
            if self.fd >= 0:
                os.eventfd_read(self.fd)

    def close(self) -> None:
        with self._lock:
            fd, self.fd = self.fd, -1
            if fd >= 0:
                os.close(fd)


def _hook_put(q: queue.Queue[Any], wake: Any) -> None:
    """Make ``q.put`` (and ``put_nowait``, which calls it) call ``wake()`` after each put."""
    original = q.put

    def put(item: Any, block: bool = True, timeout: float | None = None) -> None:
        original(item, block, timeout)
        wake()

    q.put = put  # type: ignore[method-assign]


def _dul_nap(dul: Any, wake: _DulWake, delay: float) -> None:
    """The DUL's nap: until its socket is readable, a put signalled, or ``delay`` passed."""
    transport = getattr(dul, "socket", None)
    sock = getattr(transport, "socket", None)
    try:
        fileno = sock.fileno() if sock is not None else -1
    except OSError:
        fileno = -1
    if fileno < 0 or wake.fd < 0:
        time.sleep(delay)
        return
    pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted, unseen by select
    if pending is not None and pending():
        return
    try:
        ready, _, _ = select.select([fileno, wake.fd], [], [], delay)
    except (OSError, ValueError):  # the socket was closed under us: nap as pynetdicom would
        time.sleep(delay)
        return
    if wake.fd in ready:
        wake.drain()


def _dul_sleep(delay: float) -> None:
    """``time.sleep`` as seen by pynetdicom's ``dul`` module."""
    thread = threading.current_thread()
    wake = getattr(thread, "_xraygate_wake", None)
    if isinstance(wake, _DulWake):
        _dul_nap(thread, wake, delay)
    else:
        time.sleep(delay)


def _association_sleep(delay: float) -> None:
    """``time.sleep`` as seen by pynetdicom's ``association`` module."""
    event = getattr(threading.current_thread(), "_xraygate_event", None)
    if isinstance(event, threading.Event):
        if event.wait(REACTOR_NAP if delay <= _REACTOR_POLL else delay):
            event.clear()  # the loop looks at its queues right after this nap
    else:
        time.sleep(delay)


def _clock(sleep: Any) -> SimpleNamespace:
    """A stand-in for the ``time`` module: every function of it, with ``sleep`` replaced."""
    names = {name: getattr(time, name) for name in dir(time) if not name.startswith("__")}
    return SimpleNamespace(**{**names, "sleep": sleep})


def _patch_dul(dul_cls: Any) -> None:
    original_init = dul_cls.__init__
    original_run = dul_cls.run_reactor

    def init(self: Any, assoc: Any) -> None:
        original_init(self, assoc)
        self._xraygate_wake = None

        def wake() -> None:
            current = self._xraygate_wake
            if current is not None:
                current.signal()

        _hook_put(self.to_provider_queue, wake)
        _hook_put(self.event_queue, wake)

    def run_reactor(self: Any) -> None:
        wake = _DulWake()
        self._xraygate_wake = wake
        try:
            original_run(self)
        finally:
            self._xraygate_wake = None
            wake.close()
            _wake_reactor(self.assoc)  # it checks ``dul.is_alive()``

    dul_cls.__init__ = init
    dul_cls.run_reactor = run_reactor


def _wake_reactor(assoc: Any) -> None:
    event = getattr(assoc, "_xraygate_event", None)
    if isinstance(event, threading.Event):
        event.set()


def _patch_association(assoc_cls: Any) -> None:
    original_init = assoc_cls.__init__
    original_kill = assoc_cls.kill

    def init(self: Any, ae: Any, mode: str) -> None:
        original_init(self, ae, mode)
        if mode != "acceptor":  # see the module doc: a requestor's send_*() race
            return
        event = threading.Event()
        self._xraygate_event = event
        _hook_put(self.dimse.msg_queue, event.set)
        _hook_put(self.dul.to_user_queue, event.set)

    def kill(self: Any) -> None:
        original_kill(self)
        _wake_reactor(self)  # it checks ``_kill`` after each nap

    assoc_cls.__init__ = init
    assoc_cls.kill = kill


def install() -> None:
    """Patch pynetdicom's naps (idempotent; once per process, before any association)."""
    global _installed
    if _installed:
        return
    from pynetdicom import association, dul

    _patch_dul(dul.DULServiceProvider)
    _patch_association(association.Association)
    dul.time = _clock(_dul_sleep)  # type: ignore[attr-defined,assignment]
    association.time = _clock(_association_sleep)  # type: ignore[attr-defined,assignment]
    _installed = True
