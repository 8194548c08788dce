"""`ionclock dashboard` in a real browser: Debian's Chromium driven by playwright.

Chromium is installed from Debian's packages when missing (as ser2net is for its test); the
page is that of a running `ionclock sim`: the lock state and the budget seen, the page
updating by itself as the run advances, a screenshot saved, a phone's width, and the page
turning to STOPPED when the run is stopped.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_dashboard import IONCLOCK, ROOT, Dashboard

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium; installed with apt-get when missing (as root, like CI)."""
    if not Path(CHROMIUM).exists():
        apt = shutil.which("apt-get")
        if apt is None:
            pytest.skip("chromium is not installed and there is no apt-get to install it")
        try:
            subprocess.run([apt, "update"], check=True, capture_output=True, timeout=300)
            subprocess.run([apt, "install", "-y", "chromium"], check=True,
                           capture_output=True, timeout=900,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
            pytest.skip(f"chromium is not installed and apt-get could not install it: {err}")
        if not Path(CHROMIUM).exists():
            pytest.skip(f"apt-get install chromium did not provide {CHROMIUM}")
    return CHROMIUM


def _wait_for_frames(store: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.exists():
            try:
                with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
                    n = db.execute("SELECT COUNT(*) FROM budgets").fetchone()[0]
                if n:
                    return
            except sqlite3.Error:
                pass
        time.sleep(0.2)
    raise AssertionError("the run wrote no live budget within a minute")


def _until(check, timeout: float = 20.0) -> None:
    """Wait for `check()` (a look at the page, which is not reloaded) to come true."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the page did not change"
        time.sleep(0.25)


def test_the_page_of_a_running_sim_in_chromium(chromium, tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    out = tmp_path / "run"
    # a month of simulated time: still running long after the page has been looked at
    sim = subprocess.Popen([*IONCLOCK, "sim", "--duration", "30d", "--seed", "5",
                            "--no-progress", "--out", str(out)], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dash = None
    try:
        _wait_for_frames(out / "ionclock.sqlite")
        dash = Dashboard(out / "ionclock.sqlite", refresh=1.0)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(dash.url)
                state = page.locator("#lock-state")
                state.wait_for(timeout=30000)
                assert state.inner_text() in ("LOCKED", "ACQUIRING", "HOLDOVER")
                assert "ionclock sim" in page.locator("#writer").inner_text()
                budget = page.locator("#budget")
                assert "Live shift budget" in budget.inner_text()
                for effect in ("BBR", "Quadratic Zeeman (DC)", "Total"):
                    assert budget.get_by_text(effect, exact=True).first.is_visible()
                frames0 = int(page.locator("#frames").inner_text())
                t0 = page.locator("#t-last").inner_text()
                # the page updates by itself as the run advances: no reload
                _until(lambda: int(page.locator("#frames").inner_text()) > frames0)
                frames1 = int(page.locator("#frames").inner_text())
                assert frames1 > frames0 and page.locator("#t-last").inner_text() != t0
                page.wait_for_timeout(1500)   # let the plots draw the last update
                shot = tmp_path / "dashboard.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 20000
                # a phone's screen: the page fits its width (no sideways scrolling)
                phone = browser.new_page(viewport={"width": 390, "height": 844})
                phone.goto(dash.url)
                phone.locator("#lock-state").wait_for(timeout=30000)
                width = phone.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, width
                phone.screenshot(path=str(tmp_path / "dashboard_phone.png"), full_page=True)
                # the run is stopped: the open page says so by itself
                sim.send_signal(signal.SIGTERM)
                assert sim.wait(timeout=60) == 0
                _until(lambda: page.locator("#lock-state").inner_text() == "STOPPED")
                assert "SIGTERM" in page.locator("#lock-note").inner_text()
            finally:
                browser.close()
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait()
        if dash is not None:
            code, err = dash.stop()
            assert code == 0, err
    print(f"screenshot: {shot} (frames {frames0} -> {frames1})")
