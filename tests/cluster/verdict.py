"""The harness's verdict: what the modalities sent and the EHR received, against the database and
the object store, with the checks that decide the exit status."""

from __future__ import annotations

import hashlib
import io
import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from pydicom import dcmread
from sqlalchemy import func, select
from sqlmodel import col

from tests.cluster.corpus import CorpusStudy
from tests.cluster.modality import Ledger
from tests.mllp_listener import control_id_of, pid3_of
from xraygate.core import db
from xraygate.core.errors import StorageError
from xraygate.core.models import (
    FhirResource,
    Instance,
    InstanceResult,
    Job,
    OutboxMessage,
    OutboxState,
    StudyResult,
)
from xraygate.core.storage import ObjectStore
from xraygate.core.vocabulary import HL7_STATUS
from xraygate.fhir.context import stable_id


@dataclass
class Verdict:
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def check(self, condition: bool, failure: str) -> None:
        if not condition:
            self.failures.append(failure)

    def render(self) -> str:
        width = max(len(k) for k in self.figures)
        lines = [f"  {k:<{width}}  {v}" for k, v in self.figures.items()]
        lines.append("VERDICT: " + ("PASS" if self.ok else "FAIL"))
        lines += [f"  - {f}" for f in self.failures]
        return "\n".join(lines)


