"""A real headless browser for the HTML report: Debian's chromium driven through chromedriver (selenium).

Used by the tests (the rendered page: cells, colours, chart points) and by `make demo` (screenshots). Chromium is
started as root, headless, with JavaScript off (the report must not need it) and with everything that would reach
the network turned off (without those flags it waits on the closed network), in a fresh profile folder removed
afterwards. `.ci/run` installs the packages (apt-get install chromium chromium-driver) when they are missing.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PACKAGES = "chromium chromium-driver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")


def binaries() -> tuple[str, str] | None:
    """(chromium, chromedriver) when both are installed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@contextmanager
def browser(width: int = 1280, height: int = 1600, javascript: bool = False) -> Iterator[Any]:
    """A selenium WebDriver on headless chromium; quit (and its profile folder removed) at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = binaries()
    if found is None:
        raise RuntimeError(f"chromium or chromedriver is not installed (apt-get install -y {PACKAGES})")
    chromium, driver_bin = found
    profile = tempfile.mkdtemp(prefix="knfleet-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(flag)
    if not javascript:
        opts.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=driver_bin))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(page: Path, png: Path, width: int = 1280) -> Path:
    """A PNG of the whole page (the window grown to the page's height)."""
    with browser(width=width, height=800) as d:
        d.get(page.resolve().as_uri())
        height = d.find_element("tag name", "body").rect["height"]
        d.set_window_size(width, int(height) + 120)
        png.parent.mkdir(parents=True, exist_ok=True)
        d.save_screenshot(str(png))
    return png
