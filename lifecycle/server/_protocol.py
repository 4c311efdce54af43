"""The limits uvicorn's HTTP protocol lacks, for a server that faces the internet alone.

uvicorn (httptools) has no time limit for reading a request's head or body, no cap on
the size of a head (httptools buffers a header whole, however long), and sheds load only
through the app. :func:`bounded_protocol` makes a subclass of its protocol that adds
them, each answered without calling the app, as cheaply as an answer can be:

- a connection that takes longer than ``header_timeout`` for a head, or
  ``body_timeout`` for a body: 408, closed;
- a head over ``max_header_size`` bytes: 431, closed;
- a connection beyond ``max_connections``: 503 with ``Retry-After`` as soon as it is
  accepted, closed;
- a webhook (``POST``) while the app holds as many unanswered as its :class:`Load`
  takes: 503 with ``Retry-After``, its body read and dropped, the connection kept.

Each is counted in :data:`CLOSED` (the metrics read it); timeouts and refused heads are
logged at info.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ._feeder import Load

__all__ = ["CLOSED", "Limits", "bounded_protocol"]

log = logging.getLogger("lifecycle.http")

CLOSED: Counter[str] = Counter()
"""Requests and connections the limits answered, by reason: ``header_timeout``,
``body_timeout``, ``header_too_large``, ``too_many_connections``, ``overloaded``."""

SWEEP_INTERVAL = 0.25
"""Seconds between two looks for connections past their deadline (a timeout may be
late by that much)."""
SHED_DELAY = 0.5
"""Seconds a webhook shed for an overload waits for its 503 (well within a second)."""

_STATUS_LINES = {
    408: b"HTTP/1.1 408 Request Timeout\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
}


class Limits:
    """What a connection may take; see the module's docstring."""

    def __init__(
        self,
        header_timeout: float,
        body_timeout: float,
        max_header_size: int,
        max_connections: int,
        load: Load | None = None,
        retry_after: int = 1,
    ) -> None:
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_header_size = max_header_size
        self.max_connections = max_connections
        self.load = load or Load(None)
        self.retry_after = retry_after


def _unavailable(retry_after: int, error: str, close: bool) -> bytes:
    body = b'{"error":"%s"}' % error.encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        b"retry-after: %d\r\ncontent-length: %d\r\n%s\r\n%s"
        % (retry_after, len(body), b"connection: close\r\n" if close else b"", body)
    )


