"""Rendering the pages: the Jinja2 templates shipped in the package (no front-end build), the
static assets, and :class:`HtmlRoute`, whose refusals are pages: the error page, or the login
page when there is no valid session."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from fastapi.templating import Jinja2Templates

from xraygate.gateway.auth import Principal
from xraygate.gateway.errors import GatewayError, GatewayRoute

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["dicom_date"] = lambda v: f"{v[:4]}-{v[4:6]}-{v[6:8]}" if len(v) == 8 else v


def render(request: Request, name: str, status_code: int = 200, **context: object) -> Response:
    """The template ``name``; the caller (and its CSRF value) from the context or the request."""
    principal = context.get("principal") or getattr(request.state, "principal", None)
    csrf = principal.csrf if isinstance(principal, Principal) else ""
    context.update(principal=principal, csrf=csrf)
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def login_redirect(next_url: str) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(next_url)}", status_code=303)


class HtmlRoute(GatewayRoute):
    """A page: 401 sends the browser to the login page (coming back here after it), any other
    refusal is the error page."""

    @classmethod
    def error_body(cls, request: Request, error: GatewayError) -> Response:
        if error.status == 401:
            return login_redirect(request.url.path)
        response = render(
            request, "error.html", error.status, status=error.status, detail=error.detail
        )
        response.headers.update(error.headers)
        return response
