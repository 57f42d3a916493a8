"""The single sign-on checks without a browser, against the real provider of ``tests/gateway/oidc``:
ID tokens that the provider's own key signs but that are not for us (audience, issuer, nonce,
expiry) are refused, as are tokens signed by another key, unsigned or MAC-signed ones; the
provider being down or misconfigured is a clear page, not a traceback; the development token form
is off when single sign-on is on; inconsistent settings refuse to start."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from tests.gateway.conftest import free_port, gateway_settings, token
from tests.gateway.oidc import (
    CLIENT_ID,
    CLIENT_SECRET,
    KID,
    Provider,
    client_metadata,
    run_provider,
    signing_key,
    sso_settings,
)
from xraygate.core import db
from xraygate.core.errors import ConfigurationError
from xraygate.gateway.app import create_app
from xraygate.gateway.auth import Role
from xraygate.gateway.auth.oidc import OidcClient, claim_values, parse_role_map
from xraygate.gateway.errors import Unauthorized

pytestmark = [pytest.mark.integration]
NONCE = "n-0S6_WzA2Mj"


@pytest.fixture(scope="module")
def idp(provider_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    gateway = f"http://127.0.0.1:{free_port()}"
    workdir = tmp_path_factory.mktemp("idp")
    with run_provider(provider_home, workdir, [client_metadata(gateway)], {}) as provider:
        yield provider


@pytest.fixture
def rp(idp: Provider, tmp_path: Path) -> Iterator[OidcClient]:
    client = OidcClient.from_settings(sso_settings(tmp_path, idp.issuer))
    assert client is not None
    yield client
    db.get_engine.cache_clear()


def claims_for(idp: Provider, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": idp.issuer,
        "sub": "dr.grey",
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def signed(key: Any, claims: dict[str, Any], alg: str = "RS256", kid: str = KID) -> str:
    return jwt.encode({"alg": alg, "kid": kid}, claims, key)


def test_an_id_token_signed_by_the_provider_for_us_is_accepted(
    rp: OidcClient, idp: Provider
) -> None:
    claims = rp.validate_id_token(signed(idp.key, claims_for(idp)), NONCE, "access")
    assert claims["sub"] == "dr.grey"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"aud": "another-app"}, "aud"),
        ({"aud": ["another-app", CLIENT_ID], "azp": "another-app"}, "azp"),
        ({"iss": "http://127.0.0.1:1"}, "iss"),
        ({"nonce": "replayed-nonce"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "exp"),
        ({"sub": None}, "sub"),
    ],
)
def test_id_tokens_not_for_this_sign_in_are_refused(
    rp: OidcClient, idp: Provider, changes: dict[str, Any], reason: str
) -> None:
    with pytest.raises(Unauthorized, match=reason):
        rp.validate_id_token(signed(idp.key, claims_for(idp, **changes)), NONCE, "access")


def test_id_tokens_not_signed_by_the_provider_are_refused(rp: OidcClient, idp: Provider) -> None:
    claims = claims_for(idp)
    forged_rsa = signed(signing_key(), claims)  # same kid, another key
    secret = OctKey.import_key(CLIENT_SECRET.encode())
    mac = signed(secret, claims, alg="HS256")  # keyed by the client secret
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    unsigned = f"{header.decode()}.{body.decode()}."
    for forged in (forged_rsa, mac, unsigned, "not.a.token"):
        with pytest.raises(Unauthorized, match="could not be verified"):
            rp.validate_id_token(forged, NONCE, "access")


def test_rotated_provider_keys_are_fetched_again(rp: OidcClient, idp: Provider) -> None:
    rp.validate_id_token(signed(idp.key, claims_for(idp)), NONCE, "access")  # keys cached
    other = RSAKey.generate_key(2048, parameters={"kid": "unknown-kid"})
    with pytest.raises(Unauthorized):  # an unknown kid: refetched, still unknown, refused
        rp.validate_id_token(signed(other, claims_for(idp), kid="unknown-kid"), NONCE, "x")


def test_provider_down_or_misconfigured_is_a_clear_page(idp: Provider, tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    alias = idp.issuer.replace("127.0.0.1", "localhost")  # discovery names another issuer
    for issuer, text in ((down, "cannot be reached"), (alias, "does not match ours")):
        app = create_app(sso_settings(tmp_path / issuer.rsplit(":", 1)[1], issuer))
        with TestClient(app, follow_redirects=False) as client:
            response = client.get("/login/oidc")
        assert response.status_code == 503
        assert text in response.text and "Traceback" not in response.text
        assert "text/html" in response.headers["content-type"]
    db.get_engine.cache_clear()


def test_the_token_form_is_for_development_only(idp: Provider, tmp_path: Path) -> None:
    settings = sso_settings(tmp_path / "a", idp.issuer)
    with TestClient(create_app(settings), follow_redirects=False) as client:
        page = client.get("/login?next=/admin")
        assert 'id="sso"' in page.text and "/login/oidc?next=/admin" in page.text
        assert 'id="credential"' not in page.text
        refused = client.post("/login", data={"credential": token(settings, "admin")})
        assert refused.status_code == 403 and "disabled" in refused.text
        assert "set-cookie" not in refused.headers
    settings = sso_settings(tmp_path / "b", idp.issuer, login_paste_form=True)
    with TestClient(create_app(settings), follow_redirects=False) as client:
        assert 'id="credential"' in client.get("/login").text
        accepted = client.post("/login", data={"credential": token(settings, "admin")})
        assert accepted.status_code == 303 and accepted.headers["location"] == "/admin"
    without_sso = gateway_settings(tmp_path / "c")
    with TestClient(create_app(without_sso), follow_redirects=False) as client:
        page = client.get("/login")
        assert 'id="credential"' in page.text and 'id="sso"' not in page.text
        assert client.get("/login/oidc").status_code == 404
    db.get_engine.cache_clear()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"oidc_role_map": []}, "XRAYGATE_OIDC_ROLE_MAP"),
        ({"oidc_role_map": ["radiology=superuser"]}, "XRAYGATE_OIDC_ROLE_MAP"),
        ({"oidc_role_map": ["=admin"]}, "XRAYGATE_OIDC_ROLE_MAP"),
        ({"oidc_client_id": None}, "XRAYGATE_OIDC_CLIENT_ID"),
        ({"oidc_issuer": "http://idp.example.org/realms/h"}, "XRAYGATE_OIDC_ISSUER"),
        ({"oidc_scopes": "profile groups"}, "XRAYGATE_OIDC_SCOPES"),
        ({"oidc_redirect_url": "http://xraygate.example.org/cb"}, "XRAYGATE_OIDC_REDIRECT_URL"),
    ],
)
def test_inconsistent_settings_refuse_to_start(
    tmp_path: Path, extra: dict[str, Any], named: str
) -> None:
    settings = sso_settings(tmp_path, "https://idp.example.org/realms/h", **extra)
    with pytest.raises(ConfigurationError, match=named):
        create_app(settings)
    db.get_engine.cache_clear()


def test_discovery_is_the_providers(idp: Provider) -> None:
    """The provider really is the one the browser tests use (a peer as strict as a real one)."""
    metadata = httpx.get(f"{idp.issuer}/.well-known/openid-configuration").json()
    assert metadata["issuer"] == idp.issuer
    assert "S256" in metadata["code_challenge_methods_supported"]
    assert metadata["end_session_endpoint"].startswith(idp.issuer)


def test_roles_claim_paths_and_the_role_map() -> None:
    keycloak = {"realm_access": {"roles": ["radiology", "offline_access"]}, "sub": "x"}
    assert claim_values(keycloak, "realm_access.roles") == ["radiology", "offline_access"]
    assert claim_values({"roles": "radiology staff"}, "roles") == ["radiology", "staff"]
    assert claim_values({"roles": {"not": "a list"}}, "roles") == []
    assert claim_values({}, "realm_access.roles") == []
    mapping = parse_role_map(["lead-radiologists=clinician", "lead-radiologists=admin"])
    assert mapping == {"lead-radiologists": frozenset({Role.CLINICIAN, Role.ADMIN})}
