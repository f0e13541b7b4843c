"""The dashboard in a real browser: every page renders, the live lab attacks and defends.

Starts ``streamlit run dashboard.py`` on a free local port and drives it with
headless Chromium through Selenium. Each page is loaded by URL, waited on until
Streamlit has finished running it (and its Plotly charts are drawn), checked
for an exception box, checked to run inside ``dashboard.py``'s router (our
menu and the dataset picker in the sidebar) and saved as ``<page>.png``
(1440x1000 viewport) in a temporary folder, or in ``ROBUSTLENS_SCREENSHOTS``:
``ROBUSTLENS_SCREENSHOTS=docs/screenshots pytest tests/e2e/test_browser.py``
refreshes the README's screenshots.
On the lab page the "Attack and defend" button is clicked and the verdict is
waited for (``lab_attack.png``).

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``.ci/run``
installs them) and ``selenium``; skipped when any is absent. Nothing is
downloaded: the driver and browser paths are given, so Selenium Manager is
never asked to fetch them.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from bench._browser import StreamlitServer, browser_paths, chromium_driver, wait_done
from ui.nav import PAGES

#: Where the screenshots go (the README shows them); ROBUSTLENS_SCREENSHOTS overrides it.
SHOTS = Path(
    os.environ.get("ROBUSTLENS_SCREENSHOTS")
    or Path(tempfile.gettempdir()) / "robustlens-screenshots"
)
WINDOW = (1440, 1000)
#: Seconds a page may take to finish running (the first lab load starts the
#: model worker, which imports TensorFlow and warms the model up).
PAGE_TIMEOUT = 240.0
SERVER_TIMEOUT = 90.0
#: Options on top of ``streamlit run dashboard.py --server.headless true ...``.
SERVER_ARGS = ("--server.fileWatcherType", "none", "--client.toolbarMode", "minimal")

pytestmark = pytest.mark.browser

CHROMIUM, CHROMEDRIVER = browser_paths()


def _shot_name(url_path: str) -> str:
    return url_path or "home"


@pytest.fixture(scope="module")
def server():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "headless browser test needs chromium and chromedriver on PATH "
            "(Debian: apt-get install chromium chromium-driver)"
        )
    pytest.importorskip("selenium", reason="pip install selenium (in requirements.txt)")
    srv = StreamlitServer(*SERVER_ARGS)
    try:
        srv.wait_healthy(SERVER_TIMEOUT)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def driver(server):
    drv = chromium_driver(*WINDOW, page_load_timeout=60)
    set_viewport(drv, *WINDOW)
    try:
        yield drv
    finally:
        drv.quit()


_SCROLL_TOP_JS = """
window.scrollTo(0, 0);
for (const s of ['[data-testid="stMain"]', '[data-testid="stAppViewContainer"]',
                 '[data-testid="stMainBlockContainer"]']) {
  const el = document.querySelector(s); if (el) el.scrollTop = 0;
}
"""


def set_viewport(drv, width: int, height: int) -> None:
    """Make the page's viewport exactly ``width`` x ``height`` CSS pixels."""
    drv.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def exceptions(drv) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in drv.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')]


def nav_titles(drv) -> list[str]:
    """The sidebar menu's entries, icons left out."""
    from selenium.webdriver.common.by import By

    links = drv.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNav"] a')
    return [" ".join(a.text.split()) for a in links]


def check_router(drv) -> None:
    """The page ran inside ``dashboard.py``: our menu and the dataset picker are shown."""
    from selenium.webdriver.common.by import By

    entries = nav_titles(drv)
    expected = [p.title for p in PAGES]
    assert len(entries) == len(expected) and all(
        t in e for t, e in zip(expected, entries, strict=True)
    ), f"sidebar menu {entries}, expected {expected}"
    assert drv.find_elements(By.CSS_SELECTOR, ".st-key-sel_dataset"), "no dataset picker"


