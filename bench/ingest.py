"""Ingest benchmark: xraygate's SCP (store + index + queue) against dcmtk's storescp.

Both servers receive the same corpus from the same client (pynetdicom streaming the files as
they are) in the same run; the script prints instances/s, MB/s and the xraygate/storescp ratio,
and xraygate's peak RSS growth over the small-file corpus.

    .venv/bin/python bench/ingest.py            # 200 x RG1 CR (7 MB), 2000 x small CT
    .venv/bin/python bench/ingest.py --quick    # 50 x CR, 400 x CT
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE, _config


def make_corpus(src_name: str, count: int, out: Path) -> list[Path]:
    out.mkdir(parents=True)
    ds = dcmread(get_testdata_file(src_name))
    paths = []
    study = series = generate_uid()
    for i in range(count):
        if i % 50 == 0:
            study, series = generate_uid(), generate_uid()
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = out / f"{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server on {port} did not start")


def send(paths: list[Path], port: int, called: str, associations: int) -> float:
    """Send with ``associations`` parallel associations; returns the wall time in seconds."""
    _config.STORE_SEND_CHUNKED_DATASET = True
    meta = dcmread(paths[0], stop_before_pixels=True).file_meta
    chunks = [paths[i::associations] for i in range(associations)]

    def one(chunk: list[Path]) -> None:
        ae = AE(ae_title="BENCH")
        ae.add_requested_context(meta.MediaStorageSOPClassUID, [meta.TransferSyntaxUID])
        assoc = ae.associate("127.0.0.1", port, ae_title=called)
        assert assoc.is_established, "association failed"
        for path in chunk:
            status = assoc.send_c_store(path)
            assert status and int(status.Status) == 0, f"C-STORE failed: {status}"
        assoc.release()

    start = time.perf_counter()
    with ThreadPoolExecutor(associations) as pool:
        list(pool.map(one, chunks))
    return time.perf_counter() - start


def dcmtk(tool: str) -> str:
    for candidate in (shutil.which(tool, path="/usr/bin"), shutil.which(tool)):
        if candidate:
            out = subprocess.run([candidate, "--version"], capture_output=True, text=True)
            if "dcmtk" in out.stdout.lower():
                return candidate
    raise SystemExit(f"dcmtk's {tool} is required (apt-get install dcmtk)")


def start_storescp(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    out = work / "storescp-out"
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            dcmtk("storescp"),
            "--fork",
            "--max-pdu",
            "131072",
            "-aet",
            "STORESCP",
            "-od",
            str(out),
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return proc, port


def start_xraygate(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    data = work / "xraygate-var"
    env = {
        **os.environ,
        "XRAYGATE_DATA_DIR": str(data),
        "XRAYGATE_DATABASE_URL": f"sqlite:///{data / 'xraygate.db'}",
        "XRAYGATE_DICOM_HOST": "127.0.0.1",
        "XRAYGATE_DICOM_PORT": str(port),
        "XRAYGATE_MIN_FREE_BYTES": "0",
        "XRAYGATE_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen([sys.executable, "-m", "xraygate", "scp"], env=env)
    wait_port(port)
    return proc, port


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.baseline = self.proc.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def growth_mb(self) -> float:
        self._stop.set()
        self._thread.join()
        return (self.peak - self.baseline) / 2**20


def measure(
    label: str,
    paths: list[Path],
    associations: int,
    work: Path,
    server: Callable[[Path], tuple[subprocess.Popen[bytes], int]],
    called: str,
    rss: bool = False,
) -> tuple[float, float | None]:
    proc, port = server(work)
    sampler = RssSampler(proc.pid) if rss else None
    try:
        seconds = send(paths, port, called, associations)
    finally:
        growth = sampler.growth_mb() if sampler else None
        proc.terminate()
        proc.wait(timeout=30)
    return seconds, growth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller corpora")
    args = parser.parse_args()
    n_cr, n_ct = (50, 400) if args.quick else (200, 2000)
    with tempfile.TemporaryDirectory(prefix="xg-bench-") as tmp:
        root = Path(tmp)
        corpora = {
            f"{n_cr} x RG1 CR": make_corpus("RG1_UNCR.dcm", n_cr, root / "cr"),
            f"{n_ct} x CT_small": make_corpus("CT_small.dcm", n_ct, root / "ct"),
        }
        print(f"{'corpus':<18} {'assoc':>5} {'server':<9} {'inst/s':>8} {'MB/s':>8} {'ratio':>6}")
        for name, paths in corpora.items():
            megabytes = sum(p.stat().st_size for p in paths) / 2**20
            for associations in (1, 4):
                run = root / f"run-{len(paths)}-{associations}"
                peer, _ = measure(name, paths, associations, run / "d", start_storescp, "STORESCP")
                ours, growth = measure(
                    name,
                    paths,
                    associations,
                    run / "x",
                    start_xraygate,
                    "XRAYGATE",
                    rss=name.endswith("CT_small"),
                )
                for server, seconds in (("storescp", peer), ("xraygate", ours)):
                    ratio = f"{peer / ours:6.2f}" if server == "xraygate" else ""
                    print(
                        f"{name:<18} {associations:>5} {server:<9} {len(paths) / seconds:8.1f} "
                        f"{megabytes / seconds:8.1f} {ratio:>6}"
                    )
                if growth is not None:
                    print(f"{'':<18} {'':>5} xraygate peak RSS growth: {growth:.1f} MB")
        print("ratio = xraygate throughput / storescp throughput (target >= 0.8 on the CR corpus)")


if __name__ == "__main__":
    main()
