"""Bearer JWTs (shared key and JWKS), API keys, sessions with CSRF, and the token CLI."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.gateway.conftest import SECRET, Gateway, gateway_settings
from xraygate.core.config import Settings
from xraygate.gateway.app import create_app
from xraygate.gateway.auth import SESSION_COOKIE, roles_from_claims


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": "xraygate",
        "aud": "xraygate",
        "sub": "u1",
        "roles": ["clinician"],
        "iat": now,
        "exp": now + 300,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def hs(payload: dict[str, Any], key: str = SECRET) -> str:
    return jwt.encode(payload, key, algorithm="HS256")


def status(gw: Gateway, token: str) -> int:
    return gw.client.get("/api/worklist", headers={"Authorization": f"Bearer {token}"}).status_code


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_valid_shared_key_token_is_accepted(gw: Gateway) -> None:
    assert status(gw, hs(claims())) == 200


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("expired", lambda: hs(claims(exp=int(time.time()) - 120))),
        ("wrong audience", lambda: hs(claims(aud="someone-else"))),
        ("wrong issuer", lambda: hs(claims(iss="https://evil.example"))),
        ("not yet valid", lambda: hs(claims(nbf=int(time.time()) + 600))),
        ("no expiry", lambda: hs(claims(exp=None))),
        ("no subject", lambda: hs(claims(sub=None))),
        ("wrong key", lambda: hs(claims(), key="another-secret-another-secret-xx")),
        ("unsigned alg none", lambda: f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims())}."),
        ("alg none via pyjwt", lambda: jwt.encode(claims(), None, algorithm="none")),
        ("garbage", lambda: "a.b.c"),
    ],
)
def test_bad_tokens_are_rejected_401(gw: Gateway, name: str, token: Any) -> None:
    assert status(gw, token()) == 401, name


def test_token_without_roles_is_authenticated_but_forbidden(gw: Gateway) -> None:
    assert status(gw, hs(claims(roles=[]))) == 403


def test_roles_from_claims_and_smart_scopes() -> None:
    assert roles_from_claims({"roles": "admin clinician"})[0] == {"admin", "clinician"}
    roles, access = roles_from_claims({"scope": "openid system/DiagnosticReport.read"})
    assert roles == {"ehr"} and access.types == {"DiagnosticReport"}
    roles, access = roles_from_claims({"scp": ["system/*.read"]})
    assert roles == {"ehr"} and access.types == {"*"} and access.restricted
    # user/ scopes narrow the user's own role; they grant none (issue 11)
    assert roles_from_claims({"scope": "user/*.read"})[0] == frozenset()
    roles, access = roles_from_claims({"roles": ["ehr"], "scope": "user/Observation.rs"})
    assert roles == {"ehr"} and access.types == {"Observation"}
    assert roles_from_claims({"roles": ["ehr"]})[1].restricted is False
    assert roles_from_claims({"scope": "system/Observation.rs xraygate/admin"})[0] == {
        "ehr",
        "admin",
    }
    assert roles_from_claims({"scope": "system/DiagnosticReport.write"})[0] == frozenset()
    assert roles_from_claims({"roles": ["superuser"]})[0] == frozenset()


def test_api_keys(gw: Gateway) -> None:
    assert gw.client.get("/fhir/metadata", headers=gw.headers("key:pacs-bridge")).status_code == 200
    assert gw.client.get("/fhir/Device", headers={"X-API-Key": "guess"}).status_code == 401
    me = gw.client.get("/api/me", headers=gw.headers("key:ops-robot")).json()
    assert me == {
        "subject": "ops-robot",
        "roles": ["admin"],
        "method": "api-key",
        "fhir_types": ["*"],
    }


# --- JWKS ---------------------------------------------------------------------------------------


def _jwk(private: Any, kid: str, alg: str) -> dict[str, Any]:
    algo = jwt.algorithms.RSAAlgorithm if alg.startswith("RS") else jwt.algorithms.ECAlgorithm
    data: dict[str, Any] = json.loads(algo.to_jwk(private.public_key()))
    data.update(kid=kid, alg=alg, use="sig")
    return data


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
        "other": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


def _jwks(keys: dict[str, Any]) -> dict[str, Any]:
    return {"keys": [_jwk(keys["rsa"], "k1", "RS256"), _jwk(keys["ec"], "k2", "ES256")]}


def _client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings))


def _get(client: TestClient, token: str) -> int:
    return client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code


def test_jwks_file(tmp_path: Path, keys: dict[str, Any]) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(_jwks(keys)))
    client = _client(gateway_settings(tmp_path, auth_jwks_file=path, auth_issuer="https://idp"))
    good = claims(iss="https://idp")
    assert _get(client, jwt.encode(good, keys["rsa"], "RS256", headers={"kid": "k1"})) == 200
    assert _get(client, jwt.encode(good, keys["ec"], "ES256", headers={"kid": "k2"})) == 200
    assert _get(client, jwt.encode(good, keys["other"], "RS256", headers={"kid": "k1"})) == 401
    assert _get(client, jwt.encode(good, keys["rsa"], "RS256", headers={"kid": "nope"})) == 401
    expired = claims(iss="https://idp", exp=int(time.time()) - 100)
    assert _get(client, jwt.encode(expired, keys["rsa"], "RS256", headers={"kid": "k1"})) == 401


class _JwksHandler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def jwks_url(keys: dict[str, Any]) -> Iterator[str]:
    handler = type("H", (_JwksHandler,), {"body": json.dumps(_jwks(keys)).encode()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()


def test_jwks_url_and_no_hs256_fallback(
    tmp_path: Path, keys: dict[str, Any], jwks_url: str
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'x.db'}",
        auth_jwks_url=jwks_url,
        min_free_bytes=0,
    )
    client = _client(settings)
    assert _get(client, jwt.encode(claims(), keys["rsa"], "RS256", headers={"kid": "k1"})) == 200
    # with only a JWKS trusted, no HS256 key exists: a token signed with the public key as an
    # HMAC secret (algorithm confusion) or with any shared secret is refused
    public_pem = (
        keys["rsa"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    forged = _hmac_token(claims(), public_pem)
    assert _get(client, forged) == 401
    assert not (tmp_path / "auth-secret").exists()


def _hmac_token(payload: dict[str, Any], key: bytes) -> str:
    import hashlib
    import hmac

    signing = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(payload)}"
    sig = hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


# --- browser sessions ---------------------------------------------------------------------------


def test_login_sets_session_and_posts_need_csrf(gw: Gateway) -> None:
    refused = gw.client.post("/login", data={"credential": "nope"})
    assert refused.status_code == 401 and "not accepted" in refused.text
    response = gw.client.post(
        "/login", data={"credential": gw.tokens["clinician"], "next": "//evil.example/x"}
    )
    assert response.status_code == 303 and response.headers["location"] == "/worklist"
    cookie = response.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    page = gw.client.get("/worklist")
    assert page.status_code == 200 and "HIGH HUGO" in page.text
    csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
    url = f"/api/studies/{gw.high.study_uid}/feedback"
    assert gw.client.post(url, json={"finding": "confirm"}).status_code == 403
    ok = gw.client.post(url, json={"finding": "confirm"}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201 and ok.json()["agreement"] == "agree"
    assert gw.client.post("/logout").status_code == 303
    gw.client.cookies.clear()
    assert gw.client.get("/worklist").status_code == 303


def test_tampered_session_cookie_is_refused(gw: Gateway) -> None:
    gw.client.post("/login", data={"credential": gw.tokens["admin"]})
    value = gw.client.cookies[SESSION_COOKIE]
    head, body, sig = value.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    payload["roles"] = ["admin", "clinician"]
    gw.client.cookies.set(SESSION_COOKIE, f"{head}.{_b64(payload)}.{sig}")
    assert gw.client.get("/api/worklist").status_code == 401


def test_token_cli_prints_only_a_valid_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xraygate.cli import app
    from xraygate.core.config import get_settings

    monkeypatch.setenv("XRAYGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("XRAYGATE_AUTH_SHARED_SECRET", SECRET)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app, ["token", "create", "--role", "ehr", "--subject", "epic", "--ttl", "60"]
        )
        assert result.exit_code == 0, result.output
        token = result.stdout.strip()
        assert "\n" not in token
        data = jwt.decode(token, SECRET, algorithms=["HS256"], audience="xraygate")
        assert (
            data["sub"] == "epic" and data["roles"] == ["ehr"] and data["exp"] - data["iat"] == 60
        )
        bad = CliRunner().invoke(app, ["token", "create", "--role", "root"])
        assert bad.exit_code == 2
    finally:
        get_settings.cache_clear()
