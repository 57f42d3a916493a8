"""Single sign-on against a real OpenID provider (npm ``oidc-provider`` on loopback,
``tests/gateway/oidc``) with headless Chromium clicking through the provider's login and consent
pages: a clinician lands on the worklist, an admin on the admin page, a user without a mapped
role is refused, a callback carrying another browser's code (login CSRF) or a forged state is
refused, logout ends our session and the provider's. Tokens, codes and the client secret never
reach the logs."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.gateway.conftest import Served, free_port, seed, serve
from tests.gateway.oidc import (
    ACCOUNTS,
    CLIENT_SECRET,
    Provider,
    client_metadata,
    run_provider,
    sso_settings,
)
from xraygate.core import db
from xraygate.core.config import Settings
from xraygate.gateway.app import create_app
from xraygate.gateway.auth import SESSION_COOKIE

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]


@dataclass
class Site:
    served: Served
    provider: Provider
    settings: Settings


@pytest.fixture
def site(provider_home: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Site]:
    """Gateway and provider; ``indirect`` param True: roles in the ID token, no userinfo."""
    port = free_port()
    gateway = f"http://127.0.0.1:{port}"
    in_id_token = bool(getattr(request, "param", False))
    clients = [client_metadata(gateway)]
    with run_provider(
        provider_home, tmp_path / "idp", clients, ACCOUNTS, claims_in_id_token=in_id_token
    ) as provider:
        settings = sso_settings(tmp_path / "var", provider.issuer)
        seed(settings, patient_id="P-HIGH", name="HIGH^HUGO", score=0.94, category="high")
        for served in serve(create_app(settings), port):
            yield Site(served, provider, settings)
    db.get_engine.cache_clear()


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install chromium)"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


def sign_in_at_provider(page: Page, login: str) -> None:
    """The provider's own pages: login form (any password), then consent."""
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any-password")
    page.click("button[type=submit]")
    page.wait_for_selector("form input[name=prompt][value=consent]", state="attached")
    page.click("button[type=submit]")


def start_sso(page: Page, site: Site, path: str = "/worklist") -> None:
    page.goto(f"{site.served.base}{path}")
    assert "/login" in page.url  # no session yet
    assert page.locator("#credential").count() == 0  # the token form is for development only
    page.click("#sso")
    page.wait_for_url(f"{site.provider.issuer}/**")


def test_clinician_signs_in_at_the_provider_and_logout_ends_both_sessions(
    site: Site, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    page = browser.new_page()
    page.on("request", lambda request: seen.append(request.url))
    start_sso(page, site)
    authorize = next(url for url in seen if url.startswith(f"{site.provider.issuer}/auth"))
    assert "code_challenge_method=S256" in authorize and "nonce=" in authorize
    sign_in_at_provider(page, "dr.grey")
    page.wait_for_url(f"{site.served.base}/worklist")
    assert "HIGH HUGO" in page.inner_text("#worklist")
    assert "dr.grey (clinician)" in page.inner_text(".who")
    [session] = [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert not [c for c in page.context.cookies() if c["name"] == "xraygate_oidc"]

    page.goto(f"{site.served.base}/admin")  # a clinician is not an admin
    assert "requires role admin" in page.inner_text("main")

    page.goto(f"{site.served.base}/worklist")
    page.click(".logout button")  # RP-initiated logout: the provider asks, then comes back
    page.wait_for_url(f"{site.provider.issuer}/**")
    page.click("button[name=logout]")
    page.wait_for_url(f"{site.served.base}/login*")
    page.goto(f"{site.served.base}/worklist")
    assert "/login" in page.url  # our session is gone
    page.click("#sso")
    page.wait_for_selector("input[name=login]")  # and so is the provider's: log in again

    callback = next(url for url in seen if "/login/oidc/callback?" in url)
    code = callback.split("code=")[1].split("&")[0]
    logs = caplog.text
    assert "OIDC sign-in: dr.grey as clinician" in logs
    for secret in (code, CLIENT_SECRET, session["value"]):
        assert secret not in logs


@pytest.mark.parametrize("site", [False, True], ids=["via-userinfo", "in-id-token"], indirect=True)
def test_admin_lands_on_the_admin_page(site: Site, browser: Browser) -> None:
    page = browser.new_page()
    start_sso(page, site)
    sign_in_at_provider(page, "ada.admin")
    page.wait_for_url(f"{site.served.base}/admin")  # admin only: the admin page, not the worklist
    assert "ada.admin (admin)" in page.inner_text(".who")
    page.goto(f"{site.served.base}/worklist")
    assert "requires role clinician" in page.inner_text("main")


def test_user_without_a_mapped_role_is_refused(site: Site, browser: Browser) -> None:
    page = browser.new_page()
    start_sso(page, site)
    sign_in_at_provider(page, "visitor")
    page.wait_for_url(f"{site.served.base}/login/oidc/callback*")
    error = page.inner_text("#login-error")
    assert "visitor" in error and "no xraygate role" in error
    assert not [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    page.goto(f"{site.served.base}/worklist")
    assert "/login" in page.url


def no_session(page: Page) -> bool:
    return not [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]


def test_a_callback_from_another_browser_or_with_a_forged_state_is_refused(
    site: Site, browser: Browser
) -> None:
    # The attacker signs in as themselves; the provider's answer (code, state) is in the URL.
    attacker = browser.new_page()
    seen: list[str] = []
    attacker.on("request", lambda request: seen.append(request.url))
    start_sso(attacker, site)
    sign_in_at_provider(attacker, "dr.grey")
    attacker.wait_for_url(f"{site.served.base}/worklist")
    [answer] = [url for url in seen if "/login/oidc/callback?" in url]

    # Login CSRF: the victim's browser has a sign-in of its own under way; the answer does not
    # fit its state, so the attacker's account is not slipped into the victim's browser.
    victim = browser.new_context().new_page()
    start_sso(victim, site)
    victim.goto(answer)
    assert "does not match" in victim.inner_text("#login-error")
    assert no_session(victim)

    # A browser that started no sign-in; the answer replayed where it was used (state spent).
    fresh = browser.new_context().new_page()
    fresh.goto(answer)
    assert "not started here" in fresh.inner_text("#login-error")
    assert no_session(fresh)
    replay = browser.new_context().new_page()
    replay.context.add_cookies(
        [c for c in attacker.context.cookies() if c["name"] != SESSION_COOKIE]
    )
    replay.goto(answer)
    assert "not started here" in replay.inner_text("#login-error")

    # A forged state on a sign-in that this browser did start.
    forger = browser.new_context().new_page()
    start_sso(forger, site)
    forger.goto(f"{site.served.base}/login/oidc/callback?code=abc&state=forged")
    assert "does not match" in forger.inner_text("#login-error")
    assert no_session(forger)
