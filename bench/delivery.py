"""Delivery benchmark: HL7 ORU^R01 over MLLP, and FHIR search on 10,000 stored reports.

Each figure comes with a peer measured in the same run:

- MLLP: xraygate's sender (kept-alive connection, ACK parsed and checked) against a raw socket
  loop (frame out, read the ACK frame, nothing else), both to the same loopback listener that
  answers AA; then the whole path (outbox rows -> send-hl7 jobs -> workers -> listener -> rows
  marked delivered) on the embedded SQLite database.
- FHIR search: ``GET /fhir/DiagnosticReport?patient=..&category=RAD&date=ge..&_sort=-date
  &_include=DiagnosticReport:result`` over HTTP (uvicorn on loopback) against the equivalent raw
  SQL query on the same database.

    .venv/bin/python bench/delivery.py            # 3000 ORUs, 10,000 reports, 2000 searches
    .venv/bin/python bench/delivery.py --quick

Targets: >= 200 ORU/s, p95 search latency < 50 ms.
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.mllp_listener import CR, EB, SB, MllpListener
from tests.results_factory import make_result
from xraygate.core import db
from xraygate.core.config import Settings, get_settings
from xraygate.core.jobs import JobKind, SendHl7Payload
from xraygate.core.models import Channel, FhirResource, OutboxMessage
from xraygate.core.outbox import NewMessage, OutboxDrainer, add_message
from xraygate.core.queue import JobQueue, RetryPolicy
from xraygate.core.worker import Worker
from xraygate.fhir.builders import build_all, build_provenance
from xraygate.fhir.context import load_context
from xraygate.fhir.store import search_columns
from xraygate.gateway.fhir_api import router
from xraygate.hl7.mllp import make_mllp_sender
from xraygate.hl7.oru import build_oru


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18]


# --- MLLP ---------------------------------------------------------------------------------------


def sample_orus(settings: Settings, engine: Any, count: int) -> list[str]:
    from xraygate.core.models import Patient, Study, StudyResult

    made = make_result(engine)
    with db.read_session(engine) as s:
        result = s.get(StudyResult, made.result_id)
        study = s.get(Study, result.study_pk) if result else None
        patient = s.get(Patient, study.patient_pk) if study else None
    assert result and study and patient
    template = build_oru(settings, "XGBENCH000000000000", result, study, patient, result.updated_at)
    return [template.replace("XGBENCH000000000000", f"XGB{i:017d}") for i in range(count)]


def bench_sender(messages: list[str], port: int) -> float:
    send = make_mllp_sender("127.0.0.1", port, 5.0)
    rows = [
        OutboxMessage(
            channel="hl7",
            stream_key="k",
            seq=i,
            dedupe_key=str(i),
            control_id=m.split("|")[9],
            study_uid="1",
            content_type="x",
            message=m,
        )
        for i, m in enumerate(messages)
    ]
    start = time.perf_counter()
    for row in rows:
        assert send(row).result == "delivered"
    return len(rows) / (time.perf_counter() - start)


def bench_raw_socket(messages: list[str], port: int) -> float:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start = time.perf_counter()
    for m in messages:
        sock.sendall(SB + m.encode() + EB + CR)
        buf = b""
        while not buf.endswith(EB + CR):
            buf += sock.recv(65536)
    rate = len(messages) / (time.perf_counter() - start)
    sock.close()
    return rate


def bench_pipeline(settings: Settings, engine: Any, messages: list[str], port: int) -> float:
    """Outbox rows -> send-hl7 jobs -> 2 workers -> listener -> rows delivered."""
    queue = JobQueue(engine, policy=RetryPolicy(5, 0.1, 1.0))
    with db.write_session(engine) as s:
        for i, m in enumerate(messages):
            add_message(
                s,
                queue,
                SendHl7Payload,
                NewMessage(
                    channel=Channel.HL7,
                    stream_key=f"patient-{i % 50}",
                    dedupe_key=f"p{i}",
                    control_id=m.split("|")[9],
                    study_uid="1",
                    content_type="x",
                    message=m,
                ),
            )
    drainer = OutboxDrainer(engine, {Channel.HL7: make_mllp_sender("127.0.0.1", port, 5.0)})
    stop = threading.Event()
    start = time.perf_counter()
    threads = [
        threading.Thread(
            target=Worker(queue, {JobKind.SEND_HL7: drainer}).run, args=(stop, 0.01), daemon=True
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    while True:
        counts = queue.counts()
        if counts["done"] + counts["dead"] >= len(messages):
            break
        time.sleep(0.05)
    assert counts["dead"] == 0, counts
    rate = len(messages) / (time.perf_counter() - start)
    stop.set()
    for t in threads:
        t.join()
    return rate


# --- FHIR search ----------------------------------------------------------------------------------


def store_reports(settings: Settings, engine: Any, reports: int, patients: int) -> list[str]:
    """Index rows + results through the models, resources through the real builders."""
    from zoneinfo import ZoneInfo

    rng = random.Random(7)
    rows: list[FhirResource] = []
    for i in range(reports):
        score = rng.random()
        category = "high" if score > 0.8 else "low" if score < 0.6 else "indeterminate"
        made = make_result(
            engine,
            patient_id=f"P{i % patients:05d}",
            accession=f"A{i:06d}",
            score=score,
            category=category,
            study_date=f"2024{1 + i % 12:02d}{1 + i % 28:02d}",
        )
        with db.read_session(engine) as s:
            ctx = load_context(s, made.result_id, settings.fhir_system_base, ZoneInfo("UTC"))
        assert ctx is not None
        resources = [*build_all(ctx), build_provenance(ctx, 1, ctx.result.updated_at)]
        for res in resources:
            if (res["resourceType"] == "Patient" and i >= patients) or (
                res["resourceType"] == "Device" and i > 0
            ):
                continue
            res["meta"] = {"versionId": "1"}
            rows.append(
                FhirResource(
                    resource_type=res["resourceType"],
                    resource_id=res["id"],
                    version_id=1,
                    content=res,
                    **search_columns(res),
                )
            )
        if len(rows) > 3000:
            with db.write_session(engine) as s:
                s.add_all(rows)
            rows = []
    with db.write_session(engine) as s:
        s.add_all(rows)
    with db.read_session(engine) as s:
        ids = (
            s.execute(
                text("SELECT resource_id FROM fhir_resources WHERE resource_type = 'Patient'")
            )
            .scalars()
            .all()
        )
    return list(ids)


def serve(settings: Settings) -> tuple[str, uvicorn.Server]:
    app = FastAPI()
    app.include_router(router)
    app.dependency_overrides[get_settings] = lambda: settings
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}/fhir", server


def bench_search(base: str, patient_ids: list[str], n: int) -> tuple[float, float, float]:
    rng = random.Random(1)
    latencies: list[float] = []
    with httpx.Client(timeout=10) as client:
        start = time.perf_counter()
        for _ in range(n):
            params = {
                "patient": rng.choice(patient_ids),
                "category": "RAD",
                "date": "ge2024-03-01",
                "_sort": "-date",
                "_include": "DiagnosticReport:result",
            }
            t0 = time.perf_counter()
            reply = client.get(f"{base}/DiagnosticReport", params=params)
            latencies.append(time.perf_counter() - t0)
            assert reply.status_code == 200 and reply.json()["resourceType"] == "Bundle"
        rate = n / (time.perf_counter() - start)
    return rate, p95(latencies) * 1000, statistics.median(latencies) * 1000


def bench_raw_sql(engine: Any, patient_ids: list[str], n: int) -> tuple[float, float]:
    rng = random.Random(1)
    sql = text(
        "SELECT content FROM fhir_resources WHERE resource_type = 'DiagnosticReport' "
        "AND is_current = :t AND patient_ref = :p AND categories LIKE :c AND date >= :d "
        "ORDER BY date DESC LIMIT 20"
    )
    latencies: list[float] = []
    with engine.connect() as conn:
        start = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            rows = conn.execute(
                sql,
                {
                    "p": f"Patient/{rng.choice(patient_ids)}",
                    "c": "%|RAD\t%",
                    "d": "2024-03-01",
                    "t": True,
                },
            ).all()
            latencies.append(time.perf_counter() - t0)
            assert rows is not None
        rate = n / (time.perf_counter() - start)
    return rate, p95(latencies) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--database-url", help="default: a temp SQLite database")
    args = parser.parse_args()
    n_oru, n_reports, n_search = (500, 2000, 300) if args.quick else (3000, 10000, 2000)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(data_dir=Path(tmp), database_url=url, min_free_bytes=0)
        db.upgrade(url)
        engine = db.get_engine(url)
        print(f"database: {engine.dialect.name}")
        with MllpListener() as listener:
            orus = sample_orus(settings, engine, n_oru)
            print(f"ORU size: {len(orus[0])} bytes")
            raw = bench_raw_socket(orus, listener.port)
            ours = bench_sender(orus, listener.port)
            pipe = bench_pipeline(settings, engine, orus[-(n_oru // 2) :], listener.port)
        print(f"MLLP raw socket loop:          {raw:8.0f} msg/s")
        print(f"MLLP xraygate sender:          {ours:8.0f} msg/s  ({ours / raw:.2f} x raw)")
        print(
            f"MLLP outbox+queue+workers:     {pipe:8.0f} msg/s  ({pipe / raw:.2f} x raw; "
            f"target >= 200)"
        )
        t0 = time.perf_counter()
        patient_ids = store_reports(settings, engine, n_reports, n_reports // 10)
        print(f"stored {n_reports} reports in {time.perf_counter() - t0:.0f} s")
        base, server = serve(settings)
        rate, p95_ms, median_ms = bench_search(base, patient_ids, n_search)
        raw_rate, raw_p95 = bench_raw_sql(engine, patient_ids, n_search)
        server.should_exit = True
        print(f"raw SQL query:                 {raw_rate:8.0f} q/s   p95 {raw_p95:6.2f} ms")
        print(
            f"FHIR search over HTTP:         {rate:8.0f} q/s   p95 {p95_ms:6.2f} ms "
            f"(median {median_ms:.2f} ms; {rate / raw_rate:.3f} x raw; target p95 < 50 ms)"
        )


if __name__ == "__main__":
    main()
