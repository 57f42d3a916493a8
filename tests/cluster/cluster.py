"""The cluster under test, on loopback: PostgreSQL (a fresh database on the machine's server) and
an S3 endpoint (moto's server), each behind a :class:`FaultProxy`; HAProxy in front of the
``xraygate scp`` processes (TCP) and the ``xraygate gateway`` processes (HTTP); ``xraygate worker``
processes; an MLLP listener and a FHIR push target as the EHR. Processes are "pods": killed with
SIGKILL and restarted on the same port, with the same environment."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from tests.cluster.faultproxy import FaultProxy
from tests.mllp_listener import MllpListener

PG_ADMIN_URL = os.environ.get(
    "XRAYGATE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
HAPROXY = "/usr/sbin/haproxy"
SECRET = "cluster-harness-shared-secret-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(check: object, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class ClusterConfig:
    scps: int = 2
    gateways: int = 2
    workers: int = 3
    worker_threads: int = 2
    infer_batch: int = 8
    lease_seconds: float = 20.0
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 4.0
    shutdown_grace_seconds: float = 5.0
    haproxy: bool = True  # off: clients talk to the pods' own ports (bench/capacity.py)
    # the retraining export (de-identification with the pixel OCR step, ~1-3 s of CPU per
    # image): on in `make cluster`; the short run in `make test` leaves it out, because its
    # subject is ingest and delivery under faults and export throughput is bench/deid.py's
    exports: bool = True


@dataclass
class Pod:
    """One xraygate process, supervised like a pod: restarted after a kill, and after a crash
    with a growing back-off (Kubernetes' CrashLoopBackOff)."""

    name: str
    role: str
    port: int
    ops_port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    crashes: list[str] = field(default_factory=list)  # "exit 1 while starting", ...
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False  # the cluster is stopping: never (re)started again

    def start(self) -> None:
        if self.closed:
            return
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xraygate", self.role],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.starts += 1

    def last_error(self) -> str:
        """The last error line of the pod's log (what made it exit), shortened."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-40:]
        except OSError:
            return ""
        for line in reversed(lines):
            if "Error" in line or "error" in line or "refused" in line:
                return line.strip()[-160:]
        return ""

    def start_ready(self, timeout: float = 240.0) -> None:
        """Start and wait until ready, restarting (with back-off) if it crashes meanwhile."""
        deadline = time.monotonic() + timeout
        backoff = 1.0
        self.start()
        while not self.ready() and not self.closed:
            assert self.proc is not None
            if self.proc.poll() is not None:
                why = self.last_error()
                self.crashes.append(
                    f"{self.name}: exit {self.proc.returncode} while starting"
                    + (f" ({why})" if why else "")
                )
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                self.start()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready in {timeout:.0f} s; see {self.log_path}")
            time.sleep(0.2)

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        if self.role == "scp":
            return tcp_open(self.port)
        return http_ok(f"http://127.0.0.1:{self.ops_port}/healthz")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class FhirArrival:
    bundle_id: str
    time: float
    status: int
    body: bytes


class FhirTarget:
    """The EHR's FHIR endpoint: takes transaction Bundles, answers 503 while ``down`` is set."""

    def __init__(self) -> None:
        self.arrivals: list[FhirArrival] = []
        self.down = threading.Event()
        self._lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, answer = target._answer(body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _answer(self, body: bytes) -> tuple[int, dict[str, object]]:
        try:
            bundle = json.loads(body)
            bundle_id = str(bundle["id"])
            ok = bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
        except (ValueError, KeyError, TypeError):
            bundle_id, ok = "", False
        status = 503 if self.down.is_set() else 200 if ok else 400
        with self._lock:
            self.arrivals.append(FhirArrival(bundle_id, time.monotonic(), status, body))
        if status != 200:
            return status, {
                "resourceType": "OperationOutcome",
                "issue": [
                    {"severity": "error", "code": "transient" if status == 503 else "invalid"}
                ],
            }
        return 200, {"resourceType": "Bundle", "type": "transaction-response", "entry": []}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Ehr:
    """The EHR side: an MLLP listener (ORU^R01, parsed strictly) and a FHIR push target."""

    mllp: MllpListener
    fhir: FhirTarget
    oru_times: list[float] = field(default_factory=list)  # aligned with mllp.received

    @classmethod
    def start(cls) -> Ehr:
        times: list[float] = []

        def mllp_script(n: int, cid: str) -> str:
            times.append(time.monotonic())  # called under the listener's lock
            return "AA"

        ehr = cls(MllpListener(script=mllp_script, strict_parse=True), FhirTarget(), times)
        ehr.mllp.start()
        return ehr

    def stop(self) -> None:
        self.mllp.stop()
        self.fhir.stop()


class Cluster:
    def __init__(self, root: Path, config: ClusterConfig) -> None:
        self.root = root
        self.config = config
        self.db_name = f"xg_cluster_{uuid.uuid4().hex[:10]}"
        self.bucket = f"xg-cluster-{uuid.uuid4().hex[:8]}"
        self.pods: list[Pod] = []
        self._moto: subprocess.Popen[bytes] | None = None
        self._haproxy: subprocess.Popen[bytes] | None = None
        self.pg_proxy: FaultProxy | None = None
        self.s3_proxy: FaultProxy | None = None
        self.ehr: Ehr | None = None
        self.dicom_port = free_port()
        self.http_port = free_port()

    # -- URLs ---------------------------------------------------------------------------------
    @property
    def direct_db_url(self) -> str:
        return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{self.db_name}"

    @property
    def proxied_db_url(self) -> str:
        assert self.pg_proxy is not None
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        host = base.rsplit("@", 1)[-1]
        return f"{base.replace(host, f'127.0.0.1:{self.pg_proxy.port}')}/{self.db_name}"

    @property
    def s3_url(self) -> str:
        assert self.s3_proxy is not None
        return f"http://127.0.0.1:{self.s3_proxy.port}"

    def direct_env(self) -> dict[str, str]:
        """Settings for the harness itself: the database and S3 without the fault proxies."""
        assert self._moto_port
        return {
            **self._common_env(),
            "XRAYGATE_DATABASE_URL": self.direct_db_url,
            "XRAYGATE_S3_ENDPOINT_URL": f"http://127.0.0.1:{self._moto_port}",
        }

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self._create_database()
        self._start_moto()
        host, port = _pg_host_port()
        self.pg_proxy = FaultProxy((host, port), "postgresql").start()
        self.s3_proxy = FaultProxy(("127.0.0.1", self._moto_port), "s3").start()
        self.ehr = Ehr.start()
        self._migrate()
        self._make_pods()
        # Workers first: each registers the bundled demo model if none is (they race for it).
        threads = [threading.Thread(target=pod.start_ready) for pod in self.pods]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if not all(pod.ready() for pod in self.pods):
            raise RuntimeError("pods did not start; see the logs")
        if self.config.haproxy:
            self._start_haproxy()

    def add_pod(self, role: str) -> Pod:
        """Start one more pod of ``role`` (scaling out) and wait until it is ready."""
        self._add(role, len(self.pods_of(role)))
        pod = self.pods[-1]
        pod.start_ready()
        return pod

    def supervise(self) -> None:
        """Restart any pod that died on its own (not killed by a fault), as Kubernetes does."""
        for pod in self.pods:
            if pod.exited() and pod.lock.acquire(blocking=False):
                try:
                    if pod.exited():
                        assert pod.proc is not None
                        pod.crashes.append(f"{pod.name}: exit {pod.proc.returncode} while running")
                        pod.start_ready()
                finally:
                    pod.lock.release()

    def stop(self) -> None:
        for pod in self.pods:  # first, so that no supervisor or fault thread restarts one
            pod.closed = True
        for pod in self.pods:
            pod.kill()
        if self._haproxy is not None:
            self._haproxy.kill()
            self._haproxy.wait()
        if self.ehr is not None:
            self.ehr.stop()
        for proxy in (self.pg_proxy, self.s3_proxy):
            if proxy is not None:
                proxy.stop()
        if self._moto is not None:
            self._moto.terminate()
            self._moto.wait(timeout=10)
        self._drop_database()

    # -- parts --------------------------------------------------------------------------------
    def _create_database(self) -> None:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.db_name}"'))
        admin.dispose()

    def _drop_database(self) -> None:
        from xraygate.core import db

        db.get_engine.cache_clear()
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": self.db_name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}"'))
        admin.dispose()

    def _start_moto(self) -> None:
        self._moto_port = free_port()
        self._moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self._moto_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: tcp_open(self._moto_port), "moto server", timeout=60)

    def _migrate(self) -> None:
        """What the deployment's migrate Job does, once, before the pods start."""
        subprocess.run(
            [sys.executable, "-m", "xraygate", "db", "upgrade"],
            env={**os.environ, **self.direct_env()},
            check=True,
            capture_output=True,
            timeout=120,
        )

    def _common_env(self) -> dict[str, str]:
        c = self.config
        assert self.ehr is not None
        return {
            "XRAYGATE_STORAGE_URL": f"s3://{self.bucket}/objects",
            "XRAYGATE_EXPORT_STORAGE_URL": f"s3://{self.bucket}/export",
            "XRAYGATE_S3_ACCESS_KEY_ID": "testing",
            "XRAYGATE_S3_SECRET_ACCESS_KEY": "testing",
            "XRAYGATE_EXPORT_S3_ACCESS_KEY_ID": "testing",
            "XRAYGATE_EXPORT_S3_SECRET_ACCESS_KEY": "testing",
            "XRAYGATE_MIN_FREE_BYTES": "0",
            "XRAYGATE_EXPORT_ENABLED": "true" if c.exports else "false",
            "XRAYGATE_AUTH_SHARED_SECRET": SECRET,
            "XRAYGATE_SESSION_SECRET": SECRET,
            "XRAYGATE_DEID_SECRET": SECRET,
            "XRAYGATE_HL7_HOST": "127.0.0.1",
            "XRAYGATE_HL7_PORT": str(self.ehr.mllp.port),
            "XRAYGATE_HL7_TIMEOUT": "10",
            "XRAYGATE_FHIR_PUSH_URL": self.ehr.fhir.url,
            "XRAYGATE_QUEUE_LEASE_SECONDS": str(c.lease_seconds),
            "XRAYGATE_DELIVERY_STREAM_LEASE_SECONDS": str(c.lease_seconds),
            "XRAYGATE_QUEUE_BACKOFF_SECONDS": str(c.backoff_seconds),
            "XRAYGATE_QUEUE_BACKOFF_MAX_SECONDS": str(c.backoff_max_seconds),
            "XRAYGATE_QUEUE_MAX_ATTEMPTS": "10",
            "XRAYGATE_SHUTDOWN_GRACE_SECONDS": str(c.shutdown_grace_seconds),
            "XRAYGATE_WORKERS": str(c.worker_threads),
            "XRAYGATE_INFER_BATCH_SIZE": str(c.infer_batch),
            "XRAYGATE_DICOM_HOST": "127.0.0.1",
            "XRAYGATE_HTTP_HOST": "127.0.0.1",
            "XRAYGATE_NETWORK_TIMEOUT": "30",
            "XRAYGATE_LOG_LEVEL": "INFO",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "OMP_NUM_THREADS": "1",
            "TF_NUM_INTRAOP_THREADS": "1",
            "TF_NUM_INTEROP_THREADS": "1",
        }

    def _make_pods(self) -> None:
        c = self.config
        for role, count in (("worker", c.workers), ("scp", c.scps), ("gateway", c.gateways)):
            for n in range(count):
                self._add(role, n)

    def _add(self, role: str, n: int) -> None:
        name = f"{role}-{n}"
        port, ops = free_port(), free_port()
        env = {
            **os.environ,
            **self._common_env(),
            "XRAYGATE_DATABASE_URL": self.proxied_db_url,
            "XRAYGATE_S3_ENDPOINT_URL": self.s3_url,
            "XRAYGATE_EXPORT_S3_ENDPOINT_URL": self.s3_url,
            "XRAYGATE_DATA_DIR": str(self.root / "pods" / name),
            "XRAYGATE_DICOM_PORT": str(port),
            "XRAYGATE_HTTP_PORT": str(ops if role == "gateway" else port),
            "XRAYGATE_OPS_PORT": str(ops),
        }
        self.pods.append(Pod(name, role, port, ops, env, self.root / "logs" / f"{name}.log"))

    def _start_haproxy(self) -> None:
        scps = "\n".join(
            f"  server {p.name} 127.0.0.1:{p.port} check" for p in self.pods if p.role == "scp"
        )
        gateways = "\n".join(
            f"  server {p.name} 127.0.0.1:{p.ops_port} check"
            for p in self.pods
            if p.role == "gateway"
        )
        config = f"""global
  maxconn 2000
defaults
  timeout connect 2s
  timeout client 120s
  timeout server 120s
  retries 3
  option redispatch
frontend dicom
  mode tcp
  bind 127.0.0.1:{self.dicom_port}
  default_backend scp
backend scp
  mode tcp
  balance leastconn
  default-server inter 1s fall 2 rise 1
{scps}
frontend http
  mode http
  bind 127.0.0.1:{self.http_port}
  default_backend gateway
backend gateway
  mode http
  balance roundrobin
  option httpchk GET /healthz
  retry-on conn-failure empty-response response-timeout
  default-server inter 1s fall 2 rise 1
{gateways}
"""
        path = self.root / "haproxy.cfg"
        path.write_text(config)
        log = (self.root / "logs" / "haproxy.log").open("ab")
        self._haproxy = subprocess.Popen([HAPROXY, "-f", str(path), "-db"], stdout=log, stderr=log)
        log.close()
        wait_for(lambda: tcp_open(self.dicom_port), "HAProxy", timeout=30)
        wait_for(lambda: http_ok(f"http://127.0.0.1:{self.http_port}/healthz"), "gateways")

    def pods_of(self, role: str) -> list[Pod]:
        return [p for p in self.pods if p.role == role]

    def cleanup_files(self) -> None:
        shutil.rmtree(self.root / "pods", ignore_errors=True)


def _pg_host_port() -> tuple[str, int]:
    from sqlalchemy.engine import make_url

    url = make_url(PG_ADMIN_URL)
    return url.host or "127.0.0.1", url.port or 5432
