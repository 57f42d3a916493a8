"""The received object's header: parsed once from the spool, checked, and turned into the
values of its index rows (an :class:`IndexRecord`, what the journal writes and the indexer
commits)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread, filereader
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset, read_file_meta_info
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from xraygate.core.dicom_io import (
    dataset_offset_in,
    delimiter_in_tail,
    delimiter_near_end,
    read_deflated_header,
    truncation,
)
from xraygate.core.dicom_limits import check_image_size, check_uid, max_inflated_bytes
from xraygate.core.errors import DicomLimitError, IngestError
from xraygate.core.ingest.status import Status
from xraygate.core.models import utcnow

#: The top-level elements the ingest reads (:func:`validate`, :func:`object_key`,
#: :func:`index_record`); an object received in memory is parsed for these only.
#: tests/core/test_ingest_header.py checks that nothing else is read.
HEADER_KEYWORDS = (
    "SpecificCharacterSet",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientID",
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "ReferringPhysicianName",
    "RequestAttributesSequence",
    "PlacerOrderNumberImagingServiceRequest",
    "RequestedProcedureCodeSequence",
    "Modality",
    "BodyPartExamined",
    "SeriesNumber",
    "SeriesDescription",
    "InstanceNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
)
_HEADER_TAG_LIST: list[BaseTag | int] = [Tag(keyword) for keyword in HEADER_KEYWORDS]

#: pydicom decodes each explicit VR with the codec name "iso8859", which CPython looks up in
#: its codec registry on every call (~300 ns); "latin-1", the same codec, takes CPython's
#: built-in fast path (~60 ns): ~85 us less per parse of a 258-element CT. Only pydicom's VR
#: decoding reads the name at run time (its default arguments were bound at import).
VR_CODEC = "latin-1"
filereader.default_encoding = VR_CODEC  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Received:
    """A data set a receiver spooled to disk, with what its request said about it.

    ``data``: the whole object (File Meta + data set) when the receiver kept it in memory;
    then ``path`` is None and the object is written once, into the store.
    ``sha256`` and ``size`` are the object's digest when the receiver hashed the bytes
    while receiving them (one pass); left None, the ingestor hashes them.
    """

    path: Path | None
    calling_aet: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str = ""
    sha256: str | None = None
    size: int | None = None
    data: bytes | None = None


@dataclass
class IndexRecord:
    """The values of one instance's index rows: patient, study, series, instance."""

    patient: dict[str, Any]
    study: dict[str, Any]
    series: dict[str, Any]
    instance: dict[str, Any]
    seq: int = 0

    @property
    def sop_instance_uid(self) -> str:
        return str(self.instance["sop_instance_uid"])

    @property
    def sha256(self) -> str:
        return str(self.instance["sha256"])

    @property
    def study_uid(self) -> str:
        return str(self.study["study_instance_uid"])

    def to_json(self) -> dict[str, Any]:
        instance = {**self.instance, "received_at": self.instance["received_at"].isoformat()}
        return {
            "seq": self.seq,
            "patient": self.patient,
            "study": self.study,
            "series": self.series,
            "instance": instance,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexRecord:
        instance = dict(data["instance"])
        instance["received_at"] = datetime.fromisoformat(instance["received_at"])
        return cls(data["patient"], data["study"], data["series"], instance, int(data["seq"]))


def read_header(path: Path, max_image_pixels: int = 0) -> Dataset:
    """Parse the data set once, bulk values deferred (never read), and refuse a truncated one.
    A deflated data set is inflated as a stream (at most what ``max_image_pixels`` allows) and
    checked against its inflated size."""
    with _parse_errors():
        syntax = read_file_meta_info(path).get("TransferSyntaxUID")
        if syntax == DeflatedExplicitVRLittleEndian:
            ds, size = read_deflated_header(path, max_inflated_bytes(max_image_pixels))
        else:
            ds, size = dcmread(path, defer_size=4096), path.stat().st_size
        if syntax is not None and syntax.is_encapsulated and not delimiter_near_end(path, size):
            raise IngestError(Status.CANNOT_UNDERSTAND, "encapsulated pixel data is truncated")
        _check_whole(ds, size)
    return ds


def read_header_bytes(data: bytes, transfer_syntax: str = "") -> Dataset:
    """:func:`read_header` for an object received in memory (never a deflated one: those are
    spooled to a file, see ``dicom_scp/fastpath.py``). With the ``transfer_syntax`` its File
    Meta was written for (the SCP's own), only the data set is parsed, every value read (the
    object is in memory already, at most ``XRAYGATE_SCP_SPOOL_MEMORY_BYTES``)."""
    with _parse_errors():
        if transfer_syntax:
            syntax = UID(transfer_syntax)
            if syntax == DeflatedExplicitVRLittleEndian:
                raise IngestError(Status.PROCESSING_FAILURE, "a deflated data set must be spooled")
            ds = _read_header_elements(data, syntax)  # checked for emptiness by its walk
            deferred = False
        else:
            ds = dcmread(BytesIO(data), defer_size=4096)
            syntax = ds.file_meta.get("TransferSyntaxUID")
            if syntax == DeflatedExplicitVRLittleEndian:
                raise IngestError(Status.PROCESSING_FAILURE, "a deflated data set must be spooled")
            deferred = True
        if syntax is not None and syntax.is_encapsulated and not delimiter_in_tail(data):
            raise IngestError(Status.CANNOT_UNDERSTAND, "encapsulated pixel data is truncated")
        _check_whole(ds, len(data), deferred=deferred)
    return ds


def _read_header_elements(data: bytes, syntax: UID) -> Dataset:
    """The :data:`HEADER_KEYWORDS` of the data set in ``data`` (after our own File Meta): every
    top-level element is walked, only those are kept (the rest of a CT's ~260 are not made
    into elements). A value that runs past the end leaves the walk beyond it: truncated."""
    start = dataset_offset_in(data[:256])
    stream = BytesIO(data)
    stream.seek(start)
    ds = read_dataset(
        stream, syntax.is_implicit_VR, syntax.is_little_endian, specific_tags=_HEADER_TAG_LIST
    )
    if stream.tell() > len(data):
        raise IngestError(Status.CANNOT_UNDERSTAND, "data set is truncated")
    if stream.tell() <= start:
        raise IngestError(Status.CANNOT_UNDERSTAND, "the data set is empty")
    return ds


def _check_whole(ds: Dataset, size: int, *, deferred: bool = True) -> None:
    """Refuse a truncated or empty data set. Not ``deferred``: ``ds`` is the selection
    :func:`_read_header_elements` kept, whose walk judged the data set's emptiness."""
    if truncation(ds, size, partial_header=False, deferred=deferred):
        raise IngestError(Status.CANNOT_UNDERSTAND, "data set is truncated")
    if deferred and len(ds) == 0:
        raise IngestError(Status.CANNOT_UNDERSTAND, "the data set is empty")


@contextmanager
def _parse_errors() -> Iterator[None]:
    """pydicom's (and the inflater's) errors on a hostile data set, as refusing statuses."""
    try:
        yield
    except IngestError:
        raise
    except DicomLimitError as exc:
        raise IngestError(Status.DATASET_MISMATCH, str(exc)) from exc
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError, TypeError) as exc:
        comment = f"cannot parse data set: {type(exc).__name__}"
        raise IngestError(Status.CANNOT_UNDERSTAND, comment) from exc
    except zlib.error as exc:
        raise IngestError(Status.CANNOT_UNDERSTAND, "deflated data set is corrupt") from exc


