"""Single sign-on for the pages: ``/login/oidc`` sends the browser to the identity provider,
``/login/oidc/callback`` takes it back, checks the sign-in (:mod:`xraygate.gateway.auth.oidc`) and
starts the same browser session as the development token form. Every refusal is the login page
with a sentence saying what went wrong (and the status: 401, 403 or 503), never a traceback.

Also the login page itself (:func:`login_page`: the single sign-on button, and the token form
only when ``XRAYGATE_LOGIN_PASTE_FORM`` allows it), :func:`session_redirect` shared by both ways
in, and the address logout leads to (the provider's ``end_session_endpoint`` when it has one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urljoin

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from xraygate.core.config import Settings
from xraygate.gateway.auth import SESSION_COOKIE, Authenticator, Principal, Role
from xraygate.gateway.auth.keys import session_key
from xraygate.gateway.auth.oidc import OidcClient
from xraygate.gateway.auth.oidc_state import STATE_COOKIE, STATE_PATH, STATE_SECONDS, StateSigner
from xraygate.gateway.deps import SettingsDep, authenticator
from xraygate.gateway.errors import GatewayError, NotFound, Unauthorized
from xraygate.gateway.web.render import HtmlRoute, render

router = APIRouter(tags=["pages"], default_response_class=HTMLResponse, route_class=HtmlRoute)


@dataclass(frozen=True)
class Sso:
    """One per app: the OIDC client (None when no issuer is configured) and the state cookie."""

    client: OidcClient | None
    states: StateSigner

    @classmethod
    def from_settings(cls, settings: Settings) -> Sso:
        return cls(OidcClient.from_settings(settings), StateSigner(session_key(settings)))


def sso(request: Request, settings: SettingsDep) -> Sso:
    found = getattr(request.app.state, "sso", None)
    if not isinstance(found, Sso):
        found = request.app.state.sso = Sso.from_settings(settings)
    return found


SsoDep = Annotated[Sso, Depends(sso)]
AuthDep = Annotated[Authenticator, Depends(authenticator)]


def safe_next(value: str) -> str:
    """Only local absolute paths: no open redirects."""
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/worklist"


def login_page(
    request: Request,
    settings: Settings,
    *,
    next: str = "/worklist",
    error: str = "",
    status: int = 200,
) -> Response:
    """The login page: single sign-on when configured, the token form when enabled."""
    return render(
        request,
        "login.html",
        status,
        next=safe_next(next),
        error=error,
        principal=None,
        oidc=bool(settings.oidc_issuer),
        token_form=settings.token_form_enabled,
    )


def session_redirect(
    auth: Authenticator, settings: Settings, principal: Principal, next: str
) -> RedirectResponse:
    """Start a browser session for ``principal`` and go to ``next`` (admins without the
    clinician role land on the admin page)."""
    value, max_age = auth.issue_session(principal)
    target = safe_next(next)
    if target == "/worklist" and not principal.has(Role.CLINICIAN) and principal.has(Role.ADMIN):
        target = "/admin"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=settings.session_cookie_secure,
        path="/",
    )
    return response


def _client(sso: Sso) -> OidcClient:
    if sso.client is None:
        raise NotFound("single sign-on is not configured (XRAYGATE_OIDC_ISSUER)")
    return sso.client


def _redirect_uri(request: Request, client: OidcClient) -> str:
    return client.redirect_url or str(request.url_for("oidc_callback"))


@router.get("/login/oidc")
def oidc_start(
    request: Request,
    settings: SettingsDep,
    sso: SsoDep,
    next: Annotated[str, Query(max_length=2000)] = "/worklist",
) -> Response:
    """Leave for the identity provider's sign-in page."""
    try:
        client = _client(sso)
        url, login = client.begin(_redirect_uri(request, client), safe_next(next))
    except GatewayError as exc:
        return login_page(request, settings, next=next, error=exc.detail, status=exc.status)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        STATE_COOKIE,
        sso.states.seal(login),
        max_age=STATE_SECONDS,
        httponly=True,
        samesite="lax",  # the provider's redirect back is a cross-site navigation
        secure=settings.session_cookie_secure,
        path=STATE_PATH,
    )
    return response


@router.get("/login/oidc/callback", name="oidc_callback")
def oidc_callback(
    request: Request,
    settings: SettingsDep,
    sso: SsoDep,
    auth: AuthDep,
    state: Annotated[str, Query(max_length=512)] = "",
    code: Annotated[str, Query(max_length=4096)] = "",
    error: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    """Back from the identity provider: check the state, exchange the code, start a session."""
    next_url = "/worklist"
    try:
        client = _client(sso)
        login = sso.states.open(request.cookies.get(STATE_COOKIE), state)
        next_url = login.next
        if error:
            reason = "".join(c for c in error if c.isalnum() or c == "_")
            raise Unauthorized(f"The identity provider did not sign you in ({reason}).")
        if not code:
            raise Unauthorized("The identity provider sent no authorization code.")
        principal = client.finish(code, _redirect_uri(request, client), login)
    except GatewayError as exc:
        response = login_page(request, settings, next=next_url, error=exc.detail, status=exc.status)
    else:
        response = session_redirect(auth, settings, principal, next_url)
    response.delete_cookie(STATE_COOKIE, path=STATE_PATH)
    return response


def after_logout(request: Request, sso: Sso) -> str:
    """Where logout sends the browser: the provider's end-session endpoint (RP-initiated logout,
    coming back to our login page) when single sign-on is on and it has one, else our login."""
    if sso.client is None:
        return "/login"
    base = sso.client.redirect_url or str(request.base_url)
    return sso.client.logout_url(urljoin(base, "/login")) or "/login"
