"""VideoSDK's webhook signature: RSA-SHA256 (PKCS#1 v1.5) over the raw body, in base64."""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ..errors import ConfigError

__all__ = [
    "SIGNATURE_HEADER",
    "SignatureRefused",
    "load_public_key",
    "signature_problem",
    "verify_signature",
]

SIGNATURE_HEADER = "videosdk-signature"


class SignatureRefused(Exception):  # noqa: N818 - answered as 401 by the server's table
    """A webhook whose signature does not hold; the message says why."""


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """The RSA public key in ``pem``; :class:`ConfigError` when it is not one.

    .. versionadded:: 0.2
    """
    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"the public key is not a PEM public key: {e}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError(f"the public key must be an RSA key, not {type(key).__name__}")
    return key


def signature_problem(
    public_key: rsa.RSAPublicKey, header_value: str | bytes | None, body: bytes
) -> str | None:
    """Why ``header_value`` is not the signature of ``body``; None when it is.

    Whitespace around the value is not part of it (base64 holds none).
    """
    if header_value is not None:
        header_value = header_value.strip()
    if not header_value:
        return f"the {SIGNATURE_HEADER} header is missing"
    try:
        signature = base64.b64decode(header_value, validate=True)
    except (binascii.Error, ValueError):  # ValueError: text that is not ASCII
        return f"the {SIGNATURE_HEADER} header is not base64"
    try:
        public_key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return "the signature does not match the body"
    return None


def verify_signature(
    public_key: rsa.RSAPublicKey, header_value: str | bytes | None, body: bytes
) -> bool:
    """Whether ``header_value`` (the ``videosdk-signature`` header) signs ``body``.

    ``body`` is the raw request body as received: the signature covers those bytes, not
    the JSON they hold, so verify before parsing or re-serializing. Whitespace around
    the header value is ignored. False for a missing or empty header, text that is not
    base64, and a signature made with another key or over other bytes; it never raises
    for a bad header. Load ``public_key`` with :func:`load_public_key`.

    .. versionadded:: 0.2
    """
    return signature_problem(public_key, header_value, body) is None
