"""The optional "AI key image": a Secondary Capture copy of the first image the model read, with
the result burned into a banner across its top (``XRAYGATE_PACS_KEY_IMAGE``).

It is marked for what it is: ImageType DERIVED\\SECONDARY, BurnedInAnnotation YES, a Derivation
Description and a Source Image Sequence naming the original, in its own series
("AI key image"). It is a display object only: it is never a training input (the retraining
export skips it by its Derivation Description, :func:`xraygate.core.dicom_io.is_ai_display_object`,
should a PACS ever route it back to us).

No Grayscale Softcopy Presentation State is produced: the inference worker makes no saliency
overlay for one to carry.
"""

from __future__ import annotations

import uuid
from io import BytesIO

import highdicom as hd
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_voi_lut

from xraygate.core.config import Settings
from xraygate.core.dicom_io import AI_KEY_IMAGE_DERIVATION
from xraygate.core.outbox import NewMessage
from xraygate.core.storage import ObjectStore
from xraygate.core.vocabulary import DEMO_STATEMENT, terms_for
from xraygate.pacs.context import SrContext

MANUFACTURER = "xraygate"
KEY_IMAGE_SERIES_NUMBER = 9902
KEY_IMAGE_KEY_SUFFIX = ":key-image"
MAX_SIDE = 1024


def _uid(*parts: object) -> str:
    name = "|".join(["xraygate-pacs", *map(str, parts)])
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"


def banner_text(ctx: SrContext) -> list[str]:
    r = ctx.result
    risk = "no score" if r.score is None else f"risk {float(r.score) * 100:.0f}%"
    lines = [
        f"AI PNEUMONIA TRIAGE: {terms_for(r.category).concept.display.upper()} ({risk})",
        "PRELIMINARY - NOT A DIAGNOSIS - FOR CLINICIAN REVIEW",
    ]
    if r.demo_model:
        lines.append(DEMO_STATEMENT.upper())
    return lines


def to_8bit(ds: Dataset) -> NDArray[np.uint8]:
    """The image as displayed (VOI LUT or window applied, MONOCHROME1 inverted), 8 bits."""
    pixels = np.asarray(apply_voi_lut(ds.pixel_array, ds), dtype=np.float64)
    if pixels.ndim != 2:
        raise ValueError("key images are made from single-frame grayscale images")
    lo, hi = float(pixels.min()), float(pixels.max())
    scaled = (pixels - lo) / (hi - lo) if hi > lo else np.zeros_like(pixels)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        scaled = 1.0 - scaled
    return np.round(scaled * 255).astype(np.uint8)


def burn_banner(pixels: NDArray[np.uint8], lines: list[str]) -> NDArray[np.uint8]:
    image = Image.fromarray(pixels, mode="L")
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    width = image.size[0]
    size = max(12, width // 48)
    font = ImageFont.load_default(size=size)
    band = (size + size // 2) * len(lines) + size // 2
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, band), fill=0)
    for n, line in enumerate(lines):
        draw.text((size // 2, size // 2 + n * (size + size // 2)), line, fill=255, font=font)
    return np.asarray(image, dtype=np.uint8)


def _orientation(source: Dataset) -> tuple[str, str] | None:
    value = list(source.get("PatientOrientation") or [])
    return (str(value[0]), str(value[1])) if len(value) == 2 else None


def build_key_image(ctx: SrContext, source: Dataset) -> hd.sc.SCImage:
    r = ctx.result
    pixels = burn_banner(to_8bit(source), banner_text(ctx))
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=pixels,
        photometric_interpretation="MONOCHROME2",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=_uid("key-series", r.study_instance_uid, r.model_version),
        series_number=KEY_IMAGE_SERIES_NUMBER,
        sop_instance_uid=_uid("key", r.study_instance_uid, r.model_version, r.revision),
        instance_number=r.revision,
        manufacturer=MANUFACTURER,
        patient_orientation=_orientation(source),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        series_description="AI key image (preliminary)"
        + (" - DEMONSTRATION MODEL" if r.demo_model else ""),
    )
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.BurnedInAnnotation = "YES"
    sc.RecognizableVisualFeatures = source.get("RecognizableVisualFeatures", "NO") or "NO"
    sc.DerivationDescription = AI_KEY_IMAGE_DERIVATION
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = [ref]
    # General Series Laterality (2C): the source's, else empty (a chest is not a paired part)
    sc.Laterality = source.get("Laterality", "") or ""
    if "IssuerOfPatientID" in source:
        sc.IssuerOfPatientID = source.IssuerOfPatientID
    return sc


def key_image_message(
    settings: Settings, store: ObjectStore, ctx: SrContext, priority: int
) -> list[NewMessage]:
    """The key image of ``ctx`` as an outbox message (none when the image cannot be read)."""
    from xraygate.pacs.sr import to_bytes
    from xraygate.pacs.worker import message_for

    image = ctx.images[0]
    source = dcmread(BytesIO(store.get_bytes(image.object_key)))
    sc = build_key_image(ctx, source)
    return [message_for(ctx, str(sc.SOPInstanceUID), to_bytes(sc), KEY_IMAGE_KEY_SUFFIX, priority)]
