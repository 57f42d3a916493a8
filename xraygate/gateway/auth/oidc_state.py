"""The state of one OpenID Connect sign-in between leaving for the identity provider and coming
back: ``state``, ``nonce``, the PKCE verifier and the page to return to, in a short-lived HS256
cookie signed with the session key (its own audience, so it is never taken for a session).

The cookie is ``SameSite=Lax`` (the provider's redirect back is a cross-site top-level GET) and
scoped to ``/login/oidc``. The callback's ``state`` must equal the cookie's, so a sign-in started
in another browser, a forged callback or a replayed one is refused."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

import jwt

from xraygate.gateway.errors import Unauthorized

STATE_COOKIE = "xraygate_oidc"
STATE_PATH = "/login/oidc"
STATE_AUDIENCE = "xraygate-oidc-state"
STATE_SECONDS = 600


@dataclass(frozen=True)
class LoginState:
    state: str
    nonce: str
    verifier: str
    next: str


@dataclass(frozen=True)
class StateSigner:
    key: bytes

    def seal(self, login: LoginState) -> str:
        now = int(time.time())
        claims = {
            "aud": STATE_AUDIENCE,
            "state": login.state,
            "nonce": login.nonce,
            "verifier": login.verifier,
            "next": login.next,
            "iat": now,
            "exp": now + STATE_SECONDS,
        }
        return jwt.encode(claims, self.key, algorithm="HS256")

    def open(self, cookie: str | None, state: str) -> LoginState:
        """The sign-in started in this browser whose ``state`` the provider sent back."""
        if not cookie:
            raise Unauthorized("This sign-in was not started here or has expired. Try again.")
        try:
            claims = jwt.decode(
                cookie,
                self.key,
                algorithms=["HS256"],
                audience=STATE_AUDIENCE,
                options={"require": ["exp", "state", "nonce", "verifier"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("This sign-in has expired or was altered. Try again.") from exc
        if not hmac.compare_digest(str(claims["state"]).encode(), state.encode()):
            raise Unauthorized("The sign-in answer does not match this browser's sign-in (state).")
        return LoginState(
            str(claims["state"]),
            str(claims["nonce"]),
            str(claims["verifier"]),
            str(claims.get("next", "/worklist")),
        )
