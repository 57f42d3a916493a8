"""The contract between services: every job kind, what it means, and what its payload holds.

Services never call each other; they meet in the database and in the work queue
(:mod:`xraygate.core.queue`). A job is a *kind*, a *dedupe key* (unique per kind, so enqueueing
the same work twice is a no-op), the study (and instance) it concerns, and a JSON *payload*.
Each kind is declared once here, with one frozen payload class:

- the producer builds the payload object and calls :meth:`JobQueue.put
  <xraygate.core.queue.JobQueue.put>`, which takes the kind, the dedupe key and the JSON from it;
- the handler reads it back with :meth:`JobPayload.from_job`, which refuses a job of another
  kind or a payload that does not fit (:class:`~xraygate.core.errors.JobPayloadError`, permanent).

Nothing else in ``xraygate/`` spells a kind or builds a dedupe key: ``tests/test_architecture.py``
fails on a bare kind string anywhere else, and the job table of ``ARCHITECTURE.md`` is checked
against :data:`CONTRACT`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self

from xraygate.core.errors import JobPayloadError

if TYPE_CHECKING:
    from xraygate.core.queue import ClaimedJob


class JobKind(StrEnum):
    """Every kind of job, with a one-line description (``JobKind.INFER.description``)."""

    _value_: str
    description: str

    def __new__(cls, value: str, description: str) -> JobKind:
        member = str.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member

    INFER = "infer", "Score one stored instance with the emitting and shadow models."
    EMIT_FHIR = "emit-fhir", "Build, validate and store a study result's FHIR resources."
    PUSH_FHIR = "push-fhir", "Send a FHIR transaction Bundle from the outbox to the EHR."
    EMIT_HL7 = "emit-hl7", "Build a study result's ORU^R01 (and escalations) into the outbox."
    SEND_HL7 = "send-hl7", "Send an ORU^R01 from the outbox over MLLP, in per-patient order."
    NOTIFY_ESCALATION = "notify-escalation", "POST a high-risk notification to the webhook."
    DEIDENTIFY = "deidentify", "Decide, de-identify and export a study result for retraining."
    MODEL_SYNC = "model-sync", "Pull signed model releases as shadow; apply the promotion rule."
    EMIT_PACS = "emit-pacs", "Build a study result's DICOM SR (and key image) into the outbox."
    SEND_PACS = (
        "send-pacs",
        "Store DICOM objects from the outbox in the PACS, in per-patient order.",
    )


@dataclass(frozen=True)
class JobPayload:
    """Base of the payload classes: one subclass per :class:`JobKind`."""

    kind: ClassVar[JobKind]

    def to_payload(self) -> dict[str, Any]:
        """The JSON stored in the job row."""
        raise NotImplementedError

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Self:
        """Read the JSON of a job row back (raises KeyError, TypeError or ValueError)."""
        raise NotImplementedError

    def dedupe_key(self, study_uid: str | None) -> str:
        """The job's dedupe key: the same work always has the same key."""
        raise NotImplementedError

    @property
    def instance_uid(self) -> str | None:
        """The SOP Instance UID the job concerns, when it concerns one instance."""
        return None

    @classmethod
    def from_job(cls, job: ClaimedJob) -> Self:
        """The payload of a claimed job of this class's kind (or, called on a base such as
        :class:`OutboxPayload`, of any kind whose class derives from it)."""
        payload = _PAYLOADS.get(job.kind)
        if payload is None or not issubclass(payload, cls):
            raise JobPayloadError(f"job {job.id} is a {job.kind} job, not {cls.__name__}")
        try:
            return payload.from_payload(job.payload)
        except (KeyError, TypeError, ValueError) as exc:
            raise JobPayloadError(f"job {job.id}: bad {job.kind} payload ({exc!r})") from exc


# --- infer ---------------------------------------------------------------------------------


def instance_key(sop_instance_uid: str, sha256: str) -> str:
    return f"{sop_instance_uid}:{sha256}"


@dataclass(frozen=True)
class InferPayload(JobPayload):
    """One stored instance: the content the index recorded for it (its sha256)."""

    kind: ClassVar[JobKind] = JobKind.INFER
    sop_instance_uid: str
    sha256: str

    def to_payload(self) -> dict[str, Any]:
        return {}  # all of it rides in the job's instance_uid and dedupe key

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Self:
        raise JobPayloadError("an infer job is read with from_job (its data is in the job row)")

    @classmethod
    def from_job(cls, job: ClaimedJob) -> Self:
        if job.kind != cls.kind or not job.instance_uid or ":" not in job.dedupe_key:
            raise JobPayloadError(f"job {job.id} is not an infer job of one instance")
        return cls(job.instance_uid, job.dedupe_key.rsplit(":", 1)[-1])

    def dedupe_key(self, study_uid: str | None) -> str:
        return instance_key(self.sop_instance_uid, self.sha256)

    @property
    def instance_uid(self) -> str | None:
        return self.sop_instance_uid


# --- the follow-ups of a study result (enqueued by inference) -------------------------------


@dataclass(frozen=True)
class ResultPayload(JobPayload):
    """One revision of the emitting model's study result; ``feedback_id`` for the re-run that a
    clinician's finding starts (its re-export, its re-emission with the new result status)."""

    study_result_id: int
    model_version: str
    revision: int
    feedback_id: int | None = None

    def to_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "study_result_id": self.study_result_id,
            "model_version": self.model_version,
            "revision": self.revision,
        }
        if self.feedback_id is not None:
            out["feedback_id"] = self.feedback_id
        return out

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Self:
        feedback = payload.get("feedback_id")
        return cls(
            int(payload["study_result_id"]),
            str(payload["model_version"]),
            int(payload["revision"]),
            None if feedback is None else int(feedback),
        )

    def dedupe_key(self, study_uid: str | None) -> str:
        if self.feedback_id is not None:
            return f"{study_uid}:feedback:{self.feedback_id}"
        return f"{study_uid}:{self.model_version}:{self.revision}"


