"""End-to-end test of the viewer page in a real headless browser (Debian's chromium driven by Playwright).

The page is served by ``solara run abm.viewer:page`` (``abm.viewer.server_command``) in a child process
on a free loopback port; chromium runs offline (no first-run, sync, component updates or background
networking) with a fresh profile. Playwright only drives ``/usr/bin/chromium``; it never downloads a
browser. The page's front-end assets must be in solara's cache (``python .ci/solara_assets.py``) or
reachable on the CDN.

Without chromium, playwright or the viz extra the test is skipped, so local runs pass; in CI
(``CI=true``) or with ``CART_ABM_REQUIRE_BROWSER_TEST=1`` each skip is a failure instead.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
#: Flags for a headless chromium that needs no network, GPU, sandbox or profile setup.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--disable-dev-shm-usage",
]
REQUIRED = os.environ.get("CART_ABM_REQUIRE_BROWSER_TEST") == "1" or os.environ.get("CI") == "true"
SERVER_START_S = 60.0  # solara imports the app and Mesa on start
WAIT_MS = 30_000  # any single wait in the browser
STEP_MS = 90_000  # the first step may compile the kernels (cold cache) on a busy machine

# no proxy for loopback requests, whatever the environment says
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (required in CI and with CART_ABM_REQUIRE_BROWSER_TEST=1)")
    pytest.skip(reason)


def _check_prerequisites() -> None:
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"no {CHROMIUM}: apt-get install -y chromium")
    for module, extra in (("playwright", "pip install playwright"), ("solara", "pip install 'cart-abm[viz]'")):
        if importlib.util.find_spec(module) is None:
            _unavailable(f"{module} is not installed: {extra}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with _LOCAL.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def viewer_url(tmp_path):
    """Serve the page on a free loopback port (python backend: no JIT compile); yield its URL."""
    _check_prerequisites()
    from abm import viewer

    port = _free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            viewer.server_command(port, "127.0.0.1"),
            env=viewer.server_env("python"),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + SERVER_START_S
        html = b""
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the viewer server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                status, html = _get(url, timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.25)
        else:
            pytest.fail(
                f"the viewer server did not answer within {SERVER_START_S:g} s:\n{log_path.read_text()[-3000:]}"
            )
        # the front end comes through solara's asset cache (or the CDN); without it the page stays blank
        app_js = re.search(rb'src="(/_solara/cdn/[^"]*solara-vuetify[^"]*\.js)"', html)
        if app_js is None:
            pytest.fail("the page does not reference solara's front-end script; has solara's template changed?")
        status, _ = _get(url.rstrip("/") + app_js.group(1).decode(), timeout=40)
        if status != 200:
            _unavailable(
                f"solara's front-end assets are neither cached nor reachable (HTTP {status}): "
                "run `python .ci/solara_assets.py` in this environment"
            )
        yield url
    finally:
        _stop(process)


def test_viewer_page_loads_steps_and_shows_lattice_and_chart(viewer_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh profile
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1700, "height": 1000},
            timeout=WAIT_MS,
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(WAIT_MS)
            expect.set_options(timeout=WAIT_MS)  # assertions wait as long as actions (5 s by default)
            page.goto(viewer_url, wait_until="domcontentloaded")

            # the page loads: Mesa's controls, the step counter, the status line
            steps = page.get_by_text(re.compile(r"^Step: \d+$"))
            expect(steps).to_have_text("Step: 0")
            status = page.locator(".cart-abm-status")
            expect(status).to_contain_text("day 0, 00:00")

            # the lattice is one image (a decoded PNG frame), the chart another
            lattice = page.locator(".cart-abm-lattice img")
            chart = page.locator(".cart-abm-chart img")
            expect(lattice).to_have_count(1)
            expect(chart).to_have_count(1)
            expect(lattice).to_be_visible()
            expect(chart).to_be_visible()
            page.wait_for_function(
                "els => els.every(e => e.complete && e.naturalWidth > 300)",
                arg=[lattice.element_handle(), chart.element_handle()],
            )
            lattice_src, chart_src = lattice.get_attribute("src"), chart.get_attribute("src")

            # Step advances the model by one observation interval (2 h) and redraws both images
            page.get_by_role("button", name="Step").click()
            expect(steps).to_have_text("Step: 1", timeout=STEP_MS)
            expect(status).to_contain_text("day 0, 02:00")
            expect(lattice).not_to_have_attribute("src", lattice_src)
            expect(chart).not_to_have_attribute("src", chart_src)
            page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
            if os.environ.get("CART_ABM_VIEWER_SCREENSHOT"):
                page.screenshot(path=os.environ["CART_ABM_VIEWER_SCREENSHOT"], full_page=True)
        finally:
            browser.close()
