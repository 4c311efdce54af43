"""The browser tier: pages of ``lifecycle serve`` in headless Chromium (``pytest tests/browser``).

A package, so that mypy tells its ``conftest`` from ``tests/conftest.py``.
"""
