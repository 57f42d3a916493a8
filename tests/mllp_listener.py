"""A real MLLP listener on loopback for tests and benchmarks, with scripted misbehaviour.

``script(n, control_id)`` picks what to do with the n-th message received (from 0): ``"AA"``,
``"AE"``, ``"AR"``, ``"close-mid-frame"`` (send half an ACK frame, then close) or ``"drop"``
(close without answering). Every received message is recorded in arrival order. ``stop()`` and
``start()`` take the listener down and back on the same port.
"""

from __future__ import annotations

import contextlib
import errno
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"
Script = Callable[[int, str], str]


def control_id_of(message: str) -> str:
    msh = message.split("\r", 1)[0].split("|")
    return msh[9] if len(msh) > 9 else ""


def pid3_of(message: str) -> str:
    for seg in message.split("\r"):
        if seg.startswith("PID|"):
            return seg.split("|")[3]
    return ""


def ack_for(message: str, code: str, text: str = "") -> bytes:
    cid = control_id_of(message)
    ack = (
        f"MSH|^~\\&|EHR|HOSPITAL|XRAYGATE|RADIOLOGY|20240514083340||ACK^R01^ACK|ACK{cid}|P|2.5.1\r"
        f"MSA|{code}|{cid}|{text}\r"
    )
    return SB + ack.encode() + EB + CR


@dataclass
class Received:
    raw: str
    control_id: str
    action: str
    #: The bytes as they came over the wire (``raw`` is them decoded per MSH-18).
    data: bytes = b""


#: MSH-18 (HL7 table 0211) -> Python codec, as a receiving engine maps them.
CHARSETS = {"": "ascii", "ASCII": "ascii", "UNICODE UTF-8": "utf-8", "8859/1": "latin-1"}


def codec_of_bytes(data: bytes) -> str:
    """The codec MSH-18 names (MSH is ASCII whatever the character set); UTF-8 when unknown."""
    msh = data.split(b"\r", 1)[0].split(b"|")
    charset = msh[17].split(b"~")[0].decode("ascii", "replace") if len(msh) > 17 else ""
    return CHARSETS.get(charset, "utf-8")


def _port_outside_ephemeral_range() -> int:
    """A free port below the kernel's ephemeral range. While the listener is down (an EHR
    outage), a client connecting to a closed port in that range can be given the same port as
    its own source port and connect to itself (TCP self-connect), which would hold the port and
    feed the client its own message as the answer."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


@dataclass
class MllpListener:
    script: Script = field(default=lambda n, cid: "AA")
    strict_parse: bool = False
    port: int = 0
    received: list[Received] = field(default_factory=list)
    parsed: list[object] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        if not self.port:
            self.port = _port_outside_ephemeral_range()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> MllpListener:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 30
        while True:  # a restart after an outage: the port may still be held for a moment
            try:
                srv.bind(("127.0.0.1", self.port))
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    srv.close()
                    raise
                time.sleep(0.2)
        srv.listen(64)
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()
        return self

    def stop(self) -> None:
        srv, self._server = self._server, None
        if srv is not None:
            srv.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def __enter__(self) -> MllpListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving ------------------------------------------------------------------------------
    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                while EB + CR not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                end = buf.index(EB + CR)
                frame, buf = buf[:end], buf[end + 2 :]
                data = frame[frame.index(SB) + 1 :]
                message = data.decode(codec_of_bytes(data))
                if not self._answer(conn, message, data):
                    return
        except OSError:
            return
        finally:
            conn.close()

    def _answer(self, conn: socket.socket, message: str, data: bytes) -> bool:
        cid = control_id_of(message)
        with self._lock:
            n = len(self.received)
            action = self.script(n, cid)
            self.received.append(Received(message, cid, action, data))
        if self.strict_parse:
            try:
                self.parsed.append(
                    parse_message(
                        message, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True
                    )
                )
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                conn.sendall(ack_for(message, "AR", "parse failed"))
                return True
        if action == "drop":
            return False
        if action == "close-mid-frame":
            ack = ack_for(message, "AA")
            conn.sendall(ack[: len(ack) // 2])
            return False
        conn.sendall(ack_for(message, action, "scripted" if action != "AA" else ""))
        return True

    # -- inspection -----------------------------------------------------------------------------
    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.action == "AA"]
