"""Fixtures for the browser tier (``test_browser.py``, marked ``browser``).

The tier drives Debian's Chromium (``/usr/bin/chromium``, package ``chromium``) through
its own chromedriver (``/usr/bin/chromedriver``, package ``chromium-driver``); set
``CHROMIUM_BINARY`` and ``CHROMEDRIVER_BINARY`` to use another pair. Both paths are
given to Selenium, so Selenium Manager never runs and nothing is downloaded. When
either program is missing the tier is skipped, and the skip's reason names it.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.selenium_manager import SeleniumManager

CHROMIUM = Path(os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER_BINARY", "/usr/bin/chromedriver"))
ARTIFACTS_DIR = Path(settings.BASE_DIR) / "test-artifacts"
DESKTOP_SIZE = (1280, 800)

# Headless, and quiet: no sync, no component updates, no first-run pages, no
# background requests. Chromium still looks up some Google and search-engine hosts
# at start; the resolver rule answers every name but localhost with "not found"
# without asking DNS, so the only network the browser uses is the live server's.
CHROMIUM_FLAGS = (
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost",
    "--headless=new",
    "--no-sandbox",  # the tests may run as root in a container, where the sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--password-store=basic",
    "--force-color-profile=srgb",
    "--lang=en-US",
)


def browser_missing() -> str | None:
    """Why the browser tier cannot run here, or None when it can."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (path.is_file() and os.access(path, os.X_OK)):
            return f"browser tier: {path} not found (install Debian's {package} package)"
    return None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the browser tier when there is no browser; otherwise make sure its live
    server can share the test database. Runs last, after -m and -k have deselected."""
    browser_items = [item for item in items if item.get_closest_marker("browser")]
    if not browser_items:
        return
    reason = browser_missing()
    if reason is not None:
        for item in browser_items:
            item.add_marker(pytest.mark.skip(reason=reason))
        return
    put_sqlite_test_database_on_disk()


def put_sqlite_test_database_on_disk() -> None:
    """ChannelsLiveServerTestCase serves from another process, which cannot see an
    in-memory database; SQLite's test database is in memory unless TEST NAME names a
    file. Name one, unique to this run (PostgreSQL's is set in config/settings/test.py)."""
    database = settings.DATABASES["default"]
    test_settings = database.setdefault("TEST", {})
    if database["ENGINE"].endswith("sqlite3") and not test_settings.get("NAME"):
        run_id = getattr(settings, "TEST_RUN_ID", str(os.getpid()))
        test_settings["NAME"] = str(Path(tempfile.gettempdir()) / f"test-browser-{run_id}.sqlite3")


def chromium_options(user_data_dir: Path) -> Options:
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    options.add_argument("--window-size={},{}".format(*DESKTOP_SIZE))
    # Keep the console, so tests can check the pages log no errors.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


class BrowserPool:
    """Chromium instances, started when first asked for, each with a fresh profile;
    reset between tests, quit at the end of the run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.drivers: list[webdriver.Chrome] = []

    def get(self, count: int) -> list[webdriver.Chrome]:
        while len(self.drivers) < count:
            profile = self.root / f"profile-{len(self.drivers)}"
            profile.mkdir()
            service = Service(executable_path=str(CHROMEDRIVER))
            self.drivers.append(
                webdriver.Chrome(service=service, options=chromium_options(profile))
            )
        return self.drivers[:count]

    def reset(self) -> None:
        """One window per browser, on a blank page (so its sockets close), no cookies,
        desktop size, and an empty console log."""
        for driver in self.drivers:
            handles = driver.window_handles
            for handle in handles[1:]:
                driver.switch_to.window(handle)
                driver.close()
            driver.switch_to.window(handles[0])
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
            driver.get("about:blank")
            driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
            driver.get_log("browser")

    def quit(self) -> None:
        for driver in self.drivers:
            driver.quit()
        self.drivers.clear()


def _selenium_manager_must_not_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("Selenium Manager was called: it would download a driver or browser")


@pytest.fixture(scope="session")
def browser_session_pool() -> Iterator[BrowserPool]:
    """One BrowserPool for the whole run: Chromium starts once per browser needed."""
    root = Path(tempfile.mkdtemp(prefix="chromium-profiles-"))
    pool = BrowserPool(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SeleniumManager, "binary_paths", _selenium_manager_must_not_run)
        try:
            yield pool
        finally:
            pool.quit()
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="class")
def browser_pool(request: pytest.FixtureRequest, browser_session_pool: BrowserPool) -> None:
    """The pool on the test class as ``cls.browsers`` (the tier's test cases are
    unittest classes, which take fixtures this way)."""
    request.cls.browsers = browser_session_pool


def png_size_and_colours(data: bytes) -> tuple[int, int, int]:
    """Width, height and the number of distinct pixel values of an 8-bit RGB or RGBA
    PNG (what Chromium's screenshots are), decoded with the standard library."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    position, idat, header = 8, bytearray(), None
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        position += 12 + length
    if header is None:
        raise ValueError("PNG without IHDR")
    width, height, depth, colour_type, _, _, interlace = header
    channels = {2: 3, 6: 4}.get(colour_type)
    if depth != 8 or channels is None or interlace != 0:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour_type}")
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    previous = bytearray(stride)
    colours: set[tuple[bytes, ...]] = set()
    for row in range(height):
        start = row * (stride + 1)
        line = _unfilter(
            raw[start], bytearray(raw[start + 1 : start + 1 + stride]), previous, channels
        )
        colours.update(struct.iter_unpack(f"{channels}s", line))
        previous = line
    return width, height, len(colours)


def _unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> bytearray:
    """Undo one scanline's PNG filter (RFC 2083, section 6)."""
    if kind == 0:
        return line
    if kind == 2:
        # "Up", what Chromium uses for nearly every row: a bytewise add of the row
        # above, done on whole rows as integers (no carry crosses a byte).
        high = int.from_bytes(b"\x80" * len(line), "big")
        a, b = int.from_bytes(line, "big"), int.from_bytes(previous, "big")
        total = ((a & ~high) + (b & ~high)) ^ ((a ^ b) & high)
        return bytearray(total.to_bytes(len(line), "big"))
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            upper_left = previous[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + _paeth(left, up, upper_left)) & 0xFF
    return line


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c
