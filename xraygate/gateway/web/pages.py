"""The pages: ``/login`` offers single sign-on (``web/sso.py``) and, for development, takes a
pasted token or API key; either sets an HttpOnly session cookie. ``/worklist`` and
``/studies/{uid}`` are for clinicians, ``/admin`` for admins. They use the gateway's auth
dependencies: without a session a page redirects to the login page, with the wrong role it
answers 403 (``HtmlRoute``).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from xraygate.core import delivery_state
from xraygate.core.logging import correlation_id, set_correlation
from xraygate.core.models import utcnow
from xraygate.core.quality.report import PERIODS, Period, build_report, parse_since
from xraygate.gateway.auth import SESSION_COOKIE, Authenticator, Principal, Role
from xraygate.gateway.deps import (
    AUDITED,
    EngineDep,
    QueueDep,
    ReadDb,
    SettingsDep,
    authenticator,
    require,
)
from xraygate.gateway.errors import BadRequest, NotFound, Unauthorized
from xraygate.gateway.views.admin import list_dead_letters, list_models
from xraygate.gateway.views.deid_review import list_held
from xraygate.gateway.views.quality import version_charts
from xraygate.gateway.views.studies import StudyStatus, WorklistQuery, study_view
from xraygate.gateway.views.studies import worklist_page as load_worklist_page
from xraygate.gateway.web.render import HtmlRoute, render
from xraygate.gateway.web.sso import SsoDep, after_logout, login_page, session_redirect

router = APIRouter(tags=["pages"], default_response_class=HTMLResponse, route_class=HtmlRoute)
Clinician = Annotated[Principal, Depends(require(Role.CLINICIAN))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/worklist", status_code=303)


@router.get("/login")
def login_form(request: Request, settings: SettingsDep, next: str = "/worklist") -> Response:
    """The login page: single sign-on, and the development token form when enabled."""
    return login_page(request, settings, next=next)


@router.post("/login")
def login(
    request: Request,
    settings: SettingsDep,
    auth: Annotated[Authenticator, Depends(authenticator)],
    credential: Annotated[str, Form(max_length=16384)],
    next: Annotated[str, Form(max_length=2000)] = "/worklist",
) -> Response:
    """Check the pasted token or API key and start a browser session (development form)."""
    if not settings.token_form_enabled:
        error = "The token form is disabled here: sign in with single sign-on."
        return login_page(request, settings, next=next, error=error, status=403)
    try:
        principal = auth.verify_credential(credential)
    except Unauthorized:
        error = "That token or API key was not accepted."
        return login_page(request, settings, next=next, error=error, status=401)
    return session_redirect(auth, settings, principal, next)


@router.post("/logout")
def logout(
    request: Request, auth: Annotated[Authenticator, Depends(authenticator)], sso: SsoDep
) -> Response:
    """End the browser session: revoked server-side (a copy of the cookie stops working too),
    and the identity provider's session too when it offers RP-initiated logout."""
    if cookie := request.cookies.get(SESSION_COOKIE):
        auth.end_session(cookie)
    response = RedirectResponse(after_logout(request, sso), status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _dicom_date(value: str) -> str:
    """``2024-05-14`` (an HTML date input) -> ``20240514``; anything else -> ""."""
    digits = value.replace("-", "")
    return digits if len(digits) == 8 and digits.isdigit() else ""


@router.get("/worklist", dependencies=[AUDITED])
def worklist_page(
    request: Request,
    session: ReadDb,
    settings: SettingsDep,
    principal: Clinician,
    status: Annotated[str, Query(max_length=20)] = "",
    q: Annotated[str, Query(max_length=200)] = "",
    date_from: Annotated[str, Query(max_length=10)] = "",
    date_to: Annotated[str, Query(max_length=10)] = "",
    page: Annotated[int, Query(ge=1, le=100000)] = 1,
) -> Response:
    """The triage worklist, highest risk first: search, date and status filters, pages."""
    wanted = StudyStatus(status) if status in set(StudyStatus) else None  # "" or unknown: all
    query = WorklistQuery(q, _dicom_date(date_from), _dicom_date(date_to), wanted, page)
    found = load_worklist_page(session, settings, query)
    params = {"q": q, "date_from": date_from, "date_to": date_to, "status": wanted or ""}
    return render(
        request,
        "worklist.html",
        rows=found.rows,
        found=found,
        params=params,
        base_query="".join(f"{urlencode({k: v})}&" for k, v in params.items() if v),
        statuses=[s.value for s in StudyStatus],
        status=wanted.value if wanted else "",
        labels={c.name: c.label for c in delivery_state.CHANNELS},
        since=utcnow().isoformat(),
        principal=principal,
    )


@router.get("/studies/{study_uid}", dependencies=[AUDITED])
def study_page(
    request: Request, study_uid: str, session: ReadDb, settings: SettingsDep, principal: Clinician
) -> Response:
    """A study: the viewer (window/level, zoom, full resolution, saliency overlay), score,
    category, model version, delivery status, feedback form."""
    set_correlation(correlation_id(study_uid))
    view = study_view(session, settings, study_uid)
    if view is None:
        raise NotFound("unknown study")
    labels = {name: delivery_state.label(name) for name in view.row.delivery}
    sizes = {"size": settings.image_max_pixels, "full": settings.image_full_max_pixels}
    return render(request, "study.html", view=view, labels=labels, sizes=sizes, principal=principal)


@router.get("/admin")
def admin_page(request: Request, session: ReadDb, queue: QueueDep, principal: Admin) -> Response:
    """Model versions (activate, roll back), dead letters (retry), images held for text."""
    return render(
        request,
        "admin.html",
        models=list_models(session),
        dead=list_dead_letters(session),
        held=list_held(session),
        counts=queue.counts(),
        principal=principal,
    )


@router.get("/admin/quality")
def quality_page(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    principal: Admin,
    period: Period = "week",
    since: Annotated[str, Query(max_length=40)] = "90d",
) -> Response:
    """Each model version's performance from clinicians' findings, as trend charts."""
    if period not in PERIODS:
        raise BadRequest(f"period: one of {', '.join(PERIODS)}")
    try:
        start = parse_since(since)
    except ValueError:
        raise BadRequest("since: a date, an ISO timestamp, or Nd / Nh") from None
    report = build_report(engine, since=start, period=period, policy=settings.model_policy)
    charts = {v["model_version"]: version_charts(v) for v in report["versions"]}
    return render(
        request,
        "quality.html",
        report=report,
        charts=charts,
        periods=PERIODS,
        since=since,
        principal=principal,
    )
