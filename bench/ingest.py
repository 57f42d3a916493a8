"""Ingest benchmark: xraygate's SCP (store + index + queue) against dcmtk's storescp.

Both servers receive the same corpus from the same client in the same run, interleaved, each
measurement repeated (the median is printed). The client is dcmtk ``storescu`` by default (C,
so the figures measure the servers, not a Python sender); ``--client pynetdicom`` streams the
files with pynetdicom instead. Each association count runs that many client processes at once.

xraygate runs as ``python -m xraygate scp`` (local object store, SQLite index + work queue,
every object fsync'd and its row + ``infer`` job committed before 0x0000). storescp writes plain
files and does not fsync: the ratio is durable ingest against a non-durable peer. Dirty pages are
flushed (``os.sync``) before every measurement so one run's write-back does not slow the next.

    .venv/bin/python bench/ingest.py            # 200 x RG1 CR (7 MB), 2000 x small CT, 3 repeats
    .venv/bin/python bench/ingest.py --quick    # 50 x CR, 400 x CT, 1 repeat
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

Server = Callable[[Path], tuple[subprocess.Popen[bytes], int]]
#: dcmtk leaves Nagle's algorithm on unless told; with it, each small C-STORE waits ~40 ms for a
#: delayed ACK. xraygate's SCP sets TCP_NODELAY itself.
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def make_corpus(src_name: str, count: int, out: Path) -> list[Path]:
    """``count`` copies of a pydicom test file with new UIDs, 50 instances per study."""
    out.mkdir(parents=True)
    src = get_testdata_file(src_name)
    assert src is not None, src_name
    ds = dcmread(src)
    paths = []
    study = series = ""
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


def split(paths: list[Path], parts: int, root: Path) -> list[Path]:
    """Hard-link the corpus into ``parts`` directories, one per association."""
    dirs = []
    for n in range(parts):
        folder = root / f"split-{parts}" / str(n)
        folder.mkdir(parents=True)
        for path in paths[n::parts]:
            os.link(path, folder / path.name)
        dirs.append(folder)
    return dirs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server on {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server on {port} did not start")


def dcmtk(tool: str) -> str:
    """dcmtk's tool (pynetdicom installs Python apps with the same names in the venv)."""
    for candidate in (shutil.which(tool, path="/usr/bin"), shutil.which(tool)):
        if candidate:
            out = subprocess.run([candidate, "--version"], capture_output=True, text=True)
            if "dcmtk" in out.stdout.lower():
                return candidate
    raise SystemExit(f"dcmtk's {tool} is required (apt-get install dcmtk)")


# -- clients ---------------------------------------------------------------------------------


def send_storescu(folder: Path, port: int, called: str) -> None:
    command = [dcmtk("storescu"), "-aet", "BENCH", "-aec", called, "-R", "+sd"]
    proc = subprocess.run(
        [*command, "127.0.0.1", str(port), str(folder)],
        capture_output=True,
        text=True,
        env=DCMTK_ENV,
    )
    if proc.returncode != 0:
        raise SystemExit(f"storescu failed: {proc.stderr[-2000:]}")


def send_pynetdicom(folder: Path, port: int, called: str) -> None:
    from pynetdicom import AE, _config

    _config.STORE_SEND_CHUNKED_DATASET = True
    paths = sorted(folder.iterdir())
    meta = dcmread(paths[0], stop_before_pixels=True).file_meta
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(meta.MediaStorageSOPClassUID, [meta.TransferSyntaxUID])
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        raise SystemExit("association failed")
    for path in paths:
        status = assoc.send_c_store(path)
        if not status or int(status.Status) != 0:
            raise SystemExit(f"C-STORE failed: {status}")
    assoc.release()


CLIENTS = {"storescu": send_storescu, "pynetdicom": send_pynetdicom}


def send(
    client: Callable[[Path, int, str], None], folders: list[Path], port: int, called: str
) -> float:
    """One association per folder, all at once; returns the wall time in seconds."""
    start = time.perf_counter()
    with ThreadPoolExecutor(len(folders)) as pool:
        list(pool.map(lambda folder: client(folder, port, called), folders))
    return time.perf_counter() - start


# -- servers ---------------------------------------------------------------------------------


