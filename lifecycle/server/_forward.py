"""Forwarding the change feed to other services, as Standard Webhooks.

Each endpoint has a durable cursor in the database and a lease: one receiver at a time
forwards to it (the one holding the lease, renewed as it goes; with several receivers on
one PostgreSQL another takes over when it lapses). The forwarder reads the feed after
the cursor a page at a time, sends the page's changes in lanes (a resource always in
the same lane, its changes one after the other: in order per resource), each retried
with exponential backoff and jitter until ``retry_for`` has passed, then given up on
and recorded as a ``failed`` delivery; then it moves the cursor past the page. A crash
resends from the cursor: at least once, each with the same ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import attrs
from standardwebhooks.webhooks import Webhook

from .._convert import _dumps
from .._engine import Engine
from .._json import change_json
from .._records import Change, Delivery
from ..errors import ConfigError, CursorGone, StoreUnavailable
from ..stores._sql import SqlStore
from ._feed import POLL, Wakeup
from ._feeder import EngineThread
from ._metrics import Metrics

__all__ = ["Endpoint", "Forwarder", "message_type", "parse_endpoint", "signer", "state_of"]

log = logging.getLogger("lifecycle.http")

LANES = 8
"""Changes of different resources sent at once to one endpoint."""
PAGE = 500
LEASE = 15.0
"""Seconds an endpoint's lease lasts unless renewed (every page, or a third of it)."""
FIRST_BACKOFF, MAX_BACKOFF = 1.0, 3600.0
TIMEOUT = 10.0
_TIMEOUT = aiohttp.ClientTimeout(total=TIMEOUT)
_PATTERNS = re.compile(r"[\w*?\[\]-]+\.[\w*?\[\]-]+(,[\w*?\[\]-]+\.[\w*?\[\]-]+)*")


@attrs.frozen
class Endpoint:
    """Where changes are forwarded, and which: ``patterns`` match the message type,
    ``lifecycle.state`` (``recording.stopped``, ``hls.*``); none: every change."""

    url: str
    patterns: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """A short, stable name of the URL (in ``webhook-id`` and the metrics)."""
        return hashlib.blake2b(self.url.encode(), digest_size=4).hexdigest()

    @property
    def label(self) -> str:
        """The URL without what it may hide (credentials, query), for metrics and logs."""
        parts = urlsplit(self.url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"

    def wants(self, change: Change) -> bool:
        kind = message_type(change)
        return not self.patterns or any(fnmatchcase(kind, p) for p in self.patterns)

    def message_id(self, change: Change) -> str:
        return f"msg_{self.id}_{change.cursor}"


def parse_endpoint(text: str) -> Endpoint:
    """``URL`` or ``URL=pattern,pattern`` (the patterns ``lifecycle.state`` globs);
    :class:`ConfigError` for anything else."""
    url, _, patterns = text.rpartition("=")
    if not url or not _PATTERNS.fullmatch(patterns):
        url, patterns = text, ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"--forward {text!r}: give an http(s) URL, optionally followed by "
            "=lifecycle.state patterns (https://example.com/hook=recording.stopped,hls.*)"
        )
    return Endpoint(url, tuple(p for p in patterns.split(",") if p))


def signer(secret: str) -> Webhook:
    """The Standard Webhooks signer of ``secret`` (``whsec_`` and base64);
    :class:`ConfigError` when it is not one."""
    try:
        return Webhook(secret)
    except Exception as e:  # the library raises binascii.Error, ValueError ...
        raise ConfigError(f"--forward-secret is not a Standard Webhooks secret: {e}") from None


def message_type(change: Change) -> str:
    """``lifecycle.state`` entered; ``lifecycle.overdue`` for a sweep's flag."""
    return f"{change.lifecycle}.{'overdue' if change.outcome == 'overdue' else change.after}"


def body_of(change: Change) -> str:
    """What is POSTed: the Standard Webhooks shape, ``type``, ``timestamp``, ``data``."""
    return _dumps(
        {
            "type": message_type(change),
            "timestamp": change.at.isoformat(),
            "data": change_json(change),
        }
    ).decode()


