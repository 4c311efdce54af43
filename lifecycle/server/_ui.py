"""The web pages under ``/ui/``: HTML rendered on the server from the engine's queries,
kept live by the change feed (``/changes/stream``) and a few lines of JavaScript.

Every file a page needs is in the package (``templates/``, ``static/``). With a token
configured, ``/ui/login`` takes it once and sets an HttpOnly, SameSite=Strict cookie,
which the read API also accepts for ``GET``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .._convert import Payload
from .._lifecycles import LIFECYCLES, Lifecycle
from ._args import int_arg, key_arg, read_body
from ._config import ServerConfig
from ._diagram import diagram
from ._feeder import Engines
from ._views import (
    STATE_HUES,
    describe,
    event_view,
    key_path,
    label,
    lifecycle_view,
    overview_view,
    resource_view,
    session_view,
)

__all__ = ["COOKIE", "Ui", "token_cookie"]

COOKIE = "lifecycle_token"
"""The cookie that carries the read token for the pages (and their live updates)."""

PAGE = 50
"""Sessions per page of the overview."""

_templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.PackageLoader("lifecycle.server", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
)
_templates.env.globals.update(
    hues=STATE_HUES,
    lifecycles=LIFECYCLES,
    describe=describe,
    key_path=key_path,
    label=label,
)

Page = Callable[[Request], Awaitable[Response]]


LOGIN_FORM = 4096
"""The most bytes the login form may have."""


def cookie_of(token: str) -> str:
    """What the pages' cookie holds for ``token``: a keyed hash of it, so that the cookie
    never carries the token itself (which the API's POST endpoints also take)."""
    return hmac.new(token.encode(), b"lifecycle pages", hashlib.sha256).hexdigest()


def token_cookie(request: Request, token: str) -> bool:
    """Whether ``request`` carries the pages' cookie for ``token``."""
    given = request.cookies.get(COOKIE, "")
    return bool(given) and hmac.compare_digest(given.encode(), cookie_of(token).encode())


class Ui:
    """The pages, reading through the server's engines."""

    def __init__(self, config: ServerConfig, engines: Callable[[], Engines]) -> None:
        self.config = config
        self.engines = engines

    def routes(self) -> list[BaseRoute]:
        page = self._behind_login
        return [
            Route("/ui", lambda _: RedirectResponse("/ui/", 308), methods=["GET"]),
            Route("/ui/", page(self.overview), methods=["GET"]),
            Route("/ui/sessions/{session_id}", page(self.session), methods=["GET"]),
            Route("/ui/resources/{lifecycle}/{key:path}", page(self.resource), methods=["GET"]),
            Route("/ui/lifecycles/{name}", page(self.lifecycle), methods=["GET"]),
            Route("/ui/events/{seq}", page(self.event), methods=["GET"]),
            Route("/ui/login", self.login_form, methods=["GET"]),
            Route("/ui/login", self.login, methods=["POST"]),
            Route("/ui/logout", self.logout, methods=["POST"]),
            Mount(
                "/ui/static",
                StaticFiles(packages=[("lifecycle.server", "static")]),
                name="static",
            ),
        ]

    def _render(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        context = {"login": bool(self.config.token), "live": None, "cursor": 0, **context}
        return _templates.TemplateResponse(request, name, context, status_code=status)

    def error_page(
        self,
        request: Request,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """An error of a page, as a page."""
        page = self._render(request, "error.html", {"status": status, "message": message}, status)
        page.headers.update(headers or {})
        return page

    def _behind_login(self, handler: Page) -> Page:
        """``handler`` answered only with the token's cookie, when a token is configured;
        otherwise a redirect to the login page."""
        token = self.config.token
        if not token:
            return handler

        async def page(request: Request) -> Response:
            if not token_cookie(request, token):
                back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/ui/login?{urlencode({'next': back})}", 303)
            return await handler(request)

        return page

    # -- the pages ---------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        q = request.query_params
        offset = int_arg("offset", q.get("offset"), 0)
        search = q.get("q", "").strip()
        view = await self.engines().read(overview_view, search, PAGE, offset)
        query = {"q": search} if search else {}
        view["newer"] = f"?{urlencode({**query, 'offset': max(offset - PAGE, 0)})}"
        view["older"] = f"?{urlencode({**query, 'offset': offset + PAGE})}"
        return self._render(request, "overview.html", {**view, "live": ""})

    async def session(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        view = await self.engines().read(session_view, session_id)
        if not view["found"]:
            raise HTTPException(404, f"no session {session_id}")
        live = urlencode({"sessionId": session_id})
        return self._render(request, "session.html", {**view, "live": live})

    async def resource(self, request: Request) -> Response:
        name = request.path_params["lifecycle"]
        key = key_arg(_lifecycle(name), request.path_params["key"])
        view = await self.engines().read(resource_view, name, key)
        if view["status"] is None:
            raise HTTPException(404, f"no {name} {'/'.join(key)}")
        data = view["status"].data  # its meeting and session, also of a transcription's
        live = urlencode({"lifecycle": name, **{f: data[f] for f in _FILTERS if f in data}})
        return self._render(request, "resource.html", {**view, "live": live})

    async def lifecycle(self, request: Request) -> Response:
        name = request.path_params["name"]
        _lifecycle(name)
        view = await self.engines().read(lifecycle_view, name)
        view["diagram"] = diagram(view["lifecycle"], view["counts"])
        return self._render(
            request, "lifecycle.html", {**view, "live": urlencode({"lifecycle": name})}
        )

    async def event(self, request: Request) -> Response:
        seq = int_arg("seq", request.path_params["seq"], 0)
        found = await self.engines().read(event_view, seq)
        if found is None:
            raise HTTPException(404, f"event {seq} is not kept (never logged, or pruned)")
        return self._render(
            request, "event.html", {"result": found, "payload": _pretty(found.payload)}
        )

    # -- signing in --------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        return self._render(request, "login.html", {"next": _next(request), "wrong": False})

    async def login(self, request: Request) -> Response:
        """Take the token from the form: a cookie and back to the page, or 401."""
        too_large = HTTPException(413, f"the login form is larger than {LOGIN_FORM} bytes")
        body = await read_body(request, LOGIN_FORM, too_large)
        form = parse_qs(body.decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0]
        back = _next(request, form.get("next", [""])[0] or None)
        token = self.config.token
        if not token:
            return RedirectResponse(back, 303)
        if not hmac.compare_digest(given.encode(), token.encode()):
            return self._render(request, "login.html", {"next": back, "wrong": True}, 401)
        answer = RedirectResponse(back, 303)
        answer.set_cookie(
            COOKIE,
            cookie_of(token),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return answer

    async def logout(self, request: Request) -> Response:
        answer = RedirectResponse("/ui/login", 303)
        answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return answer


_FILTERS = ("meetingId", "sessionId")


def _next(request: Request, given: str | None = None) -> str:
    """Where to go after signing in: a page of ours, the overview by default."""
    back = given if given is not None else request.query_params.get("next", "")
    return back if back.startswith("/ui/") and not back.startswith("//") else "/ui/"


def _lifecycle(name: str) -> Lifecycle:
    if name not in LIFECYCLES:
        raise HTTPException(404, f"no lifecycle {name!r}; known: {', '.join(LIFECYCLES)}")
    return LIFECYCLES[name]


def _pretty(payload: Payload) -> str:
    """A payload as indented JSON, or as it came when it is not JSON."""
    value: Any = payload
    if not isinstance(payload, Mapping):
        raw = payload if isinstance(payload, str) else bytes(payload)
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except TypeError:  # not JSON-able as it is kept: show it as Python sees it
        return repr(value)
