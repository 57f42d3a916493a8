"""The one ASGI wrapper the gateway's middleware share: run the app, then look at the request,
its matched route, the response status and the time taken, whatever the outcome (the status is
500 when no response started)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ObservingMiddleware:
    """Calls :meth:`before` and, once the app is done, :meth:`after` with the response status
    and the seconds taken, for every HTTP request; other ASGI traffic passes through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.before(scope)
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            await self.after(scope, status, time.perf_counter() - started)

    def before(self, scope: Scope) -> None:
        """Before the app runs (nothing by default)."""

    async def after(self, scope: Scope, status: int, seconds: float) -> None:
        raise NotImplementedError
