"""The webhook receiver and status API as an ASGI app (needs the ``server`` extra).

``lifecycle serve`` runs it under uvicorn; to run it under an ASGI server of your own,
build it with :func:`create_app`::

    from lifecycle.server import ServerConfig, create_app

    app = create_app(ServerConfig(db="lifecycle.db", public_key=pem_bytes, token="..."))

A receiver of your own verifies VideoSDK's signature with :func:`verify_signature`
(and :func:`load_public_key`).

.. versionadded:: 0.1
"""

from ..errors import ConfigError
from ._app import create_app
from ._config import ServerConfig
from ._run import serve
from ._signature import load_public_key, verify_signature

__all__ = [
    "ConfigError",
    "ServerConfig",
    "create_app",
    "load_public_key",
    "serve",
    "verify_signature",
]
