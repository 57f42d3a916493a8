"""A PHI test corpus: DICOM files with identifying values planted everywhere a de-identifier
must look (top level, nested sequences, private blocks, overlays, curves, file meta, preamble),
and a scanner that walks every element of an output looking for them."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"

# Planted identifying values. Every one must be absent from every de-identified output.
PHI = {
    "name": "ZEBEDEE^QUIMBY",
    "name_given": "Zebedee",
    "name_family": "Quimby",
    "patient_id": "MRN7734119",
    "other_id": "OTHID55231",
    "issuer": "ELSEWHERE-MRN-AUTH",
    "accession": "ACC99182",
    "birth_date": "19620415",
    "study_date": "20230917",
    "series_date": "20230918",
    "acq_datetime": "20230917101530",
    "address": "42 Wallaby Way Sydney",
    "phone": "555-0199-3344",
    "mother": "HARRIET^QUIMBY",
    "institution": "St Elsewhere Hospital",
    "inst_address": "1 Infirmary Lane Boston",
    "department": "Westphall Radiology",
    "physician": "HOUSE^GREGORY",
    "performing": "CHASE^ROBERT",
    "operator": "NIGHTINGALE^FLO",
    "station": "CRROOM7WEST",
    "serial": "SN884422X",
    "plate": "PLATE6612",
    "station_ae": "ELSEWHERE_CR7",
    "source_ae": "ELSEWHERE_PACS",
    "impl_version": "QUIMBYVIEW11",
    "study_id": "STUDY-31337",
    "comment_phrase": "Mr Quimby of 42 Wallaby Way",
    "request_id": "REQ-778812",
    "nested_operator": "CURIE^MARIE",
    "content_person": "WATSON^JOHN",
    "content_text": "seen by Dr Watson on 17.09.2023",
    "private_name": "PRIVATE^PATIENTNAME",
    "private_nested": "SECRET^NESTEDPERSON",
    "overlay_label": "QUIMBY OVERLAY",
    "overlay_comment": "drawn for Quimby",
    "curve_label": "QUIMBY ECG",
    "preamble": "PREAMBLEQUIMBY",
    "protocol": "Quimby special protocol",
    "occupation": "Lighthousekeeper",
    "study_uid": "1.2.826.0.1.3680043.8.498.1111111111",
    "series_uid": "1.2.826.0.1.3680043.8.498.2222222222",
    "sop_uid": "1.2.826.0.1.3680043.8.498.3333333333",
    "frame_uid": "1.2.826.0.1.3680043.8.498.4444444444",
    "ref_uid": "1.2.826.0.1.3680043.8.498.5555555555",
}
UID_KEYS = ("study_uid", "series_uid", "sop_uid", "frame_uid", "ref_uid")


def _item(**values: object) -> Dataset:
    item = Dataset()
    for key, value in values.items():
        setattr(item, key, value)
    return item


def phi_dataset(
    index: int = 0,
    *,
    burned_in: str | None = None,
    implicit: bool = False,
    manufacturer: str = "ACME",
    model: str = "CR-1",
    rows: int = 64,
    cols: int = 64,
) -> Dataset:
    """One CR image with PHI planted everywhere; ``index`` varies the instance UIDs."""
    p = PHI
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CR_IMAGE
    sop = f"{p['sop_uid']}.{index}"
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
    ds.file_meta.ImplementationVersionName = p["impl_version"]
    ds.file_meta.SourceApplicationEntityTitle = p["source_ae"]
    ds.preamble = p["preamble"].encode().ljust(128, b"\0")

    ds.SOPClassUID = CR_IMAGE
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = p["study_uid"]
    ds.SeriesInstanceUID = p["series_uid"]
    ds.FrameOfReferenceUID = p["frame_uid"]
    ds.StudyDate, ds.SeriesDate, ds.ContentDate = p["study_date"], p["series_date"], p["study_date"]
    ds.AcquisitionDateTime = p["acq_datetime"]
    ds.StudyTime = "101500"
    ds.Modality = "CR"
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.AccessionNumber = p["accession"]
    ds.StudyID = p["study_id"]
    ds.PatientName = p["name"]
    ds.PatientID = p["patient_id"]
    ds.IssuerOfPatientID = p["issuer"]
    ds.OtherPatientIDs = p["other_id"]
    ds.PatientBirthDate = p["birth_date"]
    ds.PatientSex = "M"
    ds.PatientAge = "061Y"
    ds.PatientAddress = p["address"]
    ds.PatientTelephoneNumbers = p["phone"]
    ds.PatientMotherBirthName = p["mother"]
    ds.Occupation = p["occupation"]
    ds.InstitutionName = p["institution"]
    ds.InstitutionAddress = p["inst_address"]
    ds.InstitutionalDepartmentName = p["department"]
    ds.ReferringPhysicianName = p["physician"]
    ds.PerformingPhysicianName = p["performing"]
    ds.OperatorsName = p["operator"]
    ds.StationName = p["station"]
    ds.StationAETitle = p["station_ae"]
    ds.DeviceSerialNumber = p["serial"]
    ds.PlateID = p["plate"]
    ds.ProtocolName = p["protocol"]
    ds.StudyDescription = f"CHEST PA for {p['name_family']} {p['study_date']}"
    ds.ImageComments = f"{p['comment_phrase']}, MRN {p['patient_id']}, on 2023-09-17"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    # nested: a kept reference sequence (UIDs inside must be replaced)
    ds.ReferencedImageSequence = Sequence(
        [_item(ReferencedSOPClassUID=CR_IMAGE, ReferencedSOPInstanceUID=p["ref_uid"])]
    )
    # nested: PHI inside a removed sequence and inside a kept (unlisted) sequence
    ds.RequestAttributesSequence = Sequence(
        [_item(RequestedProcedureID=p["request_id"], ScheduledProcedureStepID=p["request_id"])]
    )
    region = _item(CodeValue="T-D3000", CodingSchemeDesignator="SRT", CodeMeaning="Chest")
    region.OperatorsName = p["nested_operator"]  # a listed attribute, two levels down
    region.ContentSequence = Sequence(
        [
            _item(
                RelationshipType="CONTAINS",
                ValueType="TEXT",
                PersonName=p["content_person"],
                TextValue=p["content_text"],
            )
        ]
    )
    ds.AnatomicRegionSequence = Sequence([region])
    # private block with a name and a private sequence
    block = ds.private_block(0x0019, "ACME 1.0", create=True)
    block.add_new(0x10, "LO", p["private_name"])
    block.add_new(0x11, "DS", "1.5")  # harmless value, on the safe list in option tests
    block.add_new(0x12, "SQ", Sequence([_item(PatientName=p["private_nested"])]))
    # overlay plane with comment/label, and a retired curve group
    ds.add_new(0x60000010, "US", rows)
    ds.add_new(0x60000011, "US", cols)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60000022, "LO", p["overlay_label"])
    ds.add_new(0x60004000, "LT", p["overlay_comment"])
    overlay = np.zeros((rows, cols), dtype=np.uint8)
    overlay[:8, :] = 1
    ds.add_new(0x60003000, "OW", np.packbits(overlay.ravel(), bitorder="little").tobytes())
    ds.add_new(0x50000005, "US", 1)
    ds.add_new(0x50000022, "LO", p["curve_label"])
    ds.add_new(0x50003000, "OW", b"\x01\x00\x02\x00")
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    pixels = (np.arange(rows * cols, dtype=np.uint16) % 4000 + 7).reshape(rows, cols)
    ds.PixelData = pixels.tobytes()
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_corpus(folder: Path, count: int = 3) -> list[Path]:
    """The corpus as files: explicit and implicit VR, one with BurnedInAnnotation NO."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        ds = phi_dataset(i, implicit=i % 2 == 1, burned_in="NO" if i == 2 else None)
        path = folder / f"phi_{i}.dcm"
        path.write_bytes(to_bytes(ds))
        paths.append(path)
    return paths


def _walk(ds: Dataset) -> Iterator[str]:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item)
            continue
        value = elem.value
        if isinstance(value, bytes):
            yield value.decode("latin-1")
        elif isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            yield from (str(v) for v in value)
        else:
            yield str(value)


def leaks(data: bytes, planted: dict[str, str] | None = None) -> list[str]:
    """Planted values found in an output: in any element (file meta, nested items, private
    blocks) or anywhere in the raw bytes. Returns the keys of the values found."""
    planted = planted or PHI
    ds = dcmread(io.BytesIO(data))
    texts = [*_walk(ds.file_meta), *_walk(ds)]
    haystack = "\n".join(texts).upper()
    raw = data.upper()
    found = []
    for key, value in planted.items():
        needle = value.upper()
        if needle in haystack or needle.encode() in raw:
            found.append(key)
    return found