@dataclass(frozen=True)
class EmitFhirPayload(ResultPayload):
    kind: ClassVar[JobKind] = JobKind.EMIT_FHIR


@dataclass(frozen=True)
class EmitHl7Payload(ResultPayload):
    kind: ClassVar[JobKind] = JobKind.EMIT_HL7


@dataclass(frozen=True)
class EmitPacsPayload(ResultPayload):
    kind: ClassVar[JobKind] = JobKind.EMIT_PACS


@dataclass(frozen=True)
class DeidentifyPayload(ResultPayload):
    """A result to export; ``feedback_id`` for the re-export that carries a clinician's label."""

    kind: ClassVar[JobKind] = JobKind.DEIDENTIFY


# --- sends from the delivery outbox (enqueued by core.outbox.add_message) -------------------

_OUTBOX_PREFIX = "outbox:"


def outbox_key(outbox_id: int) -> str:
    """The dedupe key of the send job of outbox message ``outbox_id``."""
    return f"{_OUTBOX_PREFIX}{outbox_id}"


def outbox_id_of(dedupe_key: str) -> int | None:
    """The outbox message a send job's dedupe key names, None for any other job."""
    rest = dedupe_key.removeprefix(_OUTBOX_PREFIX)
    return int(rest) if rest != dedupe_key and rest.isdigit() else None


@dataclass(frozen=True)
class OutboxPayload(JobPayload):
    """One outbox message to send (the drainer sends its stream up to and including it)."""

    outbox_id: int
    channel: str

    def to_payload(self) -> dict[str, Any]:
        return {"outbox_id": self.outbox_id, "channel": self.channel}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Self:
        return cls(int(payload["outbox_id"]), str(payload.get("channel", "")))

    def dedupe_key(self, study_uid: str | None) -> str:
        return outbox_key(self.outbox_id)


@dataclass(frozen=True)
class PushFhirPayload(OutboxPayload):
    kind: ClassVar[JobKind] = JobKind.PUSH_FHIR


@dataclass(frozen=True)
class SendHl7Payload(OutboxPayload):
    kind: ClassVar[JobKind] = JobKind.SEND_HL7


@dataclass(frozen=True)
class NotifyEscalationPayload(OutboxPayload):
    kind: ClassVar[JobKind] = JobKind.NOTIFY_ESCALATION


@dataclass(frozen=True)
class SendPacsPayload(OutboxPayload):
    kind: ClassVar[JobKind] = JobKind.SEND_PACS


# --- periodic model sync (scheduled by inference, one job per time slot) --------------------


@dataclass(frozen=True)
class ModelSyncPayload(JobPayload):
    """One slot of the periodic model sync: ``slot`` = epoch seconds // the pull interval."""

    kind: ClassVar[JobKind] = JobKind.MODEL_SYNC
    slot: int

    def to_payload(self) -> dict[str, Any]:
        return {"slot": self.slot}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Self:
        return cls(int(payload["slot"]))

    def dedupe_key(self, study_uid: str | None) -> str:
        return f"{self.kind.value}:{self.slot}"


# --- the contract table ----------------------------------------------------------------------


class Contract(NamedTuple):
    payload: type[JobPayload]
    enqueued_by: tuple[str, ...]  # the rooms (packages of xraygate/) that build the payloads
    handled_by: str  # the room whose make_handlers runs them


CONTRACT: Mapping[JobKind, Contract] = {
    JobKind.INFER: Contract(InferPayload, ("core",), "inference"),
    JobKind.EMIT_FHIR: Contract(EmitFhirPayload, ("inference", "core"), "fhir"),
    JobKind.PUSH_FHIR: Contract(PushFhirPayload, ("fhir",), "fhir"),
    JobKind.EMIT_HL7: Contract(EmitHl7Payload, ("inference", "core"), "hl7"),
    JobKind.SEND_HL7: Contract(SendHl7Payload, ("hl7",), "hl7"),
    JobKind.NOTIFY_ESCALATION: Contract(NotifyEscalationPayload, ("hl7",), "hl7"),
    JobKind.DEIDENTIFY: Contract(DeidentifyPayload, ("inference", "core"), "anonymizer"),
    JobKind.MODEL_SYNC: Contract(ModelSyncPayload, ("inference",), "inference"),
    JobKind.EMIT_PACS: Contract(EmitPacsPayload, ("inference",), "pacs"),
    JobKind.SEND_PACS: Contract(SendPacsPayload, ("pacs",), "pacs"),
}

_PAYLOADS: Mapping[str, type[JobPayload]] = {k.value: c.payload for k, c in CONTRACT.items()}

#: Kinds whose jobs deliver results (the ``outbox dead-letters`` CLI lists their dead jobs).
DELIVERY_KINDS = (
    JobKind.EMIT_FHIR,
    JobKind.PUSH_FHIR,
    JobKind.EMIT_HL7,
    JobKind.SEND_HL7,
    JobKind.NOTIFY_ESCALATION,
    JobKind.EMIT_PACS,
    JobKind.SEND_PACS,
)

#: Kinds that turn a study result into messages (the study list's "emitting" progress).
EMIT_KINDS = (JobKind.EMIT_FHIR, JobKind.EMIT_HL7, JobKind.EMIT_PACS)
