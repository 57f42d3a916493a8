"""QIDO-RS from the index: which studies, series and instances match, as DICOM JSON (PS3.18 F.2).

Matching (PS3.4 C.2.2.2): single value (UIDs, IDs), a list of UIDs (``a,b`` or repeated), date
ranges (``20240101-20240131``, open ends) and ``*``/``?`` wildcards on text attributes. Attributes
are named by keyword or tag (``PatientID`` or ``00100020``). Unknown keys are refused (400) rather
than silently ignored, so a client never reads an unfiltered answer as a filtered one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from sqlalchemy import ColumnElement, Select, and_, func, select
from sqlmodel import Session, col

from xraygate.core.errors import XraygateError
from xraygate.core.models import Instance, Patient, Series, Study

Json = dict[str, Any]
CONTROL_PARAMS = frozenset({"limit", "offset", "includefield", "fuzzymatching"})


class QidoError(XraygateError):
    """A search the server cannot run as asked."""


def _tag(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return f"{tag:08X}"


def element(vr: str, *values: object) -> Json:
    """One DICOM JSON attribute; empty values are sent without ``Value``."""
    kept = [v for v in values if v not in (None, "")]
    if not kept:
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": str(v)} for v in kept]}
    return {"vr": vr, "Value": list(kept)}


def _keyword(key: str) -> str:
    """``PatientID`` or ``00100020`` -> ``PatientID``."""
    if len(key) == 8 and all(c in "0123456789abcdefABCDEF" for c in key):
        return keyword_for_tag(int(key, 16)) or key
    return key


# --- matching -----------------------------------------------------------------------------------


def _text_match(column: Any, value: str) -> ColumnElement[bool]:
    if "*" in value or "?" in value:
        pattern = value.replace("%", r"\%").replace("_", r"\_").replace("*", "%").replace("?", "_")
        return col(column).like(pattern, escape="\\")
    return col(column) == value


def _uid_match(column: Any, values: Sequence[str]) -> ColumnElement[bool]:
    uids = [u for v in values for u in v.split(",") if u]
    return col(column).in_(uids)


def _date_match(column: Any, value: str) -> ColumnElement[bool]:
    if "-" not in value:
        return col(column) == value
    start, _, end = value.partition("-")
    parts = []
    if start:
        parts.append(col(column) >= start)
    if end:
        parts.append(col(column) <= end)
    if not parts:
        raise QidoError("a date range needs at least one end")
    return and_(*parts)


@dataclass(frozen=True)
class Level:
    """What may be matched at one query level: keyword -> (column, how)."""

    fields: Mapping[str, tuple[Any, str]]


STUDY_FIELDS: dict[str, tuple[Any, str]] = {
    "StudyInstanceUID": (Study.study_instance_uid, "uid"),
    "PatientID": (Patient.patient_id, "text"),
    "PatientName": (Patient.name, "text"),
    "AccessionNumber": (Study.accession_number, "text"),
    "StudyDate": (Study.study_date, "date"),
    "StudyDescription": (Study.description, "text"),
    "ReferringPhysicianName": (Study.referring_physician, "text"),
}
SERIES_FIELDS: dict[str, tuple[Any, str]] = {
    "SeriesInstanceUID": (Series.series_instance_uid, "uid"),
    "Modality": (Series.modality, "text"),
    "SeriesNumber": (Series.series_number, "int"),
}
INSTANCE_FIELDS: dict[str, tuple[Any, str]] = {
    "SOPInstanceUID": (Instance.sop_instance_uid, "uid"),
    "SOPClassUID": (Instance.sop_class_uid, "uid"),
    "InstanceNumber": (Instance.instance_number, "int"),
}


def filters(
    params: Sequence[tuple[str, str]], allowed: Mapping[str, tuple[Any, str]]
) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a query string's matching keys (control keys skipped)."""
    grouped: dict[str, list[str]] = {}
    for key, value in params:
        if key in CONTROL_PARAMS:
            continue
        keyword = _keyword(key)
        if keyword not in allowed:
            raise QidoError(f"matching on {key} is not supported")
        grouped.setdefault(keyword, []).append(value)
    out: list[ColumnElement[bool]] = []
    for keyword, values in grouped.items():
        column, how = allowed[keyword]
        if how == "uid":
            out.append(_uid_match(column, values))
        elif how == "date":
            out.append(_date_match(column, values[-1]))
        elif how == "int":
            try:
                out.append(col(column) == int(values[-1]))
            except ValueError as exc:
                raise QidoError(f"{keyword} must be an integer") from exc
        else:
            out.append(_text_match(column, values[-1]))
    return out


