"""The dashboard in a real browser: a ``streamlit run`` server and headless Chromium.

Shared by ``bench/dashboard.py`` (the budgets) and ``tests/e2e/test_browser.py``.
Chromium needs the Debian packages ``chromium`` and ``chromium-driver`` and the
``selenium`` package. Nothing is downloaded: Selenium is given the driver and
browser paths, so Selenium Manager is never asked to fetch them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- streamlit
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitServer:
    """``streamlit run dashboard.py`` on a free local port, in its own process group.

    ``args`` are extra command-line options, ``env`` extra environment variables.
    The output is read line by line into ``lines``; ``url_printed`` is set (and
    ``url_at`` stamped, on the ``time.monotonic`` clock like ``started``) when
    Streamlit prints its URL.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.url_printed = threading.Event()
        self.url_at = 0.0
        self.lines: list[str] = []
        self.started = time.monotonic()
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
                *args,
            ],
            cwd=ROOT,
            env=dict(
                os.environ,
                PYTHONUNBUFFERED="1",
                STREAMLIT_BROWSER_GATHER_USAGE_STATS="false",
                **(env or {}),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,  # its own process group: the model worker goes with it
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if "URL:" in line and not self.url_printed.is_set():
                self.url_at = time.monotonic()
                self.url_printed.set()

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited ({self.proc.returncode}):\n{self.tail()}")
            if self.healthy():
                return
            time.sleep(0.3)
        raise RuntimeError(f"streamlit not healthy after {timeout:g} s:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        """The last ``n`` characters of the server's output."""
        return "\n".join(list(self.lines))[-n:]

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


# --------------------------------------------------------------------------- chromium
def browser_paths() -> tuple[str | None, str | None]:
    """``(chromium, chromedriver)`` found on PATH, ``None`` for each one absent."""
    chromium = next(
        filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))),
        None,
    )
    return chromium, shutil.which("chromedriver")


def browser_missing() -> str:
    """Why :func:`chromium_driver` cannot run here, or ``""`` when it can."""
    chromium, driver = browser_paths()
    if chromium is None or driver is None:
        return "chromium/chromedriver absent (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    return ""


def chromium_driver(width: int, height: int, page_load_timeout: float = 120.0):
    """A headless Chromium Selenium driver with a ``width`` x ``height`` window."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = browser_paths()
    if chromium is None or driver is None:
        raise RuntimeError(browser_missing())
    # Never let Selenium Manager look for (or download) a browser or driver.
    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
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
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    drv.set_page_load_timeout(page_load_timeout)
    return drv


# The page is done when the app has finished its run, no running indicator is
# shown, the page title is there and (with ``charts``, arguments[0]) every
# Plotly chart has drawn its SVG.
_DONE_JS = """
const app = document.querySelector('[data-testid="stApp"]');
if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
if (document.querySelector('[data-testid="stStatusWidgetRunningIcon"],'
    + '[data-testid="stStatusWidgetRunningManIcon"],[data-testid="stAppSkeleton"]')) return false;
if (!document.querySelector('[data-testid="stMain"] h1')) return false;
if (arguments[0]) {
  for (const c of document.querySelectorAll('[data-testid="stPlotlyChart"]')) {
    if (!c.querySelector('.main-svg')) return false;
  }
}
return true;
"""


def wait_done(drv, timeout: float = 300.0, settle: float = 1.0, charts: bool = True) -> None:
    """Wait until the page has stayed finished for ``settle`` seconds.

    ``charts``: also wait until every Plotly chart is drawn. Raises
    :class:`TimeoutError` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    since = None
    while time.monotonic() < deadline:
        if drv.execute_script(_DONE_JS, charts):
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
    raise TimeoutError(f"{drv.current_url} still not finished after {timeout:g} s ({state})")
