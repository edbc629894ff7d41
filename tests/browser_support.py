"""Headless Chromium for the browser tests: Debian's ``chromium`` driven by Playwright, never a downloaded one.

    with chromium() as browser:
        context = browser.new_context(base_url=server.url)
        context.add_cookies([actor_cookie(server.url, SECRET, {"id": "operator"})])

Screenshots go to ``$GLYPH_SCREENSHOT_DIR``, by default ``test-artifacts/screenshots/<datasette version>/``
in the repository (git-ignored).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import datasette
from itsdangerous import URLSafeSerializer

CHROMIUM = os.environ.get("GLYPH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parent.parent


def screenshot_dir() -> Path:
    """Where this run's screenshots go (created, emptied of an earlier run's PNGs)."""
    default = REPO / "test-artifacts" / "screenshots" / datasette.__version__
    path = Path(os.environ.get("GLYPH_SCREENSHOT_DIR") or default)
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.png"):
        old.unlink()
    return path


def missing_browser() -> str:
    """Why the browser tests cannot run here, or "" when they can."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) or set GLYPH_CHROMIUM"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is missing: pip install -e '.[test]'"
    return ""


# Set by .ci/run: there a missing browser fails the run instead of skipping the browser tests.
REQUIRE_BROWSER = "GLYPH_REQUIRE_BROWSER"


def require_browser() -> None:
    """Skip the calling test, saying what is missing, when no browser can run here; fail instead when
    ``$GLYPH_REQUIRE_BROWSER`` is set (as in CI, where the browser tests must run)."""
    import pytest

    problem = missing_browser()
    if not problem:
        return
    if os.environ.get(REQUIRE_BROWSER):
        pytest.fail(f"{problem} (browser tests are required: {REQUIRE_BROWSER} is set)")
    pytest.skip(f"browser tests need a browser: {problem}")


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium (Playwright's sync API), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def actor_cookie(url: str, secret: str, actor: dict) -> dict:
    """The ``ds_actor`` cookie Datasette sets at login, signed as ``Datasette.sign(..., "actor")`` does."""
    return {"name": "ds_actor", "value": URLSafeSerializer(secret, "actor").dumps({"a": actor}), "url": url}
