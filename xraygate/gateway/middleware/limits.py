"""The request body limit, enforced before anything else runs: before authentication, before a
route or the framework reads the body.

A declared ``Content-Length`` over ``XRAYGATE_HTTP_MAX_BODY_BYTES`` is answered 413 at once,
without reading a byte of the body; a chunked (or under-declared) body is counted as the app
reads it, and the moment it passes the limit the client gets 413 and the app sees the client
gone (``http.disconnect``), so at most the limit plus one chunk is ever held. The 413 speaks the
path's language: an OperationOutcome under ``/fhir``, ``{"detail": ...}`` elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xraygate.gateway.errors import FHIR_JSON, answers_fhir, operation_outcome


class BodyLimitMiddleware:
    """``max_bytes`` for every path, except under the prefixes of ``per_prefix`` (DICOMweb
    STOW-RS carries whole studies: ``XRAYGATE_DICOMWEB_MAX_REQUEST_BYTES``)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, per_prefix: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_prefix = dict(per_prefix or {})

    def limit(self, scope: Scope) -> int:
        path = str(scope.get("path", ""))
        for prefix, limit in self.per_prefix.items():
            if path.startswith(prefix):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, send)
            return
        seen = 0
        over = False
        started = False

        async def counted() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    if not started:
                        await self._refuse(scope, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if over:
                return  # the 413 went out; whatever the app answers now is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise

    async def _refuse(self, scope: Scope, send: Send) -> None:
        detail = f"request body larger than {self.limit(scope)} bytes"
        if answers_fhir(scope["path"]):
            body = json.dumps(operation_outcome("too-long", detail)).encode()
            media = FHIR_JSON
        else:
            body = json.dumps({"detail": detail}).encode()
            media = "application/json"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", media.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