def text(ds: Dataset, keyword: str, limit: int = 64) -> str:
    """The element's text; a multi-valued one joined with DICOM's own separator ``\\`` (FHIR
    makes separate identifiers/names of the values, HL7 repetitions), never Python's list
    spelling."""
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)[:limit]
    return str(value)[:limit]


def _issuer_qualifiers(ds: Dataset) -> tuple[str, str]:
    """UniversalEntityID and its type from IssuerOfPatientIDQualifiersSequence, if any."""
    seq = ds.get("IssuerOfPatientIDQualifiersSequence")
    if not seq:
        return "", ""
    item = seq[0]
    return text(item, "UniversalEntityID"), text(item, "UniversalEntityIDType", 16).upper()


def _first_item(ds: Dataset, keyword: str) -> Dataset | None:
    try:
        items = ds.get(keyword) or []
        return items[0] if len(items) else None
    except (TypeError, ValueError, KeyError, IndexError):
        return None


def order_values(ds: Dataset) -> dict[str, str]:
    """The order the study fulfils: placer order number and requested procedure code, from the
    first RequestAttributesSequence item, else the top-level Imaging Service Request / Requested
    Procedure attributes (HL7 ORC-2/OBR-2 and OBR-4)."""
    request = _first_item(ds, "RequestAttributesSequence")
    sources = [request, ds] if request is not None else [ds]
    placer = next(
        (v for src in sources if (v := text(src, "PlacerOrderNumberImagingServiceRequest"))), ""
    )
    code = next(
        (
            item
            for src in sources
            if (item := _first_item(src, "RequestedProcedureCodeSequence")) is not None
            and (text(item, "CodeValue") or text(item, "LongCodeValue"))
        ),
        None,
    )
    return {
        "placer_order_number": placer.strip(),
        "requested_procedure_code": (
            (text(code, "CodeValue") or text(code, "LongCodeValue")).strip() if code else ""
        ),
        "requested_procedure_scheme": text(code, "CodingSchemeDesignator").strip() if code else "",
        "requested_procedure_meaning": text(code, "CodeMeaning").strip() if code else "",
    }


