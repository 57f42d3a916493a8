"""What the FHIR builders read: one study result with its index rows, loaded in one go."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlmodel import Session, col

from xraygate.core.errors import PermanentDelivery
from xraygate.core.models import (
    FhirResource,
    Instance,
    ModelVersion,
    Patient,
    Series,
    Study,
    StudyResult,
)
from xraygate.core.result_status import PRELIMINARY, ResultState, result_state
from xraygate.core.study_stability import images_after
from xraygate.fhir.identity import IdentitySystems

#: Namespace of our deterministic resource ids (uuid5 of a stable key).
ID_NAMESPACE = uuid.UUID("6f1c4b0e-8a51-4a4e-9d6c-3a0d2f1b7c21")


def stable_id(*parts: str) -> str:
    """A FHIR id that depends only on ``parts``: re-emitting updates instead of duplicating."""
    return str(uuid.uuid5(ID_NAMESPACE, "|".join(parts)))


@dataclass
class SeriesRows:
    series: Series
    instances: list[Instance]


@dataclass
class ResultContext:
    result: StudyResult
    study: Study
    patient: Patient
    series: list[SeriesRows]
    model: ModelVersion | None
    system_base: str
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    state: ResultState = PRELIMINARY
    identity: IdentitySystems | None = None
    #: images arrived after the study's first FHIR report (the report says it is revised)
    late_images: bool = False

    @property
    def systems(self) -> IdentitySystems:
        return self.identity or IdentitySystems(self.system_base)

    @property
    def model_name(self) -> str:
        return self.result.model_version.partition(":")[0]

    @property
    def model_version_only(self) -> str:
        return self.result.model_version.partition(":")[2] or self.result.model_version

    # -- deterministic ids ------------------------------------------------------------------
    @property
    def patient_id(self) -> str:
        return stable_id("Patient", self.patient.patient_key)

    @property
    def imaging_study_id(self) -> str:
        return stable_id("ImagingStudy", self.study.study_instance_uid)

    @property
    def device_id(self) -> str:
        return stable_id("Device", self.result.model_version)

    @property
    def observation_id(self) -> str:
        return stable_id("Observation", self.study.study_instance_uid, self.model_name)

    @property
    def report_id(self) -> str:
        return stable_id("DiagnosticReport", self.study.study_instance_uid, self.model_name)

    def provenance_id(self, report_version: int) -> str:
        """One Provenance per stored report version."""
        return stable_id(
            "Provenance", self.study.study_instance_uid, self.model_name, str(report_version)
        )

    # -- times ------------------------------------------------------------------------------
    def study_started(self) -> datetime | None:
        """StudyDate + StudyTime in the site's time zone (DICOM carries none)."""
        return dicom_datetime(self.study.study_date, self.study.study_time, self.tz)

    def effective(self) -> datetime:
        """When the images were taken, else when we received them."""
        return self.study_started() or self.study.created_at


def dicom_datetime(da: str, tm: str, tz: ZoneInfo) -> datetime | None:
    da = da.strip()
    if len(da) != 8 or not da.isdigit():
        return None
    try:
        day = datetime.strptime(da, "%Y%m%d")
        clock = _dicom_time(tm.strip())
    except ValueError:
        return None
    return datetime.combine(day.date(), clock, tzinfo=tz)


def _dicom_time(tm: str) -> time:
    if not tm:
        return time(0, 0)
    main, _, frac = tm.partition(".")
    main = main.replace(":", "")
    hour = int(main[0:2])
    minute = int(main[2:4]) if len(main) >= 4 else 0
    second = int(main[4:6]) if len(main) >= 6 else 0
    micro = int((frac + "000000")[:6]) if frac.isdigit() else 0
    return time(hour, minute, min(second, 59), micro)


def load_context(
    session: Session,
    result_id: int,
    system_base: str,
    tz: ZoneInfo,
    finalises: bool = True,
    identity: IdentitySystems | None = None,
) -> ResultContext | None:
    """The result and its index rows; None when the result no longer exists."""
    result = session.get(StudyResult, result_id)
    if result is None:
        return None
    study = session.get(Study, result.study_pk)
    if study is None:
        raise PermanentDelivery(f"study result {result_id} has no study row")
    patient = session.get(Patient, study.patient_pk)
    if patient is None:
        raise PermanentDelivery(f"study result {result_id} has no patient row")
    series_rows = list(
        session.scalars(
            select(Series)
            .where(col(Series.study_pk) == study.id)
            .order_by(col(Series.series_number), col(Series.id))
        )
    )
    instances = list(
        session.scalars(
            select(Instance)
            .where(col(Instance.study_pk) == study.id)
            .order_by(col(Instance.instance_number), col(Instance.id))
        )
    )
    series = [SeriesRows(s, [i for i in instances if i.series_pk == s.id]) for s in series_rows]
    name, _, version = result.model_version.partition(":")
    model = session.scalars(
        select(ModelVersion).where(
            col(ModelVersion.name) == name, col(ModelVersion.version) == version
        )
    ).first()
    state = result_state(session, result, finalises)
    base = system_base.rstrip("/")
    ctx = ResultContext(result, study, patient, series, model, base, tz, state, identity)
    first = session.scalar(
        select(col(FhirResource.last_updated)).where(
            col(FhirResource.resource_type) == "DiagnosticReport",
            col(FhirResource.resource_id) == ctx.report_id,
            col(FhirResource.version_id) == 1,
        )
    )
    ctx.late_images = images_after(session, study.study_instance_uid, first)
    return ctx
