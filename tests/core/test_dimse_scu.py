"""keep_responses: a C-STORE response the association's reactor takes reaches the waiting send.

The race (pydicom/pynetdicom#875) is made to happen every time: the sending thread's blocking
read first waits for the response to arrive and hands it to the association's request dispatch,
as the reactor does when it wins the race, and only then reads the queue.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydicom import examples
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.association import Association

from xraygate.core.dimse_scu import keep_responses

pytestmark = pytest.mark.integration


@pytest.fixture
def scp_port() -> Iterator[int]:
    ae = AE(ae_title="PEER")
    ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)

    def stored(_event: evt.Event) -> int:
        return 0x0000

    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, stored)]
    )
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()


def _associate(port: int) -> Association:
    ae = AE(ae_title="MODALITY")
    ae.dimse_timeout = 3.0
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="PEER")
    assert assoc.is_established
    return assoc


def _reactor_takes_the_response(assoc: Association) -> None:
    """The sender's next blocking read finds its response already taken by the reactor."""
    get_msg = assoc.dimse.get_msg

    def racing_get_msg(block: bool = False) -> Any:
        if block:
            assoc.dimse.get_msg = get_msg  # type: ignore[method-assign]  # once
            deadline = time.monotonic() + 10
            while assoc.dimse.msg_queue.empty() and time.monotonic() < deadline:
                time.sleep(0.001)
            context_id, msg = assoc.dimse.msg_queue.get_nowait()
            assoc._serve_request(msg, context_id)  # what the reactor does with it
        return get_msg(block)

    assoc.dimse.get_msg = racing_get_msg  # type: ignore[method-assign]


def _ct() -> Dataset:
    ds = examples.ct
    ds.SOPInstanceUID = generate_uid()
    return ds


def test_without_the_adapter_the_response_is_lost(scp_port: int) -> None:
    assoc = _associate(scp_port)
    try:
        _reactor_takes_the_response(assoc)
        status = assoc.send_c_store(_ct())
        assert "Status" not in status  # pynetdicom waited its DIMSE timeout and aborted
    finally:
        if assoc.is_alive():
            assoc.abort()


def test_keep_responses_hands_the_response_back(scp_port: int) -> None:
    assoc = keep_responses(_associate(scp_port))
    try:
        for _ in range(3):
            _reactor_takes_the_response(assoc)
            status = assoc.send_c_store(_ct())
            assert int(status.Status) == 0x0000
        assoc.release()
        assert assoc.is_released
    finally:
        if assoc.is_alive():
            assoc.abort()


def test_a_response_nobody_waits_for_is_still_dropped(scp_port: int) -> None:
    """Outside a send (the reactor's checkpoint set) a stray response is not queued again."""
    assoc = keep_responses(_associate(scp_port))
    try:
        from pynetdicom.dimse_primitives import C_STORE

        stray = C_STORE()
        stray.MessageIDBeingRespondedTo = 99
        stray.Status = 0x0000
        assoc._serve_request(stray, 1)
        assert assoc.dimse.msg_queue.empty()
        assert int(assoc.send_c_store(_ct()).Status) == 0x0000
        assoc.release()
    finally:
        if assoc.is_alive():
            assoc.abort()