def bounded_protocol(limits: Limits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with ``limits`` (give it as ``uvicorn.Config(http=)``)."""
    load = limits.load
    too_many = _unavailable(limits.retry_after, "too many connections; retry later", True)
    full = "overloaded: too many webhooks wait to be stored; retry later"
    overloaded = {keep: _unavailable(limits.retry_after, full, not keep) for keep in (True, False)}
    sweeping = False

    def sweep(loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        """Close the connections past their deadline; again in a moment while any is open.

        One sweep for all instead of a timer per request: arming a deadline is then a
        float assignment, not a timer scheduled and cancelled twice a request.
        """
        nonlocal sweeping
        now = loop.time()
        for protocol in list(connections):
            deadline = getattr(protocol, "_deadline", None)
            if deadline is not None and deadline <= now:
                protocol._expired()
        sweeping = bool(connections)
        if sweeping:
            loop.call_later(SWEEP_INTERVAL, sweep, loop, connections)

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        _deadline: float | None = None  # when the head or body being read is late
        _reason = "header_timeout"
        _head: int | None = 0  # bytes of an unfinished head read so far; None once whole
        _chunk = 0  # the size of the chunk being read
        _begun = False  # a message began in the chunk being read
        _shedding = False  # a request answered 503 before the app: its body is dropped
        _shed_keep_alive = True
        _shed: asyncio.TimerHandle | None = None  # the 503 owed, until it is written

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                CLOSED["too_many_connections"] += 1
                transport.write(too_many)
                transport.close()
                return
            self._arm(limits.header_timeout, "header_timeout")

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._shed is not None:
                self._shed.cancel()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            reading_head, self._begun = self._head is not None, False
            self._chunk = len(data)
            super().data_received(data)
            # all of the chunk was head only when it neither finished a head nor began
            # a message (then part of it belonged to the message before)
            if reading_head and self._head is not None and not self._begun:
                self._head += len(data)
                if self._head > limits.max_header_size:
                    self._close(431, "header_too_large")

        def on_message_begin(self) -> None:
            if self._shed is not None:  # a pipelined request: the 503 owed goes first
                self._shed.cancel()
                self._answer_shed(idle=False)
            super().on_message_begin()
            self._head, self._begun = 0, True
            if self._deadline is None:  # the next request on a kept-alive connection
                self._arm(limits.header_timeout, "header_timeout")

        def on_headers_complete(self) -> None:
            # a head is no longer than the bytes read while it came: measure it only when
            # they were more than the cap (a whole head can come in one large read)
            if (self._head or 0) + self._chunk > limits.max_header_size and (
                len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
                > limits.max_header_size
            ):
                self._head = None
                self._close(431, "header_too_large")
                return
            self._head = None
            self._arm(limits.body_timeout, "body_timeout")
            idle = self.cycle is None or self.cycle.response_complete
            if load.full and idle and self.parser.get_method() == b"POST":
                # nothing earlier awaits its answer on this connection: shed here, the
                # cheapest 503 there is (else the app sheds it, in order)
                CLOSED["overloaded"] += 1
                self._shedding = True
                self._shed_keep_alive = self.parser.should_keep_alive()
                # answered a moment later: a client that ignores Retry-After and sends
                # again at once costs the server little more than its timer
                self._shed = self.loop.call_later(SHED_DELAY, self._answer_shed)
                return
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if not self._shedding and not self.transport.is_closing():
                super().on_body(body)

        def on_message_complete(self) -> None:
            self._disarm()
            if self.transport.is_closing() and not self._shedding:
                return  # refused before the app (431): the rest is dropped
            if not self._shedding:
                super().on_message_complete()
                return
            self._shedding = False  # the next request on this connection is read
            if self._shed is None:  # answered already: what follows the answer
                self._after_shed()

        def _answer_shed(self, idle: bool = True) -> None:
            self._shed = None
            if self.transport.is_closing():
                return
            self.transport.write(overloaded[self._shed_keep_alive])
            if idle and not self._shedding:  # its body is read: what follows the answer
                self._after_shed()

        def _after_shed(self) -> None:
            """Close, or wait for the next request as long as uvicorn waits (keep-alive)."""
            if not self._shed_keep_alive:
                self.transport.close()
            elif not self.transport.is_closing():
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )

        def _arm(self, seconds: float, reason: str) -> None:
            nonlocal sweeping
            self._deadline = self.loop.time() + seconds
            self._reason = reason
            if not sweeping:
                sweeping = True
                self.loop.call_later(SWEEP_INTERVAL, sweep, self.loop, self.connections)

        def _disarm(self) -> None:
            self._deadline = None

        def _expired(self) -> None:
            if self.flow is not None and self.flow.read_paused:
                # the server stopped reading (a pipelined request waits its turn): the
                # client is not late
                self._deadline = self.loop.time() + SWEEP_INTERVAL
                return
            self._deadline = None
            self._close(408, self._reason)

        def _close(self, status: int, reason: str) -> None:
            """Answer ``status`` when no other answer is owed or under way on this
            connection (a 503 owed goes out first, alone), and close the connection."""
            if self.transport.is_closing():
                return
            CLOSED[reason] += 1
            log.info(
                "connection closed: %s",
                reason.replace("_", " "),
                extra={"fields": {"client": _peer(self.client), "status": status}},
            )
            cycle: Any = self.cycle
            if self._shed is not None:
                self._shed.cancel()
                self._answer_shed(idle=False)
            elif (  # no answer under way, nor an earlier request waiting for its own
                not self._shedding
                and not self.pipeline
                and (cycle is None or cycle.response_complete or not cycle.response_started)
            ):
                self.transport.write(
                    _STATUS_LINES[status] + b"content-length: 0\r\nconnection: close\r\n\r\n"
                )
            self.transport.close()

    return BoundedHttpToolsProtocol


def _peer(client: tuple[str, int] | None) -> str | None:
    return None if client is None else f"{client[0]}:{client[1]}"
