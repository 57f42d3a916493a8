"""Issue 11, secrets: a deployment that kept a placeholder secret from the repository, or a short
HS256 / session key, refuses to start (a message naming the setting), so a token forged with the
repository's own strings never meets a running gateway. Compose and Kubernetes take secrets from
generated files / Secret objects; the repository ships no secret value."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml

from tests.gateway.conftest import SECRET
from xraygate.core.config import SECRETS_DIR_ENV, Settings
from xraygate.core.errors import ConfigurationError
from xraygate.core.secret_policy import MIN_KEY_BYTES, check_secrets
from xraygate.gateway.app import create_app
from xraygate.gateway.auth import mint_token

ROOT = Path(__file__).resolve().parents[2]

#: Every placeholder compose.yaml and deploy/k8s/config.yaml shipped before issue 11.
SHIPPED_PLACEHOLDERS = [
    "change-me-dev-shared-secret-0123456789",
    "change-me-dev-session-secret-0123456789",
    "change-me-dev-deid-secret-0123456789",
    "change-me-at-least-32-random-characters",
    "change-me",
]


def _deploy_text() -> str:
    files = [ROOT / "compose.yaml", *sorted((ROOT / "deploy").rglob("*.yaml"))]
    return "\n".join(p.read_text() for p in files)


def placeholders() -> list[str]:
    """The shipped placeholders, plus any ``change-me...`` string in today's deploy files."""
    found = re.findall(r"change-me[\w-]*", _deploy_text())
    return sorted(set(SHIPPED_PLACEHOLDERS) | set(found))


def gateway_settings(tmp: Path, **values: str) -> Settings:
    values = {"auth_shared_secret": SECRET, **values}
    return Settings(data_dir=tmp, database_url=f"sqlite:///{tmp / 'x.db'}", **values)  # type: ignore[arg-type]


def forged_admin_token(key: str) -> str:
    now = int(time.time())
    claims = {"iss": "xraygate", "aud": "xraygate", "sub": "mallory", "roles": ["admin"]}
    return jwt.encode({**claims, "iat": now, "exp": now + 600}, key, algorithm="HS256")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(
    ("variable", "placeholder"),
    [
        ("XRAYGATE_AUTH_SHARED_SECRET", SHIPPED_PLACEHOLDERS[0]),
        ("XRAYGATE_SESSION_SECRET", SHIPPED_PLACEHOLDERS[1]),
        ("XRAYGATE_AUTH_SHARED_SECRET", SHIPPED_PLACEHOLDERS[3]),
    ],
)
def test_gateway_process_refuses_to_start_with_a_shipped_placeholder(
    variable: str, placeholder: str, tmp_path: Path
) -> None:
    """``xraygate gateway`` with a placeholder the repository shipped for ``variable`` exits
    with a message naming it and never listens: the forged admin token has no gateway to use."""
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("XRAYGATE_")},
        "XRAYGATE_DATA_DIR": str(tmp_path),
        "XRAYGATE_HTTP_HOST": "127.0.0.1",
        "XRAYGATE_HTTP_PORT": str(port),
        variable: placeholder,
    }
    cli = [sys.executable, "-m", "xraygate", "gateway"]
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert variable in done.stderr and "placeholder" in done.stderr
    assert placeholder not in done.stderr  # the value itself is not echoed
    assert not _listening(port)
    print(f"{variable}: refused at start-up: {done.stderr.strip().splitlines()[-1]}")


@pytest.mark.parametrize("placeholder", placeholders())
@pytest.mark.parametrize("field", ["auth_shared_secret", "session_secret", "deid_secret"])
def test_every_placeholder_is_refused_for_every_key(
    placeholder: str, field: str, tmp_path: Path
) -> None:
    settings = gateway_settings(tmp_path, **{field: placeholder})
    with pytest.raises(ConfigurationError, match=f"XRAYGATE_{field.upper()}"):
        create_app(settings)
    with pytest.raises(ConfigurationError, match=f"XRAYGATE_{field.upper()}"):
        mint_token(settings, ["admin"], "mallory", 60)


