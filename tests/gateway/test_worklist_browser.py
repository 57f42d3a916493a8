"""The worklist for real use (issue 12), in headless Chromium at 1280x800 and 768x1024: no
horizontal overflow, search by name / ID / accession, date range and status filters, paging,
not-applicable rows styled as such, and the badge of new high-risk results. Screenshots are
saved under the test's tmp dir (path printed) and copied to $XRAYGATE_SCREENSHOT_DIR when set."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.gateway.conftest import Served, gateway_settings, serve, token
from tests.gateway.test_browser import ARGS, CHROMIUM
from tests.results_factory import make_result
from xraygate.core.config import Settings
from xraygate.core.db import get_engine
from xraygate.gateway.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SIZES = [(1280, 800), (768, 1024)]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Served, Settings]]:
    settings = gateway_settings(tmp_path / "var")
    engine = get_engine(settings.resolved_database_url)
    for i in range(52):  # 55 studies in all: two pages of 50
        make_result(
            engine,
            patient_id=f"P{i:03d}",
            name=f"PATIENT^NUMBER{i:03d}",
            accession=f"ACC{i:03d}",
            score=0.1 + (i % 5) * 0.01,
            category="low",
            study_date="20240301" if i < 3 else "20240514",
        )
    make_result(
        engine,
        patient_id="P-HIGH",
        name="HIGH^HUGO",
        accession="A-HIGH",
        score=0.94,
        category="high",
        model="a-rather-long-model-name-for-the-column:2024.05.14-rc1",
    )
    make_result(
        engine,
        patient_id="P-NA",
        name="LATERAL^LENA",
        accession="A-NA",
        score=None,
        category="not-applicable",
    )
    make_result(
        engine,
        patient_id="P-IND",
        name="MAYBE^MAX",
        accession="A-IND",
        score=0.6,
        category="indeterminate",
    )
    yield from ((served, settings) for served in serve(create_app(settings)))


def _overflow(page: Page) -> int:
    value: int = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return value


def _rows(page: Page) -> list[str]:
    return page.locator("#worklist tbody tr").all_inner_texts()


def _submit(page: Page) -> None:
    with page.expect_navigation():
        page.click("#filters button[type=submit]")


def _login(page: Page, base: str, credential: str) -> None:
    page.goto(f"{base}/worklist")
    page.fill("#credential", credential)
    page.click("#login")
    page.wait_for_url("**/worklist")


def test_worklist_search_filters_paging_at_two_sizes(
    site: tuple[Served, Settings], tmp_path: Path
) -> None:
    served, settings = site
    shots = tmp_path / "screens"
    shots.mkdir()
    print(f"\nworklist screenshots: {shots}")
    credential = token(settings, "clinician", subject="dr.grey")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        for width, height in SIZES:
            page = browser.new_page(viewport={"width": width, "height": height})
            _login(page, served.base, credential)
            tag = f"{width}x{height}"
            page.screenshot(path=str(shots / f"worklist-{tag}.png"), full_page=True)
            assert _overflow(page) <= 0, f"horizontal overflow at {tag}"
            rows = _rows(page)
            assert len(rows) == 50 and "HIGH HUGO" in rows[0]
            assert "page 1 of 2 · 55 studies" in page.inner_text("#page-info")
            na = page.locator("tr.risk-not-applicable")
            assert na.count() == 0 or "not read" in na.first.inner_text()

            page.click("#pager a[rel=next]")
            page.wait_for_url("**page=2")
            assert len(_rows(page)) == 5 and "page 2 of 2" in page.inner_text("#page-info")
            na = page.locator("tr.risk-not-applicable")
            assert na.count() == 1 and "not read" in na.inner_text()
            assert "scored" not in na.inner_text()
            grey = page.evaluate(
                "() => getComputedStyle(document.querySelector('tr.risk-not-applicable td'))"
                ".backgroundColor"
            )
            assert grey == "rgb(246, 247, 249)"
            page.screenshot(path=str(shots / f"worklist-page2-{tag}.png"), full_page=True)
            assert _overflow(page) <= 0

            for text, expect in (("hugo", "HIGH HUGO"), ("P-IND", "MAYBE MAX"), ("a-na", "LENA")):
                page.fill("input[name=q]", text)
                _submit(page)
                found = _rows(page)
                assert len(found) == 1 and expect in found[0], (text, found)
            page.goto(f"{served.base}/worklist")
            page.fill("input[name=date_from]", "2024-03-01")
            page.fill("input[name=date_to]", "2024-03-01")
            _submit(page)
            assert len(_rows(page)) == 3 and "3 studies" in page.inner_text("#page-info")
            page.goto(f"{served.base}/worklist")
            page.select_option("select[name=status]", "received")
            _submit(page)
            assert "No studies match these filters." in page.inner_text("#worklist")
            page.close()
        browser.close()
    _keep(shots)


def test_new_high_risk_badge(site: tuple[Served, Settings], tmp_path: Path) -> None:
    served, settings = site
    shots = tmp_path / "screens"
    shots.mkdir()
    credential = token(settings, "clinician", subject="dr.grey")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        _login(page, served.base, credential)
        page.evaluate("() => window.xraygatePollNewHigh()")
        assert page.locator("#new-high").is_hidden()
        engine = get_engine(settings.resolved_database_url)
        for n in range(2):
            make_result(engine, patient_id=f"NEW{n}", accession=f"N{n}", score=0.9, category="high")
        make_result(engine, patient_id="NEWLOW", accession="NL", score=0.1, category="low")
        page.evaluate("() => window.xraygatePollNewHigh()")
        page.wait_for_selector("#new-high:not([hidden])")
        assert page.inner_text("#new-high") == "2 new high-risk"
        page.screenshot(path=str(shots / "worklist-badge.png"))
        page.click("#new-high")
        page.wait_for_load_state()
        assert "58 studies" in page.inner_text("#page-info")
        browser.close()
    _keep(shots)


def _keep(shots: Path) -> None:
    for shot in shots.iterdir():
        assert shot.stat().st_size > 5000, shot
    if target := os.environ.get("XRAYGATE_SCREENSHOT_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in shots.iterdir():
            shutil.copy(shot, Path(target) / shot.name)
