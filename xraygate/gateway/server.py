"""How uvicorn serves the gateway (and the ops listener): timeouts and proxy trust from settings.

uvicorn closes idle keep-alive connections (``XRAYGATE_HTTP_KEEP_ALIVE_SECONDS``) but has no
timeout for a request's headers: a client that connects and sends nothing, or trickles a header
line now and then, holds a connection forever. :class:`HeaderTimeoutProtocol` closes a
connection whose request headers are not complete ``XRAYGATE_HTTP_HEADER_TIMEOUT_SECONDS``
after it opened (or after the first byte of the next request on a kept-alive connection).

``X-Forwarded-For`` / ``-Proto`` are honoured only from ``XRAYGATE_HTTP_TRUSTED_PROXIES``
(none by default: the peer address is the client).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from xraygate.core.config import Settings


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on the request line and headers."""

    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self._header_timer is None:
                self._arm()  # the next request on a kept-alive connection began
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # idle now: uvicorn's keep-alive timeout applies

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config`` / ``uvicorn.run``."""
    protocol = type(
        "GatewayHttpProtocol",
        (HeaderTimeoutProtocol,),
        {"header_timeout": settings.http_header_timeout_seconds},
    )
    trusted = ",".join(settings.http_trusted_proxies)
    return {
        "http": protocol,
        "timeout_keep_alive": settings.http_keep_alive_seconds,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
        "server_header": False,
        "log_config": None,
        "access_log": False,
    }
