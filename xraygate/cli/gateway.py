"""Gateway commands: ``xraygate token create`` and ``xraygate token api-key``."""

from __future__ import annotations

import secrets
from typing import Annotated

import typer

from xraygate.cli.core import fail, run_service
from xraygate.core.errors import XraygateError

token_app = typer.Typer(help="Development tokens and API keys for the HTTP gateway.")
ROLE_HELP = "Role: admin, clinician or ehr (repeat for several)."


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
    app.command("gateway")(gateway)


def gateway() -> None:
    """Run only the HTTP gateway (split deployments)."""
    run_service(scp=False, workers=False, http=True)


def _roles(role: list[str]) -> list[str]:
    from xraygate.gateway.auth import Role

    bad = set(role) - {r.value for r in Role}
    if bad or not role:
        raise fail(f"roles must be among {', '.join(Role)}")
    return role


@token_app.command("create")
def create(
    role: Annotated[list[str], typer.Option(help=ROLE_HELP)],
    subject: Annotated[str, typer.Option(help="The token's `sub` (who).")] = "dev-user",
    ttl: Annotated[int, typer.Option(min=1, help="Lifetime in seconds.")] = 3600,
    scope: Annotated[str, typer.Option(help="Optional `scope` claim (SMART scopes).")] = "",
) -> None:
    """Print a signed development JWT (HS256, the shared key), and only the token."""
    from xraygate.core.config import get_settings
    from xraygate.gateway.auth import mint_token

    try:
        token = mint_token(get_settings(), _roles(role), subject, ttl, scope)
    except XraygateError as exc:
        raise fail(str(exc)) from exc
    typer.echo(token)


@token_app.command("api-key")
def api_key(
    name: Annotated[str, typer.Option(help="The client's name (shown in the audit trail).")],
    role: Annotated[list[str], typer.Option(help=ROLE_HELP)],
) -> None:
    """Make a random API key: prints the key, then the XRAYGATE_AUTH_API_KEYS entry (stderr)."""
    from xraygate.gateway.auth import hash_api_key

    if not name or any(c in name for c in ":,"):
        raise fail("the name must be non-empty without ':' or ','")
    key = secrets.token_urlsafe(32)
    typer.echo(key)
    typer.echo(f"{name}:{'+'.join(_roles(role))}:{hash_api_key(key)}", err=True)
