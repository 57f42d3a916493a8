"""The de-identifier on the PHI corpus, its options, real files, determinism and bad input."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

from tests.anonymizer.corpus import PHI, UID_KEYS, leaks, phi_dataset, to_bytes
from xraygate.anonymizer.engine import DeidConfig, Deidentifier
from xraygate.anonymizer.pixels import parse_rules
from xraygate.anonymizer.profile import Option, build_profile, load_table, parse_options
from xraygate.core.errors import BurnedInText, ConfigurationError, UnparseableInput

SECRET = b"test-site-secret"
ACME_RULE = {"pixel_rules": [{"manufacturer": "ACME", "rectangles": [[0, 0, 16, 8]]}]}


def engine(*options: str, rules: dict[str, object] | None = None, **kw: object) -> Deidentifier:
    config = DeidConfig(parse_options(list(options)), SECRET, parse_rules(rules or {}), **kw)  # type: ignore[arg-type]
    return Deidentifier(config)


def reread(data: bytes):  # type: ignore[no-untyped-def]
    return dcmread(io.BytesIO(data))


# -- the table ---------------------------------------------------------------------------
def test_table_is_the_shipped_annex_e_csv() -> None:
    rows = load_table()
    assert len(rows) == 656
    basic = build_profile(frozenset())
    assert basic.actions[0x00100010] == "Z"  # Patient's Name
    assert basic.actions[0x0020000D] == "U"  # Study Instance UID
    assert basic.actions[0x00081030] == "X"  # Study Description
    assert basic.actions[0x00080080] == "D"  # Institution Name X/Z/D -> dummy
    assert basic.seq_actions[0x00081140] == "K"  # Referenced Image Sequence X/Z/U*
    assert basic.private_action == "X" and basic.overlay_data_action == "X"
    opts = build_profile(parse_options(["retain-uids", "clean-descriptors", "clean-graphics"]))
    assert opts.actions[0x0020000D] == "K"
    assert opts.actions[0x00081030] == "C"
    assert opts.overlay_data_action == "C"
    assert [c for c, _ in opts.codes] == ["113100", "113103", "113105", "113110"]


def test_longitudinal_options_exclude_each_other_and_unknown_options_fail() -> None:
    with pytest.raises(ConfigurationError):
        parse_options(["retain-long-full-dates", "retain-long-modified-dates"])
    with pytest.raises(ConfigurationError):
        parse_options(["retain-everything"])


# -- the PHI corpus ----------------------------------------------------------------------
@pytest.mark.parametrize("implicit", [False, True])
def test_basic_profile_leaves_no_planted_value(implicit: bool) -> None:
    data = to_bytes(phi_dataset(0, implicit=implicit))
    assert len(leaks(data)) == len(PHI)  # the scanner finds every planted value in the input
    out = engine().deidentify_bytes(data)
    assert leaks(out.data) == []
    ds = reread(out.data)
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == ["113100"]
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert "SourceApplicationEntityTitle" not in ds.file_meta
    assert ds.preamble == b"\0" * 128
    assert not any(t.group & 1 for t in list(ds.keys()))  # no private tags
    assert not any(0x5000 <= t.group <= 0x60FF for t in list(ds.keys()))  # curves, overlays
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID.startswith("2.25.")
    assert ds.AnatomicRegionSequence[0].CodeMeaning == "Chest"  # structure kept
    assert ds.AnatomicRegionSequence[0].OperatorsName == "ANONYMOUS"  # nested: X/Z/D -> D
    assert ds.PatientID.startswith("XG") and ds.StudyDate == ""


def test_pixel_data_is_byte_identical() -> None:
    src = phi_dataset(0)
    out = reread(engine().deidentify_bytes(to_bytes(src)).data)
    assert out.PixelData == src.PixelData


def _out(*options: str, index: int = 0, **kw: object):  # type: ignore[no-untyped-def]
    return reread(engine(*options, **kw).deidentify_bytes(to_bytes(phi_dataset(index))).data)


def _codes(ds) -> list[str]:  # type: ignore[no-untyped-def]
    return [i.CodeValue for i in ds.DeidentificationMethodCodeSequence]


def test_option_retain_uids() -> None:
    ds = _out("retain-uids")
    assert ds.StudyInstanceUID == PHI["study_uid"]
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == PHI["ref_uid"]
    assert "113110" in _codes(ds)


def test_option_retain_device_identity() -> None:
    ds = _out("retain-device-identity")
    assert ds.DeviceSerialNumber == PHI["serial"] and ds.StationName == PHI["station"]
    assert ds.StationAETitle != PHI["station_ae"] and ds.StationAETitle.startswith("AE")  # C
    assert "113109" in _codes(ds)
    assert _out().DeviceSerialNumber == "ANONYMIZED"


def test_option_retain_institution_identity() -> None:
    ds = _out("retain-institution-identity")
    assert ds.InstitutionName == PHI["institution"]
    assert ds.InstitutionAddress == PHI["inst_address"]
    assert "113112" in _codes(ds)
    assert "InstitutionAddress" not in _out()


def test_option_retain_patient_characteristics() -> None:
    ds = _out("retain-patient-characteristics")
    assert (ds.PatientSex, ds.PatientAge) == ("M", "061Y")
    assert "113108" in _codes(ds)
    basic = _out()
    assert basic.PatientSex == "" and "PatientAge" not in basic


def test_option_full_dates() -> None:
    ds = _out("retain-long-full-dates")
    assert ds.StudyDate == PHI["study_date"] and ds.AcquisitionDateTime == PHI["acq_datetime"]
    assert ds.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert "113106" in _codes(ds)


def test_option_modified_dates_shift_consistently_per_patient() -> None:
    a, b = _out("retain-long-modified-dates", index=0), _out("retain-long-modified-dates", index=1)
    assert a.StudyDate != PHI["study_date"] and len(a.StudyDate) == 8
    assert a.StudyDate == b.StudyDate and a.SeriesDate == b.SeriesDate
    from datetime import date

    def day(v: str) -> date:
        return date(int(v[:4]), int(v[4:6]), int(v[6:8]))

    assert (day(PHI["series_date"]) - day(PHI["study_date"])) == (
        day(a.SeriesDate) - day(a.StudyDate)
    )
    assert a.AcquisitionDateTime[8:] == PHI["acq_datetime"][8:]
    assert a.LongitudinalTemporalInformationModified == "MODIFIED"
    assert "113107" in _codes(a)


def test_option_clean_descriptors_keeps_scrubbed_text() -> None:
    ds = _out("clean-descriptors")
    assert ds.StudyDescription.startswith("CHEST PA for")
    assert "QUIMBY" not in ds.StudyDescription.upper()
    assert PHI["study_date"] not in ds.StudyDescription
    assert PHI["patient_id"] not in ds.ImageComments and "2023" not in ds.ImageComments
    assert "113105" in _codes(ds)
    assert "StudyDescription" not in _out()


def test_option_clean_structured_content_walks_content() -> None:
    ds = _out("clean-structured-content")
    item = ds.AnatomicRegionSequence[0].ContentSequence[0]
    assert item.TextValue.startswith("seen by Dr") and "WATSON" not in item.TextValue.upper()
    assert item.PersonName == "ANONYMOUS"
    assert "113104" in _codes(ds)
    assert "TextValue" not in _out().AnatomicRegionSequence[0].ContentSequence[0]


def test_option_clean_graphics_blanks_overlay_under_a_rule() -> None:
    ds = _out("clean-graphics", rules=ACME_RULE)
    bits = np.unpackbits(np.frombuffer(ds[0x60003000].value, np.uint8), bitorder="little")
    plane = bits[: 64 * 64].reshape(64, 64)
    assert plane[:8, :16].sum() == 0 and plane[:8, 16:].sum() == 8 * 48
    assert PHI["overlay_comment"].upper() not in str(ds.get(0x60004000).value).upper()
    assert "113103" in _codes(ds)
    no_rule = list(_out("clean-graphics").keys())
    assert not any(t.group == 0x6000 for t in no_rule)  # no rule: the overlay is removed


def test_option_retain_safe_private_keeps_only_listed_elements() -> None:
    rules = {"safe_private": [{"group": "0019", "creator": "ACME 1.0", "elements": ["11"]}]}
    ds = _out("retain-safe-private", rules=rules)
    block = ds.private_block(0x0019, "ACME 1.0")
    assert block[0x11].value == "1.5"
    assert 0x10 not in block and 0x12 not in block
    assert "113111" in _codes(ds)
    assert leaks(to_bytes(ds)) == []


@pytest.mark.parametrize("option", [o.value for o in Option])
def test_every_option_records_its_code_and_leaks_only_what_it_retains(option: str) -> None:
    retained = {
        "retain-uids": set(UID_KEYS),
        "retain-device-identity": {"station", "serial", "plate"},
        "retain-institution-identity": {"institution", "inst_address", "department"},
        "retain-long-full-dates": {"study_date", "series_date", "acq_datetime"},
    }.get(option, set())
    out = engine(option, rules=ACME_RULE).deidentify_bytes(to_bytes(phi_dataset(0)))
    assert set(leaks(out.data)) == retained


# -- burned-in text ----------------------------------------------------------------------
def test_burned_in_yes_is_refused_without_a_rule() -> None:
    with pytest.raises(BurnedInText):
        engine().deidentify_bytes(to_bytes(phi_dataset(0, burned_in="YES")))


def test_burned_in_yes_is_cleaned_with_a_rule() -> None:
    src = phi_dataset(0, burned_in="YES")
    out = engine(rules=ACME_RULE).deidentify_bytes(to_bytes(src))
    ds = reread(out.data)
    assert out.pixels_cleaned and ds.BurnedInAnnotation == "NO"
    assert "113101" in _codes(ds)
    arr, orig = ds.pixel_array, src.pixel_array
    assert (arr[:8, :16] == 0).all() and (arr[8:, :] == orig[8:, :]).all()
    assert leaks(out.data) == []


def test_compressed_sc_image_is_decoded_cleaned_and_reencoded() -> None:
    path = get_testdata_file("SC_rgb_jpeg.dcm")
    with pytest.raises(BurnedInText):  # SC, no BurnedInAnnotation: may carry text
        engine().deidentify_file(Path(path))
    maker = str(dcmread(path).Manufacturer)
    rules = {"pixel_rules": [{"manufacturer": maker, "rectangles": [[0, 0, 10, 5]]}]}
    ds = reread(engine(rules=rules).deidentify_file(Path(path)).data)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.PhotometricInterpretation == "RGB" and ds.BurnedInAnnotation == "NO"
    assert (ds.pixel_array[:5, :10] == 0).all() and ds.pixel_array[5:, :].any()


# -- real inputs -------------------------------------------------------------------------
REAL = ["RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm", "RG3_UNCR.dcm", "CT_small.dcm",
        "MR_small.dcm", "JPEG-LL.dcm", "examples_overlay.dcm", "examples_rgb_color.dcm",
        "examples_jpeg2k.dcm", "examples_palette.dcm", "examples_ybr_color.dcm",
        "waveform_ecg.dcm"]  # fmt: skip


@pytest.mark.parametrize("name", REAL)
def test_real_files_stay_valid_with_identical_pixels(name: str) -> None:
    path = Path(get_testdata_file(name))
    src = dcmread(path, force=True)  # some samples lack the preamble
    # US examples carry no BurnedInAnnotation: with the default they are refused (see above)
    out = engine(burned_in_modalities=frozenset()).deidentify_file(path)
    ds = reread(out.data)
    for attr in ("PixelData", "WaveformSequence"):
        if attr in src:
            assert attr in ds
    if "PixelData" in src:
        assert ds.PixelData == src.PixelData
        assert ds.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID
    assert ds.SOPInstanceUID != src.SOPInstanceUID and ds.SOPInstanceUID.startswith("2.25.")
    planted = {
        k: str(src.get(k))
        for k in ("PatientName", "StudyInstanceUID", "SOPInstanceUID", "InstitutionName")
        if str(src.get(k) or "").strip() and len(str(src.get(k))) > 3
    }
    kept = " ".join(str(src.get(k, "")) for k in ("Manufacturer", "ManufacturerModelName"))
    planted = {
        k: v
        for k, v in planted.items()
        if v.upper() not in kept.upper() and v.upper() not in ("ANONYMOUS", "ANONYMIZED")
    }
    assert leaks(out.data, planted) == []
    assert ds.PatientIdentityRemoved == "YES"
    assert 0xFFFCFFFC not in ds  # trailing padding after the pixel data is removed (X)
    assert reread(out.data).SOPInstanceUID == ds.SOPInstanceUID  # bytes path = file path
    assert engine(burned_in_modalities=frozenset()).deidentify_bytes(path.read_bytes()).data == (
        out.data
    )


def test_ultrasound_without_flag_is_refused_by_default() -> None:
    with pytest.raises(BurnedInText):
        engine().deidentify_file(Path(get_testdata_file("examples_rgb_color.dcm")))


# -- determinism -------------------------------------------------------------------------
def test_same_input_and_secret_give_same_uids_across_runs_and_processes() -> None:
    path = Path(get_testdata_file("RG1_UNCR.dcm"))
    a = engine().deidentify_file(path)
    b = engine().deidentify_file(path)
    assert (a.study_uid, a.sop_uid, a.patient_id) == (b.study_uid, b.sop_uid, b.patient_id)
    assert a.data == b.data
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from xraygate.anonymizer.engine import DeidConfig, Deidentifier
        from xraygate.anonymizer.profile import parse_options
        d = Deidentifier(DeidConfig(parse_options([]), {SECRET!r}))
        r = d.deidentify_file(Path({str(path)!r}))
        print(r.study_uid, r.series_uid, r.sop_uid, r.patient_id)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == [a.study_uid, a.series_uid, a.sop_uid, a.patient_id]
    other = Deidentifier(DeidConfig(frozenset(), b"another-secret")).deidentify_file(path)
    assert other.sop_uid != a.sop_uid and other.patient_id != a.patient_id


def test_uids_fit_the_ui_vr() -> None:
    out = engine().deidentify_bytes(to_bytes(phi_dataset(0)))
    for uid in (out.study_uid, out.series_uid, out.sop_uid):
        assert len(uid) <= 64 and uid.startswith("2.25.") and uid[5:].isdigit()


# -- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"this is not DICOM at all" * 20,
        b"\0" * 128 + b"DICM" + b"\xff" * 64,
    ],
)
def test_unparseable_input_raises(data: bytes) -> None:
    with pytest.raises(UnparseableInput):
        engine().deidentify_bytes(data)


@pytest.mark.parametrize(
    ("name", "cut"),
    [("CT_small.dcm", 700), ("CT_small.dcm", -100), ("RG1_UNCR.dcm", -100),
     ("JPEG-LL.dcm", -100), ("RG1_J2KR.dcm", -3)],
)  # fmt: skip
def test_truncated_file_is_unparseable(name: str, cut: int, tmp_path: Path) -> None:
    data = Path(get_testdata_file(name)).read_bytes()[:cut]
    with pytest.raises(UnparseableInput):
        engine().deidentify_bytes(data)
    (tmp_path / "t.dcm").write_bytes(data)
    with pytest.raises(UnparseableInput):
        engine().deidentify_file(tmp_path / "t.dcm")


def test_dataset_without_file_meta_is_unparseable() -> None:
    with pytest.raises(UnparseableInput):
        engine().deidentify_file(Path(get_testdata_file("no_meta.dcm")))
