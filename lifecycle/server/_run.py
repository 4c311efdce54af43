"""``lifecycle serve``: the app under uvicorn, logging JSON lines."""

from __future__ import annotations

import logging
import logging.config
import resource
import socket
import sys
from typing import Any

import orjson
import uvicorn

from .._engine import Engine
from ..errors import ConfigError
from ..stores._sql import redact
from ._app import create_app
from ._config import ServerConfig
from ._protocol import Limits, bounded_protocol

__all__ = ["JsonFormatter", "serve"]

SWITCH_INTERVAL = 0.0005
"""Seconds a thread may hold the GIL while another waits for it (Python's default: 0.005)."""

log = logging.getLogger("lifecycle.http")


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


def _warn_about_exposure(config: ServerConfig) -> None:
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


def serve(config: ServerConfig) -> None:
    """Run the server until SIGINT or SIGTERM; in-flight requests are finished first.

    Raises :class:`ConfigError` for settings that cannot work (the address cannot be
    listened on included) and :class:`StoreUnavailable` when the database cannot be
    opened, before it serves anything.

    .. versionadded:: 0.1
    """
    app = create_app(config)
    Engine.open(config.db).close()  # a bad database URL fails here, not at the first request
    # The engine thread gives the GIL up at every database call; at the default 5 ms switch
    # interval, each return waits behind the event loop's request work, and a batch's
    # half-dozen calls add up to its latency (the webhooks of a batch wait for it).
    sys.setswitchinterval(SWITCH_INTERVAL)
    sock = _listen(config.host, config.port)  # a busy port is an error, before any log line
    port = sock.getsockname()[1]
    logging.config.dictConfig(_log_config(config.log_level))
    _warn_about_exposure(config)
    connections = _allow_files(config.max_connections)
    log.info(
        "serving",
        extra={
            "fields": {
                "url": f"http://{config.host}:{port}",
                "db": redact(config.db),
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
            port=port,
            log_config=None,
            access_log=False,
            log_level=config.log_level,
            timeout_graceful_shutdown=30,
            lifespan="on",
            http=bounded_protocol(
                Limits(
                    config.header_timeout,
                    config.body_timeout,
                    config.max_header_size,
                    connections,
                    app.state.load,
                )
            ),
        )
    ).run(sockets=[sock])


_SPARE_FILES = 64
"""Open files the server needs beside its connections: the database, logs, libraries."""


def _allow_files(connections: int) -> int:
    """Raise the open-file limit so that ``connections`` fit, as far as the hard limit
    allows; the connections that fit. Past the limit a connection would not even be
    accepted (it would wait unanswered), so fewer are served, with a warning."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + _SPARE_FILES
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return connections
    soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    fit = max(1, soft - _SPARE_FILES)
    if fit < connections:
        log.warning(
            "the open-file limit (%d) leaves room for %d connections, not the %d of "
            "--max-connections: more are answered 503 (raise it with ulimit -n)",
            soft,
            fit,
            connections,
        )
    return min(connections, fit)


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``; :class:`ConfigError` when it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
