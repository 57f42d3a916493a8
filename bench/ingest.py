"""Ingest benchmark: xraygate's SCP against dcmtk storescp, Orthanc and pynetdicom's storescp.

Every server receives the same corpus from the same client in the same run, interleaved, each
measurement repeated (the median is printed). The client is dcmtk ``storescu`` (C, so the
figures measure the servers; ``--client pynetdicom`` streams with pynetdicom instead), one
client process per association, all at once.

- ``storescp``: dcmtk, TCP_NODELAY, writes plain files (no fsync).
- ``orthanc``: Orthanc from Debian, TCP_NODELAY, SQLite index, its default fsync'd storage.
- ``pynetdicom``: pynetdicom's own storescp app (``python -m pynetdicom storescp``) writing files.
- ``xraygate``: ``python -m xraygate scp`` (local object store, SQLite index + work queue,
  ingest journal): an acknowledged object is fsync'd and journaled, then indexed with its
  ``infer`` job (the bench checks every row and job). ``XRAYGATE_SCP_PROCESSES=0`` (one per core);
  ``xraygate-1p`` is the same with one receiving process (scaling, at 4 associations).

Dirty pages are flushed (``os.sync``) before every measurement so one run's write-back does not
slow the next. Ratios are against storescp and Orthanc in the same run. A last line per corpus
gives the disk's own pace for a receiver that makes each object durable before it answers:
every instance written to its own file and ``fdatasync``'d, one thread per association (what
storescp, which does not flush, is spared).

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


def start_orthanc(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Orthanc from Debian with its defaults (SQLite index, fsync'd storage), TCP_NODELAY."""
    import json

    port, http = free_port(), free_port()
    work.mkdir(parents=True, exist_ok=True)
    config = work / "orthanc.json"
    config.write_text(
        json.dumps(
            {
                "Name": "bench",
                "StorageDirectory": str(work / "orthanc-storage"),
                "IndexDirectory": str(work / "orthanc-index"),
                "DicomAet": "ORTHANC",
                "DicomPort": port,
                "HttpPort": http,
                "RemoteAccessAllowed": False,
                "DicomCheckCalledAet": False,
                "StorageCompression": False,
                "Plugins": [],
                "DicomThreadsCount": 8,
            }
        )
    )
    proc = subprocess.Popen(
        ["/usr/sbin/Orthanc", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=DCMTK_ENV,
    )
    wait_port(port, proc)
    return proc, port


def start_pynetdicom(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """pynetdicom's storescp application, writing each data set to a file."""
    port = free_port()
    out = work / "pynetdicom-out"
    out.mkdir(parents=True)
    command = [sys.executable, "-m", "pynetdicom", "storescp", "-q", "-aet", "STORESCP"]
    proc = subprocess.Popen([*command, "-od", str(out), str(port)])
    wait_port(port, proc)
    return proc, port


def xraygate_server(processes: int | None) -> Server:
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
            "XRAYGATE_SCP_PROCESSES": str(processes or 0),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "xraygate", "scp"], env=env, stdout=subprocess.DEVNULL
        )
        wait_port(port, proc)
        if (processes or os.cpu_count() or 1) > 1:  # the spawned receivers share the port
            deadline = time.monotonic() + 60
            want = (processes or os.cpu_count() or 1) - 1
            while len(psutil.Process(proc.pid).children()) < want + 1:  # + resource tracker
                if time.monotonic() > deadline:
                    raise SystemExit("xraygate's receiving processes did not start")
                time.sleep(0.1)
            time.sleep(3.0)  # they import and bind (a connection before goes to the first)
        return proc, port

    return start_xraygate