@pytest.mark.parametrize("field", ["auth_shared_secret", "session_secret"])
@pytest.mark.parametrize("length", [1, 16, MIN_KEY_BYTES - 1])
def test_short_hs256_and_session_keys_are_refused(field: str, length: int, tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, **{field: "k" * length})
    with pytest.raises(ConfigurationError, match=f"XRAYGATE_{field.upper()} is shorter than 32"):
        create_app(settings)


def test_a_key_of_32_bytes_serves_and_placeholder_tokens_get_401(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    settings = gateway_settings(
        tmp_path, auth_shared_secret="k" * MIN_KEY_BYTES, session_secret="s" * 40
    )
    with TestClient(create_app(settings)) as client:
        for placeholder in placeholders():
            forged = forged_admin_token(placeholder)
            bearer = {"Authorization": f"Bearer {forged}"}
            answer = client.get("/api/admin/settings", headers=bearer)
            assert answer.status_code == 401
        good = mint_token(settings, ["admin"], "root", 60)
        answer = client.get("/api/admin/settings", headers={"Authorization": f"Bearer {good}"})
        assert answer.status_code == 200


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("database_url", "postgresql://xraygate:change-me@postgres.database.svc:5432/xraygate"),
        ("fhir_push_url", "https://bot:CHANGEME@ehr.example.org/fhir"),
    ],
)
def test_placeholder_passwords_inside_urls_are_refused(field: str, url: str) -> None:
    with pytest.raises(ConfigurationError, match=f"XRAYGATE_{field.upper()}"):
        check_secrets(Settings(**{field: url}))  # type: ignore[arg-type]


def test_the_repository_ships_no_secret_values() -> None:
    text = _deploy_text()
    assert not re.search(r"change-?me", text, re.I)
    compose: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    secret_fields = {
        f"XRAYGATE_{name.upper()}"
        for name, info in Settings.model_fields.items()
        if "SecretStr" in str(info.annotation)
    } | {"XRAYGATE_DATABASE_URL"}
    assert not secret_fields & set(compose["x-xraygate-env"])
    for service in compose["services"].values():
        env = service.get("environment", {})
        assert not {k for k in env if k.endswith("PASSWORD")}, env
    for path in (ROOT / "deploy" / "k8s").glob("*.yaml"):
        assert all(d.get("kind") != "Secret" for d in yaml.safe_load_all(path.read_text()) if d)


def test_compose_secrets_are_generated_files_the_settings_read(tmp_path: Path) -> None:
    """deploy/make-secrets.sh makes every file compose.yaml mounts (random, in a 0700 folder),
    keeps them on a second run, and the settings read them through XRAYGATE_SECRETS_DIR."""
    secrets_dir = tmp_path / "secrets"
    script = ROOT / "deploy" / "make-secrets.sh"
    subprocess.run(["sh", str(script), str(secrets_dir)], check=True, capture_output=True)
    compose: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for name, spec in compose["secrets"].items():
        assert spec["file"] == f"./deploy/secrets/{name}"
        assert (secrets_dir / name).stat().st_size >= MIN_KEY_BYTES
    assert secrets_dir.stat().st_mode & 0o077 == 0
    first = {p.name: p.read_text() for p in secrets_dir.iterdir()}
    subprocess.run(["sh", str(script), str(secrets_dir)], check=True, capture_output=True)
    assert first == {p.name: p.read_text() for p in secrets_dir.iterdir()}
    assert first["xraygate_auth_shared_secret"] != first["xraygate_session_secret"]

    mounted = tmp_path / "run-secrets"  # what a service sees at /run/secrets
    mounted.mkdir()
    for entry in compose["services"]["gateway"]["secrets"]:
        source = entry if isinstance(entry, str) else entry["source"]
        target = entry if isinstance(entry, str) else entry["target"]
        (mounted / target).write_text(first[source])
    os.environ[SECRETS_DIR_ENV] = str(mounted)
    try:
        settings = Settings()
    finally:
        del os.environ[SECRETS_DIR_ENV]
    check_secrets(settings)
    assert settings.auth_shared_secret is not None
    assert settings.auth_shared_secret.get_secret_value() == first["xraygate_auth_shared_secret"]
    assert settings.database_url == first["xraygate_database_url"]
    assert settings.s3_secret_access_key is not None
    assert settings.s3_secret_access_key.get_secret_value() == first["minio_root_password"]
