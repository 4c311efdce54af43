"""The webhook receiver and status API as an ASGI app (needs the ``server`` extra).

``lifecycle serve`` runs it under uvicorn; to run it under an ASGI server of your own,
build it with :func:`create_app`::

    from lifecycle.server import ServerConfig, create_app

    app = create_app(ServerConfig(db="lifecycle.db", public_key=pem_bytes, token="..."))

.. versionadded:: 0.1
"""

from ._http import ConfigError, ServerConfig, create_app, serve

__all__ = ["ConfigError", "ServerConfig", "create_app", "serve"]
