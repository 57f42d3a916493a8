"""Applicability: the SOP class must carry a radiograph (not a Secondary Capture whatever its
Modality says), the view comes from ViewCodeSequence when ViewPosition is absent, and an image
with no view at all is refused unless ``XRAYGATE_INFER_ACCEPT_MISSING_VIEW`` is set."""

from __future__ import annotations

import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file

from xraygate.core.config import Settings
from xraygate.inference import applicability

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MAMMOGRAPHY = "1.2.840.10008.5.1.4.1.1.1.2"


def chest_cr() -> Dataset:
    return dcmread(get_testdata_file("RG1_UNCR.dcm"))


def coded_view(scheme: str, code: str, meaning: str = "") -> Dataset:
    item = Dataset()
    item.CodeValue = code
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning or code
    return item


def test_the_default_is_to_refuse_images_without_a_view() -> None:
    assert Settings().infer_accept_missing_view is False


def test_secondary_capture_saying_cr_is_not_scored() -> None:
    ds = chest_cr()
    ds.SOPClassUID = SECONDARY_CAPTURE
    assert ds.Modality == "CR"
    verdict = applicability.check(ds, Settings())
    assert not verdict.applicable
    assert verdict.reason == (
        "SOP class Secondary Capture Image Storage does not carry a radiograph we read"
    )


@pytest.mark.parametrize(
    ("sop_class", "modality", "applicable"),
    [
        ("1.2.840.10008.5.1.4.1.1.1", "CR", True),  # Computed Radiography
        ("1.2.840.10008.5.1.4.1.1.1.1", "DX", True),  # Digital X-Ray, for presentation
        ("1.2.840.10008.5.1.4.1.1.1.1.1", "DX", False),  # for processing
        (MAMMOGRAPHY, "MG", False),
        (MAMMOGRAPHY, "DX", False),  # a mammogram with a DX modality is still no chest image
        (SECONDARY_CAPTURE, "DX", False),
        ("1.2.840.10008.5.1.4.1.1.2", "CR", False),  # CT Image Storage mislabelled CR
    ],
)
def test_only_radiograph_storage_classes(sop_class: str, modality: str, applicable: bool) -> None:
    ds = chest_cr()
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    settings = Settings(infer_modalities=["CR", "DX", "DR", "MG"])
    assert applicability.check(ds, settings).applicable is applicable


def test_sop_class_from_the_file_meta_when_the_data_set_has_none() -> None:
    ds = chest_cr()
    del ds.SOPClassUID
    assert applicability.check(ds, Settings()).applicable
    ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    assert not applicability.check(ds, Settings()).applicable
    del ds.file_meta.MediaStorageSOPClassUID
    assert applicability.check(ds, Settings()).reason == (
        "SOP class missing does not carry a radiograph we read"
    )


@pytest.mark.parametrize(
    ("scheme", "code", "applicable"),
    [
        ("SCT", "272479007", True),  # postero-anterior
        ("SCT", "399348003", True),  # antero-posterior
        ("SRT", "R-10214", True),  # postero-anterior, legacy SNOMED RT code
        ("SRT", "R-10206", True),  # antero-posterior, legacy
        ("SCT", "399173006", False),  # left lateral
        ("SCT", "399198007", False),  # right lateral
        ("SRT", "R-10232", False),  # not a frontal code
    ],
)
def test_view_code_sequence_when_view_position_is_absent(
    scheme: str, code: str, applicable: bool
) -> None:
    ds = chest_cr()
    del ds.ViewPosition
    ds.ViewCodeSequence = [coded_view(scheme, code)]
    verdict = applicability.check(ds, Settings())
    assert verdict.applicable is applicable
    if not applicable:
        assert verdict.reason == f"view {scheme}:{code} (ViewCodeSequence) is not frontal (PA/AP)"


def test_an_empty_view_position_falls_back_to_the_code() -> None:
    ds = chest_cr()
    ds.ViewPosition = ""
    ds.ViewCodeSequence = [coded_view("SCT", "399198007", "right lateral")]
    assert not applicability.check(ds, Settings()).applicable


def test_view_position_wins_over_the_code() -> None:
    ds = chest_cr()
    ds.ViewPosition = "LL"
    ds.ViewCodeSequence = [coded_view("SCT", "272479007")]
    assert applicability.check(ds, Settings()).reason == "view LL is not frontal (PA/AP)"


def test_no_view_at_all_is_refused_unless_configured() -> None:
    ds = chest_cr()
    del ds.ViewPosition
    ds.ViewCodeSequence = []
    verdict = applicability.check(ds, Settings())
    assert verdict == applicability.Verdict(
        False, "view position missing (no ViewPosition or ViewCodeSequence)"
    )
    assert applicability.check(ds, Settings(infer_accept_missing_view=True)).applicable
    # a lateral is refused whatever the setting says
    ds.ViewCodeSequence = [coded_view("SCT", "399173006")]
    assert not applicability.check(ds, Settings(infer_accept_missing_view=True)).applicable
