"""The durability flush on the acknowledgement path: ``syncfs`` against per-file ``fsync``.

One thread ingests small CT objects (pydicom's CT_small, fresh UIDs) through the real
:class:`~xraygate.core.ingest.ingestor.Ingestor` (journal on, local store, SQLite), as one
association does: each object must be durable before the next one is taken. The two
``XRAYGATE_INGEST_SYNC`` modes alternate in the same run (the machine is noisy) and the script
prints the time per acknowledged object and the ratio.

    .venv/bin/python bench/ingest_sync.py --count 300 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pydicom import examples
from pydicom.uid import generate_uid

from xraygate.core import db
from xraygate.core.config import Settings
from xraygate.core.ingest.header import Received
from xraygate.core.ingest.ingestor import Ingestor
from xraygate.core.queue import JobQueue
from xraygate.core.storage import LocalStore


def run(mode: str, count: int, root: Path) -> float:
    """Seconds per acknowledged object."""
    data = root / mode
    settings = Settings(data_dir=data, ingest_sync=mode, min_free_bytes=0)  # type: ignore[arg-type]
    db.upgrade(settings.resolved_database_url)
    ingestor = Ingestor(settings, LocalStore(data / "objects"), JobQueue.from_settings(settings))
    spool = settings.tmp_dir
    spool.mkdir(parents=True, exist_ok=True)
    ds = examples.ct
    files = []
    for n in range(count):
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = generate_uid() if n % 50 == 0 else ds.StudyInstanceUID
        path = spool / f"in-{n}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append((path, str(ds.SOPInstanceUID)))
    start = time.perf_counter()
    for path, uid in files:
        received = Received(
            path, "BENCH", str(ds.SOPClassUID), uid, str(ds.file_meta.TransferSyntaxUID)
        )
        if ingestor.ingest(received).status != 0:
            raise SystemExit("ingest refused an object")
    seconds = (time.perf_counter() - start) / count
    ingestor.flush(120)
    ingestor.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"syncfs": [], "fsync": []}
    with tempfile.TemporaryDirectory(prefix="xg-sync-", dir=Path.cwd()) as tmp:
        for n in range(args.rounds):
            for mode in ("fsync", "syncfs") if n % 2 == 0 else ("syncfs", "fsync"):
                times[mode].append(run(mode, args.count, Path(tmp) / f"r{n}"))
    for mode, values in times.items():
        ms = statistics.median(values) * 1000
        print(f"{mode:<7} {ms:6.2f} ms per acknowledged object (median of {args.rounds})")
    ratio = statistics.median(times["fsync"]) / statistics.median(times["syncfs"])
    print(f"syncfs is {ratio:.2f}x as fast as fsync per object (1 association, small objects)")


if __name__ == "__main__":
    main()
