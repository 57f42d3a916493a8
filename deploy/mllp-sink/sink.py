"""A minimal MLLP sink for the compose stack: answers every HL7 v2 message with an AA ACK and
prints a one-line summary (message type and control ID only). Standard library only."""

from __future__ import annotations

import socketserver
from datetime import UTC, datetime

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"


def ack(message: bytes) -> bytes:
    msh = message.split(CR, 1)[0].decode("utf-8", "replace")
    sep = msh[3] if len(msh) > 3 else "|"
    fields = msh.split(sep)
    control = fields[9] if len(fields) > 9 else ""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    head = sep.join(
        [
            "MSH",
            fields[1] if len(fields) > 1 else "^~\\&",
            "MLLPSINK",
            "SINK",
            fields[2] if len(fields) > 2 else "",
            fields[3] if len(fields) > 3 else "",
            now,
            "",
            "ACK^R01^ACK",
            f"ACK{control}",
            "P",
            "2.5.1",
        ]
    )
    print(f"received {fields[8] if len(fields) > 8 else '?'} control={control}", flush=True)
    return SB + (head + "\r" + sep.join(["MSA", "AA", control]) + "\r").encode() + EB + CR


class Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        buffer = b""
        while chunk := self.request.recv(65536):
            buffer += chunk
            while SB in buffer and EB in buffer:
                start, end = buffer.index(SB), buffer.index(EB)
                self.request.sendall(ack(buffer[start + 1 : end]))
                buffer = buffer[end + 2 :]


if __name__ == "__main__":
    with socketserver.ThreadingTCPServer(("0.0.0.0", 2575), Handler) as server:
        server.serve_forever()
