"""Shared fixtures and hypothesis profiles (``HYPOTHESIS_PROFILE=fast|ci``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_FILE = ROOT / "examples" / "videosdk-webhook-examples.jsonl"

settings.register_profile("fast", max_examples=25, deadline=None)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def load_examples() -> list[dict[str, Any]]:
    """The provider's 41 example payloads, in the order of its page."""
    return [json.loads(line) for line in EXAMPLES_FILE.read_text().splitlines() if line]


@pytest.fixture(scope="session")
def examples() -> list[dict[str, Any]]:
    return load_examples()
