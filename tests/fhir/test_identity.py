"""Identifier systems of the patient (issuer mapping, OIDs, defaults), multi-valued DICOM values,
search-token escaping; and what ingest stores from IssuerOfPatientIDQualifiersSequence."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

from tests.fhir.conftest import make_env
from tests.fhir.strict_server import _token
from tests.results_factory import enqueue_emit, make_result, run_until
from xraygate.core.config import Settings
from xraygate.core.ingest.header import _patient as _patient_values
from xraygate.core.models import Patient
from xraygate.fhir.identity import IdentitySystems, dicom_values, token

BASE = "https://x.example/fhir"


def patient(issuer: str = "", uid: str = "", uid_type: str = "") -> Patient:
    return Patient(
        patient_key="k",
        patient_id="P1",
        issuer=issuer,
        issuer_universal_id=uid,
        issuer_universal_id_type=uid_type,
    )


def test_patient_system_rules() -> None:
    ids = IdentitySystems(BASE, {"HOSP": "urn:oid:1.2.3", "2.16.840.1.9": "https://mrn.example"})
    assert ids.patient_system(patient("HOSP")) == "urn:oid:1.2.3"
    assert ids.patient_system(patient("X", "2.16.840.1.9", "ISO")) == "https://mrn.example"
    assert ids.patient_system(patient("X", "1.2.840.7", "ISO")) == "urn:oid:1.2.840.7"
    assert ids.patient_system(patient("", "https://ids.example/mrn", "URI")) == (
        "https://ids.example/mrn"
    )
    assert ids.patient_system(patient("1.2.840.113619")) == "urn:oid:1.2.840.113619"
    assert ids.patient_system(patient("St Mary's")) == f"{BASE}/patient-id/St%20Mary%27s"
    assert ids.patient_system(patient()) == f"{BASE}/patient-id"
    assert IdentitySystems(BASE, patient_default="urn:oid:9.9").patient_system(patient()) == (
        "urn:oid:9.9"
    )
    assert IdentitySystems(BASE).accession_system() == f"{BASE}/accession"
    assert IdentitySystems(BASE, accession="urn:oid:5.5").accession_system() == "urn:oid:5.5"


def test_multi_valued_and_tokens() -> None:
    assert dicom_values("A\\B\\ ") == ["A", "B"] and dicom_values("") == []
    raw = token("urn:oid:1.2", "a|b,c$d\\e&f=g")
    assert "&" not in raw and "=" not in raw
    assert _token(unquote(raw)) == ("urn:oid:1.2", "a|b,c$d\\e&f=g")


def test_ingest_keeps_values_apart_and_reads_the_issuer_qualifiers() -> None:
    ds = Dataset()
    ds.PatientID = ["MRN1", "MRN2"]
    ds.IssuerOfPatientID = "HOSP"
    item = Dataset()
    item.UniversalEntityID = "1.2.840.99999.1"
    item.UniversalEntityIDType = "ISO"
    ds.IssuerOfPatientIDQualifiersSequence = Sequence([item])
    ds.PatientName = ["DOE^JANE", "SMITH^JANE"]
    values = _patient_values(ds)
    assert values["patient_id"] == "MRN1\\MRN2" and "[" not in values["patient_key"]
    assert values["name"] == "DOE^JANE\\SMITH^JANE"
    assert (values["issuer_universal_id"], values["issuer_universal_id_type"]) == (
        "1.2.840.99999.1",
        "ISO",
    )


def test_multi_valued_ids_and_names_are_separate_fhir_elements(sqlite_settings: Settings) -> None:
    env = make_env(sqlite_settings, fhir_patient_id_systems={"HOSP": "urn:oid:1.2.3"})
    made = make_result(
        env.queue.engine, patient_id="MRN1\\MRN2", name="DOE^JANE\\SMITH^JANE", issuer="HOSP"
    )
    enqueue_emit(env.queue.engine, env.queue, "emit-fhir", made)
    run_until(env.queue, env.handlers, env.all_final)
    [p] = env.current("Patient")
    assert [(i["system"], i["value"]) for i in p["identifier"]] == [
        ("urn:oid:1.2.3", "MRN1"),
        ("urn:oid:1.2.3", "MRN2"),
    ]
    assert [n["family"] for n in p["name"]] == ["DOE", "SMITH"]
    assert not [i for i in p["identifier"] if "[" in i["value"] or "\\" in i["value"]]


def test_identity_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XRAYGATE_FHIR_PATIENT_ID_SYSTEMS", '{"HOSP": "urn:oid:1.2.3"}')
    monkeypatch.setenv("XRAYGATE_FHIR_PUSH_PATIENT_MODE", "create-if-missing")
    settings = Settings()
    assert settings.fhir_patient_id_systems == {"HOSP": "urn:oid:1.2.3"}
    assert IdentitySystems.from_settings(settings).patient_system(patient("HOSP")) == (
        "urn:oid:1.2.3"
    )
    monkeypatch.setenv("XRAYGATE_FHIR_PUSH_PATIENT_MODE", "overwrite")
    with pytest.raises(ValueError):
        Settings()
