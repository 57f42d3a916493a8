"""A real OpenID provider for the tests: the npm package ``oidc-provider`` (pinned by
``package-lock.json``) run by ``provider.mjs`` on a loopback port.

:func:`install` runs ``npm ci`` once into ``.pytest_cache/oidc-provider/<lock digest>/`` and
reuses it (like the FHIR R4 schema of ``tests/fhir/r4schema.py``); :func:`run_provider` starts
one provider with the given clients and accounts, signing with a key the test holds (so a test can
also mint ID tokens the provider's JWKS vouches for), and stops it afterwards.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.jwk import RSAKey

from tests.gateway.conftest import gateway_settings
from xraygate.core.config import Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
KID = "xraygate-test-1"
CLIENT_ID = "xraygate"
CLIENT_SECRET = "oidc-test-client-secret-5f2b9c1e7d"
#: The provider's accounts and their ``groups`` claim (any password signs in).
ACCOUNTS = {
    "dr.grey": ["radiology", "staff"],
    "ada.admin": ["it-xraygate-admins"],
    "visitor": ["canteen"],
}
ROLE_MAP = ["radiology=clinician", "it-xraygate-admins=admin"]


def install() -> Path:
    """The directory holding ``node_modules/oidc-provider`` and ``provider.mjs``."""
    lock = (HERE / "package-lock.json").read_bytes()
    target = ROOT / ".pytest_cache" / "oidc-provider" / hashlib.sha256(lock).hexdigest()[:16]
    if not (target / "node_modules" / "oidc-provider" / "package.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent))
        try:
            for name in ("package.json", "package-lock.json"):
                shutil.copy(HERE / name, tmp / name)
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--silent"],
                cwd=tmp,
                check=True,
                capture_output=True,
                timeout=300,
            )
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    shutil.copy(HERE / "provider.mjs", target / "provider.mjs")
    return target


def client_metadata(gateway: str) -> dict[str, Any]:
    """Our gateway at ``gateway`` registered as a confidential client of the provider."""
    return {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [f"{gateway}/login/oidc/callback"],
        "post_logout_redirect_uris": [f"{gateway}/login"],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
    }


def sso_settings(tmp: Path, issuer: str, **extra: object) -> Settings:
    """Gateway settings (``tests/gateway/conftest.py``) signing in through ``issuer``."""
    options: dict[str, object] = {
        "oidc_issuer": issuer,
        "oidc_client_id": CLIENT_ID,
        "oidc_client_secret": CLIENT_SECRET,
        "oidc_scopes": "openid profile groups",
        "oidc_roles_claim": "groups",
        "oidc_role_map": ROLE_MAP,
    }
    return gateway_settings(tmp, **(options | extra))


@dataclass
class Provider:
    issuer: str
    key: RSAKey  # the provider's signing key (private), published in its JWKS
    log: Path


def signing_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": KID, "use": "sig", "alg": "RS256"})


@contextmanager
def run_provider(
    home: Path,
    workdir: Path,
    clients: list[dict[str, Any]],
    accounts: dict[str, list[str]],
    key: RSAKey | None = None,
    claims_in_id_token: bool = False,
) -> Iterator[Provider]:
    """Start ``provider.mjs`` from ``home`` (see :func:`install`); its files go to ``workdir``.
    ``claims_in_id_token``: the roles claim in the ID token and no userinfo endpoint."""
    key = key or signing_key()
    config = {
        "clients": clients,
        "jwks": {"keys": [key.as_dict(private=True)]},
        "accounts": accounts,
        "cookieKey": hashlib.sha256(str(workdir).encode()).hexdigest(),
        "claimsInIdToken": claims_in_id_token,
    }
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "provider.json").write_text(json.dumps(config))
    out, log = workdir / "provider.out", workdir / "provider.log"
    with out.open("wb") as stdout, log.open("wb") as stderr:
        proc = subprocess.Popen(
            ["node", str(home / "provider.mjs"), str(workdir / "provider.json")],
            stdout=stdout,
            stderr=stderr,
            cwd=home,
        )
    try:
        deadline = time.monotonic() + 60
        while not out.read_text().endswith("\n"):
            assert proc.poll() is None, f"oidc-provider exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "oidc-provider did not start"
            time.sleep(0.05)
        issuer = json.loads(out.read_text().splitlines()[0])["issuer"]
        yield Provider(issuer, key, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
