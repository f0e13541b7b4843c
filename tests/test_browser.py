"""The dashboard in a real browser: every page renders, the live lab attacks and defends.

Starts ``streamlit run dashboard.py`` on a free local port and drives it with
headless Chromium through Selenium. Each page is loaded by URL, waited on until
Streamlit has finished running it (and its Plotly charts are drawn), checked
for an exception box, checked to run inside ``dashboard.py``'s router (our
menu and the dataset picker in the sidebar) and saved as ``<page>.png``
(1440x1000 viewport) in a temporary folder, or in ``ROBUSTLENS_SCREENSHOTS``:
``ROBUSTLENS_SCREENSHOTS=docs/screenshots pytest tests/test_browser.py``
refreshes the README's screenshots.
On the lab page the "Attack and defend" button is clicked and the verdict is
waited for (``lab_attack.png``).

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``.ci/run``
installs them) and ``selenium``; skipped when any is absent. Nothing is
downloaded: the driver and browser paths are given, so Selenium Manager is
never asked to fetch them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from ui.nav import PAGES

ROOT = Path(__file__).resolve().parents[1]
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

pytestmark = pytest.mark.browser

CHROMIUM = next(
    filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))),
    None,
)
CHROMEDRIVER = shutil.which("chromedriver")


def _shot_name(url_path: str) -> str:
    return url_path or "home"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class Server:
    """A ``streamlit run dashboard.py`` subprocess with its log in a temporary file."""

    def __init__(self, **env: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Open for the server's whole life, closed in stop().
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", prefix="streamlit-")  # noqa: SIM115
        env = dict(
            os.environ, PYTHONUNBUFFERED="1", STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", **env
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "dashboard.py",
                "--server.headless",
                "true",
                "--server.port",
                str(self.port),
                "--server.address",
                "127.0.0.1",
                "--server.fileWatcherType",
                "none",
                "--client.toolbarMode",
                "minimal",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the model worker goes with it
        )

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited ({self.proc.returncode}):\n{self.tail()}")
            if _healthy(self.url):
                return
            time.sleep(0.3)
        raise RuntimeError(f"streamlit not healthy after {timeout:g} s:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-n:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # The model worker is in the same group; make sure nothing of it is left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


@pytest.fixture(scope="module")
def server():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "headless browser test needs chromium and chromedriver on PATH "
            "(Debian: apt-get install chromium chromium-driver)"
        )
    pytest.importorskip("selenium", reason="pip install selenium (in requirements.txt)")
    srv = Server()
    try:
        srv.wait_healthy(SERVER_TIMEOUT)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def driver(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Never let Selenium Manager look for (or download) a browser or driver.
    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--lang=en-US",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    drv.set_page_load_timeout(60)
    set_viewport(drv, *WINDOW)
    try:
        yield drv
    finally:
        drv.quit()


# The page is done when the app has finished its run, no running indicator is
# shown, the page title is there and every Plotly chart has drawn its SVG.
_DONE_JS = """
const app = document.querySelector('[data-testid="stApp"]');
if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
if (document.querySelector('[data-testid="stStatusWidgetRunningIcon"],'
    + '[data-testid="stStatusWidgetRunningManIcon"],[data-testid="stAppSkeleton"]')) return false;
if (!document.querySelector('[data-testid="stMain"] h1')) return false;
for (const c of document.querySelectorAll('[data-testid="stPlotlyChart"]')) {
  if (!c.querySelector('.main-svg')) return false;
}
return true;
"""

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


def wait_done(drv, timeout: float = PAGE_TIMEOUT, settle: float = 1.0) -> None:
    """Wait until the page has stayed finished for ``settle`` seconds."""
    deadline = time.monotonic() + timeout
    since = None
    while time.monotonic() < deadline:
        if drv.execute_script(_DONE_JS):
            since = since or time.monotonic()
            if time.monotonic() - since >= settle:
                return
        else:
            since = None
        time.sleep(0.2)
    state = drv.execute_script(
        "const a=document.querySelector('[data-testid=\"stApp\"]');"
        "return a && a.getAttribute('data-test-script-state');"
    )
    raise AssertionError(f"{drv.current_url} still not finished after {timeout:g} s ({state})")


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
    wait_done(driver)
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
    wait_done(driver)
    if query:  # generated images only: safe to keep as the README's screenshots
        assert "dataset=synthetic" in driver.current_url
        screenshot(driver, "lab")
    button = driver.find_element(By.CSS_SELECTOR, ".st-key-lab_run button")
    assert "Attack and defend" in button.text
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()
    time.sleep(0.5)  # let the fragment's rerun start
    wait_done(driver)
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
    fresh = Server(ROBUSTLENS_PRELOAD="0")
    try:
        fresh.wait_healthy(SERVER_TIMEOUT)
        driver.get(f"{fresh.url}/recap")
        wait_done(driver)
        check_router(driver)
    finally:
        fresh.stop()


def test_server_log_has_no_traceback(server, driver):
    log = server.tail(100_000)
    assert "Traceback" not in log, log[-4000:]
