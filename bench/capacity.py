"""Capacity per process in the split deployment, and the replicas a site needs.

One ``xraygate scp`` and then one ``xraygate worker`` process, on PostgreSQL and an S3 endpoint
(moto) with the EHR peers of the cluster harness (tests/cluster), measured one after the other:

- SCP: RG1-based chest CR studies (tests/cluster/corpus.py) sent by 4 dcmtk ``storescu``
  modalities at once; instances/s and studies/s acknowledged. Peer, same corpus and senders in the
  same run: dcmtk ``storescp`` writing plain files (no index, no fsync, no S3).
- Worker: the queue the SCP filled, drained by one worker process (2 threads): every instance
  scored, every study's FHIR resources stored and pushed, ORUs sent over MLLP, exports written.
  Peer: the same images decoded, preprocessed and scored in a bare in-process loop (batch 8).

Then the replicas for sites of a given daily volume, at a peak hour of ``--peak`` x the day's
mean rate, each process loaded to ``--headroom`` of its measured capacity, never fewer than 2.

    .venv/bin/python bench/capacity.py            # 400 instances
    .venv/bin/python bench/capacity.py --quick    # 120 instances
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402
from sqlmodel import col  # noqa: E402

from tests.cluster.cluster import Cluster, ClusterConfig, free_port, tcp_open, wait_for  # noqa: E402
from tests.cluster.corpus import CorpusStudy, build  # noqa: E402
from tests.cluster.modality import Ledger, Modality  # noqa: E402
from xraygate.core import db  # noqa: E402
from xraygate.core.models import Job, OutboxMessage  # noqa: E402

SENDERS = 4


def send_all(port: int, studies: list[CorpusStudy], logs: Path) -> tuple[float, Ledger]:
    ledger = Ledger()
    senders = [
        Modality(
            f"cap{n}",
            port,
            studies[n::SENDERS],
            ledger,
            deadline=time.monotonic() + 900,
            log_dir=logs,
        )
        for n in range(SENDERS)
    ]
    start = time.monotonic()
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    elapsed = time.monotonic() - start
    total = sum(len(s.instances) for s in studies)
    assert len(ledger.acked) == total, f"only {len(ledger.acked)} of {total} acknowledged"
    return elapsed, ledger


def storescp_peer(studies: list[CorpusStudy], root: Path) -> float:
    out = root / "storescp"
    out.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        ["storescp", "-od", str(out), "-aet", "XRAYGATE", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: tcp_open(port), "storescp", timeout=30)
        elapsed, _ = send_all(port, studies, root)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return elapsed


def open_work(engine: object) -> int:
    with db.read_session(engine) as session:  # type: ignore[arg-type]
        busy = session.scalar(
            select(func.count()).where(col(Job.state).in_(["pending", "running"]))
        )
        unsent = session.scalar(select(func.count()).where(col(OutboxMessage.state) == "pending"))
    return int(busy or 0) + int(unsent or 0)


def done_jobs(engine: object) -> int:
    with db.read_session(engine) as session:  # type: ignore[arg-type]
        return int(session.scalar(select(func.count()).where(col(Job.state) == "done")) or 0)


def worker_rate(cluster: Cluster) -> float:
    """Seconds one worker process takes to drain everything the SCP queued (from its first
    finished job, so that its start-up is not counted)."""
    engine = db.get_engine(cluster.direct_db_url)
    cluster.add_pod("worker")
    wait_for(lambda: done_jobs(engine) > 0, "the first job", timeout=300)
    start = time.monotonic()
    wait_for(lambda: open_work(engine) == 0, "the worker to drain the queue", timeout=1800)
    return time.monotonic() - start


def bare_inference_peer(studies: list[CorpusStudy]) -> float:
    """Seconds to decode, preprocess and score every image in-process, batch 8."""
    import numpy as np

    from xraygate.inference.manifest import parse_manifest
    from xraygate.inference.preprocess import preprocess, read_dataset
    from xraygate.inference.runtime import load

    demo = ROOT / "xraygate" / "inference" / "demo"
    manifest = parse_manifest((demo / "manifest.json").read_text())
    model = load(demo / "model.keras", manifest)
    paths = [i.path for s in studies for i in s.instances]
    start = time.monotonic()
    for n in range(0, len(paths), 8):
        batch = [preprocess(read_dataset(p.read_bytes()), manifest.input) for p in paths[n : n + 8]]
        model.predict(np.stack(batch))
    return time.monotonic() - start


def replicas_table(
    scp_ips: float, worker_ips: float, per_study: float, peak: float, headroom: float
) -> None:
    print(
        f"\nreplicas per site (peak hour = {peak:g} x the mean rate, processes at "
        f"{headroom:.0%} of capacity, at least 2 each; {per_study:.1f} images per study):"
    )
    print("| studies/day | images/day | peak images/s | SCP replicas | worker replicas |")
    print("|---:|---:|---:|---:|---:|")
    for studies in (500, 2000, 5000, 10000, 25000):
        images = studies * per_study
        rate = images / 86400 * peak
        scp = max(2, math.ceil(rate / (scp_ips * headroom)))
        workers = max(2, math.ceil(rate / (worker_ips * headroom)))
        print(f"| {studies:,} | {images:,.0f} | {rate:.2f} | {scp} | {workers} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--quick", action="store_true", help="120 instances")
    parser.add_argument("--peak", type=float, default=4.0, help="peak hour / mean rate")
    parser.add_argument("--headroom", type=float, default=0.5, help="target load per process")
    args = parser.parse_args()
    count = 120 if args.quick else args.instances
    with tempfile.TemporaryDirectory(prefix="xg-capacity-") as tmp:
        root = Path(tmp)
        studies = build(root / "corpus", count, seed=11)
        total = sum(len(s.instances) for s in studies)
        config = ClusterConfig(scps=1, workers=0, gateways=0, haproxy=False, worker_threads=2)
        cluster = Cluster(root / "cluster", config)
        try:
            cluster.start()
            [scp] = cluster.pods_of("scp")
            scp_s, _ = send_all(scp.port, studies, root)
            peer_s = storescp_peer(studies, root)
            work_s = worker_rate(cluster)
        finally:
            cluster.stop()
        bare_s = bare_inference_peer(studies)
    scp_ips, worker_ips = total / scp_s, total / work_s
    print(
        f"corpus: {total} RG1-based CR instances in {len(studies)} studies "
        f"({total / len(studies):.1f} per study)"
    )
    print(
        f"{'one SCP process':<44} {scp_ips:6.1f} instances/s {len(studies) / scp_s:6.2f} studies/s"
    )
    print(
        f"{'  peer: dcmtk storescp, plain files':<44} {total / peer_s:6.1f} instances/s  "
        f"ratio {peer_s / scp_s:.2f}"
    )
    print(
        f"{'one worker process (2 threads), full pipe':<44} {worker_ips:6.1f} instances/s "
        f"{len(studies) / work_s:6.2f} studies/s"
    )
    print(
        f"{'  peer: bare decode+preprocess+score':<44} {total / bare_s:6.1f} instances/s  "
        f"ratio {bare_s / work_s:.2f}"
    )
    replicas_table(scp_ips, worker_ips, total / len(studies), args.peak, args.headroom)


if __name__ == "__main__":
    main()