def integer(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def validate(ds: Dataset, received: Received, max_image_pixels: int = 0) -> None:
    """The data set must be the SOP instance the request announced, its UIDs valid (they
    become object keys) and its image within ``max_image_pixels`` samples."""
    if text(ds, "SOPClassUID") != received.sop_class_uid:
        raise IngestError(Status.DATASET_MISMATCH, "SOP Class UID differs from the request")
    if text(ds, "SOPInstanceUID") != received.sop_instance_uid:
        raise IngestError(Status.DATASET_MISMATCH, "SOP Instance UID differs from the request")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if not text(ds, keyword):
            raise IngestError(Status.DATASET_MISMATCH, f"{keyword} is missing")
    try:
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            check_uid(ds.get(keyword), keyword)
        check_image_size(ds, max_image_pixels)
    except DicomLimitError as exc:
        raise IngestError(Status.DATASET_MISMATCH, str(exc)) from exc


def object_key(ds: Dataset, sha: str) -> str:
    """Keys carry the content hash: another object with the same SOP Instance UID never
    overwrites the one the index points to."""
    study, series, sop = (
        text(ds, k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    )
    return f"dicom/{study}/{series}/{sop}.{sha[:16]}.dcm"


def index_record(ds: Dataset, rec: Received, key: str, size: int, sha: str) -> IndexRecord:
    syntax = rec.transfer_syntax_uid or str(ds.file_meta.get("TransferSyntaxUID", ""))
    instance = {
        "sop_instance_uid": rec.sop_instance_uid,
        "sop_class_uid": rec.sop_class_uid,
        "transfer_syntax_uid": syntax[:64],
        "instance_number": integer(ds, "InstanceNumber"),
        "object_key": key,
        "size": size,
        "sha256": sha,
        "calling_aet": rec.calling_aet[:16],
        "received_at": utcnow(),
    }
    return IndexRecord(_patient(ds), _study(ds), _series(ds), instance)


def _patient(ds: Dataset) -> dict[str, Any]:
    patient_id = text(ds, "PatientID")
    issuer = text(ds, "IssuerOfPatientID")
    key = f"{issuer}|{patient_id}" if patient_id else f"study|{text(ds, 'StudyInstanceUID')}"
    universal_id, universal_type = _issuer_qualifiers(ds)
    return {
        "patient_key": key[:200],
        "patient_id": patient_id,
        "issuer": issuer,
        "issuer_universal_id": universal_id,
        "issuer_universal_id_type": universal_type,
        "name": text(ds, "PatientName", 200),
        "birth_date": text(ds, "PatientBirthDate", 8),
        "sex": text(ds, "PatientSex", 16),
    }


def _study(ds: Dataset) -> dict[str, Any]:
    return {
        "study_instance_uid": text(ds, "StudyInstanceUID"),
        "accession_number": text(ds, "AccessionNumber"),
        "study_date": text(ds, "StudyDate", 8),
        "study_time": text(ds, "StudyTime", 16),
        "description": text(ds, "StudyDescription", 200),
        "referring_physician": text(ds, "ReferringPhysicianName", 200),
        **order_values(ds),
    }


def _series(ds: Dataset) -> dict[str, Any]:
    return {
        "series_instance_uid": text(ds, "SeriesInstanceUID"),
        "modality": text(ds, "Modality", 16),
        "body_part": text(ds, "BodyPartExamined"),
        "series_number": integer(ds, "SeriesNumber"),
        "description": text(ds, "SeriesDescription", 200),
    }
