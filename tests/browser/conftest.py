"""Fixtures of the browser tier: pages in Debian's headless Chromium, driven by Playwright.

The browser is ``LIFECYCLE_CHROMIUM``, else ``/usr/bin/chromium`` (Debian's ``chromium``,
which ``.ci/run`` installs). Never a build of ``playwright install``: those do not run
here. Without the browser the tier fails, unless ``LIFECYCLE_SKIP_BROWSER=1``: then it
skips. Each test worker (pytest-xdist) starts a browser of its own, for each run of tests
of one module: Playwright's synchronous API keeps an event loop running while it is open,
and a test of another tier that calls ``asyncio.run`` on the same worker would fail.

A checked page records what a user would see go wrong: console errors, uncaught
exceptions, requests that fail and answers of status 400 or more (except those the test
expects), and the test fails at its end when there was any.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Error,
    Page,
    Request,
    Response,
    sync_playwright,
)

from browser.chromium import VIEWPORT, launch
from browser.chromium import executable as chromium_path

# what Chromium asks for on its own, not the page: tolerated when absent
IMPLICIT_STATUSES = [("/favicon.ico", 404)]

# how Chromium's console reports an answer or a request that failed, both also seen as
# a response or a failed request: they are counted there, once
_FAILED_STATUS = re.compile(
    r"^Failed to load resource: the server responded with a status of (\d+)"
)
_FAILED_REQUEST = re.compile(r"^Failed to load resource: (net::\S+)")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """A headless Chromium, closed when the worker leaves the module's tests."""
    path = chromium_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        message = (
            f"no Chromium at {path} for the browser tests: install Debian's chromium "
            "(apt-get install chromium; .ci/run installs it) or name another in "
            "LIFECYCLE_CHROMIUM; LIFECYCLE_SKIP_BROWSER=1 skips these tests"
        )
        if os.environ.get("LIFECYCLE_SKIP_BROWSER") == "1":
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class CheckedPage:
    """A page and what went wrong on it: ``check()`` fails when anything did."""

    page: Page
    console_errors: list[ConsoleMessage] = field(default_factory=list)
    page_errors: list[Error] = field(default_factory=list)
    failed_requests: list[Request] = field(default_factory=list)
    error_responses: list[Response] = field(default_factory=list)
    expected_statuses: list[tuple[str, int]] = field(default_factory=lambda: [*IMPLICIT_STATUSES])

    def __post_init__(self) -> None:
        self.page.on("console", self._on_console)
        self.page.on("pageerror", self._on_page_error)
        self.page.on("requestfailed", self._on_request_failed)
        self.page.on("response", self._on_response)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message)

    def _on_page_error(self, error: Error) -> None:
        self.page_errors.append(error)

    def _on_request_failed(self, request: Request) -> None:
        self.failed_requests.append(request)

    def _on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.error_responses.append(response)

    def expect_status(self, url_part: str, status: int) -> None:
        """Accept answers of ``status`` to URLs that contain ``url_part`` (before or
        after they come)."""
        self.expected_statuses.append((url_part, status))

    def _expected(self, url: str, status: int) -> bool:
        return any(part in url and status == s for part, s in self.expected_statuses)

    def problems(self) -> list[str]:
        """What went wrong so far, one line each, expected answers left out."""
        try:  # a round trip to the browser: the events it sent before are in
            if not self.page.is_closed():
                self.page.title()
        except Error:
            pass
        statuses: dict[tuple[str, int], str] = {}
        failures: dict[str, str] = {}
        console: list[str] = []
        for message in self.console_errors:
            url = message.location.get("url", "")
            if found := _FAILED_STATUS.match(message.text):
                statuses.setdefault((url, int(found[1])), f"console: {message.text} ({url})")
            elif found := _FAILED_REQUEST.match(message.text):
                failures.setdefault(url, f"console: {message.text} ({url})")
            else:
                where = f" ({url}:{message.location.get('lineNumber', 0)})" if url else ""
                console.append(f"console error: {message.text}{where}")
        for response in self.error_responses:
            request = response.request
            statuses[(response.url, response.status)] = (
                f"HTTP {response.status} {response.status_text}: {request.method} {response.url}"
            )
        for request in self.failed_requests:
            error = request.failure or "failed"
            if request.resource_type == "eventsource" and "ERR_ABORTED" in error:
                failures.pop(request.url, None)  # a change feed closed, or left with its
                continue  # page: not an error
            failures[request.url] = f"request failed: {request.method} {request.url}: {error}"
        return [
            *console,
            *(f"page error: {error.name}: {error.message}" for error in self.page_errors),
            *failures.values(),
            *(line for (url, s), line in statuses.items() if not self._expected(url, s)),
        ]

    def check(self) -> None:
        """Fail, listing them, when anything went wrong."""
        if found := self.problems():
            raise AssertionError("the page went wrong:\n" + "\n".join(f"  {p}" for p in found))

    def forget(self) -> None:
        """Drop what was recorded so far (a test of the recorder itself)."""
        for records in (
            self.console_errors,
            self.page_errors,
            self.failed_requests,
            self.error_responses,
        ):
            records.clear()


class NewPage(Protocol):
    """``new_page(java_script_enabled=True, **context_options)``: a checked page in a
    context of its own (options as ``Browser.new_context``'s; viewport 1280x800)."""

    def __call__(self, java_script_enabled: bool = True, **options: Any) -> CheckedPage: ...


@pytest.fixture
def new_page(chromium: Browser) -> Iterator[NewPage]:
    """Open checked pages, each in a new context; at the end, fail when anything went
    wrong on any of them, and close them."""
    opened: list[CheckedPage] = []

    def opener(java_script_enabled: bool = True, **options: Any) -> CheckedPage:
        context = chromium.new_context(
            **{"viewport": VIEWPORT, **options, "java_script_enabled": java_script_enabled}
        )
        opened.append(CheckedPage(context.new_page()))
        return opened[-1]

    yield opener
    try:
        found = [(checked.page.url, checked.problems()) for checked in opened]
    finally:
        for checked in opened:
            checked.page.context.close()
    wrong = [f"{url}:\n" + "\n".join(f"  {p}" for p in ps) for url, ps in found if ps]
    if wrong:
        print("\n".join(wrong))
        raise AssertionError("the page went wrong:\n" + "\n".join(wrong))


@pytest.fixture
def checked_page(new_page: NewPage) -> CheckedPage:
    """A checked page in a new context: viewport 1280x800, JavaScript on."""
    return new_page()
