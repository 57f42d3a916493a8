"""At-least-once, ordered-per-patient HL7 delivery through the real queue and workers, with a
real MLLP listener misbehaving. Runs on SQLite and PostgreSQL (``settings`` is parametrized)."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from tests.hl7.conftest import make_env
from tests.mllp_listener import MllpListener, pid3_of
from tests.results_factory import enqueue_emit, make_result, run_until
from xraygate.core.config import Settings
from xraygate.core.outbox import retry_message

pytestmark = pytest.mark.integration


def test_listener_down_then_back_all_arrive_in_order(settings: Settings) -> None:
    listener = MllpListener()  # not started: connections are refused
    env = make_env(settings, listener)
    engine = env.queue.engine
    made = []
    for i in range(4):
        for patient in ("P1", "P2", "P3"):
            category = "high" if i == 2 else "low"
            m = make_result(
                engine,
                patient_id=patient,
                score=0.9 if i == 2 else 0.1,
                category=category,
                accession=f"{patient}-{i}",
            )
            made.append(m)
            enqueue_emit(engine, env.queue, "emit-hl7", m)
    # the producers run first (the listener is down), then the listener comes back
    run_until(
        env.queue,
        {"emit-hl7": env.handlers["emit-hl7"]},
        lambda: len(env.outbox()) == 12,
        workers=2,
    )
    seqs = defaultdict(list)
    for row in env.outbox():
        seqs[row.stream_key].append(row.seq)
    assert all(sorted(v) == [1, 2, 3, 4] for v in seqs.values())

    started = {"done": False}

    def done() -> bool:
        if not started["done"] and time.monotonic() > t0 + 1.5:
            listener.start()
            started["done"] = True
        return started["done"] and env.all_final()

    t0 = time.monotonic()
    try:
        run_until(env.queue, env.handlers, done, workers=3, timeout=90)
    finally:
        listener.stop()
    rows = env.outbox()
    assert {r.state for r in rows} == {"delivered"}
    assert any(r.attempts >= 2 for r in rows), "some sends failed while the listener was down"
    by_cid = {r.control_id: r for r in rows}
    assert len(by_cid) == 12, "control IDs are unique"
    received = listener.received
    # every message arrived; any duplicate carries the same control ID as the original
    assert {r.control_id for r in received} == set(by_cid)
    for r in received:
        assert by_cid[r.control_id].message == r.raw, "a resend is byte-identical"
    # per patient, the first arrivals are in sequence order and nothing older comes after
    for key in ("HOSP|P1", "HOSP|P2", "HOSP|P3"):
        order = [
            by_cid[r.control_id].seq for r in received if by_cid[r.control_id].stream_key == key
        ]
        assert order == sorted(order), (key, order)
        assert pid3_of(received[0].raw)


def test_ae_then_aa_is_delivered_with_the_same_control_id(settings: Settings) -> None:
    with MllpListener(script=lambda n, cid: "AE" if n == 0 else "AA") as listener:
        env = make_env(settings, listener)
        made = make_result(env.queue.engine)
        enqueue_emit(env.queue.engine, env.queue, "emit-hl7", made)
        run_until(env.queue, env.handlers, env.all_final)
    assert [r.action for r in listener.received] == ["AE", "AA"]
    assert listener.received[0].control_id == listener.received[1].control_id
    [row] = env.outbox()
    assert row.state == "delivered" and row.attempts == 2
    [job] = env.jobs("send-hl7")
    assert job.state == "done" and job.attempts == 2


def test_ar_dead_letters_with_reason_and_later_messages_still_go(settings: Settings) -> None:
    with MllpListener(script=lambda n, cid: "AR" if n == 0 else "AA") as listener:
        env = make_env(settings, listener)
        engine = env.queue.engine
        first = make_result(engine, accession="A1")
        second = make_result(engine, accession="A2")
        enqueue_emit(engine, env.queue, "emit-hl7", first)
        run_until(env.queue, env.handlers, env.all_final, workers=1)
        enqueue_emit(engine, env.queue, "emit-hl7", second)
        run_until(env.queue, env.handlers, env.all_final, workers=1)
        rows = env.outbox()
        assert [r.state for r in rows] == ["dead", "delivered"]
        assert "AR" in (rows[0].last_error or "") and "MSA|AR" in (rows[0].response or "")
        jobs = sorted(env.jobs("send-hl7"), key=lambda j: j.id or 0)
        assert jobs[0].state == "dead" and "AR" in (jobs[0].last_error or "")
        assert jobs[0].attempts == 1, "AR is not retried"
        # an operator replays it: same bytes, same control ID
        assert rows[0].id is not None
        retry_message(env.queue, rows[0].id)
        run_until(env.queue, env.handlers, env.all_final, workers=1)
    assert [r.state for r in env.outbox()] == ["delivered", "delivered"]
    assert listener.received[-1].control_id == rows[0].control_id


def test_listener_closing_mid_frame_is_retried(settings: Settings) -> None:
    with MllpListener(script=lambda n, cid: "close-mid-frame" if n < 2 else "AA") as listener:
        env = make_env(settings, listener)
        made = make_result(env.queue.engine)
        enqueue_emit(env.queue.engine, env.queue, "emit-hl7", made)
        run_until(env.queue, env.handlers, env.all_final)
    [row] = env.outbox()
    assert row.state == "delivered"
    assert len({r.control_id for r in listener.received}) == 1
    assert [r.action for r in listener.received][-1] == "AA"


def test_timeout_without_ack_is_retried(sqlite_settings: Settings) -> None:
    import threading

    gate = threading.Event()

    def script(n: int, cid: str) -> str:
        if n == 0:
            gate.wait(3)  # hold the ACK past the sender's timeout
        return "AA"

    with MllpListener(script=script) as listener:
        env = make_env(sqlite_settings, listener, hl7_timeout=0.5)
        made = make_result(env.queue.engine)
        enqueue_emit(env.queue.engine, env.queue, "emit-hl7", made)
        try:
            run_until(env.queue, env.handlers, env.all_final)
        finally:
            gate.set()
    [row] = env.outbox()
    assert row.state == "delivered" and row.attempts >= 2
    assert len({r.control_id for r in listener.received}) == 1


def test_high_risk_goes_first_and_to_the_escalation_target(sqlite_settings: Settings) -> None:
    with MllpListener() as listener, MllpListener() as escalation:
        env = make_env(
            sqlite_settings,
            listener,
            escalation_hl7_host="127.0.0.1",
            escalation_hl7_port=escalation.port,
        )
        engine = env.queue.engine
        low = make_result(engine, patient_id="L1", score=0.1, category="low")
        high = make_result(engine, patient_id="H1", score=0.95, category="high")
        enqueue_emit(engine, env.queue, "emit-hl7", low, priority=0)
        enqueue_emit(engine, env.queue, "emit-hl7", high, priority=10)
        run_until(env.queue, env.handlers, env.all_final, workers=1)
    assert [pid3_of(r.raw).split("^")[0] for r in listener.received] == ["H1", "L1"]
    assert [pid3_of(r.raw).split("^")[0] for r in escalation.received] == ["H1"]
    assert escalation.received[0].control_id != listener.received[0].control_id


def test_shadow_results_are_not_sent(sqlite_settings: Settings, listener: MllpListener) -> None:
    env = make_env(sqlite_settings, listener)
    made = make_result(env.queue.engine, shadow=True)
    enqueue_emit(env.queue.engine, env.queue, "emit-hl7", made)
    run_until(env.queue, env.handlers, env.all_final)
    assert env.outbox() == [] and listener.received == []


def test_high_risk_notifies_the_escalation_webhook(sqlite_settings: Settings) -> None:
    import json

    from tests.http_target import HttpTarget

    with (
        MllpListener() as listener,
        HttpTarget(script=lambda n: (503, {}) if n == 0 else (200, {})) as hook,
    ):
        env = make_env(sqlite_settings, listener, escalation_webhook_url=hook.url)
        engine = env.queue.engine
        enqueue_emit(
            engine, env.queue, "emit-hl7", make_result(engine, score=0.95, category="high")
        )
        enqueue_emit(
            engine,
            env.queue,
            "emit-hl7",
            make_result(engine, patient_id="L", score=0.1, category="low"),
        )
        run_until(env.queue, env.handlers, env.all_final)
    assert len(hook.requests) == 2, "503 retried once; the low-risk result is not escalated"
    body = json.loads(hook.requests[1].body)
    assert body["category"] == "high" and body["riskPercent"] == 95.0 and body["aiGenerated"]
    sent = hook.requests[1].body.decode()
    assert "MRN" not in sent, "no patient identifiers in the webhook"
    assert "ACC-1" not in sent and "accession" not in sent.lower(), "nor the accession number"
    [row] = env.outbox("webhook-escalation")
    assert row.state == "delivered"
