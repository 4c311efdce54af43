"""The routes of ``lifecycle serve``, and the one table that turns exceptions into answers.

Handlers answer only success: every error is raised, and :meth:`Api.exception_handlers`
(Starlette's ``exception_handlers``) turns it into ``{"error": message}`` with its status,
counts refused webhooks and logs what an operator must see.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import aiohttp
import anyio
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import CONTENT_TYPE_LATEST
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ExceptionHandler

from .._convert import _dumps
from .._engine import Engine
from .._json import change_json, delivery_json, overdue_json, result_json, status_json
from .._lifecycles import LIFECYCLES
from .._records import Delivery, Overdue, ResourceStatus
from ..errors import CursorGone, InvalidArgument, ProviderError, StoreRefused, StoreUnavailable
from ..stores._sql import SqlStore
from ._args import MAX_INT, int_arg, key_arg, read_body, seconds_arg
from ._config import ServerConfig, check
from ._feed import POLL, Wakeup, listen
from ._feeder import Engines, EngineThread, Load, QueueFull, open_engines
from ._forward import Forwarder, parse_endpoint, signer, state_of
from ._metrics import AccessLog, Metrics
from ._openapi import openapi
from ._signature import SIGNATURE_HEADER, SignatureRefused
from ._ui import Ui, token_cookie
from ._views import meeting_of

__all__ = ["Api", "WebhookRefused", "create_app"]

log = logging.getLogger("lifecycle.http")

WEBHOOKS = "/webhooks"
UI = "/ui/"
MAX_PAGE = 1000
_RETRY_AFTER = {"Retry-After": "5"}
_BEARER = {"WWW-Authenticate": 'Bearer realm="lifecycle"'}

Endpoint = Callable[[Request], Awaitable[Response]]


class WebhookRefused(HTTPException):
    """A webhook answered without being fed; ``reason`` labels the refusal counter."""

    def __init__(self, status_code: int, detail: str, reason: str) -> None:
        super().__init__(status_code, detail)
        self.reason = reason


def _json(value: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(_dumps(value), status, headers, media_type="application/json")


def _route_path(request: Request) -> str | None:
    """The template of the route that matched ``request`` (``/resources/{lifecycle}...``)."""
    return getattr(request.scope.get("route"), "path", None)


def _page_arg(request: Request, name: str, default: int, top: int = MAX_INT) -> int:
    return int_arg(name, request.query_params.get(name), default, top)


def _next(request: Request, **changes: int) -> str:
    query = {**request.query_params, **{k: str(v) for k, v in changes.items()}}
    return f"{request.url.path}?{urlencode(query)}"


class Api:
    """The endpoints and their error table, around the engines its lifespan opens."""

    def __init__(self, config: ServerConfig, key: rsa.RSAPublicKey | None) -> None:
        self.config = config
        self.key = key
        self.metrics = Metrics()
        self.load = Load(config.max_queue)
        """The webhooks held unanswered; ``lifecycle serve``'s protocol sheds on it too."""
        self.wakeup = Wakeup()
        """Wakes the readers of the change feed when changes commit."""
        self._closing = anyio.Event()  # ends the event streams at shutdown
        self._engines: Engines | None = None
        self.ui = Ui(config, lambda: self.engines)

    @property
    def engines(self) -> Engines:
        """The open engines; RuntimeError before the lifespan has started."""
        if self._engines is None:
            raise RuntimeError("the app has not started (its lifespan opens the engines)")
        return self._engines

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Open the engines for as long as the app runs, and sweep (then reconcile)
        every ``sweep_interval``; on the way out, stop sweeping, and answer every queued
        webhook before closing the engines."""
        config = self.config
        try:
            async with AsyncExitStack() as stack:
                reconciler = None
                if config.videosdk_api_key and config.videosdk_secret:
                    from ..reconcile import VideoSDK  # the reconcile extra

                    reconciler = stack.enter_context(
                        VideoSDK(
                            config.videosdk_api_key,
                            config.videosdk_secret,
                            config.videosdk_api_url,
                        )
                    )
                self._engines = await stack.enter_async_context(
                    open_engines(
                        config.db,
                        config.redelivery_window,
                        config.max_batch,
                        self.key,
                        self.load,
                        config.deadlines,
                        reconciler,
                        self.wakeup.notify,
                    )
                )
                tasks = [asyncio.create_task(listen(config.db, self.wakeup))]
                tasks += await self._forwarders(stack)
                if config.sweep_interval is not None:
                    tasks.append(asyncio.create_task(self._sweep_every(config.sweep_interval)))
                try:
                    yield
                finally:
                    self._closing.set()
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._engines = None

    async def _forwarders(self, stack: AsyncExitStack) -> list[asyncio.Task[None]]:
        """A task forwarding the feed to each ``--forward`` endpoint (none without)."""
        config = self.config
        if not config.forward or not config.forward_secret:
            return []
        sign = signer(config.forward_secret)
        state = EngineThread(Engine.open(config.db))
        stack.callback(state.close)
        client = await stack.enter_async_context(aiohttp.ClientSession())
        holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        forwarders = [
            Forwarder(
                parse_endpoint(text),
                sign,
                state,
                self.engines.read,
                self.wakeup,
                self.metrics,
                client,
                config.forward_retry_for,
                holder,
            )
            for text in config.forward
        ]
        for f in forwarders:
            log.info("forwarding changes to %s", f.endpoint.label)
        return [asyncio.create_task(f.run()) for f in forwarders]

    async def _sweep_every(self, interval: float) -> None:
        while True:
            await self.sweep()
            await asyncio.sleep(interval)

    async def sweep(self) -> None:
        """Flag what is overdue, then reconcile it (with a reconciler); what fails is
        logged and tried again at the next sweep."""
        try:
            flagged = await self.engines.sweep()
        except StoreUnavailable as e:
            log.warning("sweep failed: %s", e)
            return
        if flagged:
            self.wakeup.notify()
        for r in flagged:
            self.metrics.flagged(r)
            log.warning(
                "overdue: %s %s %s",
                r.lifecycle,
                "/".join(r.key or ()),
                r.reason,
                extra={"fields": {"seq": r.seq, "lifecycle": r.lifecycle, "key": r.key}},
            )
        try:
            done = await self.engines.reconcile()
        except (ProviderError, StoreUnavailable) as e:
            log.warning("reconciling failed: %s", e)
            return
        if any(item.result is not None for item in done or ()):
            self.wakeup.notify()
        for item in done or ():
            self.metrics.reconciled(item)
            if item.result is not None:
                s = item.overdue.status
                log.info(
                    "reconciled: %s %s: %s",
                    s.lifecycle,
                    "/".join(s.key),
                    item.answer.reason,
                    extra={"fields": {"seq": item.result.seq, "outcome": item.result.outcome}},
                )

    def routes(self) -> list[BaseRoute]:
        """Every route; the read endpoints behind the bearer token."""
        read = self._behind_token
        return [
            Route(WEBHOOKS, self.webhook, methods=["POST"]),
            Route("/resources", read(self.resources), methods=["GET"]),
            Route("/resources/{lifecycle}/{key:path}", read(self.resource), methods=["GET"]),
            Route("/anomalies", read(self.anomalies), methods=["GET"]),
            Route("/changes", read(self.changes), methods=["GET"]),
            Route("/changes/stream", read(self.change_stream), methods=["GET"]),
            Route("/deliveries", read(self.deliveries), methods=["GET"]),
            Route("/deliveries/{id}/retry", read(self.retry_delivery), methods=["POST"]),
            Route("/sessions/{session_id}", read(self.session), methods=["GET"]),
            Route("/metrics", read(self.metrics_text), methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/openapi.json", self.openapi_json, methods=["GET"]),
            *self.ui.routes(),
        ]

    # -- errors: the one place where an exception becomes an answer ---------------------

    def exception_handlers(self) -> dict[Any, ExceptionHandler]:
        """Exception class -> its answer; Starlette picks the closest class of the raised one.

        ====================================  ======  ===============================
        raised                                status  also
        ====================================  ======  ===============================
        :class:`SignatureRefused`             401     counted ``signature``, logged
        :class:`WebhookRefused`               401/413 counted by reason, logged
        ``HTTPException`` (ours, Starlette's) its own its headers (``Allow``, ...)
        :class:`InvalidArgument`              400
        :class:`CursorGone`                   410     ``oldest``: the cursor to resume
                                                      after
        :class:`StoreRefused`                 400     logged (feeding never raises it)
        :class:`StoreUnavailable`             503     ``Retry-After: 5``, logged; a
                                                      webhook is counted as refused
        :class:`QueueFull`                    503     ``Retry-After: 1``, counted as
                                                      refused (``overloaded``)
        ``ClientDisconnect``                  499     logged at info, counted as a
                                                      client abort (no one reads it)
        anything else                         500     logged by the ASGI server
        ====================================  ======  ===============================
        """
        return {
            SignatureRefused: self._signature_refused,
            WebhookRefused: self._webhook_refused,
            HTTPException: self._http_error,
            InvalidArgument: self._invalid_argument,
            CursorGone: self._cursor_gone,
            StoreRefused: self._store_refused,
            StoreUnavailable: self._store_unavailable,
            QueueFull: self._queue_full,
            ClientDisconnect: self._client_disconnect,
            Exception: self._internal_error,
        }

    def _error(
        self,
        request: Request,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Response:
        """The answer to an error: ``{"error": message, **extra}``, or for a page under
        ``/ui/``, a page saying it."""
        if request.url.path.startswith(UI):
            return self.ui.error_page(request, status, message, headers)
        return _json({"error": message, **(extra or {})}, status, headers)

    async def _signature_refused(self, request: Request, exc: Exception) -> Response:
        return await self._webhook_refused(request, WebhookRefused(401, str(exc), "signature"))

    async def _webhook_refused(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, WebhookRefused)
        self.metrics.refused.labels(exc.reason).inc()
        log.warning("webhook refused: %s", exc.detail)
        return self._error(request, exc.status_code, exc.detail)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return self._error(request, exc.status_code, exc.detail, exc.headers)

    async def _invalid_argument(self, request: Request, exc: Exception) -> Response:
        return self._error(request, 400, str(exc))

    async def _cursor_gone(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CursorGone)
        return self._error(request, 410, str(exc), extra={"oldest": exc.oldest})

    async def _store_refused(self, request: Request, exc: Exception) -> Response:
        log.warning("the store refused a request: %s", exc)
        return self._error(request, 400, str(exc))

    async def _store_unavailable(self, request: Request, exc: Exception) -> Response:
        if _route_path(request) == WEBHOOKS:
            log.error("store unavailable, webhook refused for a retry: %s", exc)
            self.metrics.refused.labels("store_unavailable").inc()
            return self._error(request, 503, "the store is unavailable; retry later", _RETRY_AFTER)
        log.error("store unavailable: %s", exc)
        return self._error(request, 503, "the store is unavailable", _RETRY_AFTER)

    async def _queue_full(self, request: Request, exc: Exception) -> Response:
        self.metrics.refused.labels("overloaded").inc()
        return self._error(request, 503, f"overloaded: {exc}; retry later", {"Retry-After": "1"})

    async def _client_disconnect(self, request: Request, exc: Exception) -> Response:
        self.metrics.client_aborts.inc()
        log.info("the client went away before its request was read: %s", request.url.path)
        return self._error(request, 499, "client closed the request")

    async def _internal_error(self, request: Request, exc: Exception) -> Response:
        return self._error(request, 500, "internal server error")

    # -- receiving ---------------------------------------------------------------------

    async def webhook(self, request: Request) -> Response:
        """Verify, store and classify one webhook; the outcome as JSON."""
        body = await self._body(request)
        # the writer checks the signature, off the event loop (SignatureRefused: 401)
        result = await self.engines.feed(body, request.headers.get(SIGNATURE_HEADER))
        self.metrics.fed(result)
        request.state.outcome = result.outcome.value
        return _json(result_json(result))

    async def _body(self, request: Request) -> bytes:
        """The raw body; :class:`WebhookRefused` (413) beyond ``max_body``, read or announced."""
        limit = self.config.max_body
        too_large = WebhookRefused(413, f"the body is larger than {limit} bytes", "too_large")
        return await read_body(request, limit, too_large)

    # -- reading -----------------------------------------------------------------------

    def _behind_token(self, handler: Endpoint) -> Endpoint:
        """``handler`` answered only with the bearer token, when one is configured (a
        ``GET`` may carry it in the pages' cookie instead: see ``/ui/login``)."""
        token = self.config.token
        if not token:
            return handler
        expected = token.encode()

        async def endpoint(request: Request) -> Response:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            bearer = scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), expected)
            if not bearer and not (request.method == "GET" and token_cookie(request, token)):
                raise HTTPException(401, "a valid bearer token is required", _BEARER)
            return await handler(request)

        return endpoint

    async def resources(self, request: Request) -> Response:
        q = request.query_params
        limit = _page_arg(request, "limit", 100, MAX_PAGE)
        offset = _page_arg(request, "offset", 0)
        overdue = q.get("overdue", "false")
        if overdue not in ("true", "false"):
            raise InvalidArgument(f"overdue must be true or false, not {overdue!r}")
        if overdue == "true":
            late = await self.engines.read(Engine.overdue, None, q.get("lifecycle"))
            page = [o for o in late if _matches(o, q)][offset : offset + limit]
            return _json(
                {
                    "items": [overdue_json(o) for o in page],
                    "next": _next(request, offset=offset + limit)
                    if len(page) == limit > 0
                    else None,
                }
            )
        found = await self.engines.read(
            Engine.resources,
            q.get("lifecycle"),
            q.get("meetingId"),
            q.get("sessionId"),
            q.get("state"),
            limit=limit,
            offset=offset,
        )
        more = len(found) == limit > 0
        return _json(
            {
                "items": [status_json(s, history=False) for s in found],
                "next": _next(request, offset=offset + limit) if more else None,
            }
        )

    async def resource(self, request: Request) -> Response:
        name = request.path_params["lifecycle"]
        if name not in LIFECYCLES:
            raise InvalidArgument(f"unknown lifecycle {name!r}; known: {', '.join(LIFECYCLES)}")
        key = key_arg(LIFECYCLES[name], request.path_params["key"])
        found = await self.engines.read(_status, name, key)
        if found is None:
            raise HTTPException(404, f"no {name} {'/'.join(key)}")
        return _json(status_json(found))

    async def anomalies(self, request: Request) -> Response:
        q = request.query_params
        limit = _page_arg(request, "limit", 100, MAX_PAGE)
        found = await self.engines.read(
            Engine.anomalies,
            q.get("lifecycle"),
            q.get("outcome"),
            q.get("meetingId"),
            q.get("sessionId"),
            after=_page_arg(request, "after", 0),
            limit=limit,
        )
        more = len(found) == limit > 0
        return _json(
            {
                "items": [result_json(r) for r in found],
                "next": _next(request, after=found[-1].seq) if more else None,
            }
        )

    async def session(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        limit = _page_arg(request, "limit", 100, MAX_PAGE)
        offset = _page_arg(request, "offset", 0)
        session, found = await self.engines.read(_session_page, session_id, limit, offset)
        if session is None and not found and offset == 0:
            raise HTTPException(404, f"no session {session_id}")
        grouped: dict[str, list[dict[str, Any]]] = {}
        for s in found:
            if s.lifecycle != "session":
                grouped.setdefault(s.lifecycle, []).append(status_json(s, history=False))
        meeting = meeting_of(session, found)
        return _json(
            {
                "sessionId": session_id,
                "meetingId": meeting,
                "session": status_json(session, history=False) if session else None,
                "resources": grouped,
                "next": _next(request, offset=offset + limit) if len(found) == limit > 0 else None,
            }
        )

    async def changes(self, request: Request) -> Response:
        """The changes after ``after``; with ``wait``, held up to that many seconds
        until there is one."""
        after, filters = _feed_args(request)
        limit = _page_arg(request, "limit", 100, MAX_PAGE)
        wait = seconds_arg("wait", request.query_params.get("wait"), MAX_WAIT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            ticket = self.wakeup.ticket()
            found = await self.engines.read(Engine.changes, after, limit, **filters)
            left = deadline - loop.time()
            if found or left <= 0:
                break
            await self.wakeup.wait(ticket, left)
        items = [change_json(c) for c in found]
        return _json({"items": items, "next": found[-1].cursor if found else after})

    async def change_stream(self, request: Request) -> Response:
        """Server-Sent Events: each change after ``after`` (``Last-Event-ID`` wins), its
        cursor as the event's id, then each new one as it commits."""
        after, filters = _feed_args(request, stream=True)
        first = await self.engines.read(Engine.changes, after, MAX_PAGE, **filters)  # 410 here
        read, wakeup = self.engines.read, self.wakeup

        async def events() -> AsyncIterator[ServerSentEvent]:
            cursor, page = after, first
            while True:
                for c in page:
                    data = _dumps(change_json(c)).decode()
                    yield ServerSentEvent(data, event="change", id=str(c.cursor))
                    cursor = c.cursor
                ticket = wakeup.ticket()
                try:
                    page = await read(Engine.changes, cursor, MAX_PAGE, **filters)
                except CursorGone as e:  # pruned while streaming: say where to resume
                    gone = _dumps({"error": str(e), "oldest": e.oldest}).decode()
                    yield ServerSentEvent(gone, event="gone")
                    return
                if not page:
                    await wakeup.wait(ticket, POLL)

        return EventSourceResponse(events(), ping=15, shutdown_event=self._closing)

    async def deliveries(self, request: Request) -> Response:
        """The forwarded changes recorded: given up on (``failed``), asked to be sent
        again (``pending``), sent again since (``delivered``)."""
        q = request.query_params
        status = q.get("status")
        if status not in (None, *_DELIVERY_STATES):
            raise InvalidArgument(
                f"status must be one of {', '.join(_DELIVERY_STATES)}, not {status!r}"
            )
        limit = _page_arg(request, "limit", 100, MAX_PAGE)
        found = await self.engines.read(_deliveries, status, q.get("endpoint"), limit)
        return _json({"items": [delivery_json(d) for d in found]})

    async def retry_delivery(self, request: Request) -> Response:
        """Send a delivery that was given up on again (202; its forwarder does it)."""
        found = await self.engines.write(_retry, request.path_params["id"])
        self.wakeup.notify()
        return _json(delivery_json(found), 202)

    async def metrics_text(self, request: Request) -> Response:
        self.metrics.set_resources(await self.engines.read(Engine.state_counts))
        self.metrics.set_overdue(await self.engines.read(Engine.overdue))
        return Response(self.metrics.text(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(self, request: Request) -> Response:
        """Whether the writer can take a batch now: a health document, 503 included,
        never an error."""
        try:
            seq = await self.engines.health()
        except StoreUnavailable:
            return _json({"status": "unavailable"}, 503)
        return _json({"status": "ok", "events": seq})

    async def openapi_json(self, request: Request) -> Response:
        return _json(openapi())


_DELIVERY_STATES = ("failed", "pending", "delivered")


def _deliveries(
    engine: Engine, status: str | None, endpoint: str | None, limit: int
) -> list[Delivery]:
    if not isinstance(engine.store, SqlStore):
        return []  # nothing is forwarded from memory
    return engine.store.deliveries(status, endpoint, limit)


def _retry(engine: Engine, delivery_id: str) -> Delivery:
    """Mark a failed delivery ``pending``, for its forwarder to send again."""
    store = state_of(engine)
    found = store.deliveries(None, None, 1, delivery_id)
    if not found:
        raise HTTPException(404, f"no delivery {delivery_id!r}")
    if found[0].status == "pending":
        return found[0]
    again = found[0]._replace(status="pending", updated_at=time.time())
    store.delivered(again)
    return again


MAX_WAIT = 60.0
"""The longest a ``GET /changes?wait=`` is held, in seconds."""


def _feed_args(request: Request, stream: bool = False) -> tuple[int, dict[str, str | None]]:
    """The cursor to read after (``after``; for a stream, ``Last-Event-ID`` wins), and
    the filters."""
    q = request.query_params
    last = (request.headers.get("last-event-id") or None) if stream else None
    if last is not None:
        cursor = int_arg("Last-Event-ID", last, 0)
    else:
        cursor = int_arg("after", q.get("after"), 0)
    return cursor, {
        "lifecycle": q.get("lifecycle"),
        "state": q.get("state"),
        "meeting_id": q.get("meetingId"),
        "session_id": q.get("sessionId"),
    }


def _matches(o: Overdue, query: Mapping[str, str]) -> bool:
    """Whether ``o`` passes the filters of ``GET /resources`` (besides its lifecycle)."""
    data, state = o.status.data, o.status.state
    return all(
        query.get(name) in (None, value)
        for name, value in (
            ("meetingId", data.get("meetingId")),
            ("sessionId", data.get("sessionId")),
            ("state", state),
        )
    )


def _session_page(
    engine: Engine, session_id: str, limit: int, offset: int
) -> tuple[ResourceStatus | None, list[ResourceStatus]]:
    """The session's own status, and a page of every resource of that session."""
    own = engine.resources("session", session_id=session_id, limit=1)
    return (own[0] if own else None), engine.resources(
        session_id=session_id, limit=limit, offset=offset
    )


def _status(engine: Engine, name: str, key: tuple[str, ...]) -> ResourceStatus | None:
    return engine.status(name, *key)


def create_app(config: ServerConfig) -> Starlette:
    """The ASGI app of ``lifecycle serve``; its lifespan opens and closes the engines.

    Raises :class:`~lifecycle.errors.ConfigError` for settings that cannot work (see
    :class:`ServerConfig`), before anything is opened.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 returns the Starlette app itself.
    """
    api = Api(config, check(config))
    app = Starlette(
        routes=api.routes(),
        middleware=[Middleware(AccessLog, metrics=api.metrics)],
        exception_handlers=api.exception_handlers(),
        lifespan=api.lifespan,
    )
    app.state.load = api.load
    return app