def screenshot(drv, name: str, top=None) -> Path:
    """Save the viewport, scrolled to the top of the page or to the element ``top``."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    if top is None:
        drv.execute_script(_SCROLL_TOP_JS)
    else:
        drv.execute_script(  # clear of Streamlit's header bar
            "arguments[0].style.scrollMarginTop = '70px';"
            "arguments[0].scrollIntoView({block: 'start'});",
            top,
        )
    time.sleep(0.3)
    path = SHOTS / f"{name}.png"
    drv.save_screenshot(str(path))
    return path


#: Pages that show dataset images by default. Their screenshots would be copies of the
#: real data, which must never be committed (../shared/data/README.md), so they are
#: photographed on the synthetic set instead (test_lab_attack_and_defend).
SHOWS_DATA = {"lab"}
#: The synthetic set's shipped model: generated images only.
SYNTHETIC = "?dataset=synthetic&backbone=tiny"


@pytest.mark.parametrize("url_path", [p.url_path for p in PAGES], ids=_shot_name)
def test_page_renders_without_exception(server, driver, url_path):
    t0 = time.monotonic()
    driver.get(f"{server.url}/{url_path}")
    wait_done(driver, PAGE_TIMEOUT)
    errors = exceptions(driver)
    path = None if url_path in SHOWS_DATA else screenshot(driver, _shot_name(url_path))
    assert not errors, f"/{url_path} shows an exception:\n" + "\n---\n".join(errors)
    check_router(driver)
    assert path is None or path.stat().st_size > 10_000, f"{path} looks empty"
    print(f"/{url_path}: ready in {time.monotonic() - t0:.1f} s")


@pytest.mark.parametrize("query", ["", SYNTHETIC], ids=["default", "synthetic"])
def test_lab_attack_and_defend(server, driver, query):
    from selenium.webdriver.common.by import By

    driver.get(f"{server.url}/lab{query}")
    wait_done(driver, PAGE_TIMEOUT)
    if query:  # generated images only: safe to keep as the README's screenshots
        assert "dataset=synthetic" in driver.current_url
        screenshot(driver, "lab")
    button = driver.find_element(By.CSS_SELECTOR, ".st-key-lab_run button")
    assert "Attack and defend" in button.text
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()
    time.sleep(0.5)  # let the fragment's rerun start
    wait_done(driver, PAGE_TIMEOUT)
    verdicts = [
        e
        for e in driver.find_elements(
            By.CSS_SELECTOR,
            '[data-testid="stAlertContentSuccess"], [data-testid="stAlertContentError"], '
            '[data-testid="stAlertContentInfo"]',
        )
        if e.text.startswith("The attack")
    ]
    errors = exceptions(driver)
    # The results, from the verdict down (the page's top is lab.png already).
    if query:
        screenshot(driver, "lab_attack", top=verdicts[0] if verdicts else None)
    assert not errors, "the lab shows an exception:\n" + "\n---\n".join(errors)
    assert len(verdicts) == 1, f"expected one verdict, found {[v.text for v in verdicts]}"
    print(f"verdict: {verdicts[0].text}")


def test_deep_link_on_a_fresh_server(server, driver):
    """A bookmark such as /recap, opened first after a restart, still gets the router.

    (With a folder named ``pages/`` beside dashboard.py, Streamlit would run the
    page file alone, without the router, until some session opened ``/``: that
    is why the pages live in ``app_pages/``.)
    """
    fresh = StreamlitServer(*SERVER_ARGS, env={"ROBUSTLENS_PRELOAD": "0"})
    try:
        fresh.wait_healthy(SERVER_TIMEOUT)
        driver.get(f"{fresh.url}/recap")
        wait_done(driver, PAGE_TIMEOUT)
        check_router(driver)
    finally:
        fresh.stop()


def test_server_log_has_no_traceback(server, driver):
    log = server.tail(100_000)
    assert "Traceback" not in log, log[-4000:]
