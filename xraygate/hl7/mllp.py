"""MLLP (release 1) client: ``0x0B`` message ``0x1C 0x0D``, one message in flight per connection.

The connection is kept open between messages (one per sending thread) and re-opened after any
failure. Every failure (refused or dropped connection, timeout, a frame cut short, no ACK) comes
back as a ``retry`` :class:`DeliveryOutcome`; the ACK's MSA-1 decides otherwise: AA/CA delivered,
AE/CE retry, AR/CR reject (dead letter, with MSA-3 / ERR as the reason).
"""

from __future__ import annotations

import socket
import threading

from xraygate.core.errors import DeliveryError
from xraygate.core.models import OutboxMessage
from xraygate.core.outbox import DeliveryOutcome, Sender

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"
MAX_ACK_BYTES = 1 << 20


class MllpError(DeliveryError, OSError):
    """The peer closed the connection or sent something that is not an MLLP frame (an
    ``OSError`` too: the sender retries it like any broken connection)."""


class MllpClient:
    """A blocking MLLP connection to one peer (not thread-safe: one per thread)."""

    def __init__(self, host: str, port: int, timeout: float, codec: str = "utf-8") -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.codec = codec
        self.sock: socket.socket | None = None

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def send(self, message: str) -> str:
        """Send one message and return the ACK (ER7). Raises OSError on any failure."""
        reused = self.sock is not None
        try:
            return self._exchange(message)
        except TimeoutError:
            self.close()
            raise
        except OSError:
            self.close()
            if not reused:
                raise
        # A kept-alive connection may have been closed by the peer while idle: one fresh try.
        try:
            return self._exchange(message)
        except OSError:
            self.close()
            raise

    def _exchange(self, message: str) -> str:
        if self.sock is None:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(SB + message.encode(self.codec, errors="replace") + EB + CR)
        return self._read_frame(self.sock, self.codec)

    @staticmethod
    def _read_frame(sock: socket.socket, codec: str) -> str:
        buf = b""
        while True:
            end = buf.find(EB + CR)
            if end >= 0:
                break
            chunk = sock.recv(65536)
            if not chunk:
                raise MllpError("connection closed before a complete ACK frame")
            buf += chunk
            if len(buf) > MAX_ACK_BYTES:
                raise MllpError("ACK frame too large")
        start = buf.find(SB)
        if start < 0 or start > end:
            raise MllpError("ACK frame without start block")
        return buf[start + 1 : end].decode(codec, errors="replace")


def parse_ack(ack: str) -> tuple[str, str, str]:
    """(MSA-1, MSA-2, reason) from an ACK; the reason is MSA-3 or the ERR segment."""
    code = control = reason = ""
    for segment in ack.replace("\n", "\r").split("\r"):
        fields = segment.split("|")
        if fields[0] == "MSA":
            code = fields[1] if len(fields) > 1 else ""
            control = fields[2] if len(fields) > 2 else ""
            reason = fields[3] if len(fields) > 3 else ""
        elif fields[0] == "ERR" and not reason:
            reason = "|".join(fields[1:])[:500]
    return code, control, reason


def outcome_of_ack(ack: str, control_id: str) -> DeliveryOutcome:
    code, echoed, reason = parse_ack(ack)
    if echoed and echoed != control_id:
        return DeliveryOutcome("retry", f"ACK for another message ({echoed})", ack)
    if code in ("AA", "CA"):
        return DeliveryOutcome("delivered", code, ack)
    if code in ("AR", "CR"):
        return DeliveryOutcome("reject", f"{code}: {reason or 'rejected by the receiver'}", ack)
    if code in ("AE", "CE"):
        return DeliveryOutcome("retry", f"{code}: {reason or 'application error'}", ack)
    return DeliveryOutcome("retry", f"unexpected ACK (MSA-1 {code!r})", ack)


def make_mllp_sender(host: str, port: int, timeout: float, codec: str = "utf-8") -> Sender:
    """A sender with one kept-alive connection per sending thread; messages (MSH-18) and ACKs
    are encoded in ``codec``."""
    local = threading.local()

    def send(message: OutboxMessage) -> DeliveryOutcome:
        client: MllpClient | None = getattr(local, "client", None)
        if client is None:
            client = local.client = MllpClient(host, port, timeout, codec)
        try:
            ack = client.send(message.message)
        except TimeoutError:
            client.close()
            return DeliveryOutcome("retry", f"no ACK within {timeout:g} s")
        except OSError as exc:
            client.close()
            return DeliveryOutcome("retry", f"MLLP connection failed: {type(exc).__name__}: {exc}")
        return outcome_of_ack(ack, message.control_id)

    return send
