"""Debian's chromium for browser tests (Playwright cannot download its
own browsers here): launched headless, or the test is skipped, and under
CI failed, saying how to install it."""

import os

#: Where Debian's chromium package installs the browser.
CHROMIUM = "/usr/bin/chromium"


def launch_chromium(playwright):
    """A headless chromium of ``playwright`` (a sync_playwright() object)."""
    import pytest

    if not os.path.exists(CHROMIUM):
        message = f"no {CHROMIUM}: apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI needs it)")
        pytest.skip(message)
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    )
