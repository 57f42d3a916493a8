"""An adapter for pynetdicom associations we request (SCU): no response is ever dropped.

pynetdicom 3.0.4 runs a reactor thread per association that takes every decoded DIMSE message
off the queue and serves it as a request. A ``send_*()`` call pauses the reactor before it sends
and waits for the response on the same queue, but the pause is a flag checked without a lock:
when the reactor has just passed its checkpoint, the send goes ahead, the reactor takes the
response, logs "Received unexpected C-STORE service message" and drops it. The sender then waits
for its DIMSE timeout and the peer, hearing nothing more, aborts on its network timeout: on a
loaded machine one association in a few thousand lost its last instances that way (seen in our
crash test; upstream: pydicom/pynetdicom#875).

:func:`keep_responses` wraps the association's request dispatch so that a response taken while
a send is waiting (the reactor is paused, its checkpoint cleared) goes back on the queue for
that send; a response nobody waits for is still logged and dropped as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pynetdicom.association import Association

_Serve = Callable[[Any, int], None]


def keep_responses(assoc: Association) -> Association:
    """Make ``assoc`` hand a response its reactor took back to the waiting ``send_*()``."""
    serve: _Serve = assoc._serve_request

    def _serve_request(msg: Any, context_id: int) -> None:
        if not msg.is_valid_request and not assoc._reactor_checkpoint.is_set():
            assoc.dimse.msg_queue.put((context_id, msg))  # a send_*() is waiting for it
            return
        serve(msg, context_id)

    assoc._serve_request = _serve_request  # type: ignore[method-assign]
    return assoc
