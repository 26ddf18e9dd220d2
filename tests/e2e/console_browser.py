"""The web console in a real browser: Debian's Chromium driven by playwright (which
cannot download a browser of its own here: ``executable_path``), against the stack of
``conftest.stack``. Screenshots go to ``tests/artifacts/`` (kept by CI as artifacts).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
#: How long a page may take to show what a test waits for (a campaign finishing).
WAIT_MS = 90_000


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def signed_in(
    browser: Browser, base_url: str, key: str, *, by_link: bool = False
) -> Iterator[Page]:
    """A fresh browser profile, logged in to the console with ``key`` by its form, or
    ``by_link`` as ``dispatcher run --open`` prints it (``/console/login#key=...``)."""
    context = browser.new_context(
        base_url=base_url, viewport={"width": 1280, "height": 900}, accept_downloads=True
    )
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    try:
        if by_link:
            page.goto(f"/console/login#key={key}")
        else:
            page.goto("/console/")
            assert "/console/login" in page.url  # no session yet: the login form
            page.get_by_label("API key").fill(key)
            page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/console/")
        assert key not in page.url
        yield page
    except BaseException:
        screenshot(page, "failed")  # what the page showed when the test gave up
        raise
    finally:
        context.close()


#: The controls of a page a screen reader would announce without a name.
_UNNAMED = """() => Array.from(document.querySelectorAll(
    "input:not([type=hidden]), select, textarea, button, a[href]"
  )).filter(el => {
    const named = el.labels && el.labels.length ? el.labels[0].textContent :
      el.getAttribute("aria-label") || (el.getAttribute("aria-labelledby") &&
      document.getElementById(el.getAttribute("aria-labelledby"))?.textContent) ||
      el.textContent;
    return !(named || "").trim();
  }).map(el => el.outerHTML)"""


def unnamed_controls(page: Page) -> list[str]:
    """Form controls, buttons and links without a label or text (should be none)."""
    found: list[str] = page.evaluate(_UNNAMED)
    return found


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"console-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