@dataclass
class Received:
    """One channel as the EHR saw it: (control id, time) in arrival order."""

    arrivals: list[tuple[str, float]]

    def first_times(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for cid, t in self.arrivals:
            out.setdefault(cid, t)
        return out


def judge(
    studies: list[CorpusStudy],
    ledger: Ledger,
    engine: Any,
    store: ObjectStore,
    oru: Received,
    oru_bodies: list[str],
    fhir: Received,
    fhir_bodies: dict[str, bytes],
    run: dict[str, Any],
) -> Verdict:
    v = Verdict()
    corpus = {i.sop_instance_uid: i for s in studies for i in s.instances}
    acked = set(ledger.acked)
    with db.read_session(engine) as session:
        instances = {r.sop_instance_uid: r for r in session.scalars(select(Instance))}
        scored = set(session.scalars(select(col(InstanceResult.sop_instance_uid))))
        results = {
            r.study_instance_uid: r
            for r in session.scalars(select(StudyResult).where(col(StudyResult.shadow).is_(False)))
        }
        outbox = list(session.scalars(select(OutboxMessage)))
        jobs = dict(
            session.execute(select(col(Job.state), func.count()).group_by(col(Job.state))).all()
        )
        dead_kinds = Counter(
            session.scalars(select(col(Job.kind)).where(col(Job.state) == "dead")).all()
        )
        busy_kinds = Counter(
            session.scalars(
                select(col(Job.kind)).where(col(Job.state).in_(["pending", "running"]))
            ).all()
        )
        reports = session.scalar(
            select(func.count()).where(
                col(FhirResource.resource_type) == "DiagnosticReport",
                col(FhirResource.is_current).is_(True),
            )
        )
        report_version = dict(
            session.execute(
                select(col(FhirResource.study_uid), col(FhirResource.version_id)).where(
                    col(FhirResource.resource_type) == "DiagnosticReport",
                    col(FhirResource.is_current).is_(True),
                )
            ).all()
        )
        # one Provenance per result revision: what the model read for it
        provenance = {
            row.resource_id: _provenance_reads(row.content)
            for row in session.scalars(
                select(FhirResource).where(col(FhirResource.resource_type) == "Provenance")
            )
        }
        report_versions = session.scalar(
            select(func.count()).where(col(FhirResource.resource_type) == "DiagnosticReport")
        )

    # -- ingest: nothing acknowledged is lost -------------------------------------------------
    right = 0
    lost: list[str] = []
    for uid in acked:
        row = instances.get(uid)
        if row is not None and _kept(store, row, corpus[uid].pixel_sha256):
            right += 1
        else:
            lost.append(uid)
    v.figures["instances sent"] = len(ledger.sent)
    v.figures["instances acknowledged"] = len(acked)
    v.figures["instances indexed"] = len(acked & set(instances))
    v.figures["stored with right sha256"] = right
    v.figures["instances scored"] = len(acked & scored)
    v.figures["lost (acknowledged, not kept)"] = len(lost)
    v.figures["refusals seen by modalities"] = dict(ledger.refusals) or 0
    v.figures["associations (failed)"] = f"{ledger.associations} ({ledger.association_failures})"
    v.check(not lost, f"{len(lost)} acknowledged instances lost")
    v.check(not ledger.gave_up, f"{len(ledger.gave_up)} instances never acknowledged")
    v.check(acked <= scored, f"{len(acked - scored)} acknowledged instances never scored")

    # -- studies and results ------------------------------------------------------------------
    sent_studies = [s for s in studies if any(i.sop_instance_uid in acked for i in s.instances)]
    incomplete = [
        s.study_uid
        for s in sent_studies
        if s.study_uid not in results
        or not {i.sop_instance_uid for i in s.instances if i.sop_instance_uid in acked}
        <= set(results[s.study_uid].instance_uids)
    ]
    v.figures["studies scored"] = f"{len(sent_studies) - len(incomplete)} / {len(sent_studies)}"
    v.figures["reports (versions)"] = f"{reports} ({report_versions})"
    v.check(not incomplete, f"{len(incomplete)} studies' results miss acknowledged images")
    stale_api = [
        u
        for u, r in results.items()
        if r.category != "not-applicable"
        and provenance.get(
            stable_id(
                "Provenance",
                u,
                r.model_version.partition(":")[0],
                str(report_version.get(u)),
            )
        )
        != set(r.instance_uids)
    ]
    v.figures["FHIR API: current report older than the result"] = len(stale_api)
    v.check(not stale_api, f"the FHIR API serves a stale report for {len(stale_api)} studies")
    v.check(reports == len(results), f"{reports} DiagnosticReports for {len(results)} results")

    # -- deliveries per channel ---------------------------------------------------------------
    by_channel: dict[str, list[OutboxMessage]] = defaultdict(list)
    for row in outbox:
        by_channel[row.channel].append(row)
    # the message that carries each study's current state: the ORU of the result's revision,
    # the Bundle of the current DiagnosticReport version
    # (no clinician's finding in the run: every result is preliminary, HL7 status P)
    hl7_final = {u: f"{u}:{r.model_version}:{r.revision}:{HL7_STATUS}" for u, r in results.items()}
    fhir_final = {u: f"{u}:{r.model_version}:v{report_version.get(u)}" for u, r in results.items()}
    _channel(v, "ORU^R01 (MLLP)", by_channel["hl7"], oru, results, hl7_final, ledger, studies)
    _channel(v, "FHIR push", by_channel["fhir-push"], fhir, results, fhir_final, ledger, studies)
    invalid = _invalid_bundles(fhir_bodies)
    v.figures["FHIR push: Bundles failing the R4 schema"] = f"{invalid} of {len(fhir_bodies)}"
    v.check(not invalid, f"FHIR push: {invalid} Bundles fail the official R4 JSON schema")
    stale = _stale_fhir_at_ehr(by_channel["fhir-push"], fhir, fhir_bodies, results)
    v.figures["FHIR push: EHR's last Bundle older than the result"] = len(stale)
    v.check(not stale, f"FHIR push: the EHR's last Bundle is stale for {len(stale)} studies")
    bad_pid = _peer_identity(oru_bodies, studies)
    v.check(not bad_pid, f"{bad_pid} ORUs name a patient or order that was not sent")

    # -- nothing stuck ------------------------------------------------------------------------
    stuck = {k: n for k, n in jobs.items() if k != "done" and n}
    v.figures["jobs"] = dict(sorted(jobs.items()))
    if dead_kinds:
        v.figures["dead jobs by kind"] = dict(dead_kinds)
    if busy_kinds:
        v.figures["jobs not done by kind"] = dict(busy_kinds)
    v.check(not stuck, f"jobs not done: {stuck}")
    for key, value in run.items():
        v.figures[key] = value
    return v


def _kept(store: ObjectStore, row: Instance, pixel_sha256: str) -> bool:
    """The stored object hashes to the index's sha256 and holds the pixels that were sent."""
    try:
        data = store.get_bytes(row.object_key)
    except StorageError:
        return False
    if hashlib.sha256(data).hexdigest() != row.sha256:
        return False
    ds = dcmread(io.BytesIO(data))
    return bool(
        ds.SOPInstanceUID == row.sop_instance_uid
        and hashlib.sha256(ds.PixelData).hexdigest() == pixel_sha256
    )


def _channel(
    v: Verdict,
    name: str,
    rows: list[OutboxMessage],
    received: Received,
    results: dict[str, StudyResult],
    final_keys: dict[str, str],
    ledger: Ledger,
    studies: list[CorpusStudy],
) -> None:
    by_cid = {r.control_id: r for r in rows}
    first = received.first_times()
    unknown = [cid for cid in first if cid not in by_cid]
    pending = [r for r in rows if r.state != OutboxState.DELIVERED]
    undelivered = [
        r for r in rows if r.state == OutboxState.DELIVERED and r.control_id not in first
    ]
    # exactly once per version: one control id per (study, revision) reached the EHR
    versions: dict[tuple[str, int], set[str]] = defaultdict(set)
    for cid in first:
        if cid in by_cid:
            versions[(by_cid[cid].study_uid, by_cid[cid].revision)].add(cid)
    duplicated = {k: c for k, c in versions.items() if len(c) > 1}
    # the final version of every scored study reached the EHR, and arrived last
    last_seen: dict[str, OutboxMessage] = {}
    for cid, _ in received.arrivals:
        if cid in by_cid:
            last_seen[by_cid[cid].study_uid] = by_cid[cid]
    missing_final, stale_last = [], []
    for uid, result in results.items():
        if result.category == "not-applicable":
            continue
        final = [r for r in rows if r.study_uid == uid and r.dedupe_key == final_keys.get(uid)]
        if not final or final[0].control_id not in first:
            missing_final.append(uid)
        elif last_seen.get(uid) is not final[0]:
            stale_last.append(uid)
    # order per patient: first arrivals follow the outbox sequence of each stream
    out_of_order = 0
    last_seq: dict[str, int] = {}
    for cid, _ in sorted(first.items(), key=lambda item: item[1]):
        row = by_cid.get(cid)
        if row is None:
            continue
        if row.seq < last_seq.get(row.stream_key, 0):
            out_of_order += 1
        last_seq[row.stream_key] = max(row.seq, last_seq.get(row.stream_key, 0))
    transport_dups = len(received.arrivals) - len(first)
    latencies = _latencies(final_keys, rows, first, ledger, studies)
    v.figures[f"{name}: received (distinct)"] = f"{len(received.arrivals)} ({len(first)})"
    v.figures[f"{name}: study versions delivered"] = len(versions)
    v.figures[f"{name}: transport re-sends (same id)"] = transport_dups
    v.figures[f"{name}: duplicates (new id, same version)"] = len(duplicated)
    v.figures[f"{name}: out of order / stale last"] = f"{out_of_order} / {len(stale_last)}"
    if latencies:
        p50 = statistics.median(latencies)
        p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else latencies[0]
        v.figures[f"{name}: ack-to-delivery p50 / p95"] = f"{p50:.1f} s / {p95:.1f} s"
    v.check(not unknown, f"{name}: {len(unknown)} messages received that xraygate never stored")
    v.check(not pending, f"{name}: {len(pending)} messages not delivered")
    v.check(not undelivered, f"{name}: {len(undelivered)} marked delivered, never received")
    v.check(not duplicated, f"{name}: {len(duplicated)} study versions delivered twice")
    v.check(not missing_final, f"{name}: {len(missing_final)} studies' final version not received")
    v.check(not stale_last, f"{name}: {len(stale_last)} studies' last message is not the final")
    v.check(not out_of_order, f"{name}: {out_of_order} messages overtook an earlier one")


def _latencies(
    final_keys: dict[str, str],
    rows: list[OutboxMessage],
    first: dict[str, float],
    ledger: Ledger,
    studies: list[CorpusStudy],
) -> list[float]:
    """Per study: last acknowledgement of its images -> arrival of its final version."""
    out = []
    final = {r.dedupe_key: r.control_id for r in rows}
    for study in studies:
        acks = [
            ledger.acked[i.sop_instance_uid]
            for i in study.instances
            if i.sop_instance_uid in ledger.acked
        ]
        cid = final.get(final_keys.get(study.study_uid, ""))
        if acks and cid in first:
            out.append(first[cid] - max(acks))
    return out


def _stale_fhir_at_ehr(
    rows: list[OutboxMessage],
    received: Received,
    bodies: dict[str, bytes],
    results: dict[str, StudyResult],
) -> list[str]:
    """Studies whose last Bundle at the EHR does not carry the images of the current result
    (its Provenance names the SOP Instances read)."""
    study_of = {r.control_id: r.study_uid for r in rows}
    last: dict[str, str] = {}
    for cid, _ in received.arrivals:
        if cid in study_of:
            last[study_of[cid]] = cid
    stale = []
    for uid, result in results.items():
        if result.category == "not-applicable" or uid not in last:
            continue
        bundle = json.loads(bodies[last[uid]])
        read = set()
        for entry in bundle["entry"]:
            if entry["resource"]["resourceType"] == "Provenance":
                read = _provenance_reads(entry["resource"])
        if read != set(result.instance_uids):
            stale.append(uid)
    return stale


def _invalid_bundles(bodies: dict[str, bytes]) -> int:
    """Bundles (each distinct one the EHR accepted) with a resource failing the R4 schema."""
    from tests.fhir.r4schema import r4_errors

    bad = 0
    for body in bodies.values():
        bundle = json.loads(body)
        resources = [bundle, *(entry.pop("resource") for entry in bundle["entry"])]
        bad += any(r4_errors(resource) for resource in resources)
    return bad


def _provenance_reads(provenance: dict[str, Any]) -> set[str]:
    """The SOP Instance UIDs a report's Provenance says the model read."""
    read = set()
    for entity in provenance.get("entity", []):
        value = entity["what"].get("identifier", {}).get("value", "")
        if value:
            read.add(value.removeprefix("urn:oid:"))
    return read


def _peer_identity(bodies: list[str], studies: list[CorpusStudy]) -> int:
    """ORUs whose PID-3 / OBR filler number do not match a study the modalities sent."""
    known = {(s.patient_id, s.accession) for s in studies}
    bad = 0
    for body in bodies:
        patient = pid3_of(body).split("^")[0]
        accession = ""
        for seg in body.split("\r"):
            if seg.startswith("OBR|"):
                accession = seg.split("|")[3].split("^")[0]
        if (patient, accession) not in known:
            bad += 1
    return bad


def fhir_bundle_ids(bodies: list[bytes]) -> list[str]:
    return [json.loads(b)["id"] for b in bodies]


__all__ = ["Received", "Verdict", "control_id_of", "judge"]
