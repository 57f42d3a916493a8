"""The study page's viewer in headless Chromium at 1280x800 and 768x1024: a window preset and a
window/level drag change the canvas pixels, the saliency overlay colours them and toggles back to
the same pixels, wheel / button / keyboard zoom and drag pan change the view, the full-resolution
switch loads the stored size; no horizontal overflow, no script or CSP error. Screenshots are
saved under the test's tmp dir (path printed) and copied to $XRAYGATE_SCREENSHOT_DIR when set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Page, Response, sync_playwright

from tests.gateway.conftest import Served, add_saliency, gateway_settings, seed, serve, token
from tests.gateway.test_browser import ARGS, CHROMIUM
from tests.gateway.test_worklist_browser import SIZES, _keep, _login, _overflow
from tests.results_factory import Made
from xraygate.core.config import Settings
from xraygate.gateway.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]
VIEWER = "#viewer-1"

# FNV-1a over the canvas' pixels, their mean, and how many are coloured (not grey)
FINGERPRINT = """(sel) => {
  const c = document.querySelector(sel + ' canvas.view');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 2166136261 >>> 0, sum = 0, coloured = 0;
  for (let i = 0; i < d.length; i += 4) {
    h = Math.imul(h ^ d[i], 16777619) >>> 0;
    h = Math.imul(h ^ d[i + 1], 16777619) >>> 0;
    h = Math.imul(h ^ d[i + 2], 16777619) >>> 0;
    sum += d[i] + d[i + 1] + d[i + 2];
    if (Math.abs(d[i] - d[i + 1]) > 24 || Math.abs(d[i + 1] - d[i + 2]) > 24) coloured++;
  }
  return {hash: h, mean: sum / (d.length / 4 * 3), coloured: coloured, size: [c.width, c.height]};
}"""
SETTLED = """([sel, n]) => {
  const r = document.querySelector(sel);
  return r.dataset.state === 'idle' && Number(r.dataset.renders || 0) > n;
}"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Served, Settings, Made, Made]]:
    settings = gateway_settings(tmp_path / "var")
    high = seed(settings, patient_id="P-HIGH", name="HIGH^HUGO", score=0.94, category="high")
    low = seed(settings, patient_id="P-LOW", name="LOW^LARA", score=0.12, category="low")
    add_saliency(settings, high)
    for served in serve(create_app(settings)):
        yield served, settings, high, low


def _print(page: Page) -> dict[str, Any]:
    value: dict[str, Any] = page.evaluate(FINGERPRINT, VIEWER)
    return value


def _renders(page: Page) -> int:
    return int(page.get_attribute(VIEWER, "data-renders") or 0)


def _settle(page: Page, before: int) -> None:
    """Wait for the viewer to draw a new rendering (event driven: no sleeps, no budgets)."""
    page.wait_for_function(SETTLED, arg=[VIEWER, before])


def _watch(page: Page) -> list[str]:
    """Script errors, console errors (a CSP refusal is one) and refused requests (but the
    favicon, which we do not serve) of the page, as they come."""
    problems: list[str] = []

    def console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            problems.append(msg.text)

    def response(answer: Response) -> None:
        if answer.status >= 400 and not answer.url.endswith("/favicon.ico"):
            problems.append(f"{answer.status} {answer.url}")

    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", console)
    page.on("response", response)
    return problems


def _attr(page: Page, name: str) -> str:
    return page.get_attribute(VIEWER, name) or ""


