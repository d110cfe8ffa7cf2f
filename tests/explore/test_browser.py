"""End to end in headless Chromium: the page over the shipped ECG bundle redraws as a slider moves, and the measured
heart rate follows the requested one.

Needs Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``; ``.ci/run`` installs them when
absent) and selenium (``pip install monai_gen[test]``). ``MONAI_GEN_EXPLORER_SCREENSHOT=path.png`` also keeps the
screenshot there (the README's ``docs/images/explorer.png`` is made so).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_TIMEOUT_S = 180


def _executable(names: tuple[str, ...]) -> str | None:
    return next((path for path in map(shutil.which, names) if path), None)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install monai_gen[test])")
    binary, driver = _executable(_BROWSERS), _executable(("chromedriver",))
    if binary is None or driver is None:
        pytest.skip(f"no headless Chromium here (browser {binary}, driver {driver}); Debian: apt-get install chromium "
                    "chromium-driver (.ci/run does it)")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium's manager look for a browser online
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1150",
                 "--lang=en-GB"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    chrome.set_script_timeout(30)
    yield chrome
    chrome.quit()


def _wait(chrome, condition, message: str, timeout: float = _TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition(chrome)
        if value:
            return value
        time.sleep(0.1)
    seen = chrome.execute_script(
        "const f = document.getElementById('figure'), s = document.getElementById('status');"
        "return {message: document.getElementById('message').textContent, state: s.dataset.state,"
        " shown: f.dataset.requested, slider: (document.getElementById('c-heart_rate') || {}).value,"
        " box: (document.getElementById('n-heart_rate') || {}).value}")
    raise AssertionError(f"{message} within {timeout} s (page: {seen})")


def _shown(chrome) -> dict | None:
    """The request of the sample on screen once the page is idle on it, with the measured values; else None."""
    status = chrome.find_element("id", "status")
    figure = chrome.find_element("id", "figure")
    if status.get_attribute("data-state") != "ready" or not figure.get_attribute("data-requested"):
        return None
    measured = {cell.get_attribute("data-measured"): cell.get_attribute("data-value")
                for cell in chrome.find_elements("css selector", "td[data-measured]")}
    return {"requested": json.loads(figure.get_attribute("data-requested")), "measured": measured,
            "sample_id": figure.get_attribute("data-sample-id")}


def _measured(shown: dict, name: str) -> float:
    value = shown["measured"][name]
    assert value not in (None, ""), f"{name} was not measurable on the shown sample: {shown}"
    return float(value)


def test_slider_redraws_and_measured_heart_rate_follows(browser, explorer, tmp_path):
    from selenium.webdriver.common.keys import Keys

    _, url = explorer
    browser.get(url)
    opening = _wait(browser, _shown, "the first sample was not shown")
    browser.find_element("id", "next-seed").click()  # seed 1: seed 0's beat at 120 bpm reads 91 bpm
    first = _wait(browser, lambda b: (s := _shown(b)) and s["sample_id"] != opening["sample_id"] and s,
                  "the sample of seed 1 was not shown")
    start_rate = float(first["requested"]["heart_rate"])
    slider = browser.find_element("id", "c-heart_rate")
    assert slider.get_attribute("type") == "range" and float(slider.get_attribute("step")) == 1.0

    # press the arrow key once per bpm up to 120: every press is a slider change; the page keeps one request in flight,
    # always for the newest position, so it ends on the sample of the last one
    slider.send_keys(Keys.ARROW_RIGHT * int(120 - start_rate))
    assert float(slider.get_attribute("value")) == 120.0
    shown = _wait(browser, lambda b: (s := _shown(b)) and s["requested"].get("heart_rate") == 120.0 and s,
                  "the sample of heart_rate 120 was not shown")
    assert shown["sample_id"] != first["sample_id"]
    assert _measured(shown, "heart_rate") == pytest.approx(120, abs=12)  # shipped weights follow heart rate
    assert _measured(shown, "qt") < _measured(first, "qt")  # and shorten QT with it, as a heart does
    shown_rate = browser.find_element("css selector", "td[data-requested=heart_rate]").text
    assert shown_rate == "120 bpm"

    # nothing came from anywhere but this server
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
    assert set(origins) <= {url.rstrip("/")}, origins

    screenshot = tmp_path / "explorer.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 50_000
    if os.environ.get("MONAI_GEN_EXPLORER_SCREENSHOT"):
        target = Path(os.environ["MONAI_GEN_EXPLORER_SCREENSHOT"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, target)

    # a typed value out of range: the library's message in the page, the shown sample kept
    box = browser.find_element("id", "n-qt")
    box.clear()
    box.send_keys("900", Keys.TAB)
    message = _wait(browser, lambda b: b.find_element("id", "message").text, "no message for qt = 900 ms")
    assert "condition 'qt' = 900 ms is outside its valid range [200, 700]." in message
    assert browser.find_element("id", "status").get_attribute("data-state") == "error"
    assert browser.find_element("id", "figure").get_attribute("data-sample-id") == shown["sample_id"]
