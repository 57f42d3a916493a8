"""Run the cluster under faults and judge it: ``python -m tests.cluster`` (``make cluster``).

Faults are drawn from the seed and fire as the modalities' progress (acknowledged instances)
passes a drawn fraction of the corpus, so they land under load whatever the machine's speed;
any not fired when sending ends fire then. A killed process is restarted on its port after a
drawn delay, as a pod would be.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from sqlalchemy import func, select
from sqlmodel import col

from tests.cluster.cluster import Cluster, ClusterConfig
from tests.cluster.corpus import CorpusStudy, build
from tests.cluster.modality import Ledger, Modality
from tests.cluster.verdict import Received, Verdict, judge
from xraygate.core import db
from xraygate.core.models import Job, OutboxMessage
from xraygate.core.storage import open_store

FaultKind = Literal[
    "kill-scp", "kill-worker", "kill-gateway", "mllp-down", "fhir-503", "s3-outage", "pg-outage"
]


@dataclass
class Fault:
    kind: FaultKind
    at: float  # fraction of the corpus acknowledged when it fires
    duration: float  # outage length, or restart delay of a killed pod
    target: int = 0  # which pod of the role
    mode: Literal["reset", "stall"] = "reset"
    started: float | None = None
    healed: float | None = None

    def describe(self) -> str:
        what = self.kind
        if self.kind.startswith("kill-"):
            what += f" #{self.target} (restart after {self.duration:.1f} s)"
        else:
            what += f" {self.duration:.0f} s" + (f" ({self.mode})" if "outage" in self.kind else "")
        return f"{what} at {self.at:.0%}"


@dataclass
class RunOptions:
    instances: int = 1000
    seed: int = 1
    modalities: int = 6
    faults: Literal["full", "short", "none"] = "full"
    ehr_outage: float = 20.0
    drain_timeout: float = 300.0
    send_timeout: float = 600.0
    shrink: int = 4
    config: ClusterConfig = field(default_factory=ClusterConfig)
    workdir: Path | None = None


def plan_faults(options: RunOptions) -> list[Fault]:
    rng = random.Random(options.seed)
    c = options.config
    restart = lambda: rng.uniform(1.0, 4.0)  # noqa: E731
    if options.faults == "none":
        return []
    if options.faults == "short":
        faults = [
            Fault("kill-scp", 0.0, restart(), rng.randrange(c.scps)),
            Fault("kill-worker", 0.0, restart(), rng.randrange(c.workers)),
            Fault("kill-gateway", 0.0, restart(), rng.randrange(c.gateways)),
            Fault("mllp-down", 0.0, options.ehr_outage),
            Fault("fhir-503", 0.0, options.ehr_outage),
        ]
        ehr_at = rng.uniform(0.15, 0.5)
        for fault in faults:
            fault.at = ehr_at if not fault.kind.startswith("kill-") else rng.uniform(0.1, 0.8)
        return sorted(faults, key=lambda f: f.at)
    first_worker = rng.randrange(c.workers)
    faults = [Fault("kill-scp", 0.0, restart(), n % c.scps) for n in range(2)]
    faults += [
        Fault("kill-worker", 0.0, restart(), (first_worker + n) % c.workers) for n in range(2)
    ]
    faults += [Fault("kill-gateway", 0.0, restart(), rng.randrange(c.gateways))]
    faults += [
        Fault("mllp-down", 0.0, options.ehr_outage),
        Fault("fhir-503", 0.0, options.ehr_outage),
    ]
    faults += [
        Fault(kind, 0.0, rng.uniform(3.0, 8.0), mode=rng.choice(["reset", "stall"]))
        for kind in ("s3-outage", "pg-outage")
    ]
    for fault in faults:
        fault.at = rng.uniform(0.05, 0.9)
    return sorted(faults, key=lambda f: f.at)


class Run:
    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.ledger = Ledger()
        self.faults = plan_faults(options)
        self.gateway_reads = {"ok": 0, "failed": 0}
        self._stop = threading.Event()
        self._fault_threads: list[threading.Thread] = []
        self._fault_errors: list[str] = []

    def execute(self) -> Verdict:
        o = self.options
        with tempfile.TemporaryDirectory(prefix="xg-cluster-", dir=o.workdir) as tmp:
            root = Path(tmp)
            t0 = time.monotonic()
            studies = build(root / "corpus", o.instances, o.seed, o.shrink)
            cluster = Cluster(root / "cluster", o.config)
            try:
                cluster.start()
                startup = time.monotonic() - t0
                print(f"cluster up in {startup:.0f} s: {self._describe(cluster)}", flush=True)
                for fault in self.faults:
                    print(f"  fault planned: {fault.describe()}", flush=True)
                verdict = self._drive(cluster, studies, startup)
                if not verdict.ok:  # the processes' logs outlive the run's directory
                    kept = (
                        Path(tempfile.gettempdir()) / f"xg-cluster-logs-seed{o.seed}-{os.getpid()}"
                    )
                    shutil.copytree(root / "cluster" / "logs", kept, dirs_exist_ok=True)
                    print(f"cluster logs kept in {kept}", flush=True)
            except BaseException:
                print(f"cluster logs kept in {root}/cluster/logs", flush=True)
                raise
            finally:
                self._stop.set()
                cluster.stop()
        return verdict

    @staticmethod
    def _describe(cluster: Cluster) -> str:
        roles = [p.role for p in cluster.pods]
        parts = ", ".join(f"{roles.count(r)} {r}" for r in ("scp", "worker", "gateway"))
        return f"{parts} on PostgreSQL + S3, HAProxy :{cluster.dicom_port} / :{cluster.http_port}"

    # -- the run ------------------------------------------------------------------------------
    def _drive(self, cluster: Cluster, studies: list[CorpusStudy], startup: float) -> Verdict:
        o = self.options
        total = sum(len(s.instances) for s in studies)
        started = time.monotonic()
        modalities = [
            Modality(
                f"mod{n}",
                cluster.dicom_port,
                studies[n :: o.modalities],
                self.ledger,
                deadline=started + o.send_timeout,
                log_dir=cluster.root / "logs",
            )
            for n in range(o.modalities)
        ]
        for modality in modalities:
            modality.start()
        threading.Thread(target=self._ehr_reader, args=(cluster,), daemon=True).start()
        pending = list(self.faults)
        threading.Thread(target=self._supervise, args=(cluster,), daemon=True).start()
        while any(m.is_alive() for m in modalities):
            done = len(self.ledger.acked) / total
            while pending and pending[0].at <= done and self._due(cluster, pending[0]):
                self._fire(cluster, pending.pop(0))
            time.sleep(0.2)
        sent_at = time.monotonic()
        for fault in pending:
            self._fire(cluster, fault)
        for thread in self._fault_threads:
            thread.join()
        last_fault = max((f.healed or 0.0 for f in self.faults), default=sent_at)
        drained_at = self._wait_drained(cluster)
        engine = db.get_engine(cluster.direct_db_url)
        env = cluster.direct_env()
        store = open_store(
            env["XRAYGATE_STORAGE_URL"],
            endpoint_url=env["XRAYGATE_S3_ENDPOINT_URL"],
            access_key_id="testing",
            secret_access_key="testing",
        )
        ehr = cluster.ehr
        assert ehr is not None
        oru = Received(
            [(r.control_id, t) for r, t in zip(ehr.mllp.received, ehr.oru_times, strict=True)]
        )
        fhir = Received([(a.bundle_id, a.time) for a in ehr.fhir.arrivals if a.status == 200])
        run: dict[str, Any] = {
            "faults": "; ".join(f.describe() for f in self.faults) or "none",
            "pod restarts": sum(p.starts - 1 for p in cluster.pods),
            "pod crashes (restarted)": "; ".join(c for p in cluster.pods for c in p.crashes) or 0,
            "FHIR pushes answered 503": sum(1 for a in ehr.fhir.arrivals if a.status == 503),
            "EHR reads via HAProxy ok / failed": (
                f"{self.gateway_reads['ok']} / {self.gateway_reads['failed']}"
            ),
            "startup / sending": f"{startup:.0f} s / {sent_at - started:.0f} s",
            "throughput while sending": (
                f"{len(self.ledger.acked) / max(sent_at - started, 1e-9):.1f} instances/s"
            ),
            "drain after last fault": (
                f"{drained_at - last_fault:.1f} s" if drained_at else "NOT DRAINED"
            ),
        }
        bodies = {a.bundle_id: a.body for a in ehr.fhir.arrivals if a.status == 200}
        oru_bodies = [r.raw for r in ehr.mllp.received]
        verdict = judge(studies, self.ledger, engine, store, oru, oru_bodies, fhir, bodies, run)
        verdict.check(not ehr.mllp.errors, f"ORU strict parse errors: {ehr.mllp.errors[:3]}")
        verdict.check(drained_at is not None, "the cluster did not drain")
        verdict.check(not self._fault_errors, f"fault injection failed: {self._fault_errors}")
        running_crashes = [c for p in cluster.pods for c in p.crashes if "while running" in c]
        verdict.check(not running_crashes, f"processes died on their own: {running_crashes}")
        engine.dispose()
        return verdict

    def _supervise(self, cluster: Cluster) -> None:
        while not self._stop.wait(0.5):
            cluster.supervise()

    @staticmethod
    def _due(cluster: Cluster, fault: Fault) -> bool:
        """An EHR outage waits until results flow on both channels, so that it hits deliveries."""
        ehr = cluster.ehr
        assert ehr is not None
        if fault.kind in ("mllp-down", "fhir-503"):
            return bool(ehr.mllp.received) and any(a.status == 200 for a in ehr.fhir.arrivals)
        return True

    def _fire(self, cluster: Cluster, fault: Fault) -> None:
        thread = threading.Thread(target=self._apply, args=(cluster, fault), daemon=True)
        thread.start()
        self._fault_threads.append(thread)

    def _apply(self, cluster: Cluster, fault: Fault) -> None:
        try:
            self._inject(cluster, fault)
        except Exception as exc:
            self._fault_errors.append(f"{fault.describe()}: {type(exc).__name__}: {exc}")
            fault.healed = time.monotonic()

    def _inject(self, cluster: Cluster, fault: Fault) -> None:
        fault.started = time.monotonic()
        print(f"  fault: {fault.describe()}", flush=True)
        if fault.kind.startswith("kill-"):
            pod = cluster.pods_of(fault.kind.removeprefix("kill-"))[fault.target]
            with pod.lock:  # one fault at a time per pod: a restart completes first
                pod.kill()
                time.sleep(fault.duration)
                pod.start_ready()
        else:
            down, up = self._outage(cluster, fault)
            down()
            time.sleep(fault.duration)
            up()
        fault.healed = time.monotonic()

    @staticmethod
    def _outage(cluster: Cluster, fault: Fault) -> tuple[Any, Any]:
        ehr = cluster.ehr
        assert ehr is not None and cluster.pg_proxy and cluster.s3_proxy
        if fault.kind == "mllp-down":
            return ehr.mllp.stop, ehr.mllp.start
        if fault.kind == "fhir-503":
            return ehr.fhir.down.set, ehr.fhir.down.clear
        proxy = cluster.s3_proxy if fault.kind == "s3-outage" else cluster.pg_proxy
        return (lambda: proxy.outage(fault.mode)), proxy.heal

    def _wait_drained(self, cluster: Cluster) -> float | None:
        """The time every job is done (or dead) and every message delivered (or dead)."""
        engine = db.get_engine(cluster.direct_db_url)
        deadline = time.monotonic() + self.options.drain_timeout
        while time.monotonic() < deadline:
            with db.read_session(engine) as session:
                busy = session.scalar(
                    select(func.count()).where(col(Job.state).in_(["pending", "running"]))
                )
                unsent = session.scalar(
                    select(func.count()).where(col(OutboxMessage.state) == "pending")
                )
            if not busy and not unsent:
                return time.monotonic()
            time.sleep(0.5)
        return None

    def _ehr_reader(self, cluster: Cluster) -> None:
        """An EHR polling the FHIR API through HAProxy, as clinicians' systems do."""
        from xraygate.core.config import Settings
        from xraygate.gateway.auth import mint_token

        settings = Settings(auth_shared_secret=cluster.direct_env()["XRAYGATE_AUTH_SHARED_SECRET"])
        token = mint_token(settings, ["ehr"], "cluster-ehr", 3600)
        url = f"http://127.0.0.1:{cluster.http_port}/fhir/DiagnosticReport?_count=5&_sort=-date"
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {token}"}) as client:
            while not self._stop.wait(2.0):
                try:
                    ok = client.get(url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.gateway_reads["ok" if ok else "failed"] += 1
