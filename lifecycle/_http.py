"""The webhook receiver and status API: an ASGI app (Starlette) served by uvicorn.

One engine feeds webhooks on its own thread: requests that arrive while a batch is
being committed wait in a queue and go in the next batch, one transaction each (group
commit), so a webhook is answered only once its event is durably stored. Reads go to a
second engine on another thread, so queries never hold up the receiver.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress
import logging
import logging.config
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlencode

import attrs
import orjson
import prometheus_client as prom
import uvicorn
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._convert import _dumps
from ._engine import Engine
from ._json import result_json, status_json
from ._lifecycles import LIFECYCLES, WEBHOOK_TYPES, Outcome
from ._openapi import openapi
from ._records import FeedResult
from .errors import ConfigError, StoreUnavailable
from .stores._sql import redact as _redact
from .stores.sqlite import sqlite_path

__all__ = ["ConfigError", "ServerConfig", "create_app", "serve"]

log = logging.getLogger("lifecycle.http")

SIGNATURE_HEADER = "videosdk-signature"
MAX_PAGE = 1000
_MAX_INT = 2**63 - 1  # what a database integer holds
_OUTCOMES = frozenset(o.value for o in Outcome)
_T = TypeVar("_T")


@attrs.frozen(kw_only=True)
class ServerConfig:
    """How ``lifecycle serve`` runs (see docs/http.md)."""

    db: str = "lifecycle.db"
    host: str = "127.0.0.1"
    port: int = 8000
    public_key: bytes | None = attrs.field(default=None, repr=False)  # PEM
    insecure_no_signature: bool = False
    token: str | None = attrs.field(default=None, repr=False)
    public_read: bool = False
    max_body: int = 64 * 1024
    redelivery_window: float | None = None
    log_level: str = "info"
    max_batch: int = 256


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """The RSA public key in ``pem``; :class:`ConfigError` when it is not one."""
    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"the public key is not a PEM public key: {e}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError(f"the public key must be an RSA key, not {type(key).__name__}")
    return key


def check(config: ServerConfig) -> rsa.RSAPublicKey | None:
    """Refuse settings that cannot work or would expose the server; the verifying key."""
    if config.public_key is None and not config.insecure_no_signature:
        raise ConfigError(
            "no public key to verify webhook signatures: give --public-key FILE "
            "(or LIFECYCLE_PUBLIC_KEY), or --insecure-no-signature to accept "
            "unsigned webhooks"
        )
    if config.public_key is not None and config.insecure_no_signature:
        raise ConfigError("--public-key and --insecure-no-signature contradict each other")
    if not config.token and not config.public_read and not _is_loopback(config.host):
        raise ConfigError(
            f"refusing to serve status on {config.host} without a token: give "
            "--token (or LIFECYCLE_TOKEN), or --public-read to allow anyone"
        )
    if config.max_body < 1:
        raise ConfigError("--max-body must be at least 1 byte")
    if config.redelivery_window is not None and not config.redelivery_window > 0:
        raise ConfigError("--redelivery-window must be a positive number of seconds")
    return None if config.public_key is None else load_public_key(config.public_key)


# -- the engine's threads ---------------------------------------------------------------


class _Worker:
    """An engine with a thread of its own: calls run there one at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lifecycle")

    async def call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        self._pool.submit(self.engine.close).result()
        self._pool.shutdown()