def start_storescp(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    out = work / "storescp-out"
    out.mkdir(parents=True)
    command = [dcmtk("storescp"), "--fork", "--max-pdu", "131072", "-aet", "STORESCP"]
    proc = subprocess.Popen(
        [*command, "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=DCMTK_ENV,
    )
    wait_port(port, proc)
    return proc, port


def start_xraygate(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    data = work / "xraygate-var"
    env = {
        **os.environ,
        "XRAYGATE_DATA_DIR": str(data),
        "XRAYGATE_DATABASE_URL": f"sqlite:///{data / 'xraygate.db'}",
        "XRAYGATE_STORAGE_URL": str(data / "objects"),
        "XRAYGATE_DICOM_HOST": "127.0.0.1",
        "XRAYGATE_DICOM_PORT": str(port),
        "XRAYGATE_MIN_FREE_BYTES": "0",
        "XRAYGATE_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen([sys.executable, "-m", "xraygate", "scp"], env=env)
    wait_port(port, proc)
    return proc, port


class RssSampler:
    """Peak resident memory of a process above its level when sampling started."""

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


@dataclass
class Run:
    seconds: float
    rss_growth_mb: float | None
    #: seconds until the received data was on disk: for storescp, send time + a final sync
    durable_seconds: float


def measure(
    client: Callable[[Path, int, str], None],
    folders: list[Path],
    work: Path,
    server: Server,
    called: str,
) -> Run:
    os.sync()
    proc, port = server(work)
    sampler = RssSampler(proc.pid) if server is start_xraygate else None
    start = time.perf_counter()
    try:
        seconds = send(client, folders, port, called)
        os.sync()  # xraygate fsyncs before it answers; storescp's data is still in the cache
        durable = time.perf_counter() - start
    finally:
        growth = sampler.growth_mb() if sampler else None
        proc.terminate()
        proc.wait(timeout=60)
    if server is start_xraygate:
        check_xraygate(work, sum(len(list(f.iterdir())) for f in folders))
    shutil.rmtree(work)
    return Run(seconds, growth, durable)


def check_xraygate(work: Path, expected: int) -> None:
    """Every instance sent is indexed, with one infer job: the bench measures real ingest."""
    import sqlite3

    with sqlite3.connect(work / "xraygate-var" / "xraygate.db") as conn:
        instances = conn.execute("select count(*) from instances").fetchone()[0]
        jobs = conn.execute("select count(*) from jobs where kind = 'infer'").fetchone()[0]
    if instances != expected or jobs != expected:
        raise SystemExit(f"xraygate indexed {instances} instances, {jobs} jobs of {expected}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller corpora, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="runs per server (median)")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="storescu")
    args = parser.parse_args()
    n_cr, n_ct = (50, 400) if args.quick else (200, 2000)
    repeats = args.repeats or (1 if args.quick else 3)
    client = CLIENTS[args.client]
    with tempfile.TemporaryDirectory(prefix="xg-bench-") as tmp:
        root = Path(tmp)
        corpora = {
            f"{n_cr} x RG1 CR": make_corpus("RG1_UNCR.dcm", n_cr, root / "cr"),
            f"{n_ct} x CT_small": make_corpus("CT_small.dcm", n_ct, root / "ct"),
        }
        print(f"client: {args.client}; median of {repeats} run(s) per server")
        print(f"{'corpus':<16} {'assoc':>5} {'server':<9} {'inst/s':>8} {'MB/s':>8} {'ratio':>6}")
        for name, paths in corpora.items():
            megabytes = sum(p.stat().st_size for p in paths) / 2**20
            for associations in (1, 4):
                folders = split(paths, associations, root / name.replace(" ", "_"))
                runs: dict[str, list[Run]] = {"storescp": [], "xraygate": []}
                for i in range(repeats):
                    work = root / f"run-{i}"
                    peer = measure(client, folders, work, start_storescp, "STORESCP")
                    runs["storescp"].append(peer)
                    ours = measure(client, folders, work, start_xraygate, "XRAYGATE")
                    runs["xraygate"].append(ours)
                seconds = {k: statistics.median(r.seconds for r in v) for k, v in runs.items()}
                durable = statistics.median(r.durable_seconds for r in runs["storescp"])
                for server in ("storescp", "xraygate"):
                    ratio = seconds["storescp"] / seconds["xraygate"]
                    shown = f"{ratio:6.2f}" if server == "xraygate" else ""
                    print(
                        f"{name:<16} {associations:>5} {server:<9} "
                        f"{len(paths) / seconds[server]:8.1f} "
                        f"{megabytes / seconds[server]:8.1f} {shown:>6}",
                        flush=True,
                    )
                print(
                    f"{'':<16} {'':>5} storescp incl. final sync: "
                    f"{megabytes / durable:.1f} MB/s; xraygate ratio to it "
                    f"{durable / seconds['xraygate']:.2f}"
                )
                growth = max(r.rss_growth_mb or 0.0 for r in runs["xraygate"])
                print(f"{'':<16} {'':>5} xraygate peak RSS growth: {growth:.1f} MB", flush=True)
        print("ratio = xraygate throughput / storescp throughput (target >= 0.8 on the CR corpus)")


if __name__ == "__main__":
    main()
