"""Open an HTML file in headless Chromium (Debian's chromium and chromedriver) and inspect it."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@dataclass
class PageCheck:
    images: int
    broken_images: list[str]
    audios: int
    unloaded_audios: int
    errors: list[str]


def browser_available() -> bool:
    try:
        import selenium  # noqa: F401 - only checking that it is installed
    except ImportError:
        return False
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def check_page(path: Path, timeout: float = 30.0) -> PageCheck:
    """Load ``path`` and report images that did not decode, audio without metadata, and console errors."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Flags for a closed network and a root user, as this machine's own probe starts Chromium.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(Path(path).resolve().as_uri())
        deadline = time.monotonic() + timeout
        while True:
            state = driver.execute_script(
                """
                const images = [...document.images];
                const audios = [...document.querySelectorAll('audio')];
                return {
                  images: images.length,
                  broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
                  audios: audios.length,
                  unloaded: audios.filter(a => a.readyState < 1 || a.error).length,
                };
                """
            )
            if (not state["broken"] and not state["unloaded"]) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        return PageCheck(state["images"], state["broken"], state["audios"], state["unloaded"], errors)
    finally:
        driver.quit()
