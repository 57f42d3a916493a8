"""The single sign-on settings (OpenID Connect login for the pages), a base of
:class:`~xraygate.core.config.Settings`: each field is ``XRAYGATE_<FIELD NAME>`` like the others.

They are checked together when the gateway starts (``gateway/auth/oidc.py``): an issuer without a
client id, a role map naming an unknown role, or a plain-HTTP issuer off loopback refuse to start.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode


class OidcSettings(BaseSettings):
    """Signing clinicians and admins in through the hospital's identity provider."""

    oidc_issuer: str | None = Field(
        None,
        description="OpenID Connect issuer URL of the identity provider (Keycloak realm, Entra "
        "ID tenant v2.0, ADFS); enables 'Sign in with single sign-on' on the login page. "
        "Endpoints come from <issuer>/.well-known/openid-configuration.",
    )
    oidc_client_id: str | None = Field(
        None, description="Our client id at the identity provider (the ID token audience)."
    )
    oidc_client_secret: SecretStr | None = Field(
        None,
        description="Our client secret (confidential client, sent with HTTP Basic or in the "
        "body as the provider advertises); unset: a public client using PKCE alone.",
    )
    oidc_scopes: str = Field(
        "openid profile email",
        description="Space-separated scopes requested (add the one that releases the roles "
        "claim if your provider needs it, e.g. 'groups' or 'roles').",
    )
    oidc_roles_claim: str = Field(
        "roles",
        description="Claim holding the user's roles or groups, from the ID token or else the "
        "userinfo endpoint; dots walk nested objects (Keycloak: 'realm_access.roles').",
    )
    oidc_role_map: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated `idp-value=role` pairs mapping values of the roles claim "
        "to `admin` or `clinician` (e.g. 'radiologists=clinician,xraygate-admins=admin'); "
        "required with an issuer. Users with no mapped value are refused.",
    )
    oidc_subject_claim: str = Field(
        "preferred_username",
        description="Claim naming the user in sessions, audit and feedback (falls back to `sub`).",
    )
    oidc_redirect_url: str | None = Field(
        None,
        description="Our callback URL registered at the provider "
        "(https://<host>/login/oidc/callback); default: built from the request.",
    )
    login_paste_form: bool | None = Field(
        None,
        description="Show the development login form (paste a JWT or API key): unset = only "
        "when no OIDC issuer is configured; true = always; false = never.",
    )

    @field_validator("oidc_role_map", mode="before")
    @classmethod
    def _role_map_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def token_form_enabled(self) -> bool:
        """Whether the paste-a-token login form is offered (and its POST accepted)."""
        if self.login_paste_form is None:
            return not self.oidc_issuer
        return self.login_paste_form
