"""The browser tests' tools: `cruddur serve` in a subprocess, and Debian's headless
Chromium driven by Selenium (never a browser downloaded from elsewhere)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT

CRUDDUR = ROOT / ".venv" / "bin" / "cruddur"
INSTALL_HINT = (
    "the browser tests need Debian's Chromium: apt-get install -y chromium chromium-driver "
    "(bin/test installs them when it runs as root)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, **kwargs) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, **kwargs)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


@contextlib.contextmanager
def serving(env: dict[str, str], ready: tuple[int, ...] = (200,)) -> Iterator[str]:
    """`cruddur serve` (granian, 1 worker) with `env`; yields its base URL once
    /api/health answers with a status in `ready`."""
    port = free_port()
    full_env = {**os.environ, "NO_COLOR": "1", "PORT": str(port), **env}
    for name in ("PROD_CONNECTION_URL", "AWS_COGNITO_USER_POOL_ID"):
        if name not in env:
            full_env.pop(name, None)
    process = subprocess.Popen(
        [str(CRUDDUR), "serve", "--workers", "1", "--threads", "4"],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                if get(f"{base}/api/health")[0] in ready:
                    break
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "cruddur serve did not answer in 30 s"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def start_chromium():
    """Headless Chromium from the system's packages, with its console log kept."""
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
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


def screenshot_folder(tmp: Path) -> Path:
    """CRUDDUR_SCREENSHOTS=docs/screenshots keeps them (for the README); else a temp dir."""
    given = os.environ.get("CRUDDUR_SCREENSHOTS", "").strip()
    folder = (ROOT / given) if given else tmp
    folder.mkdir(parents=True, exist_ok=True)
    return folder
