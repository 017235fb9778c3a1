"""structlog set-up: JSON lines for machines, a readable console renderer for people.

Request-scoped fields (``request_id``, ``peer``, ``rpc``) are bound with
``structlog.contextvars.bound_contextvars`` at the top of each request; trio copies the
context into child tasks, so every event of a request carries them.
"""

from __future__ import annotations

import logging
import sys

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(*, format: str = "json", level: str = "info") -> None:
    """Send structlog events to stderr in ``format`` ("json" or "console") at ``level``."""
    renderer: structlog.typing.Processor
    if format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