class Forwarder:
    """Forwards the feed to one endpoint, for as long as it runs (a task).

    ``state`` is an engine thread of its own for the cursor, the lease and the
    deliveries; ``read`` reads the feed (the server's reader).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        sign: Webhook,
        state: EngineThread,
        read: Callable[..., Awaitable[Any]],
        wakeup: Wakeup,
        metrics: Metrics,
        client: aiohttp.ClientSession,
        retry_for: float,
        holder: str,
    ) -> None:
        self.endpoint = endpoint
        self.sign = sign
        self.state = state
        self.read = read
        self.wakeup = wakeup
        self.metrics = metrics
        self.client = client
        self.retry_for = retry_for
        self.holder = holder

    async def run(self) -> None:
        """Hold the lease (waiting while another receiver does) and forward."""
        while True:
            try:
                cursor = await self.state.call(_lease, self.endpoint.url, self.holder)
                if cursor is None:
                    await asyncio.sleep(LEASE / 3)
                    continue
                await self._forward_from(cursor)
            except StoreUnavailable as e:
                log.warning("forwarding to %s paused: %s", self.endpoint.label, e)
                await asyncio.sleep(POLL)

    async def _forward_from(self, cursor: int) -> None:
        """Forward after ``cursor`` until the lease is lost."""
        renewed = time.monotonic()
        while True:
            await self._send_again()
            ticket = self.wakeup.ticket()
            try:
                page: list[Change] = await self.read(Engine.changes, cursor, PAGE)
            except CursorGone as e:
                log.error(
                    "forwarding to %s skips the changes up to cursor %d: they were pruned "
                    "before it had them",
                    self.endpoint.label,
                    e.oldest,
                )
                page, cursor = [], e.oldest
            self.metrics.forward_lag(self.endpoint.label, page[0].timestamp if page else None)
            dead = await self._send([c for c in page if self.endpoint.wants(c)])
            if page or dead or time.monotonic() - renewed > LEASE / 3:
                cursor = page[-1].cursor if page else cursor
                held = await self.state.call(
                    _forwarded, self.endpoint.url, self.holder, cursor, dead
                )
                if not held:
                    log.warning("lost the lease of %s to another receiver", self.endpoint.label)
                    return
                renewed = time.monotonic()
            if not page:
                await self.wakeup.wait(ticket, POLL)

    async def _send(self, changes: Sequence[Change]) -> list[Delivery]:
        """Send ``changes``, a resource's in order, resources in lanes at once; those
        given up on."""
        lanes: list[list[Change]] = [[] for _ in range(LANES)]
        for c in changes:
            lanes[hash((c.lifecycle, c.key)) % LANES].append(c)
        dead: list[Delivery] = []

        async def lane(mine: list[Change]) -> None:
            for c in mine:
                failed = await self._deliver(
                    self.endpoint.message_id(c), body_of(c), self.retry_for
                )
                if failed is not None:
                    attempts, error = failed
                    dead.append(
                        Delivery(
                            self.endpoint.message_id(c),
                            self.endpoint.url,
                            c.cursor,
                            "failed",
                            attempts,
                            error,
                            body_of(c),
                            time.time(),
                        )
                    )

        await asyncio.gather(*(lane(m) for m in lanes if m))
        dead.sort(key=lambda d: d.cursor)
        return dead

    async def _send_again(self) -> None:
        """One attempt at each delivery asked to be sent again."""
        pending: list[Delivery] = await self.state.call(_pending, self.endpoint.url)
        for d in pending:
            failed = await self._deliver(d.id, d.body, 0.0)
            attempts, error = failed if failed is not None else (1, None)
            status = "failed" if failed is not None else "delivered"
            again = d._replace(
                status=status, attempts=d.attempts + attempts, error=error, updated_at=time.time()
            )
            await self.state.call(_record, again)

    async def _deliver(
        self, message_id: str, body: str, retry_for: float
    ) -> tuple[int, str] | None:
        """POST ``body`` until it is taken (2xx) or ``retry_for`` seconds have passed;
        None when taken, else the attempts made and the last error."""
        deadline = time.monotonic() + retry_for
        attempt = 0
        while True:
            attempt += 1
            now = datetime.now(UTC)
            headers = {
                "content-type": "application/json",
                "webhook-id": message_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": self.sign.sign(message_id, now, body),
            }
            try:
                async with self.client.post(
                    self.endpoint.url, data=body, headers=headers, timeout=_TIMEOUT
                ) as response:
                    await response.read()
                    error = None if response.ok else f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as e:
                error = f"{type(e).__name__}: {e}".strip()
            self.metrics.delivery(self.endpoint.label, "delivered" if error is None else "error")
            if error is None:
                return None
            wait = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            if time.monotonic() + wait > deadline:
                self.metrics.delivery(self.endpoint.label, "failed")
                log.warning(
                    "gave up forwarding %s to %s after %d attempts: %s",
                    message_id,
                    self.endpoint.label,
                    attempt,
                    error,
                )
                return attempt, error
            await asyncio.sleep(wait)


# -- on the state engine's thread -----------------------------------------------------------


def state_of(engine: Engine) -> SqlStore:
    """The database store that keeps the forwarding state (the memory store keeps none:
    a forward must survive a restart)."""
    if not isinstance(engine.store, SqlStore):
        raise ConfigError("forwarding needs a database (SQLite or PostgreSQL), not memory")
    return engine.store


def _lease(engine: Engine, url: str, holder: str) -> int | None:
    return state_of(engine).lease(url, holder, time.time(), LEASE)


def _forwarded(engine: Engine, url: str, holder: str, cursor: int, dead: list[Delivery]) -> bool:
    return state_of(engine).forwarded(url, holder, cursor, dead, time.time(), LEASE)


def _pending(engine: Engine, url: str) -> list[Delivery]:
    return state_of(engine).deliveries("pending", url, None)


def _record(engine: Engine, delivery: Delivery) -> None:
    state_of(engine).delivered(delivery)