def test_viewer_window_overlay_zoom_and_full_resolution(
    site: tuple[Served, Settings, Made, Made], tmp_path: Path
) -> None:
    served, settings, high, low = site
    shots = tmp_path / "screens"
    shots.mkdir()
    print(f"\nviewer screenshots: {shots}")
    credential = token(settings, "clinician", subject="dr.grey")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        for width, height in SIZES:
            tag = f"{width}x{height}"
            page = browser.new_page(viewport={"width": width, "height": height})
            problems = _watch(page)
            _login(page, served.base, credential)
            page.goto(f"{served.base}/studies/{high.study_uid}")
            _settle(page, 0)
            assert page.locator(f"{VIEWER} canvas.view").is_visible()
            assert page.locator(f"{VIEWER} img.dicom").is_hidden()
            assert _overflow(page) <= 0, f"horizontal overflow at {tag}"
            note = page.inner_text(f"{VIEWER} .saliency-note")
            assert "demonstration model, not for clinical use" in note
            assert "not a localisation" in note
            page.screenshot(path=str(shots / f"viewer-{tag}.png"), full_page=True)
            start = _print(page)
            assert start["mean"] > 20 and start["coloured"] == 0
            default_window = _attr(page, "data-window")

            # a window preset: the server renders another window, the canvas changes
            before = _renders(page)
            page.select_option(f"{VIEWER} select.preset", "bone")
            _settle(page, before)
            bone = _print(page)
            assert bone["hash"] != start["hash"] and abs(bone["mean"] - start["mean"]) > 2
            assert _attr(page, "data-window") != default_window
            assert page.inner_text(f"{VIEWER} .wl").startswith("W ")
            page.screenshot(path=str(shots / f"viewer-bone-{tag}.png"), full_page=True)

            # the saliency overlay colours the image; off again, the same pixels as before
            page.check(f"{VIEWER} input.overlay")
            page.wait_for_function(
                "(sel) => document.querySelector(sel).dataset.overlay === 'shown'", arg=VIEWER
            )
            shown = _print(page)
            assert shown["hash"] != bone["hash"] and shown["coloured"] > 1000
            page.screenshot(path=str(shots / f"viewer-overlay-{tag}.png"), full_page=True)
            page.uncheck(f"{VIEWER} input.overlay")
            assert _attr(page, "data-overlay") == "hidden"
            assert _print(page)["hash"] == bone["hash"]

            # zoom: a button, the wheel, the keyboard; pan by dragging
            page.click(f"{VIEWER} button[data-zoom=in]")
            assert _attr(page, "data-zoom") == "1.250"
            zoomed = _print(page)
            assert zoomed["hash"] != bone["hash"]
            box = page.locator(f"{VIEWER} canvas.view").bounding_box()
            assert box is not None
            middle = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.move(*middle)
            page.mouse.wheel(0, -300)
            assert float(_attr(page, "data-zoom")) > 1.25
            page.mouse.down()
            page.mouse.move(middle[0] + 60, middle[1] + 40, steps=4)
            page.mouse.up()
            assert _print(page)["hash"] != zoomed["hash"]
            page.screenshot(path=str(shots / f"viewer-zoom-{tag}.png"), full_page=True)
            page.focus(f"{VIEWER} canvas.view")
            page.keyboard.press("0")
            assert _attr(page, "data-zoom") == "1.000"
            assert _print(page)["hash"] == bone["hash"]

            # window/level by shift+drag: a custom window, rendered by the server
            before = _renders(page)
            page.keyboard.down("Shift")
            page.mouse.move(*middle)
            page.mouse.down()
            page.mouse.move(middle[0] + 80, middle[1] - 50, steps=5)
            page.mouse.up()
            page.keyboard.up("Shift")
            _settle(page, before)
            assert page.input_value(f"{VIEWER} select.preset") == "custom"
            dragged = _print(page)
            assert dragged["hash"] != bone["hash"]
            # keyboard window/level too
            before = _renders(page)
            page.focus(f"{VIEWER} canvas.view")
            page.keyboard.press("Shift+ArrowUp")
            _settle(page, before)
            assert _print(page)["hash"] != dragged["hash"]

            # full resolution: the stored size is fetched (RG1: 1841 x 1955)
            before = _renders(page)
            page.check(f"{VIEWER} input.full")
            _settle(page, before)
            assert "full resolution, 1841 \u00d7 1955 shown" in page.inner_text(
                f"{VIEWER} figcaption"
            )
            page.screenshot(path=str(shots / f"viewer-full-{tag}.png"), full_page=True)
            assert _overflow(page) <= 0, f"horizontal overflow at {tag}"

            # a study without a map: the overlay switch is off and says so
            page.goto(f"{served.base}/studies/{low.study_uid}")
            _settle(page, 0)
            assert page.locator(f"{VIEWER} input.overlay").is_disabled()
            assert page.locator(f"{VIEWER} .saliency-note").count() == 0
            assert _overflow(page) <= 0
            assert problems == [], problems
            page.close()
        browser.close()
    _keep(shots)
