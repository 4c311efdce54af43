"""How the browser tests (and ``bench/ui.py``) start Chromium: Debian's build, off the
network, which is closed here (its background connections would be refused)."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Browser, Playwright

__all__ = ["ARGS", "VIEWPORT", "executable", "launch"]

ARGS = [  # Playwright adds --headless itself
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}


def executable() -> Path:
    """``LIFECYCLE_CHROMIUM``, else Debian's ``/usr/bin/chromium``."""
    return Path(os.environ.get("LIFECYCLE_CHROMIUM") or "/usr/bin/chromium")


def launch(playwright: Playwright) -> Browser:
    """A headless Chromium (never a build of ``playwright install``: those do not run
    here)."""
    return playwright.chromium.launch(executable_path=executable(), headless=True, args=ARGS)