def paging(params: Sequence[tuple[str, str]]) -> tuple[int, int]:
    values = dict(params)
    try:
        limit = int(values.get("limit", 100))
        offset = int(values.get("offset", 0))
    except ValueError as exc:
        raise QidoError("limit and offset must be integers") from exc
    if limit < 1 or offset < 0:
        raise QidoError("limit must be positive and offset not negative")
    return min(limit, 1000), offset


# --- the three levels ---------------------------------------------------------------------------


def search_studies(session: Session, params: Sequence[tuple[str, str]], base: str) -> list[Json]:
    limit, offset = paging(params)
    query = _studies_query(params).order_by(col(Study.study_date).desc(), col(Study.id).desc())
    rows = session.execute(query.offset(offset).limit(limit)).all()
    return [_study_json(session, study, patient, base) for study, patient in rows]


def _studies_query(params: Sequence[tuple[str, str]]) -> Select[Study, Patient]:
    """Studies matching ``params``; ``ModalitiesInStudy`` matches a study with a series of any
    of the listed modalities."""
    modalities = [
        m for k, v in params if _keyword(k) == "ModalitiesInStudy" for m in v.split(",") if m
    ]
    rest = [(k, v) for k, v in params if _keyword(k) != "ModalitiesInStudy"]
    clauses = filters(rest, STUDY_FIELDS)
    if modalities:
        with_modality = select(col(Series.study_pk)).where(col(Series.modality).in_(modalities))
        clauses.append(col(Study.id).in_(with_modality))
    return (
        select(Study, Patient)
        .join(Patient, col(Patient.id) == col(Study.patient_pk))
        .where(*clauses)
    )


def _study_json(session: Session, study: Study, patient: Patient, base: str) -> Json:
    series = session.scalar(
        select(func.count()).select_from(Series).where(col(Series.study_pk) == study.id)
    )
    instances = session.scalar(
        select(func.count()).select_from(Instance).where(col(Instance.study_pk) == study.id)
    )
    modalities = sorted(
        {
            m
            for m in session.scalars(
                select(col(Series.modality)).where(col(Series.study_pk) == study.id)
            )
            if m
        }
    )
    return {
        _tag("SpecificCharacterSet"): element("CS", "ISO_IR 192"),
        _tag("StudyDate"): element("DA", study.study_date),
        _tag("StudyTime"): element("TM", study.study_time),
        _tag("AccessionNumber"): element("SH", study.accession_number),
        _tag("ModalitiesInStudy"): element("CS", *modalities),
        _tag("ReferringPhysicianName"): element("PN", study.referring_physician),
        _tag("StudyDescription"): element("LO", study.description),
        _tag("PatientName"): element("PN", patient.name),
        _tag("PatientID"): element("LO", patient.patient_id),
        _tag("IssuerOfPatientID"): element("LO", patient.issuer),
        _tag("PatientBirthDate"): element("DA", patient.birth_date),
        _tag("PatientSex"): element("CS", patient.sex),
        _tag("StudyInstanceUID"): element("UI", study.study_instance_uid),
        _tag("NumberOfStudyRelatedSeries"): element("IS", int(series or 0)),
        _tag("NumberOfStudyRelatedInstances"): element("IS", int(instances or 0)),
        _tag("RetrieveURL"): element("UR", f"{base}/studies/{study.study_instance_uid}"),
    }


def study_pk(session: Session, study_uid: str) -> int | None:
    pk = session.scalar(select(col(Study.id)).where(col(Study.study_instance_uid) == study_uid))
    return None if pk is None else int(pk)


