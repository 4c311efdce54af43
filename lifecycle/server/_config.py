"""The settings of ``lifecycle serve``, and the check that refuses those that cannot work."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric import rsa

from .._deadlines import Deadlines
from ..errors import ConfigError, InvalidArgument
from ..stores.sqlite import sqlite_path
from ._signature import load_public_key

__all__ = ["ServerConfig", "check"]


@attrs.frozen(kw_only=True)
class ServerConfig:
    """How ``lifecycle serve`` runs (see docs/http.md).

    .. versionadded:: 0.1
    """

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
    max_queue: int = 128
    """Webhooks waiting for their batch beyond which one is answered 503."""
    header_timeout: float = 10.0
    """Seconds a connection may take to send a request's head (``lifecycle serve`` only)."""
    body_timeout: float = 10.0
    """Seconds a request may take to send its body (``lifecycle serve`` only)."""
    max_header_size: int = 16 * 1024
    """Largest request head in bytes (``lifecycle serve`` only)."""
    max_connections: int = 2000
    """Open connections beyond which a request is answered 503 (``lifecycle serve`` only)."""
    deadlines: Mapping[str, Any] = attrs.field(factory=dict)
    """Deadlines merged over the defaults (see docs/time.md)."""
    sweep_interval: float | None = 30.0
    """Seconds between sweeps, the first at start (None: no sweeping)."""
    videosdk_api_key: str | None = attrs.field(default=None, repr=False)
    """With ``videosdk_secret``: reconcile the overdue resources after each sweep."""
    videosdk_secret: str | None = attrs.field(default=None, repr=False)
    videosdk_api_url: str = "https://api.videosdk.live"
    forward: tuple[str, ...] = ()
    """Endpoints the change feed is forwarded to: ``URL`` or ``URL=lifecycle.state,...``."""
    forward_secret: str | None = attrs.field(default=None, repr=False)
    """The Standard Webhooks secret (``whsec_...``) forwarded changes are signed with."""
    forward_retry_for: float = 24 * 3600.0
    """Seconds a forwarded change is retried before it is given up on (a dead delivery)."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(config: ServerConfig) -> rsa.RSAPublicKey | None:
    """The key that verifies webhooks (None when they are not verified).

    Raises :class:`ConfigError` for settings that cannot work or would expose the server:
    no key and no ``insecure_no_signature``, both at once, a key that is not an RSA PEM,
    reads open to other hosts without a token or ``public_read``, a ``max_body`` under
    one byte, a redelivery window or a timeout that is not a positive number of seconds,
    a queue, head size or connection limit under 1, a bad deadline, a sweep interval
    that is not a positive number of seconds, a VideoSDK key without its secret or the
    other way round, or reconciling without sweeping.
    """
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
    for option, value in (
        ("--max-queue", config.max_queue),
        ("--max-header-size", config.max_header_size),
        ("--max-connections", config.max_connections),
    ):
        if value < 1:
            raise ConfigError(f"{option} must be at least 1")
    for option, seconds in (
        ("--header-timeout", config.header_timeout),
        ("--body-timeout", config.body_timeout),
    ):
        if not seconds > 0:
            raise ConfigError(f"{option} must be a positive number of seconds")
    try:
        Deadlines(config.deadlines)
    except InvalidArgument as e:
        raise ConfigError(f"--deadline: {e}") from None
    if config.sweep_interval is not None and not config.sweep_interval > 0:
        raise ConfigError("--sweep-interval must be a positive number of seconds (0: off)")
    if bool(config.videosdk_api_key) != bool(config.videosdk_secret):
        raise ConfigError(
            "reconciling with VideoSDK needs both --videosdk-api-key and --videosdk-secret "
            "(or VIDEOSDK_API_KEY and VIDEOSDK_SECRET)"
        )
    if config.videosdk_api_key and config.sweep_interval is None:
        raise ConfigError("reconciling runs after each sweep: it needs a --sweep-interval")
    if config.forward:
        from ._forward import parse_endpoint, signer

        for text in config.forward:
            parse_endpoint(text)
        if not config.forward_secret:
            raise ConfigError(
                "--forward needs --forward-secret (or LIFECYCLE_FORWARD_SECRET): the "
                "Standard Webhooks secret, whsec_ and base64, that signs what is forwarded"
            )
        signer(config.forward_secret)
        if sqlite_path(config.db) == "" or config.db.startswith("memory:"):
            raise ConfigError(
                "--forward needs a database (SQLite file or PostgreSQL): what was "
                "forwarded must survive a restart"
            )
        if not config.forward_retry_for > 0:
            raise ConfigError("--forward-retry-for must be a positive duration")
    return None if config.public_key is None else load_public_key(config.public_key)
