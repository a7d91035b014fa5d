"""The CLI configures structlog for its run; put the defaults back after each test."""

from __future__ import annotations

import pytest
import structlog


@pytest.fixture(autouse=True)
def reset_structlog():
    yield
    structlog.reset_defaults()
