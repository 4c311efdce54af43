"""The browser tier runs: Chromium shows a real server's JSON, and a checked page notices
what goes wrong on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from browser.conftest import CheckedPage, NewPage

from support import Server


def shown_json(checked: CheckedPage, url: str) -> Any:
    """Open ``url``, a JSON document, and read it from the page (Chromium's viewer)."""
    response = checked.page.goto(url)
    assert response is not None
    assert (200, "application/json") == (
        response.status,
        response.headers["content-type"].split(";")[0],
    )
    return json.loads(checked.page.locator("pre").first.inner_text())


def test_chromium_shows_the_health_and_the_openapi_document(
    tmp_path: Path, checked_page: CheckedPage, new_page: NewPage
) -> None:
    """/healthz and /openapi.json of ``lifecycle serve`` in the browser, with JavaScript
    and without; an expected 404 is no error."""
    db = f"sqlite:///{tmp_path / 'x.db'}"
    server = Server(tmp_path, ["--db", db, "--insecure-no-signature", "--public-read"])
    try:
        assert {"status": "ok", "events": 0} == shown_json(checked_page, f"{server.url}/healthz")
        document = shown_json(checked_page, f"{server.url}/openapi.json")
        assert ("3.1.0", "lifecycle") == (document["openapi"], document["info"]["title"])
        assert "/healthz" in document["paths"]
        checked_page.expect_status("/no-such-page", 404)
        response = checked_page.page.goto(f"{server.url}/no-such-page")
        assert response is not None
        assert 404 == response.status
        without_js = new_page(java_script_enabled=False)
        assert "ok" == shown_json(without_js, f"{server.url}/healthz")["status"]
    finally:
        server.stop()


def test_a_console_error_fails_the_check(checked_page: CheckedPage) -> None:
    """The recorder itself: a page's console.error is a problem, and check() says so."""
    checked_page.page.set_content("<script>console.error('deliberate: ' + 6 * 7)</script>")
    checked_page.page.wait_for_function("document.readyState === 'complete'")
    (problem,) = checked_page.problems()
    assert problem.startswith("console error: deliberate: 42"), problem
    with pytest.raises(AssertionError, match="deliberate: 42"):
        checked_page.check()
    checked_page.forget()  # the fixture's own check, at the end, passes
    checked_page.check()
