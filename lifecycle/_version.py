"""The release, in one place (read by setup.cfg, the CLI and the OpenAPI document)."""

__version__ = "0.2.0"
