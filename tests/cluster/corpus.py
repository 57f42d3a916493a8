"""The cluster harness's corpus: chest radiograph studies built from pydicom-data's RG1_UNCR.

Every instance is the real CR (its header, its pixels area-averaged by ``shrink`` so that a run of
a thousand instances fits the machine) with unique Study/Series/SOP Instance UIDs derived from the
seed. Patients have one to three studies (so per-patient ordering is exercised), studies two to
six images. Odd images of a study are flipped left-right, so a study's instances differ.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


@dataclass(frozen=True)
class CorpusInstance:
    path: Path
    sop_instance_uid: str
    study_uid: str
    patient_id: str
    pixel_sha256: str  # what must come back: the SCP stores the data set as received, but
    # storescu re-encodes it (and the SCP writes its own file meta), so file bytes differ


@dataclass
class CorpusStudy:
    study_uid: str
    patient_id: str
    accession: str
    instances: list[CorpusInstance] = field(default_factory=list)


def _template(shrink: int) -> Dataset:
    path = get_testdata_file("RG1_UNCR.dcm")
    assert path is not None, "pydicom-data's RG1_UNCR.dcm is required"
    ds = dcmread(path)
    if shrink > 1:
        pixels = ds.pixel_array.astype(np.float64)
        rows, cols = (pixels.shape[0] // shrink) * shrink, (pixels.shape[1] // shrink) * shrink
        small = pixels[:rows, :cols].reshape(rows // shrink, shrink, cols // shrink, shrink)
        ds.PixelData = small.mean(axis=(1, 3)).round().astype(np.uint16).tobytes()
        ds.Rows, ds.Columns = rows // shrink, cols // shrink
        if "PixelSpacing" in ds:
            ds.PixelSpacing = [float(v) * shrink for v in ds.PixelSpacing]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def build(root: Path, instances: int, seed: int, shrink: int = 4) -> list[CorpusStudy]:
    """Write about ``instances`` files below ``root``; returns the studies, in sending order."""
    rng = random.Random(seed)
    base = _template(shrink)
    flipped = base.pixel_array[:, ::-1].copy().tobytes()
    original = base.PixelData
    root.mkdir(parents=True, exist_ok=True)
    studies: list[CorpusStudy] = []
    count = patient_no = 0
    while count < instances:
        patient_no += 1
        patient_id = f"CL{seed}-{patient_no:05d}"
        for _ in range(rng.randint(1, 3)):
            if count >= instances:
                break
            n = min(rng.randint(2, 6), instances - count)
            study = _study(root, base, (original, flipped), seed, patient_id, len(studies), n)
            studies.append(study)
            count += n
    return studies


def _uid(seed: int, *parts: object) -> str:
    return str(generate_uid(entropy_srcs=[str(seed), *map(str, parts)]))


def _study(
    root: Path,
    ds: Dataset,
    pixels: tuple[bytes, bytes],
    seed: int,
    patient_id: str,
    number: int,
    images: int,
) -> CorpusStudy:
    study = CorpusStudy(_uid(seed, "study", number), patient_id, f"A{seed % 1000:03d}{number:06d}")
    series_uid = _uid(seed, "series", number)
    folder = root / f"s{number:05d}"
    folder.mkdir(exist_ok=True)
    for i in range(images):
        ds.PatientID = patient_id
        ds.IssuerOfPatientID = "CLUSTER"
        ds.PatientName = f"CLUSTER^PATIENT{patient_id[-5:]}"
        ds.StudyInstanceUID = study.study_uid
        ds.SeriesInstanceUID = series_uid
        ds.AccessionNumber = study.accession
        ds.StudyID = str(number)
        ds.InstanceNumber = i + 1
        ds.SOPInstanceUID = _uid(seed, "instance", number, i)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PixelData = pixels[i % 2]
        path = folder / f"{i:02d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        sha = hashlib.sha256(pixels[i % 2]).hexdigest()
        study.instances.append(
            CorpusInstance(path, ds.SOPInstanceUID, study.study_uid, patient_id, sha)
        )
    return study