class _Feeder:
    """Feeds webhooks in arrival order, each batch that queued up in one transaction."""

    def __init__(self, worker: _Worker, max_batch: int) -> None:
        self._worker = worker
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[bytes, asyncio.Future[FeedResult]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def feed(self, body: bytes) -> FeedResult:
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        done: asyncio.Future[FeedResult] = asyncio.get_running_loop().create_future()
        await self._queue.put((body, done))
        return await done

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self._worker.call(
                    self._worker.engine.feed_many, [body for body, _ in batch]
                )
            except Exception as e:  # the store failed: every webhook of the batch is retried
                for _, done in batch:
                    if not done.done():
                        done.set_exception(e)
            else:
                for (_, done), result in zip(batch, results, strict=True):
                    if not done.done():
                        done.set_result(result)
            for _ in batch:
                self._queue.task_done()

    async def stop(self) -> None:
        """Feed and answer every webhook already queued, then stop."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()


# -- metrics --------------------------------------------------------------------------


class _Metrics:
    def __init__(self) -> None:
        self.registry = prom.CollectorRegistry()
        self.webhooks = prom.Counter(
            "lifecycle_webhooks",
            "Webhooks fed, by type and outcome.",
            ["webhook_type", "outcome"],
            registry=self.registry,
        )
        self.refused = prom.Counter(
            "lifecycle_webhooks_refused",
            "Webhooks answered without being fed, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.resources = prom.Gauge(
            "lifecycle_resources",
            "Tracked resources, by lifecycle and state.",
            ["lifecycle", "state"],
            registry=self.registry,
        )
        self.latency = prom.Histogram(
            "lifecycle_request_duration_seconds",
            "Time to answer a request, by route.",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        for name, lc in LIFECYCLES.items():  # every series exists from the start
            for state in lc.states:
                self.resources.labels(name, state)

    def fed(self, result: FeedResult) -> None:
        known = result.webhook_type in WEBHOOK_TYPES
        self.webhooks.labels(result.webhook_type if known else "other", result.outcome.value).inc()


# -- requests ---------------------------------------------------------------------------


def _json(value: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(_dumps(value), status, headers, media_type="application/json")


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return _json({"error": message}, status, headers)


class _BadRequest(Exception):  # noqa: N818 - answered as 400
    pass


def _page_arg(request: Request, name: str, default: int, top: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer, not {raw!r}") from None
    top = _MAX_INT if top is None else top
    if not 0 <= value <= top:
        raise _BadRequest(f"{name} must be between 0 and {top}")
    return value


def _lifecycle_arg(name: str | None) -> str | None:
    if name is not None and name not in LIFECYCLES:
        raise _BadRequest(f"unknown lifecycle {name!r}; known: {', '.join(LIFECYCLES)}")
    return name


def _next(request: Request, **changes: int) -> str:
    query = {**request.query_params, **{k: str(v) for k, v in changes.items()}}
    return f"{request.url.path}?{urlencode(query)}"


class _Api:
    """The endpoints, around a feeding and a reading engine."""

    def __init__(self, config: ServerConfig, key: rsa.RSAPublicKey | None) -> None:
        self.config = config
        self.key = key
        self.metrics = _Metrics()
        self._reader: _Worker | None = None
        self._feeder: _Feeder | None = None

    @property
    def reader(self) -> _Worker:
        if self._reader is None:
            raise RuntimeError("the app has not started (its lifespan opens the engines)")
        return self._reader

    @property
    def feeder(self) -> _Feeder:
        if self._feeder is None:
            raise RuntimeError("the app has not started (its lifespan opens the engines)")
        return self._feeder

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        options: dict[str, Any] = {"redelivery_window": self.config.redelivery_window}
        writer = _Worker(Engine.open(self.config.db, **options))
        # an in-memory database exists on its connection only: read through the writer
        shared = sqlite_path(self.config.db) == ""
        reader = writer if shared else _Worker(Engine.open(self.config.db))
        self._reader, self._feeder = reader, _Feeder(writer, self.config.max_batch)
        try:
            yield
        finally:
            await self._feeder.stop()
            if reader is not writer:
                reader.close()
            writer.close()

    def _authorized(self, request: Request) -> bool:
        token = self.config.token
        if not token:
            return True
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), token.encode())

    def read(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A read endpoint: bearer token checked, bad arguments 400, a lost store 503."""

        async def endpoint(request: Request) -> Response:
            if not self._authorized(request):
                return _error(
                    401,
                    "a valid bearer token is required",
                    {"WWW-Authenticate": 'Bearer realm="lifecycle"'},
                )
            try:
                return await handler(request)
            except _BadRequest as e:
                return _error(400, str(e))
            except StoreUnavailable as e:
                log.error("store unavailable: %s", e)
                return _error(503, "the store is unavailable", {"Retry-After": "5"})

        return endpoint

    async def webhook(self, request: Request) -> Response:
        """Verify, store and classify one webhook; the outcome as JSON."""
        body, refused = await self._body(request)
        if refused is not None:
            return refused
        if self.key is not None:
            refused = self._verify(request, body)
            if refused is not None:
                return refused
        try:
            result = await self.feeder.feed(body)
        except StoreUnavailable as e:
            log.error("store unavailable, webhook refused for a retry: %s", e)
            self.metrics.refused.labels("store_unavailable").inc()
            return _error(503, "the store is unavailable; retry later", {"Retry-After": "5"})
        self.metrics.fed(result)
        request.state.outcome = result.outcome.value
        return _json(result_json(result))

    async def _body(self, request: Request) -> tuple[bytes, Response | None]:
        limit = self.config.max_body
        too_big = _error(413, f"the body is larger than {limit} bytes")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            self.metrics.refused.labels("too_large").inc()
            return b"", too_big
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                self.metrics.refused.labels("too_large").inc()
                return b"", too_big
            chunks.append(chunk)
        return b"".join(chunks), None

    def _verify(self, request: Request, body: bytes) -> Response | None:
        assert self.key is not None
        header = request.headers.get(SIGNATURE_HEADER)
        if not header:
            problem = f"the {SIGNATURE_HEADER} header is missing"
        else:
            try:
                self.key.verify(
                    base64.b64decode(header, validate=True),
                    body,
                    padding.PKCS1v15(),
                    hashes.SHA256(),
                )
                return None
            except (binascii.Error, ValueError):
                problem = f"the {SIGNATURE_HEADER} header is not base64"
            except InvalidSignature:
                problem = "the signature does not match the body"
        self.metrics.refused.labels("signature").inc()
        log.warning("webhook refused: %s", problem)
        return _error(401, problem)

    async def resources(self, request: Request) -> Response:
        q = request.query_params
        limit = _page_arg(request, "limit", 100, MAX_PAGE)
        offset = _page_arg(request, "offset", 0)
        found = await self.reader.call(
            self.reader.engine.resources,
            _lifecycle_arg(q.get("lifecycle")),
            q.get("meetingId"),
            q.get("sessionId"),
            q.get("state"),
            limit=limit,
            offset=offset,
        )
        return _json(
            {
                "items": [status_json(s, history=False) for s in found],
                "next": _next(request, offset=offset + limit) if len(found) == limit > 0 else None,
            }
        )

    async def resource(self, request: Request) -> Response:
        name = _lifecycle_arg(request.path_params["lifecycle"])
        assert name is not None
        key = tuple(request.path_params["key"].split("/"))
        fields = LIFECYCLES[name].definition.key_fields
        if len(key) != len(fields):
            return _error(
                404,
                f"no such path: {name} is keyed by {'/'.join(fields)}, "
                f"{len(fields)} values, not {len(key)}",
            )
        found = await self.reader.call(self.reader.engine.status, name, *key)
        if found is None:
            return _error(404, f"no {name} {'/'.join(key)}")
        return _json(status_json(found))

    async def anomalies(self, request: Request) -> Response:
        q = request.query_params
        outcome = q.get("outcome")
        if outcome is not None and outcome not in _OUTCOMES:
            raise _BadRequest(
                f"unknown outcome {outcome!r}; known: {', '.join(o.value for o in Outcome)}"
            )
        limit = _page_arg(request, "limit", 100, MAX_PAGE)
        found = await self.reader.call(
            self.reader.engine.anomalies,
            _lifecycle_arg(q.get("lifecycle")),
            outcome,
            q.get("meetingId"),
            q.get("sessionId"),
            after=_page_arg(request, "after", 0),
            limit=limit,
        )
        return _json(
            {
                "items": [result_json(r) for r in found],
                "next": _next(request, after=found[-1].seq) if len(found) == limit > 0 else None,
            }
        )

    async def session(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        found = await self.reader.call(self.reader.engine.resources, session_id=session_id)
        if not found:
            return _error(404, f"no session {session_id}")
        grouped: dict[str, list[dict[str, Any]]] = {}
        for s in found:
            grouped.setdefault(s.lifecycle, []).append(status_json(s, history=False))
        session = grouped.pop("session", [None])[0]
        meeting = session["key"]["meetingId"] if session else found[0].data.get("meetingId")
        return _json(
            {
                "sessionId": session_id,
                "meetingId": meeting,
                "session": session,
                "resources": grouped,
            }
        )

    async def metrics_text(self, request: Request) -> Response:
        counts = await self.reader.call(self.reader.engine.state_counts)
        for name, lc in LIFECYCLES.items():
            for state in lc.states:
                self.metrics.resources.labels(name, state).set(counts.get(name, {}).get(state, 0))
        return Response(
            prom.generate_latest(self.metrics.registry), media_type=prom.CONTENT_TYPE_LATEST
        )

    async def healthz(self, request: Request) -> Response:
        engine = self.reader.engine
        try:
            seq = await self.reader.call(lambda: engine.events_fed)
        except StoreUnavailable:
            return _json({"status": "unavailable"}, 503)
        return _json({"status": "ok", "events": seq})

    async def openapi_json(self, request: Request) -> Response:
        return _json(openapi())


class _AccessLog:
    """One structured log line and one latency sample per request."""

    def __init__(self, app: ASGIApp, api: _Api) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.api.metrics.latency.labels(scope["method"], path, str(status)).observe(elapsed)
            if log.isEnabledFor(logging.INFO):
                extra = {
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                }
                outcome = scope.get("state", {}).get("outcome")
                if outcome is not None:
                    extra["outcome"] = outcome
                log.info("request", extra={"fields": extra})


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such path, method not allowed) as JSON too."""
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, exc.detail, exc.headers)


def create_app(config: ServerConfig) -> ASGIApp:
    """The ASGI app of ``lifecycle serve`` (engines open when it starts)."""
    api = _Api(config, check(config))
    app = Starlette(
        routes=[
            Route("/webhooks", api.webhook, methods=["POST"]),
            Route("/resources", api.read(api.resources), methods=["GET"]),
            Route("/resources/{lifecycle}/{key:path}", api.read(api.resource), methods=["GET"]),
            Route("/anomalies", api.read(api.anomalies), methods=["GET"]),
            Route("/sessions/{session_id}", api.read(api.session), methods=["GET"]),
            Route("/metrics", api.read(api.metrics_text), methods=["GET"]),
            Route("/healthz", api.healthz, methods=["GET"]),
            Route("/openapi.json", api.openapi_json, methods=["GET"]),
        ],
        lifespan=api.lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    return _AccessLog(app, api)


# -- running ----------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message and its fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def _log_config(level: str) -> dict[str, Any]:
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": handler},
        "loggers": {
            name: {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
            for name in ("lifecycle", "uvicorn", "uvicorn.error")
        },
    }


def serve(config: ServerConfig) -> None:
    """Run the server until SIGINT or SIGTERM; in-flight requests are finished first.

    Raises :class:`ConfigError` for settings that cannot work and
    :class:`StoreUnavailable` when the database cannot be opened, before binding.
    """
    app = create_app(config)
    Engine.open(config.db).close()  # a bad database URL fails here, not at the first request
    logging.config.dictConfig(_log_config(config.log_level))
    if config.public_key is None:
        log.warning(
            "SIGNATURES ARE NOT VERIFIED (--insecure-no-signature): anyone who can "
            "reach this port can feed events"
        )
    if not config.token:
        log.warning(
            "status endpoints need no token"
            + (
                " and are open to every host (--public-read)"
                if config.public_read
                else " (bound to a loopback address)"
            )
        )
    log.info(
        "serving",
        extra={
            "fields": {
                "url": f"http://{config.host}:{config.port}",
                "db": _redact(config.db),
                "signatures": "not verified" if config.public_key is None else "verified",
                "read_token": bool(config.token),
                "redelivery_window": config.redelivery_window,
            }
        },
    )
    uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_config=None,
            access_log=False,
            log_level=config.log_level,
            timeout_graceful_shutdown=30,
            lifespan="on",
        )
    ).run()
