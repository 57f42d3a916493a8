"""Orthanc (Debian ``orthanc``) as the PACS in tests: a generated configuration, ephemeral ports,
its REST API over loopback; stopped (and restarted on the same ports and storage) on demand and
always killed when the ``with`` block ends."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGINS = Path("/usr/share/orthanc/plugins")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Orthanc:
    """One Orthanc server; ``aet`` is its AE title."""

    def __init__(
        self,
        workdir: Path,
        *,
        aet: str = "ORTHANC",
        dicomweb: bool = False,
        modalities: dict[str, list[Any]] | None = None,
        dicomweb_servers: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = workdir
        self.aet = aet
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "Name": "xraygate-test-pacs",
            "StorageDirectory": str(workdir / "storage"),
            "IndexDirectory": str(workdir / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": aet,
            "DicomServerEnabled": True,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpServerEnabled": True,
            "StableAge": 1,
            "DicomModalities": modalities or {},
            "Plugins": [],
        }
        if dicomweb:
            config["Plugins"] = [str(PLUGINS / "libOrthancDicomWeb.so")]
            config["DicomWeb"] = {
                "Enable": True,
                "Root": "/dicom-web/",
                "Servers": dicomweb_servers or {},
            }
        config.update(extra or {})
        self.config = workdir / "orthanc.json"
        self.config.write_text(json.dumps(config))
        self.log = workdir / "orthanc.log"

    def start(self) -> None:
        assert self.proc is None
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [ORTHANC, str(self.config)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base}/system", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Orthanc did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> Orthanc:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- REST -------------------------------------------------------------------------------
    def get(self, path: str, **kw: Any) -> Any:
        reply = httpx.get(f"{self.base}{path}", timeout=30, **kw)
        reply.raise_for_status()
        return reply.json()

    def get_bytes(self, path: str) -> bytes:
        reply = httpx.get(f"{self.base}{path}", timeout=30)
        reply.raise_for_status()
        return reply.content

    def upload(self, part10: bytes) -> str:
        reply = httpx.post(f"{self.base}/instances", content=part10, timeout=30)
        reply.raise_for_status()
        orthanc_id: str = reply.json()["ID"]
        return orthanc_id

    def find_instances(self, **query: str) -> list[dict[str, Any]]:
        reply = httpx.post(
            f"{self.base}/tools/find",
            json={"Level": "Instance", "Query": query, "Expand": True},
            timeout=30,
        )
        reply.raise_for_status()
        found: list[dict[str, Any]] = reply.json()
        return found

    def instance_file(self, orthanc_id: str) -> bytes:
        return self.get_bytes(f"/instances/{orthanc_id}/file")

    def study_of(self, orthanc_instance_id: str) -> dict[str, Any]:
        study: dict[str, Any] = self.get(f"/instances/{orthanc_instance_id}/study")
        return study
