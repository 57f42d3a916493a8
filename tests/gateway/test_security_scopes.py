"""Issue 11, SMART on FHIR scopes, table-driven over real HTTP (uvicorn on loopback): for each
token (scopes x roles x ``patient`` claim), each resource type and each form (search, search
with ``_include``, read, vread, history), the answer holds exactly what an independent oracle
says the scopes cover, and nothing else (a 403 where they cover no such request)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from sqlmodel import Session, select

from tests.fhir.conftest import make_env
from tests.gateway.conftest import SECRET, gateway_settings, serve
from tests.results_factory import enqueue_emit, make_result, rescore, run_until
from xraygate.core import db
from xraygate.core.models import FhirResource
from xraygate.gateway.app import create_app

pytestmark = pytest.mark.integration

TYPES = ["Patient", "DiagnosticReport", "Observation", "ImagingStudy", "Device", "Provenance"]
INCLUDES = {
    "DiagnosticReport": ["DiagnosticReport:patient", "DiagnosticReport:result"],
    "Observation": ["Observation:patient", "Observation:device", "Observation:derived-from"],
    "ImagingStudy": ["ImagingStudy:patient"],
}


@dataclass
class World:
    base: str
    http: httpx.Client
    resources: list[dict[str, Any]]  # every current resource
    versions: dict[str, list[int]]  # "Type/id" -> version ids
    patients: dict[str, str]  # MRN -> Patient id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("scopes")
    settings = gateway_settings(tmp)
    env = make_env(settings)
    engine = env.queue.engine
    made = [make_result(engine, patient_id=mrn, accession=f"ACC-{mrn}") for mrn in ("PA", "PB")]
    for m in made:
        enqueue_emit(engine, env.queue, "emit-fhir", m)
    run_until(env.queue, env.handlers, env.all_final)
    rescore(engine, made[0].result_id, score=0.3, category="low")  # version 2 for PA
    enqueue_emit(engine, env.queue, "emit-fhir", made[0])
    run_until(env.queue, env.handlers, env.all_final)
    with Session(engine) as session:
        rows = list(session.exec(select(FhirResource)))
    current = [dict(r.content) for r in rows if r.is_current]
    versions: dict[str, list[int]] = {}
    for r in rows:
        versions.setdefault(f"{r.resource_type}/{r.resource_id}", []).append(r.version_id)
    patients = {
        ident["value"]: p["id"]
        for p in current
        if p["resourceType"] == "Patient"
        for ident in p["identifier"]
        if ident["value"] in ("PA", "PB")
    }
    assert set(patients) == {"PA", "PB"}
    assert any(len(v) > 1 for v in versions.values())
    for served in serve(create_app(settings)):
        with httpx.Client(base_url=f"{served.base}/fhir", timeout=30) as http:
            yield World(served.base, http, current, versions, patients)
    db.get_engine.cache_clear()


# --- the oracle: what SMART says a token may receive (written apart from the implementation) ----


@dataclass(frozen=True)
class Case:
    name: str
    scope: str
    roles: tuple[str, ...] = ()
    patient: str | None = None  # an MRN of the world; the claim carries its Patient id

    def grants(self, rtype: str, interaction: str) -> list[str]:
        """The contexts of the scopes covering ``rtype`` for ``interaction``."""
        out = []
        for word in self.scope.split():
            if "?" in word:  # v2 query restrictions are not served: such a scope grants nothing
                continue
            context, _, rest = word.partition("/")
            stype, _, perm = rest.partition(".")
            letters = {"read": "rs", "*": "cruds", "write": "cud"}.get(perm, perm)
            if stype not in ("*", rtype):
                continue
            needed = {"read": "r", "search": "s"}.get(interaction, "rs")
            if not set(needed) & set(letters) or (
                interaction != "include" and needed not in letters
            ):
                continue
            if context == "patient" and self.patient is None:
                continue
            if context == "user" and not {"ehr", "admin"} & set(self.roles):
                continue
            out.append(context)
        return out

    def may(self, resource: dict[str, Any], interaction: str, world: World) -> bool:
        for context in self.grants(resource["resourceType"], interaction):
            if context != "patient":
                return True
            pid = world.patients[str(self.patient)]
            if resource["resourceType"] == "Patient" and resource["id"] == pid:
                return True
            if resource.get("subject", {}).get("reference") == f"Patient/{pid}":
                return True
        return False

    def type_allowed(self, rtype: str, interaction: str) -> bool:
        return bool(self.grants(rtype, interaction))

    def token(self, world: World) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": "xraygate",
            "aud": "xraygate",
            "sub": self.name,
            "roles": list(self.roles),
            "scope": self.scope,
            "iat": now,
            "exp": now + 600,
        }
        if self.patient is not None:
            claims["patient"] = world.patients[self.patient]
        return jwt.encode(claims, SECRET, algorithm="HS256")


CASES = [
    Case("v1-reports", "system/DiagnosticReport.read"),
    Case("v2-reports", "system/DiagnosticReport.rs"),
    Case("v2-search-only", "system/Observation.s"),
    Case("v2-read-only", "system/Observation.r"),
    Case("v1-all", "system/*.read"),
    Case("v2-all", "openid system/*.rs"),
    Case("patient-all", "launch/patient patient/*.rs", patient="PA"),
    Case("patient-other", "patient/*.read", patient="PB"),
    Case("patient-observations", "patient/Observation.rs", patient="PA"),
    Case("patient-without-claim", "patient/*.rs", roles=("ehr",)),
    Case("user-as-ehr", "user/*.rs", roles=("ehr",)),
    Case("user-observations", "user/Observation.rs", roles=("ehr",)),
    Case("user-as-clinician", "user/*.rs", roles=("clinician",)),
    Case("write-only", "system/DiagnosticReport.write", roles=("ehr",)),
    Case("reports-and-own-patient", "system/DiagnosticReport.rs patient/Patient.r", patient="PB"),
    Case("admin-with-scope", "user/DiagnosticReport.rs", roles=("admin",)),
    Case("v2-query-restricted", "system/Observation.rs?category=imaging"),
]


def _bundle(answer: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return [(e.get("search", {}).get("mode", ""), e["resource"]) for e in body.get("entry", [])]


def _key(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_scope_table(world: World, case: Case) -> None:
    headers = {"Authorization": f"Bearer {case.token(world)}"}
    checked = 0
    for rtype in TYPES:
        of_type = [r for r in world.resources if r["resourceType"] == rtype]
        # search, and search with every _include of the type
        forms = [[("_count", "100")]] + [
            [("_count", "100"), ("_include", inc)] for inc in INCLUDES.get(rtype, [])
        ]
        for params in forms:
            answer = world.http.get(f"/{rtype}", params=params, headers=headers)
            if not case.type_allowed(rtype, "search"):
                assert answer.status_code == 403, (case, rtype, answer.text)
                assert answer.json()["resourceType"] == "OperationOutcome"
                continue
            entries = _bundle(answer)
            matches = {_key(r) for mode, r in entries if mode == "match"}
            expected = {_key(r) for r in of_type if case.may(r, "search", world)}
            assert matches == expected, (case.name, rtype)
            assert answer.json()["total"] == len(expected)
            included = [r for mode, r in entries if mode == "include"]
            for resource in included:
                assert case.may(resource, "include", world), (case.name, params, _key(resource))
            if len(params) > 1:
                referenced = _referenced(
                    [r for r in of_type if _key(r) in matches], params[1][1], world
                )
                wanted = {_key(r) for r in referenced if case.may(r, "include", world)}
                assert {_key(r) for r in included} == wanted, (case.name, params)
            checked += 1
        # read, vread (every version), instance history
        for resource in of_type:
            path = f"/{_key(resource)}"
            allowed = case.type_allowed(rtype, "read") and case.may(resource, "read", world)
            answers = [world.http.get(path, headers=headers)]
            answers += [
                world.http.get(f"{path}/_history/{v}", headers=headers)
                for v in world.versions[_key(resource)]
            ]
            history = world.http.get(f"{path}/_history", headers=headers)
            for answer in [*answers, history]:
                assert answer.status_code == (200 if allowed else 403), (case.name, path)
                if not allowed:
                    assert answer.json()["resourceType"] == "OperationOutcome"
                    assert resource["id"] not in answer.text
            if allowed:
                assert answers[0].json()["id"] == resource["id"]
                assert len(history.json()["entry"]) == len(world.versions[_key(resource)])
            checked += len(answers) + 1
    print(f"{case.name}: {checked} requests checked")


def _referenced(matches: list[dict[str, Any]], include: str, world: World) -> list[dict[str, Any]]:
    path = {
        "patient": "subject",
        "result": "result",
        "device": "device",
        "derived-from": "derivedFrom",
    }[include.split(":")[1]]
    refs: set[str] = set()
    for resource in matches:
        value = resource.get(path)
        for ref in value if isinstance(value, list) else [value] if value else []:
            refs.add(ref["reference"])
    return [r for r in world.resources if _key(r) in refs]


def test_the_table_covers_every_outcome(world: World) -> None:
    """The oracle is not vacuous: across the table some tokens get everything, some only one
    patient's resources, some nothing, and _include returns resources for some."""
    pa, pb = world.patients["PA"], world.patients["PB"]
    by_case = {c.name: c for c in CASES}
    everything = {_key(r) for r in world.resources if r["resourceType"] in TYPES}
    seen = {_key(r) for r in world.resources if by_case["v2-all"].may(r, "search", world)}
    assert seen == everything
    own = {_key(r) for r in world.resources if by_case["patient-all"].may(r, "search", world)}
    assert f"Patient/{pa}" in own and f"Patient/{pb}" not in own
    assert not any(by_case["user-as-clinician"].may(r, "read", world) for r in world.resources)
    assert not any(by_case["patient-without-claim"].may(r, "read", world) for r in world.resources)
    headers = {"Authorization": f"Bearer {by_case['v1-reports'].token(world)}"}
    included = world.http.get(
        "/DiagnosticReport", params={"_include": "DiagnosticReport:patient"}, headers=headers
    )
    modes = [mode for mode, _ in _bundle(included)]
    assert "match" in modes and "include" not in modes  # Patient not covered: never included
    headers = {"Authorization": f"Bearer {by_case['v2-all'].token(world)}"}
    included = world.http.get(
        "/DiagnosticReport", params={"_include": "DiagnosticReport:patient"}, headers=headers
    )
    assert [m for m, _ in _bundle(included)].count("include") == 2