class RssSampler:
    """Peak resident memory of a process above its level when sampling started."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.baseline = self._tree_rss()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree_rss(self) -> int:
        total = 0
        for proc in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._tree_rss())

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
    ours: bool,
) -> Run:
    os.sync()
    proc, port = server(work)
    sampler = RssSampler(proc.pid) if ours else None
    expected = sum(len(list(f.iterdir())) for f in folders)
    start = time.perf_counter()
    try:
        seconds = send(client, folders, port, called)
        if ours:  # acknowledged = durable; also time until every row and job is committed
            wait_indexed(work, expected)
        os.sync()  # xraygate and Orthanc fsync before they answer; storescp does not
        durable = time.perf_counter() - start
    finally:
        growth = sampler.growth_mb() if sampler else None
        proc.terminate()
        proc.wait(timeout=60)
    if ours:
        check_xraygate(work, expected)
    shutil.rmtree(work)
    return Run(seconds, growth, durable)


def _counts(work: Path) -> tuple[int, int]:
    import sqlite3

    with sqlite3.connect(work / "xraygate-var" / "xraygate.db", timeout=30) as conn:
        instances = conn.execute("select count(*) from instances").fetchone()[0]
        jobs = conn.execute("select count(*) from jobs where kind = 'infer'").fetchone()[0]
    return int(instances), int(jobs)


def wait_indexed(work: Path, expected: int) -> None:
    deadline = time.monotonic() + 600
    while _counts(work) != (expected, expected):
        if time.monotonic() > deadline:
            raise SystemExit("xraygate did not index everything it acknowledged")
        time.sleep(0.01)


def check_xraygate(work: Path, expected: int) -> None:
    """Every instance sent is indexed, with one infer job: the bench measures real ingest."""
    instances, jobs = _counts(work)
    if instances != expected or jobs != expected:
        raise SystemExit(f"xraygate indexed {instances} instances, {jobs} jobs of {expected}")
    if list((work / "xraygate-var" / "journal").glob("*.journal")):
        raise SystemExit("xraygate left journal segments after a clean stop")


SERVERS: dict[str, tuple[Server, str]] = {
    "storescp": (start_storescp, "STORESCP"),
    "orthanc": (start_orthanc, "ORTHANC"),
    "pynetdicom": (start_pynetdicom, "STORESCP"),
    "xraygate": (xraygate_server(None), "XRAYGATE"),
    "xraygate-1p": (xraygate_server(1), "XRAYGATE"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller corpora, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="runs per server (median)")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="storescu")
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated subset of " + ", ".join(SERVERS),
    )
    parser.add_argument("--corpus", choices=["cr", "ct", "both"], default="both")
    args = parser.parse_args()
    n_cr, n_ct = (50, 400) if args.quick else (200, 2000)
    repeats = args.repeats or (1 if args.quick else 3)
    client = CLIENTS[args.client]
    chosen = [name for name in args.servers.split(",") if name]
    with tempfile.TemporaryDirectory(prefix="xg-bench-") as tmp:
        root = Path(tmp)
        corpora = {}
        if args.corpus in ("cr", "both"):
            corpora[f"{n_cr} x RG1 CR"] = make_corpus("RG1_UNCR.dcm", n_cr, root / "cr")
        if args.corpus in ("ct", "both"):
            corpora[f"{n_ct} x CT_small"] = make_corpus("CT_small.dcm", n_ct, root / "ct")
        print(
            f"client: {args.client}; median of {repeats} run(s) per server; {os.cpu_count()} cores"
        )
        print(
            f"{'corpus':<16} {'assoc':>5} {'server':<12} {'inst/s':>8} {'MB/s':>8} "
            f"{'/storescp':>9} {'/orthanc':>9}"
        )
        for name, paths in corpora.items():
            megabytes = sum(p.stat().st_size for p in paths) / 2**20
            for associations in (1, 4):
                folders = split(paths, associations, root / name.replace(" ", "_"))
                servers = [s for s in chosen if not (s == "xraygate-1p" and associations == 1)]
                runs: dict[str, list[Run]] = {s: [] for s in servers}
                for i in range(repeats):
                    for server in servers:
                        start, called = SERVERS[server]
                        work = root / f"run-{i}-{server}"
                        ours = server.startswith("xraygate")
                        runs[server].append(measure(client, folders, work, start, called, ours))
                report(name, associations, len(paths), megabytes, runs)
                ceiling = statistics.median(
                    flushed_writes(folders, root / f"flushed-{i}") for i in range(repeats)
                )
                line = (
                    f"{'':<16} {'':>5} disk: write + fdatasync of each instance, "
                    f"{associations} thread(s): {len(paths) / ceiling:.1f} inst/s"
                )
                if runs.get("xraygate"):
                    ours = statistics.median(r.seconds for r in runs["xraygate"])
                    line += f"; xraygate at {ceiling / ours:.2f}x of that"
                print(line, flush=True)
        print(
            "inst/s: to the last acknowledgement. Targets: xraygate >= 1.0x Orthanc everywhere, "
            ">= 0.8x storescp on CR at 4 associations, >= 0.5x storescp on CT at 1."
        )


def flushed_writes(folders: list[Path], work: Path) -> float:
    """Seconds to write every instance of the corpus to its own file and ``fdatasync`` it, one
    thread per association folder, in the directory the servers write to: the disk's pace
    for any receiver that makes each object durable before it answers (storescp does not)."""
    os.sync()
    work.mkdir(parents=True)

    def write(folder: Path) -> None:
        for path in sorted(folder.iterdir()):
            data = path.read_bytes()
            fd = os.open(work / f"{folder.name}-{path.name}", os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
                os.fdatasync(fd)
            finally:
                os.close(fd)

    start = time.perf_counter()
    with ThreadPoolExecutor(len(folders)) as pool:
        list(pool.map(write, folders))
    seconds = time.perf_counter() - start
    shutil.rmtree(work)
    return seconds


def report(
    name: str, associations: int, count: int, megabytes: float, runs: dict[str, list[Run]]
) -> None:
    seconds = {k: statistics.median(r.seconds for r in v) for k, v in runs.items()}

    def ratio(server: str, peer: str) -> str:
        if peer not in seconds or server == peer:
            return ""
        return f"{seconds[peer] / seconds[server]:9.2f}"

    for server in runs:
        print(
            f"{name:<16} {associations:>5} {server:<12} {count / seconds[server]:8.1f} "
            f"{megabytes / seconds[server]:8.1f} {ratio(server, 'storescp'):>9} "
            f"{ratio(server, 'orthanc'):>9}",
            flush=True,
        )
    for server, server_runs in runs.items():
        durable = statistics.median(r.durable_seconds for r in server_runs)
        line = f"{'':<16} {'':>5} {server}: {count / durable:.1f} inst/s incl. final sync"
        if server.startswith("xraygate"):
            growth = max(r.rss_growth_mb or 0.0 for r in server_runs)
            line += f" and indexing; peak RSS growth {growth:.1f} MB"
        print(line, flush=True)


if __name__ == "__main__":
    main()
