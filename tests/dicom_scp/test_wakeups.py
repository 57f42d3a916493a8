"""Issue 13: pynetdicom's naps end when there is work (unit tests of dicom_scp/wakeups.py).

Each wake is checked against a nap of several seconds, so a wake that did not happen fails
the test by a wide margin on any machine, however loaded."""

from __future__ import annotations

import queue
import socket
import threading
import time
from types import SimpleNamespace
from typing import Any

from xraygate.dicom_scp import wakeups

LONG = 5.0  # a nap that a wake must cut short


def _in_thread(target: Any) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_association_nap_ends_when_a_message_is_queued() -> None:
    q: queue.Queue[int] = queue.Queue()
    event = threading.Event()
    wakeups._hook_put(q, event.set)
    took: list[float] = []

    def reactor() -> None:
        threading.current_thread()._xraygate_event = event  # type: ignore[attr-defined]
        start = time.monotonic()
        wakeups._association_sleep(LONG)
        took.append(time.monotonic() - start)

    thread = _in_thread(reactor)
    time.sleep(0.05)
    q.put(1)
    thread.join(LONG * 2)
    assert took and took[0] < LONG / 2, took
    assert not event.is_set(), "the wake is consumed by the nap it ended"
    assert q.get_nowait() == 1  # the put itself is unchanged


def test_dul_nap_ends_on_socket_data_and_on_a_signal() -> None:
    ours, theirs = socket.socketpair()
    wake = wakeups._DulWake()
    dul = SimpleNamespace(socket=SimpleNamespace(socket=ours))
    try:
        theirs.send(b"x")
        start = time.monotonic()
        wakeups._dul_nap(dul, wake, LONG)
        assert time.monotonic() - start < LONG / 2, "readable socket did not end the nap"
        ours.recv(1)

        _in_thread(lambda: (time.sleep(0.05), wake.signal()))
        start = time.monotonic()
        wakeups._dul_nap(dul, wake, LONG)
        assert time.monotonic() - start < LONG / 2, "a signal did not end the nap"

        start = time.monotonic()
        wakeups._dul_nap(dul, wake, 0.05)  # the signal was drained: a full nap again
        assert time.monotonic() - start >= 0.04
    finally:
        wake.close()
        ours.close()
        theirs.close()


def test_dul_nap_falls_back_to_sleep_without_a_usable_socket() -> None:
    wake = wakeups._DulWake()
    closed = socket.socket()
    closed.close()
    try:
        for transport in (None, SimpleNamespace(socket=None), SimpleNamespace(socket=closed)):
            start = time.monotonic()
            wakeups._dul_nap(SimpleNamespace(socket=transport), wake, 0.05)
            assert time.monotonic() - start >= 0.04
    finally:
        wake.close()
    wake.signal()  # after close: harmless
    wake.drain()


def test_install_patches_only_pynetdicoms_sleep_once() -> None:
    from pynetdicom import association, dul

    wakeups.install()
    wakeups.install()
    assert dul.time.sleep is wakeups._dul_sleep  # type: ignore[attr-defined]
    assert association.time.sleep is wakeups._association_sleep  # type: ignore[attr-defined]
    assert dul.time.monotonic is time.monotonic  # type: ignore[attr-defined]
    assert association.time.time is time.time  # type: ignore[attr-defined]
    assert time.sleep is not wakeups._dul_sleep  # the real module is untouched
    start = time.monotonic()
    wakeups._association_sleep(0.05)  # any other thread: a plain sleep
    assert time.monotonic() - start >= 0.04


def test_only_an_acceptors_reactor_is_woken() -> None:
    """A requestor keeps pynetdicom's plain naps: its send_*() methods race a woken reactor."""
    from pynetdicom import AE
    from pynetdicom.association import Association

    wakeups.install()
    ae = AE()
    acceptor, requestor = Association(ae, "acceptor"), Association(ae, "requestor")
    assert isinstance(getattr(acceptor, "_xraygate_event", None), threading.Event)
    assert getattr(requestor, "_xraygate_event", None) is None


def test_an_acceptors_poll_waits_for_its_event_and_other_sleeps_keep_their_length() -> None:
    """The reactor's 1 ms poll becomes a wait of up to REACTOR_NAP for its event (the fast
    path's C-STOREs never reach its queue: polling 1,000 times a second cost CPU)."""
    event = threading.Event()
    took: dict[float, float] = {}

    def reactor() -> None:
        threading.current_thread()._xraygate_event = event  # type: ignore[attr-defined]
        for delay in (0.001, 0.01):
            start = time.monotonic()
            wakeups._association_sleep(delay)
            took[delay] = time.monotonic() - start

    _in_thread(reactor).join(LONG)
    assert took[0.001] >= wakeups.REACTOR_NAP * 0.8, took
    assert took[0.01] < wakeups.REACTOR_NAP * 0.8, took  # kill()'s wait for the DUL: as asked


def _napping_reactor(assoc: Any) -> tuple[threading.Thread, list[float]]:
    """A thread napping as ``assoc``'s reactor would, for LONG (a wake must cut it short)."""
    took: list[float] = []

    def reactor() -> None:
        threading.current_thread()._xraygate_event = assoc._xraygate_event  # type: ignore[attr-defined]
        start = time.monotonic()
        wakeups._association_sleep(LONG)
        took.append(time.monotonic() - start)

    thread = _in_thread(reactor)
    time.sleep(0.05)
    return thread, took


def test_kill_and_the_end_of_the_dul_thread_wake_the_reactor() -> None:
    """The reactor's loop checks ``_kill`` and ``dul.is_alive()`` after each nap: both are
    signalled, so a longer nap does not delay the end of an association."""
    from pynetdicom import AE
    from pynetdicom.association import Association

    wakeups.install()
    assoc = Association(AE(), "acceptor")
    thread, took = _napping_reactor(assoc)
    assoc.kill()  # the DUL thread never started: kill() returns at once
    thread.join(LONG * 2)
    assert took and took[0] < LONG / 2, "kill() did not wake the reactor"

    assoc = Association(AE(), "acceptor")
    thread, took = _napping_reactor(assoc)
    assoc.dul._kill_thread = True  # the DUL loop ends on its first pass
    assoc.dul.run_reactor()
    thread.join(LONG * 2)
    assert took and took[0] < LONG / 2, "the end of the DUL thread did not wake the reactor"
