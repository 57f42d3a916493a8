"""Synthetic frontal chest radiographs (the demo model's training distribution) as CR DICOM
files, for tests that need images the model can read (the real RG1 chest CR is out of the demo
model's distribution)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def synthetic_cr(
    path: Path,
    image: NDArray[np.float32],
    *,
    study_uid: str | None = None,
    patient_id: str = "SYN0001",
    accession: str = "",
    sop_uid: str | None = None,
) -> Path:
    """Write ``image`` ((H, W) or (H, W, 1) in [0, 1], air dark) as a 12-bit MONOCHROME2 CR whose
    VOI window maps the stored values back to [0, 1]."""
    pixels = np.clip(np.asarray(image, dtype=np.float64).reshape(image.shape[:2]), 0, 1)
    stored = np.round(pixels * 4095).astype(np.uint16)
    sop_uid = sop_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyDate = ds.SeriesDate = "20260105"
    ds.StudyTime = ds.SeriesTime = "101500"
    ds.AccessionNumber = accession
    ds.Modality = "CR"
    ds.Manufacturer = "xraygate synthetic"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientName = "SYNTHETIC^PATIENT"
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ReferringPhysicianName = ""
    ds.PatientOrientation = ["L", "F"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
