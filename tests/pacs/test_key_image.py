"""The optional "AI key image": a Secondary Capture with the result burned into a banner (read
back by Tesseract), valid for dciodvfy, marked as derived; the retraining export never takes it."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from sqlalchemy import select
from sqlmodel import col

from tests.anonymizer.conftest import drain, enqueue_deidentify, make_study
from tests.dicom_scp.conftest import sample
from tests.pacs.dicom_checks import dciodvfy_errors
from tests.results_factory import make_result
from xraygate.anonymizer.export import NOT_FOR_TRAINING
from xraygate.anonymizer.worker import make_handlers as deid_handlers
from xraygate.core.config import Settings
from xraygate.core.db import get_engine, read_session
from xraygate.core.models import DeidExport
from xraygate.core.queue import JobQueue
from xraygate.core.storage import store_from_settings
from xraygate.pacs import context
from xraygate.pacs.key_image import build_key_image
from xraygate.pacs.sr import to_bytes


def _key_image(settings: Settings, **kw: object) -> bytes:
    engine = get_engine(settings.resolved_database_url)
    made = make_result(engine, **kw)  # type: ignore[arg-type]
    with read_session(engine) as s:
        ctx = context.load(s, made.result_id)
    assert ctx is not None
    source = dcmread(sample("RG1_UNCR.dcm"))
    return to_bytes(build_key_image(ctx, source))


def _ocr(pixels: np.ndarray) -> str:  # type: ignore[type-arg]
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    proc = subprocess.run(
        ["tesseract", "stdin", "stdout", "--psm", "6"],
        input=buf.getvalue(),
        capture_output=True,
        check=True,
        timeout=60,
    )
    return proc.stdout.decode()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_key_image_is_a_valid_derived_sc_with_the_result_burned_in(
    settings: Settings, tmp_path: Path
) -> None:
    data = _key_image(settings, score=0.87, category="high")
    path = tmp_path / "key.dcm"
    path.write_bytes(data)
    assert dciodvfy_errors(path) == []
    ds = dcmread(path)
    source = dcmread(sample("RG1_UNCR.dcm"), stop_before_pixels=True)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
    assert ds.BurnedInAnnotation == "YES"
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert (ds.PatientID, ds.StudyInstanceUID) == (source.PatientID, source.StudyInstanceUID)
    assert "DEMONSTRATION MODEL" in ds.SeriesDescription
    assert max(ds.Rows, ds.Columns) <= 1024
    pixels = ds.pixel_array
    banner = pixels[: ds.Rows // 6]
    text = _ocr(banner).upper()
    assert "HIGH" in text and "87%" in text, text
    assert "PRELIMINARY" in text and "DEMONSTRATION" in text, text
    assert "HIGH" not in _ocr(pixels[ds.Rows // 3 :]).upper()  # the anatomy is left alone


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_retraining_export_never_takes_a_key_image(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XRAYGATE_DEID_SECRET", "key-image-test-secret")
    key = _key_image(settings)
    engine = get_engine(settings.resolved_database_url)
    store = store_from_settings(settings)
    queue = JobQueue.from_settings(settings)
    made = make_study(engine, store, [key])
    enqueue_deidentify(engine, queue, made)
    drain(queue, deid_handlers(settings, store, queue))
    with read_session(engine) as s:
        rows = list(s.scalars(select(DeidExport).where(col(DeidExport.study_pk) == made.study_pk)))
    assert [(r.status, r.reason) for r in rows] == [("skipped", NOT_FOR_TRAINING)]
    assert rows[0].object_key == ""
