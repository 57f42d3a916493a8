"""Server-rendered pages (Jinja2 templates shipped in the package; no front-end build).

``/login`` takes a pasted token or API key and sets an HttpOnly session cookie; ``/worklist``
and ``/studies/{uid}`` are for clinicians, ``/admin`` for admins. Without a session a page
redirects to the login page; with the wrong role it answers 403.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.templating import Jinja2Templates

from xraygate.core.logging import correlation_id, set_correlation
from xraygate.core.queue import JobQueue
from xraygate.gateway.admin_api import list_dead_letters, list_models
from xraygate.gateway.auth import (
    SESSION_COOKIE,
    Authenticator,
    AuthError,
    Principal,
    api_key_scheme,
    bearer_scheme,
    current_principal,
)
from xraygate.gateway.deid_review import list_held
from xraygate.gateway.deps import ReadDb, SettingsDep
from xraygate.gateway.studies import Status, study_view, worklist

templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
templates.env.filters["dicom_date"] = lambda v: f"{v[:4]}-{v[4:6]}-{v[6:8]}" if len(v) == 8 else v
router = APIRouter(tags=["pages"], default_response_class=HTMLResponse)


class LoginRequired(Exception):
    """No valid session on a page: redirect to the login page."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def page_principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> Principal:
    try:
        return current_principal(request, bearer, api_key)
    except HTTPException as exc:
        if exc.status_code == 401:
            raise LoginRequired(request.url.path) from exc
        raise


def page_role(role: str) -> object:
    def check(principal: Annotated[Principal, Depends(page_principal)]) -> Principal:
        if not principal.has(role):
            raise HTTPException(403, f"this page requires the {role} role")
        return principal

    return Depends(check)


def render(request: Request, name: str, status_code: int = 200, **context: object) -> Response:
    principal = context.get("principal") or getattr(request.state, "principal", None)
    csrf = principal.csrf if isinstance(principal, Principal) else ""
    context.update(principal=principal, csrf=csrf)
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _safe_next(value: str) -> str:
    """Only local absolute paths: no open redirects."""
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/worklist"


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/worklist", status_code=303)


@router.get("/login")
def login_form(request: Request, next: str = "/worklist") -> Response:
    """The login page."""
    return render(request, "login.html", next=_safe_next(next), error="", principal=None)


@router.post("/login")
def login(
    request: Request,
    settings: SettingsDep,
    credential: Annotated[str, Form(max_length=16384)],
    next: Annotated[str, Form(max_length=2000)] = "/worklist",
) -> Response:
    """Check the pasted token or API key and start a browser session."""
    auth: Authenticator = request.app.state.authenticator
    try:
        principal = auth.verify_credential(credential)
    except AuthError:
        return render(
            request,
            "login.html",
            401,
            next=_safe_next(next),
            principal=None,
            error="That token or API key was not accepted.",
        )
    value, max_age = auth.issue_session(principal)
    target = _safe_next(next)
    if target == "/worklist" and not principal.has("clinician") and principal.has("admin"):
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


@router.post("/logout")
def logout() -> Response:
    """End the browser session."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/worklist")
def worklist_page(
    request: Request,
    session: ReadDb,
    principal: Annotated[Principal, page_role("clinician")],
    status: Status | None = None,
) -> Response:
    """The triage worklist, highest risk first."""
    rows = worklist(session, status=status)
    return render(
        request,
        "worklist.html",
        rows=rows,
        statuses=[s.value for s in Status],
        status=status.value if status else "",
        principal=principal,
    )


@router.get("/studies/{study_uid}")
def study_page(
    request: Request,
    study_uid: str,
    session: ReadDb,
    principal: Annotated[Principal, page_role("clinician")],
) -> Response:
    """A study: image, score, category, model version, delivery status, feedback form."""
    set_correlation(correlation_id(study_uid))
    view = study_view(session, study_uid)
    if view is None:
        raise HTTPException(404, "unknown study")
    return render(request, "study.html", view=view, principal=principal)


@router.get("/admin")
def admin_page(
    request: Request,
    session: ReadDb,
    settings: SettingsDep,
    principal: Annotated[Principal, page_role("admin")],
) -> Response:
    """Model versions (activate, roll back), dead letters (retry), images held for text."""
    counts = JobQueue.from_settings(settings).counts()
    return render(
        request,
        "admin.html",
        models=list_models(session),
        dead=list_dead_letters(session),
        held=list_held(session),
        counts=counts,
        principal=principal,
    )


def login_redirect(next_url: str) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(next_url)}", status_code=303)
