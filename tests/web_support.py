"""The browser tests' tools: `cruddur serve` in a subprocess, and Debian's headless
Chromium driven by Selenium (never a browser downloaded from elsewhere)."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT
from server_support import Served

INSTALL_HINT = (
    "the browser tests need Debian's Chromium: apt-get install -y chromium chromium-driver "
    "(bin/test installs them when it runs as root)"
)


@contextlib.contextmanager
def serving(env: dict[str, str], ready: tuple[int, ...] = (200,)) -> Iterator[str]:
    """`cruddur serve` (granian, 1 worker) with `env`; yields its base URL once
    /api/health answers with a status in `ready`. Neither the production database nor
    Cognito unless `env` names them."""
    server = Served(
        "--workers", "1", "--threads", "4", env=env,
        unset=[name for name in ("PROD_CONNECTION_URL", "AWS_COGNITO_USER_POOL_ID")
               if name not in env],
    )  # fmt: skip
    try:
        server.wait_healthy(ready=ready)
        yield server.base
    finally:
        server.stop()


def start_chromium(prefs: dict | None = None):
    """Headless Chromium from the system's packages, with its console log kept; `prefs`:
    the profile's preferences (content settings, say)."""
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail(INSTALL_HINT, pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("Selenium is missing: bin/lib/install test", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--window-size=1280,900",
        "--lang=en-US",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if prefs:
        options.add_experimental_option("prefs", prefs)
    # Chromium leaves a folder (org.chromium.Chromium.*) in TMPDIR after it quits: one of
    # this process's own, removed when the process ends, instead of /tmp.
    if not _browser_tmp:
        _browser_tmp.append(tempfile.mkdtemp(prefix="cruddur-test-chromium-"))
        atexit.register(shutil.rmtree, _browser_tmp[0], ignore_errors=True)
    service = Service(executable_path=driver, env={**os.environ, "TMPDIR": _browser_tmp[0]})
    return webdriver.Chrome(options=options, service=service)


_browser_tmp: list[str] = []  # made on first use


def screenshot_folder(tmp: Path) -> Path:
    """CRUDDUR_SCREENSHOTS=docs/screenshots keeps them (for the README); else a temp dir."""
    given = os.environ.get("CRUDDUR_SCREENSHOTS", "").strip()
    folder = (ROOT / given) if given else tmp
    folder.mkdir(parents=True, exist_ok=True)
    return folder
