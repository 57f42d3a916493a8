"""The DICOM index: Patient -> Study -> Series -> Instance.

Rows hold what routing, results and the FHIR ImagingStudy need; the object itself lives in the
object store under ``Instance.object_key`` with its size and sha256.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from xraygate.core.models.base import utcnow


class Patient(SQLModel, table=True):
    __tablename__ = "patients"

    id: int | None = Field(default=None, primary_key=True)
    patient_key: str = Field(unique=True, max_length=200, description="issuer|PatientID")
    patient_id: str = Field(default="", max_length=64)
    issuer: str = Field(default="", max_length=64, description="IssuerOfPatientID")
    issuer_universal_id: str = Field(
        default="",
        max_length=64,
        description="IssuerOfPatientIDQualifiersSequence UniversalEntityID (an OID when ISO)",
    )
    issuer_universal_id_type: str = Field(
        default="", max_length=16, description="its UniversalEntityIDType (ISO, DNS, URI, ...)"
    )
    name: str = Field(default="", max_length=200)
    birth_date: str = Field(default="", max_length=8)
    sex: str = Field(default="", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)


class Study(SQLModel, table=True):
    __tablename__ = "studies"

    id: int | None = Field(default=None, primary_key=True)
    study_instance_uid: str = Field(unique=True, max_length=64)
    patient_pk: int = Field(foreign_key="patients.id", index=True)
    accession_number: str = Field(default="", max_length=64, index=True)
    study_date: str = Field(default="", max_length=8)
    study_time: str = Field(default="", max_length=16)
    description: str = Field(default="", max_length=200)
    referring_physician: str = Field(default="", max_length=200)
    placer_order_number: str = Field(
        default="", max_length=64, description="RequestAttributesSequence placer order number"
    )
    requested_procedure_code: str = Field(default="", max_length=64)
    requested_procedure_scheme: str = Field(default="", max_length=64)
    requested_procedure_meaning: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class Series(SQLModel, table=True):
    __tablename__ = "series"

    id: int | None = Field(default=None, primary_key=True)
    series_instance_uid: str = Field(unique=True, max_length=64)
    study_pk: int = Field(foreign_key="studies.id", index=True)
    modality: str = Field(default="", max_length=16)
    body_part: str = Field(default="", max_length=64)
    series_number: int | None = None
    description: str = Field(default="", max_length=200)


class Instance(SQLModel, table=True):
    __tablename__ = "instances"

    id: int | None = Field(default=None, primary_key=True)
    sop_instance_uid: str = Field(unique=True, max_length=64)
    series_pk: int = Field(foreign_key="series.id", index=True)
    study_pk: int = Field(foreign_key="studies.id", index=True)
    sop_class_uid: str = Field(max_length=64)
    transfer_syntax_uid: str = Field(max_length=64)
    instance_number: int | None = None
    object_key: str = Field(max_length=400)
    size: int = Field(sa_type=BigInteger)
    sha256: str = Field(max_length=64)
    calling_aet: str = Field(default="", max_length=16)
    received_at: datetime = Field(default_factory=utcnow, index=True)
