"""Issue 11 item 4: peers that hold resources, over real sockets against `xraygate scp`.

16 TCP connections that never send an A-ASSOCIATE-RQ and sockets declaring 4 GB PDUs (before
and inside an association) must not lock out a legitimate dcmtk `echoscu`, which has to
succeed with every timeout at 5 s; the SCP's resident memory stays bounded (printed)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pynetdicom import AE, build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.dicom_scp.conftest import dcmtk
from tests.dicom_scp.scp_process import ScpProcess, scp_process

pytestmark = pytest.mark.integration

FOUR_GB_HEADER = {
    "A-ASSOCIATE-RQ": b"\x01\x00\xff\xff\xff\xff",
    "P-DATA-TF": b"\x04\x00\xff\xff\xff\xff",
}
MIB = 1024  # memory figures are in KiB


def peer(port: int) -> list[str]:
    return ["127.0.0.1", str(port)]


TIMEOUTS = ["-to", "5", "-ts", "5", "-ta", "5", "-td", "5"]


def echoscu(port: int) -> tuple[subprocess.CompletedProcess[str], float]:
    """dcmtk's echoscu with every timeout at 5 s; (result, seconds taken)."""
    started = time.monotonic()
    proc = subprocess.run(
        [dcmtk("echoscu"), *TIMEOUTS, "-aet", "ECHOSCU", "-aec", "XRAYGATE", *peer(port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc, time.monotonic() - started


def still_open(sock: socket.socket) -> bool:
    """True while the server has neither closed the connection nor sent anything."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)  # data or b"" (closed): not idle any more
        return False
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)


def flood(sock: socket.socket, header: bytes, total: int, sent: list[int]) -> None:
    """Send a PDU header declaring 4 GB, then up to ``total`` bytes of its body."""
    sock.settimeout(30)
    try:
        sock.sendall(header)
        chunk = bytes(64 * 1024)
        while sent[0] < total:
            sock.sendall(chunk)
            sent[0] += len(chunk)
    except OSError:
        pass  # the SCP aborted and closed: the rest is never read


def read_until_closed(sock: socket.socket, seconds: float) -> bytes:
    sock.settimeout(seconds)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except OSError:
        pass
    return data


def baseline(scp: ScpProcess) -> int:
    rss, _peak = scp.memory_kib()
    return rss


def test_idle_and_huge_pdu_peers_do_not_lock_out_echoscu(tmp_path: Path) -> None:
    with scp_process(tmp_path, dicom_artim_seconds="5") as scp:
        before = baseline(scp)
        idle = [socket.create_connection(("127.0.0.1", scp.port)) for _ in range(16)]
        raw = socket.create_connection(("127.0.0.1", scp.port))
        sent = [0]
        flooder = threading.Thread(
            target=flood, args=(raw, FOUR_GB_HEADER["A-ASSOCIATE-RQ"], 256 * 1024 * 1024, sent)
        )
        flooder.start()
        try:
            proc, seconds = echoscu(scp.port)
            print(f"\nechoscu beside 16 idle peers and a 4 GB PDU: {seconds:.2f} s")
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert all(still_open(s) for s in idle), "echoscu got in while all 16 were held"
            answer = read_until_closed(raw, 30)
            assert answer[:1] == b"\x07", "the 4 GB A-ASSOCIATE-RQ is answered with an A-ABORT"
            flooder.join(60)
            for s in idle:  # ARTIM: closed without a word after 5 s
                assert read_until_closed(s, 30) == b""
        finally:
            for s in [*idle, raw]:
                s.close()
        rss, peak = scp.memory_kib()
        print(
            f"SCP memory: before {before // MIB} MiB, after {rss // MIB} MiB, "
            f"peak {peak // MIB} MiB; flood bytes sent before the abort: {sent[0] // 1024} KiB"
        )
        assert peak - before < 50 * MIB, "the SCP buffered the hostile peers' data"
        log = scp.log_text()
        assert "exceeds" in log and "PDU type 0x01" in log
        proc, _ = echoscu(scp.port)
        assert proc.returncode == 0


def test_p_data_longer_than_negotiated_aborts_the_association(tmp_path: Path) -> None:
    with scp_process(tmp_path, max_pdu_size="65536") as scp:
        before = baseline(scp)
        ae = AE(ae_title="MODALITY1")
        ae.requested_contexts = [build_context(Verification)]
        assoc = ae.associate("127.0.0.1", scp.port, ae_title="XRAYGATE")
        assert assoc.is_established
        assert assoc.acceptor.maximum_length == 65536
        raw = assoc.dul.socket.socket  # type: ignore[union-attr]
        assert raw is not None
        sent = [0]
        flood(raw, FOUR_GB_HEADER["P-DATA-TF"], 64 * 1024 * 1024, sent)
        deadline = time.monotonic() + 30
        while not assoc.is_aborted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert assoc.is_aborted, "the SCP aborted the association"
        _rss, peak = scp.memory_kib()
        print(f"\nSCP memory: before {before // MIB} MiB, peak {peak // MIB} MiB")
        assert peak - before < 50 * MIB
        assert "PDU type 0x04 of 4294967295 bytes" in scp.log_text()
        proc, _ = echoscu(scp.port)
        assert proc.returncode == 0


def test_a_peer_sending_half_a_pdu_is_closed_after_artim(tmp_path: Path) -> None:
    """pynetdicom's accepted sockets have no timeout: a peer that sends a PDU header and part
    of its body then stalls held a thread (and a pending-connection place) for ever."""
    with scp_process(tmp_path, dicom_artim_seconds="2", dicom_max_pending_connections="4") as scp:
        stalled = []
        for _ in range(4):
            sock = socket.create_connection(("127.0.0.1", scp.port))
            sock.sendall(b"\x01\x00\x00\x00\x01\x00" + bytes(10))  # 256 bytes declared
            stalled.append(sock)
        try:
            for sock in stalled:  # closed by the SCP (A-ABORT or not), not by us
                read_until_closed(sock, 30)
                assert not still_open(sock)
            proc, seconds = echoscu(scp.port)
            print(f"\nechoscu after 4 stalled peers filled the pending places: {seconds:.2f} s")
            assert proc.returncode == 0, proc.stdout + proc.stderr
        finally:
            for sock in stalled:
                sock.close()
