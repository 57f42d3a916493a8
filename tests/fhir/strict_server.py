"""A small, strict FHIR R4 push target (real HTTP on loopback), as an EHR's server behaves.

- every Bundle is validated against the official R4 JSON schema and fhir.resources (R4B), and so
  is every resource once its references are resolved; any error is a 400 OperationOutcome;
- it refuses writes to Patient (403) unless ``allow_patient_create``; the EHR's patients are seeded;
- a transaction is processed as the R4 spec says (http.html#trules): all or nothing; POSTs
  before PUTs; ``ifNoneExist`` conditional creates (one match: nothing created, the entry is the
  match; several: 412); conditional updates ``PUT Type?search`` (none: create, one: update,
  several: 412); ``urn:uuid:`` fullUrls replaced by the ids it assigns; conditional references
  ``Type?search`` resolved to exactly one resource (else 412 and the transaction fails);
- an update whose content equals the current version is a no-op (no new version), as HAPI does;
- every reference of a written resource must resolve (no dangling references);
- search parameters: ``identifier`` and ``_tag`` tokens (anything else: 400).
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from tests.fhir.r4schema import r4_errors

Json = dict[str, Any]
REF = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/\d+)?$")


class Refused(Exception):
    def __init__(self, status: int, code: str, text: str) -> None:
        super().__init__(text)
        self.status, self.code, self.text = status, code, text

    def outcome(self) -> Json:
        issue = {"severity": "error", "code": self.code, "diagnostics": self.text}
        return {"resourceType": "OperationOutcome", "issue": [issue]}


@dataclass
class Write:
    method: str
    resource_type: str
    outcome: str  # created | updated | no-op | matched


@dataclass
class StrictFhirServer:
    patients: list[Json] = field(default_factory=list)
    allow_patient_create: bool = False
    #: type -> id -> versions (oldest first)
    store: dict[str, dict[str, list[Json]]] = field(default_factory=dict)
    writes: list[Write] = field(default_factory=list)
    answers: list[tuple[int, Json]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for patient in self.patients:
            pid = patient.get("id") or str(uuid.uuid4())
            body = {**patient, "id": pid, "meta": {"versionId": "1"}}
            self.store.setdefault("Patient", {})[pid] = [body]
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, body = server.handle(self.path, self.headers.get("Content-Type", ""), raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"

    def __enter__(self) -> StrictFhirServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what the tests read -------------------------------------------------------------------
    def current(self, rtype: str) -> list[Json]:
        return [versions[-1] for versions in self.store.get(rtype, {}).values()]

    def versions(self, rtype: str) -> list[list[Json]]:
        return list(self.store.get(rtype, {}).values())

    # -- one request --------------------------------------------------------------------------
    def handle(self, path: str, content_type: str, raw: bytes) -> tuple[int, Json]:
        with self.lock:
            try:
                if path.rstrip("/") != "/fhir":
                    raise Refused(404, "not-supported", f"only transactions at the base: {path}")
                if not content_type.startswith("application/fhir+json"):
                    raise Refused(415, "not-supported", f"content type {content_type}")
                bundle = json.loads(raw)
                validate(bundle)
                if bundle.get("type") != "transaction":
                    raise Refused(400, "invalid", "only transaction Bundles are accepted")
                work = copy.deepcopy(self.store)
                writes: list[Write] = []
                response = Transaction(work, self.allow_patient_create, writes).run(bundle)
            except Refused as exc:
                self.answers.append((exc.status, exc.outcome()))
                return exc.status, exc.outcome()
            except (ValueError, KeyError, TypeError) as exc:
                refused = Refused(400, "structure", f"malformed request: {exc}")
                self.answers.append((400, refused.outcome()))
                return 400, refused.outcome()
            self.store = work
            self.writes.extend(writes)
            self.answers.append((200, response))
            return 200, response


def validate(resource: Json) -> None:
    errors = r4_errors(resource)
    if errors:
        raise Refused(400, "structure", f"{resource['resourceType']}: R4 schema: {errors[:3]}")
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except (KeyError, ValidationError) as exc:
        raise Refused(400, "structure", f"fhir.resources: {str(exc)[:500]}") from exc


@dataclass
class Transaction:
    store: dict[str, dict[str, list[Json]]]
    allow_patient_create: bool
    writes: list[Write]
    ids: dict[str, str] = field(default_factory=dict)  # fullUrl -> Type/id
    plan: list[tuple[Json, str, str, str]] = field(default_factory=list)  # entry, type, id, kind

    def run(self, bundle: Json) -> Json:
        entries = bundle.get("entry", [])
        full_urls = [e.get("fullUrl") for e in entries if e.get("fullUrl")]
        if len(full_urls) != len(set(full_urls)):
            raise Refused(400, "invalid", "duplicate fullUrl in the transaction")
        order = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3}
        ranked = sorted(entries, key=lambda e: order.get(e.get("request", {}).get("method"), 9))
        for entry in ranked:
            self._assign(entry)
        answers: dict[int, Json] = {}
        for entry, rtype, rid, kind in self.plan:
            answers[id(entry)] = self._write(entry, rtype, rid, kind)
        out = [answers[id(e)] for e in entries]
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": out}

    # 1. ids: conditional creates and updates matched against the store as it was
    def _assign(self, entry: Json) -> None:
        request = entry.get("request") or {}
        method, url = request.get("method"), str(request.get("url", ""))
        resource = entry.get("resource")
        if method not in ("POST", "PUT") or not isinstance(resource, dict):
            raise Refused(400, "not-supported", f"{method} {url}: only POST/PUT of a resource")
        rtype = resource["resourceType"]
        if rtype == "Patient" and not (self.allow_patient_create and method == "POST"):
            raise Refused(403, "forbidden", "this server does not accept Patient writes")
        path, _, query = url.partition("?")
        if path != rtype and not path.startswith(f"{rtype}/"):
            raise Refused(400, "invalid", f"request url {url} does not match {rtype}")
        if method == "POST":
            if "id" in resource:
                raise Refused(400, "invalid", "a create carries no id")
            condition = request.get("ifNoneExist")
            matches = self._search(rtype, condition) if condition else []
            kind = "matched" if matches else "created"
            rid = self._one_or_none(matches, url) or str(uuid.uuid4())
        elif query:
            matches = self._search(rtype, query)
            found = self._one_or_none(matches, url)
            if found and resource.get("id") not in (None, found):
                raise Refused(400, "invalid", "conditional update with another resource's id")
            kind = "update" if found else "created"
            rid = found or str(uuid.uuid4())
        else:
            rid = path.split("/", 1)[1]
            if resource.get("id") != rid:
                raise Refused(400, "invalid", f"PUT {url}: the resource id must be {rid}")
            kind = "update" if rid in self.store.get(rtype, {}) else "created"
        if entry.get("fullUrl"):
            self.ids[entry["fullUrl"]] = f"{rtype}/{rid}"
        self.plan.append((entry, rtype, rid, kind))

    def _one_or_none(self, matches: list[str], url: str) -> str | None:
        if len(matches) > 1:
            raise Refused(412, "duplicate", f"{url}: {len(matches)} matches")
        return matches[0] if matches else None

    # 2. references resolved, resources validated and written
    def _write(self, entry: Json, rtype: str, rid: str, kind: str) -> Json:
        method = entry["request"]["method"]
        versions = self.store.setdefault(rtype, {}).get(rid)
        if kind == "matched":
            assert versions
            self.writes.append(Write(method, rtype, "matched"))
            return _answer("200 OK", rtype, rid, versions[-1])
        body = self._resolve(copy.deepcopy(entry["resource"]))
        body["id"] = rid
        tags = body.pop("meta", {}).get("tag")
        if tags:
            body["meta"] = {"tag": tags}
        validate(body)
        if versions and _same(versions[-1], body):
            self.writes.append(Write(method, rtype, "no-op"))
            return _answer("200 OK", rtype, rid, versions[-1])
        version = len(versions) + 1 if versions else 1
        body["meta"] = {**body.get("meta", {}), "versionId": str(version)}
        self.store[rtype].setdefault(rid, []).append(body)
        self.writes.append(Write(method, rtype, "updated" if versions else "created"))
        return _answer("200 OK" if versions else "201 Created", rtype, rid, body)

    def _resolve(self, node: Any) -> Any:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "reference" and isinstance(value, str):
                    node[key] = self._target(value)
                else:
                    self._resolve(value)
        elif isinstance(node, list):
            for item in node:
                self._resolve(item)
        return node

    def _target(self, ref: str) -> str:
        if ref.startswith("urn:uuid:"):
            if ref not in self.ids:
                raise Refused(400, "invalid", f"{ref} is not an entry of the transaction")
            return self.ids[ref]
        if "?" in ref:  # conditional reference
            rtype, _, query = ref.partition("?")
            matches = self._search(rtype, query)
            if len(matches) != 1:
                raise Refused(412, "not-found", f"conditional reference {ref}: {len(matches)}")
            return f"{rtype}/{matches[0]}"
        m = REF.match(ref)
        if not m or m.group(2) not in self.store.get(m.group(1), {}):
            planned = {f"{t}/{i}" for _, t, i, _ in self.plan}
            if not m or f"{m.group(1)}/{m.group(2)}" not in planned:
                raise Refused(422, "invalid", f"reference {ref} does not resolve")
        return ref

    # searches: identifier and _tag tokens only
    def _search(self, rtype: str, query: str) -> list[str]:
        params = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        if not params:
            raise Refused(400, "invalid", f"empty search on {rtype}")
        found: list[str] = []
        for rid, versions in self.store.get(rtype, {}).items():
            current = versions[-1]
            if all(_matches(current, name, value) for name, value in params):
                found.append(rid)
        return found


def _matches(resource: Json, name: str, value: str) -> bool:
    system, code = _token(value)
    if name == "identifier":
        items = [(i.get("system"), i.get("value")) for i in resource.get("identifier", [])]
    elif name == "_tag":
        items = [(t.get("system"), t.get("code")) for t in resource.get("meta", {}).get("tag", [])]
    else:
        raise Refused(400, "not-supported", f"search parameter {name} is not supported")
    return any((system is None or s == system) and c == code for s, c in items)


def _token(value: str) -> tuple[str | None, str]:
    """``system|code`` with FHIR search escapes (``\\|``, ``\\,``, ``\\$``, ``\\\\``)."""
    parts: list[str] = []
    current, escaped = "", False
    for ch in value:
        if escaped:
            current, escaped = current + ch, False
        elif ch == "\\":
            escaped = True
        elif ch == "|":
            parts.append(current)
            current = ""
        elif ch in ",$":
            raise Refused(400, "not-supported", "unescaped ',' or '$' in a token")
        else:
            current += ch
    parts.append(current)
    if len(parts) == 1:
        return None, parts[0]
    if len(parts) != 2:
        raise Refused(400, "invalid", f"bad token {value}")
    return parts[0], parts[1]


def _same(current: Json, new: Json) -> bool:
    def core(r: Json) -> Json:
        return {k: v for k, v in r.items() if k != "meta"}

    return core(current) == core(new)


def _answer(status: str, rtype: str, rid: str, body: Json) -> Json:
    version = body.get("meta", {}).get("versionId", "1")
    return {"response": {"status": status, "location": f"{rtype}/{rid}/_history/{version}"}}