def search_series(
    session: Session, study_uid: str, params: Sequence[tuple[str, str]], base: str
) -> list[Json] | None:
    """None when the study is unknown."""
    pk = study_pk(session, study_uid)
    if pk is None:
        return None
    limit, offset = paging(params)
    rows = session.scalars(
        select(Series)
        .where(col(Series.study_pk) == pk, *filters(params, SERIES_FIELDS))
        .order_by(col(Series.series_number), col(Series.id))
        .offset(offset)
        .limit(limit)
    ).all()
    out = []
    for s in rows:
        count = session.scalar(
            select(func.count()).select_from(Instance).where(col(Instance.series_pk) == s.id)
        )
        url = f"{base}/studies/{study_uid}/series/{s.series_instance_uid}"
        out.append(
            {
                _tag("Modality"): element("CS", s.modality),
                _tag("SeriesDescription"): element("LO", s.description),
                _tag("StudyInstanceUID"): element("UI", study_uid),
                _tag("SeriesInstanceUID"): element("UI", s.series_instance_uid),
                _tag("SeriesNumber"): element("IS", s.series_number),
                _tag("NumberOfSeriesRelatedInstances"): element("IS", int(count or 0)),
                _tag("RetrieveURL"): element("UR", url),
            }
        )
    return out


def search_instances(
    session: Session,
    study_uid: str,
    series_uid: str | None,
    params: Sequence[tuple[str, str]],
    base: str,
) -> list[Json] | None:
    """None when the study (or the series in it) is unknown."""
    pk = study_pk(session, study_uid)
    if pk is None:
        return None
    limit, offset = paging(params)
    allowed = {**INSTANCE_FIELDS, **SERIES_FIELDS}
    clauses = [col(Instance.study_pk) == pk, *filters(params, allowed)]
    if series_uid is not None:
        clauses.append(col(Series.series_instance_uid) == series_uid)
    rows = session.execute(
        select(Instance, Series)
        .join(Series, col(Series.id) == col(Instance.series_pk))
        .where(*clauses)
        .order_by(col(Series.series_number), col(Instance.instance_number), col(Instance.id))
        .offset(offset)
        .limit(limit)
    ).all()
    if series_uid is not None and not rows and not _series_exists(session, pk, series_uid):
        return None
    out = []
    for inst, s in rows:
        url = (
            f"{base}/studies/{study_uid}/series/{s.series_instance_uid}"
            f"/instances/{inst.sop_instance_uid}"
        )
        out.append(
            {
                _tag("SOPClassUID"): element("UI", inst.sop_class_uid),
                _tag("SOPInstanceUID"): element("UI", inst.sop_instance_uid),
                _tag("Modality"): element("CS", s.modality),
                _tag("StudyInstanceUID"): element("UI", study_uid),
                _tag("SeriesInstanceUID"): element("UI", s.series_instance_uid),
                _tag("SeriesNumber"): element("IS", s.series_number),
                _tag("InstanceNumber"): element("IS", inst.instance_number),
                _tag("AvailableTransferSyntaxUID"): element("UI", inst.transfer_syntax_uid),
                _tag("RetrieveURL"): element("UR", url),
            }
        )
    return out


def _series_exists(session: Session, study: int, series_uid: str) -> bool:
    return (
        session.scalar(
            select(col(Series.id)).where(
                col(Series.study_pk) == study, col(Series.series_instance_uid) == series_uid
            )
        )
        is not None
    )


@dataclass(frozen=True)
class StoredInstance:
    sop_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    object_key: str


def stored_instances(
    session: Session, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
) -> list[StoredInstance]:
    """The stored objects of a study (a series, an instance), in order."""
    clauses: list[ColumnElement[bool]] = [col(Study.study_instance_uid) == study_uid]
    if series_uid is not None:
        clauses.append(col(Series.series_instance_uid) == series_uid)
    if sop_uid is not None:
        clauses.append(col(Instance.sop_instance_uid) == sop_uid)
    rows = session.execute(
        select(Instance, Series)
        .join(Series, col(Series.id) == col(Instance.series_pk))
        .join(Study, col(Study.id) == col(Instance.study_pk))
        .where(*clauses)
        .order_by(col(Series.series_number), col(Instance.instance_number), col(Instance.id))
    ).all()
    return [
        StoredInstance(
            i.sop_instance_uid, s.series_instance_uid, i.transfer_syntax_uid, i.object_key
        )
        for i, s in rows
    ]
