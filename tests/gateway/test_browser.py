"""The pages in headless Chromium (Debian's `chromium`, driven by Playwright): log in with a
pasted token, the worklist shows the seeded high-risk study first, the study page shows the
rendered image, feedback is submitted and stored. Screenshots go to the test's tmp dir (and a
copy to $XRAYGATE_SCREENSHOT_DIR when set)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from sqlalchemy import select

from tests.gateway.conftest import Served, gateway_settings, seed, serve, token
from xraygate.core.db import get_engine, read_session
from xraygate.core.models import AuditRecord, Feedback
from xraygate.gateway.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Served, object]]:
    settings = gateway_settings(tmp_path / "var")
    seed(
        settings, patient_id="P-LOW", name="LOW^LARA", accession="A-LOW", score=0.12, category="low"
    )
    seed(
        settings,
        patient_id="P-MID",
        name="MID^MIA",
        accession="A-MID",
        score=0.7,
        category="indeterminate",
    )
    seed(
        settings,
        patient_id="P-HIGH",
        name="HIGH^HUGO",
        accession="A-HIGH",
        score=0.94,
        category="high",
    )
    yield from ((served, settings) for served in serve(create_app(settings)))


def test_clinician_logs_in_triages_and_gives_feedback(
    site: tuple[Served, object], tmp_path: Path
) -> None:
    served, settings = site
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install chromium)"
    shots = tmp_path / "screens"
    shots.mkdir()
    credential = token(settings, "clinician", subject="dr.grey")  # type: ignore[arg-type]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{served.base}/worklist")
        assert "/login" in page.url  # no session yet
        page.fill("#credential", credential)
        page.screenshot(path=str(shots / "1-login.png"))
        page.click("#login")
        page.wait_for_url("**/worklist")
        rows = page.locator("#worklist tbody tr")
        assert rows.count() == 3
        assert "HIGH HUGO" in rows.nth(0).inner_text() and "high" in rows.nth(0).inner_text()
        assert "LOW LARA" in rows.nth(2).inner_text()
        assert page.locator(".disclaimer").is_visible()
        page.screenshot(path=str(shots / "2-worklist.png"), full_page=True)

        rows.nth(0).locator("a").click()
        page.wait_for_selector("img.dicom", state="attached")
        page.wait_for_function(
            "() => { const i = document.querySelector('img.dicom');"
            " return i.complete && i.naturalWidth > 0; }"
        )
        size = page.evaluate(
            "() => { const i = document.querySelector('img.dicom');"
            " return [i.naturalWidth, i.naturalHeight]; }"
        )
        assert max(size) == 1024  # downscaled from 1841x1955
        assert page.inner_text("#category") == "high" and page.inner_text("#score") == "0.940"
        assert "cxr-demo:1.0.0" in page.inner_text("#model")
        page.check("input[name=finding][value=confirm]")
        page.fill("#comment", "consolidation right lower lobe")
        page.click("#send-feedback")
        page.wait_for_function(
            "() => document.querySelector('#feedback-result').textContent.includes('recorded')"
        )
        assert "agree" in page.inner_text("#feedback-result")
        page.screenshot(path=str(shots / "3-study.png"), full_page=True)
        browser.close()

    engine = get_engine(settings.resolved_database_url)  # type: ignore[attr-defined]
    with read_session(engine) as session:
        [feedback] = session.scalars(select(Feedback)).all()
        routes = [r.route for r in session.scalars(select(AuditRecord))]
    assert feedback.finding == "confirm" and feedback.author == "dr.grey"
    assert feedback.agreement == "agree" and feedback.comment.startswith("consolidation")
    assert "/studies/{study_uid}" in routes
    assert "/api/studies/{study_uid}/feedback" in routes
    for name in ("1-login.png", "2-worklist.png", "3-study.png"):
        assert (shots / name).stat().st_size > 5000
    if target := os.environ.get("XRAYGATE_SCREENSHOT_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in shots.iterdir():
            shutil.copy(shot, Path(target) / shot.name)
