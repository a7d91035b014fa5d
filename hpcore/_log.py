"""Module loggers that print nothing on stdout unless the user configures logging.

structlog, unconfigured, prints every event to stdout. The library never configures logging
(CONVENTIONS), so its events go to structlog once the application has configured it
(``structlog.configure``, or ``structlog.testing.capture_logs`` in tests), and otherwise to
the standard library's ``logging`` under the module's name, where no handler means nothing
below WARNING is shown, and warnings go to stderr.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["get_logger"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class _Logger:
    """``log.info("event", key=value)`` routed to structlog or to stdlib logging."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._std = logging.getLogger(name)

    def __getattr__(self, method: str) -> Any:
        level = _LEVELS.get(method)
        if level is None:
            raise AttributeError(method)

        def emit(event: str, **kw: Any) -> None:
            if structlog.is_configured():
                getattr(structlog.get_logger(self._name), method)(event, **kw)
            elif self._std.isEnabledFor(level):
                pairs = " ".join(f"{k}={v!r}" for k, v in kw.items())
                self._std.log(level, "%s %s", event, pairs)

        return emit


def get_logger(name: str) -> _Logger:
    """The logger of module ``name``."""
    return _Logger(name)
