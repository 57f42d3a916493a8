"""`xraygate scp` in its own process (so that its memory can be measured), on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pynetdicom import AE, build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ScpProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def memory_kib(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) of the SCP process in KiB: its current and peak resident size."""
        fields: dict[str, int] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
        return fields["VmRSS"], fields["VmHWM"]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def echo(port: int, called: str = "XRAYGATE", calling: str = "ECHOSCU") -> bool:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.network_timeout = 10
    ae.requested_contexts = [build_context(Verification)]
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return False
    ok = int(assoc.send_c_echo().Status) == 0
    assoc.release()
    return ok


@contextmanager
def scp_process(tmp_path: Path, **settings: str) -> Iterator[ScpProcess]:
    """Start `xraygate scp` (SQLite, a temp data dir) with XRAYGATE_<name> settings."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XRAYGATE_")}
    env.update(
        {
            "XRAYGATE_DATA_DIR": str(tmp_path / "scp-data"),
            "XRAYGATE_DICOM_HOST": "127.0.0.1",
            "XRAYGATE_DICOM_PORT": str(port),
            "XRAYGATE_MIN_FREE_BYTES": "0",
            "XRAYGATE_SHUTDOWN_GRACE_SECONDS": "1",
        }
    )
    env.update({f"XRAYGATE_{k.upper()}": v for k, v in settings.items()})
    log = tmp_path / "scp.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "xraygate", "scp"], env=env, stdout=out, stderr=out
        )
    running = ScpProcess(proc, port, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, running.log_text()
            try:
                if echo(port):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the SCP did not answer C-ECHO within 60 s"
            time.sleep(0.2)
        yield running
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
